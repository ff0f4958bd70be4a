"""Stages of the demo: each announces what it does, is timed, and fails with its name and a fix.

A demo that stops with a traceback teaches nothing. Every stage runs inside `Stages.run`, which
prints "[n/N] title" before it starts and the seconds it took after; when it raises, the error
becomes one UserError naming the stage, what went wrong, and what to do about it. Unexpected errors
(bugs) keep their traceback in <home>/logs/demo.log, and the message says where to find it.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from flywheel import artifacts, errors

T = TypeVar("T")


class StageError(Exception):
    """A stage failed for a reason it understands; `fix` tells the person what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@dataclasses.dataclass
class Timing:
    key: str
    title: str
    seconds: float
    reused: bool = False


class Stages:
    """Runs stages in order, timing each; `timings` is what the summary reports."""

    def __init__(
        self,
        console: Console,
        total: int,
        log_path: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.total = total
        self.log_path = log_path
        self.clock = clock
        self.timings: list[Timing] = []
        self._reused = False

    def reused(self, note: str) -> None:
        """Called by a stage that found its work already done (a re-run of the demo)."""
        self._reused = True
        self.console.print(f"  [dim]reusing: {note}[/dim]", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(f"  {text}", highlight=False)

    def run(self, key: str, title: str, fix: str, fn: Callable[[], T]) -> T:
        """Run one stage; `fix` is the advice given when it fails without its own."""
        number = len(self.timings) + 1
        self.console.print(f"\n[bold cyan][{number}/{self.total}] {title}[/bold cyan]", highlight=False)
        self._reused = False
        started = self.clock()
        try:
            value = fn()
        except KeyboardInterrupt:
            raise
        except errors.UserError as exc:
            raise errors.UserError(f"stage {number} ({title}) failed: {exc}", exc.problems) from exc
        except StageError as exc:
            raise errors.UserError(f"stage {number} ({title}) failed: {exc}. Fix: {exc.fix}") from exc
        except Exception as exc:  # a bug: keep the traceback where the message points
            self._log_traceback(title)
            raise errors.UserError(
                f"stage {number} ({title}) failed: {type(exc).__name__}: {exc}. Fix: {fix} "
                f"(traceback in {self.log_path})"
            ) from exc
        seconds = self.clock() - started
        self.timings.append(Timing(key, title, round(seconds, 2), self._reused))
        self.console.print(f"  [green]done[/green] in {seconds:.1f} s", highlight=False)
        return value

    def _log_traceback(self, title: str) -> None:
        previous = self.log_path.read_text() if self.log_path.exists() else ""
        text = f"{previous}--- {time.strftime('%Y-%m-%dT%H:%M:%S')} stage {title}\n{traceback.format_exc()}"
        artifacts.atomic_write_text(self.log_path, text)
