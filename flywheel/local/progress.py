"""Progress of a local workload: its JSON event lines, read from its log, drive rich progress bars.

Workloads print one JSON object per line on stdout ({"event": "epoch", ...}); the supervisor sends
stdout to the log file, and the CLI follows that file. Reading the file rather than a pipe means a
killed CLI never blocks or kills the workload through a broken pipe, and a later CLI can pick up
where the workload is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich import console as rich_console
from rich import progress as rich_progress
from rich import table

Event = dict[str, Any]
# torchrun --tee / --role prefixes a worker's lines with "[default0]:"; accept it.
_PREFIX = re.compile(r"^\[[\w.-]+\]:")


def parse_event(line: str) -> Event | None:
    """The event of one output line, or None when the line is not a JSON event."""
    text = _PREFIX.sub("", line.strip(), count=1).strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


class Bars:
    """The data, epochs and export bars of a training workload. On a terminal rich draws them live;
    elsewhere (CI logs, pipes) each milestone is printed as one plain line instead."""

    def __init__(self, console: rich_console.Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = rich_progress.Progress(
            rich_progress.TextColumn("{task.description}", table_column=table.Column(width=7, no_wrap=True)),
            rich_progress.BarColumn(bar_width=30),
            rich_progress.MofNCompleteColumn(),
            rich_progress.TimeElapsedColumn(),
            rich_progress.TextColumn("{task.fields[note]}", table_column=table.Column(no_wrap=True)),
            console=console,
            disable=not self.live,
        )
        self.tasks: dict[str, rich_progress.TaskID] = {}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def bar(self, name: str, total: float | None = None) -> rich_progress.TaskID:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, note="")
        elif total is not None:
            self.progress.update(self.tasks[name], total=total)
        return self.tasks[name]

    def update(
        self, name: str, completed: float | None = None, total: float | None = None, note: str = ""
    ) -> None:
        task = self.bar(name, total)
        self.progress.update(task, completed=completed, note=note)
        if not self.live and completed is not None:
            shown = f"{completed:g}/{total:g}" if total else f"{completed:g}"
            self.console.print(f"{name:<7} {shown} {note}".rstrip(), highlight=False)

    def done(self, name: str, note: str = "") -> None:
        task = self.bar(name)
        total = next(t.total for t in self.progress.tasks if t.id == task) or 1
        self.progress.update(task, total=total, completed=total, note=note)
        if not self.live:
            self.console.print(f"{name:<7} done {note}".rstrip(), highlight=False)

    def on_training_event(self, event: Event) -> None:
        """Move the bars for one trainer event (epoch, step, resume, export, done)."""
        kind = event.get("event")
        if kind == "epoch":
            self.update(
                "epochs", completed=event.get("epoch"), total=event.get("epochs"), note=_metrics_note(event)
            )
        elif kind == "step" and self.live:
            loss = event.get("loss")
            if isinstance(loss, int | float):
                self.progress.update(self.bar("epochs"), note=f"step {event.get('step')} loss {loss:.4f}")
        elif kind == "resume":
            self.console.print(f"resuming from the checkpoint at step {event.get('step')}", highlight=False)
            self.progress.update(self.bar("epochs"), completed=event.get("epoch"))
        elif kind == "export":
            self.done("export", note=str(event.get("version") or ""))


def _metrics_note(event: Event) -> str:
    parts = [
        f"{key} {value:.4f}"
        for key, value in event.items()
        if key not in ("event", "epoch", "epochs", "step", "time", "rank") and isinstance(value, float)
    ]
    return " ".join(parts[:3])
