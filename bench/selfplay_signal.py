"""Does self-play move the warm-started tiny policy's held-out solve rate more than a control does?

python -m bench.selfplay_signal [--steps 10] [--tasks 64] [--seconds 1500]
Both arms start from the same warm-start (flywheel.selfplay.pretrain, cached) and run the same
number of self-play steps with the same seeds and executor: `selfplay` updates on the real
rewards, `control` on the rewards shuffled within each (task, role) batch (same reward
distribution, no link between an answer and its reward). Held-out set: heldout.task_set (fixed,
--tasks per type), greedy, before and after each arm. Reported per task type: solve rate with a
95% Wilson interval, and the two-proportion z of selfplay-after vs control-after. --seconds caps
each arm's self-play wall time (fewer steps when the machine is slow; the steps run are printed):
set it high for a step-matched comparison.
Writes bench/results/selfplay_signal.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch

from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, executor, heldout, policy, pretrain, rollout, trr

SPEC = {
    "policy": {"warmStart": {}},
    "selfPlay": {
        "batchSize": 8,
        "solveRateRollouts": 4,
        "references": 2,
        "inductionInputs": 4,
        "maxNewTokens": 192,
        "temperature": 0.7,  # as examples/selfplayrun-tiny.yaml
        "learningRate": 2e-4,
        "entropyCoefficient": 0.001,
    },
    "heldOut": {"samples": 0},
}


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half, 3), round(centre + half, 3)


def two_proportion_z(a: float, b: float, n: int) -> float:
    pooled = (a + b) / 2
    se = math.sqrt(2 * pooled * (1 - pooled) / n) if 0 < pooled < 1 else 0.0
    return round((a - b) / se, 2) if se else 0.0


def arm(
    name: str, weights: dict[str, Any], spec: selfplayrun.SelfPlayRunSpec, pool: Any, held: Any, args: Any
) -> dict[str, Any]:
    sp = spec.self_play
    pol = policy.TinyPolicy()
    pol.module.load_state_dict(weights)
    optimizer = torch.optim.AdamW(pol.module.parameters(), lr=sp.learning_rate, weight_decay=sp.weight_decay)
    store = buffers.Buffers.seeded(sp.max_buffer_size)
    shuffler = random.Random(f"shuffle:{args.seed}")
    started, step, trace = time.monotonic(), 0, []
    while step < args.steps and time.monotonic() - started < args.seconds:
        step += 1
        torch.manual_seed(args.seed * 1000 + step)
        result = rollout.play(pol, store, pool, sp, step, random.Random(f"{args.seed}:{step}"))
        if name == "control":
            for batch in result.batches:
                shuffler.shuffle(batch.rewards)
        trr.update(
            pol,
            pol.module,
            optimizer,
            result.batches,
            entropy_coefficient=sp.entropy_coefficient,
            grad_clip=sp.grad_clip,
            temperature=sp.temperature,
        )
        for task, entries in result.new_entries.items():
            for entry in entries:
                store.add(task, entry)
        trace.append({"step": step, "valid": result.valid_rate, "solve": result.solve_rate})
        print(f"{name} step {step}: valid {result.valid_rate} solve {result.solve_rate}", flush=True)
    after = heldout.evaluate(pol, pool, spec, held)["solveRate"]
    return {"steps": step, "seconds": round(time.monotonic() - started, 1), "after": after, "trace": trace}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1500.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    spec = selfplayrun.SelfPlayRunSpec.model_validate(
        {**SPEC, "heldOut": {"samples": 0, "tasks": args.tasks}}
    )
    folder = pretrain.ensure(spec, log=lambda e: print(e, flush=True))
    weights = torch.load(folder / "weights.pt", weights_only=True)
    held = heldout.task_set(spec)
    with executor.Pool(workers=2, timeout_s=5.0, memory_mb=256) as pool:
        base = policy.TinyPolicy()
        base.module.load_state_dict(weights)
        before = heldout.evaluate(base, pool, spec, held)["solveRate"]
        arms = {name: arm(name, weights, spec, pool, held, args) for name in ("selfplay", "control")}
    n = args.tasks
    rows = []
    for task in before:
        a, c = arms["selfplay"]["after"][task], arms["control"]["after"][task]
        rows.append(
            {
                "task": task,
                "before": before[task],
                "before_ci": wilson(before[task] * n, n),
                "selfplay": a,
                "selfplay_ci": wilson(a * n, n),
                "control": c,
                "control_ci": wilson(c * n, n),
                "z_selfplay_vs_control": two_proportion_z(a, c, n),
            }
        )
    print(f"warm-start {folder.name}; {n} held-out tasks per type, greedy")
    print(f"{'task':<10}{'before':>16}{'self-play':>22}{'control':>22}{'z':>7}")
    for r in rows:
        print(
            f"{r['task']:<10}{r['before']:>6.3f} {r['before_ci']!s:>9}"
            f"{r['selfplay']:>8.3f} {r['selfplay_ci']!s:>13}"
            f"{r['control']:>8.3f} {r['control_ci']!s:>13}{r['z_selfplay_vs_control']:>7}"
        )
    print({k: (v["steps"], v["seconds"]) for k, v in arms.items()})
    out = {"spec": SPEC, "tasks": n, "warmStart": folder.name, "rows": rows, "arms": arms}
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/selfplay_signal.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
