"""Does the tiny policy's solve rate on a fixed held-out task set move over a short CPU run?

python -m bench.selfplay_signal [--seconds 40]
Held-out set: 12 deduction/abduction tasks of simple programs, scored greedy before and after
self-play steps for --seconds of CPU. Prints a table, writes bench/results/selfplay_signal.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, executor, parsing, policy, rollout, tasks, trr

HELD_OUT = [
    buffers.Triplet(f"def f(a):\n    return a + {k}", str(i), str(i + k)) for k in (1, 2, 3) for i in (1, 5)
] + [
    buffers.Triplet("def f(s):\n    return s[::-1]", f"'{w}'", repr(w[::-1])) for w in ("ab", "xyz", "hello")
]


def score(pol: policy.Policy, pool: executor.Pool, sp: selfplayrun.SelfPlay) -> dict[str, float]:
    out = {}
    for task in ("deduction", "abduction"):
        prompts = [tasks.solver_prompt(task, e) for e in HELD_OUT]
        samples = pol.generate(prompts, temperature=1.0, max_new_tokens=sp.max_new_tokens, greedy=True)
        checks = [tasks.check(task, e, s.text, pool) for e, s in zip(HELD_OUT, samples, strict=True)]
        out[f"{task}_solve"] = sum(acc for _, acc in checks) / len(checks)
        out[f"{task}_format"] = sum(parsing.format_ok(tasks.full_text(s.text)) for s in samples) / len(
            samples
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sp = selfplayrun.SelfPlay(batch_size=4, solve_rate_rollouts=2, max_new_tokens=32, learning_rate=1e-3)
    pol = policy.TinyPolicy()
    opt = torch.optim.AdamW(pol.module.parameters(), lr=sp.learning_rate, weight_decay=sp.weight_decay)
    store = buffers.Buffers.seeded(sp.max_buffer_size)
    with executor.Pool(workers=2, timeout_s=2.0) as pool:
        before = score(pol, pool, sp)
        start, step, rewards = time.monotonic(), 0, []
        while time.monotonic() - start < args.seconds:
            step += 1
            res = rollout.play(pol, store, pool, sp, step, random.Random(step))
            trr.update(
                pol, pol.module, opt, res.batches, entropy_coefficient=sp.entropy_coefficient, grad_clip=1.0
            )
            rewards.append(
                sum(sum(b.rewards) for b in res.batches) / sum(len(b.rewards) for b in res.batches)
            )
            for t, entries in res.new_entries.items():
                for e in entries:
                    store.add(t, e)
        after = score(pol, pool, sp)
    result = {
        "steps": step,
        "seconds": args.seconds,
        "before": before,
        "after": after,
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        "buffers": store.sizes(),
    }
    print(f"{'metric':<20}{'before':>10}{'after':>10}")
    for k in before:
        print(f"{k:<20}{before[k]:>10.3f}{after[k]:>10.3f}")
    print(
        f"steps={step} reward first={result['mean_reward_first']} "
        f"last={result['mean_reward_last']} buffers={store.sizes()}"
    )
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/selfplay_signal.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
