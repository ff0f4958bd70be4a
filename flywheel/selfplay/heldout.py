"""In-loop held-out evaluation: a fixed task set per task type, solved greedy and sampled.

The reference validates every 10 steps on CruxEval/LiveCodeBench with greedy decoding; those are
outside data, so here the set is drawn from flywheel.selfplay.grammar with spec.heldOut.seed
(`tasks` per type, fixed for the run, never added to a buffer). The warm-start corpus is drawn
from the same grammar with another seed: the set is in-distribution and, the grammar being small,
an individual task may also have appeared in warm-start; it measures whether self-play moves
the policy, not generalisation to new kinds of program.

Figures: solve rate per type, greedy (`solveRate`) and over `samples` sampled answers per task at
selfPlay.temperature (`sampledSolveRate`). The trainer reports them as heldOut events, in status
(heldOut) and as a PNG curve (heldout.png in the run's artifacts).
"""

from __future__ import annotations

import io
import random
from typing import Any

from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, grammar, policy, rollout, tasks

Entry = buffers.Triplet | buffers.FunctionTask


def task_set(spec: selfplayrun.SelfPlayRunSpec) -> dict[str, list[Entry]]:
    """The fixed held-out tasks of each chosen task type."""
    ho, sp = spec.held_out, spec.self_play
    out: dict[str, list[Entry]] = {}
    for task in rollout.ORDER:
        if task not in {str(t) for t in sp.task_types}:
            continue
        rng = random.Random(f"held-out:{ho.seed}:{task}")
        if task == buffers.INDUCTION:
            out[task] = [grammar.function_task(rng, sp.induction_inputs) for _ in range(ho.tasks)]
        else:
            out[task] = [grammar.triplet(rng) for _ in range(ho.tasks)]
    return out


def evaluate(
    pol: policy.Policy, pool: tasks.Executor, spec: selfplayrun.SelfPlayRunSpec, held: dict[str, list[Entry]]
) -> dict[str, dict[str, float]]:
    """{"solveRate": per type (greedy), "sampledSolveRate": per type (when heldOut.samples > 0)}."""
    sp, n = spec.self_play, spec.held_out.samples
    fits = rollout.fits(pol, sp)
    greedy: dict[str, float] = {}
    sampled: dict[str, float] = {}
    for task, entries in held.items():
        prompts = [tasks.solver_prompt(task, e, fits) for e in entries]
        answers = []
        for i in range(0, len(prompts), rollout.GENERATE_CHUNK):
            answers += pol.generate(
                prompts[i : i + rollout.GENERATE_CHUNK],
                temperature=sp.temperature,
                max_new_tokens=sp.max_new_tokens,
                greedy=True,
            )
        greedy[task] = _rate(
            tasks.check_many(task, list(zip(entries, [a.text for a in answers], strict=True)), pool)
        )
        if n:
            drawn = rollout.generate(pol, [p for p in prompts for _ in range(n)], sp)
            posed = [(e, drawn[i * n + j].text) for i, e in enumerate(entries) for j in range(n)]
            sampled[task] = _rate(tasks.check_many(task, posed, pool))
    return {"solveRate": greedy, **({"sampledSolveRate": sampled} if n else {})}


def _rate(scores: list[tuple[bool, float]]) -> float:
    return round(sum(acc for ok, acc in scores if ok) / len(scores), 4) if scores else 0.0


def curve_png(history: list[dict[str, Any]]) -> bytes:
    """Held-out solve rate per task type over steps (solid greedy, dashed sampled), as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = [h["step"] for h in history]
    for i, task in enumerate(sorted({t for h in history for t in h.get("solveRate", {})})):
        color = f"C{i}"
        ax.plot(steps, [h["solveRate"].get(task) for h in history], "-o", color=color, label=f"{task} greedy")
        if any("sampledSolveRate" in h for h in history):
            ax.plot(
                steps,
                [h.get("sampledSolveRate", {}).get(task) for h in history],
                "--",
                color=color,
                label=f"{task} sampled",
            )
    ax.set_xlabel("step")
    ax.set_ylabel("held-out solve rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
