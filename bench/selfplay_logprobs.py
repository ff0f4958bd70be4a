"""Peak memory of the policy-gradient log-probs: full-vocabulary logits vs flywheel.selfplay.logprobs.

python -m bench.selfplay_logprobs [--vocab 151936] [--positions 2048] [--width 64]
A narrow model (hidden width 64) with a large vocabulary (Qwen2.5's 151,936) isolates the logits:
forward and backward of the log-prob and entropy of `positions` response tokens, each variant in
a fresh process, peak resident memory (ru_maxrss) above the process's baseline after the inputs
exist. Prints a table, writes bench/results/selfplay_logprobs.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def _measure(variant: str, vocab: int, positions: int, width: int) -> dict[str, float]:
    import time

    import torch

    from flywheel.selfplay import logprobs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    hidden = torch.randn(positions, width, requires_grad=True)
    weight = (torch.randn(vocab, width) * 0.02).requires_grad_()
    targets = torch.randint(0, vocab, (positions,))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    if variant == "full":
        logp_all = torch.log_softmax(hidden @ weight.T, dim=-1)
        chosen = logp_all.gather(-1, targets[:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    else:
        chosen, entropy = logprobs.selected(hidden, weight, targets)
    (chosen.sum() + 0.001 * entropy.sum()).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": round((peak - base) / 1024, 1), "seconds": round(time.monotonic() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--positions", type=int, default=2048)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--variants", default="full,chunked", help="which to measure (full needs ~5x the logits)"
    )
    parser.add_argument("--variant", choices=["full", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # the child: one measurement, as JSON on stdout
        print(json.dumps(_measure(args.variant, args.vocab, args.positions, args.width)))
        return
    out: dict[str, object] = {"vocab": args.vocab, "positions": args.positions, "width": args.width}
    logits_mib = args.vocab * args.positions * 4 / 2**20
    chosen = [v for v in ("full", "chunked") if v in args.variants.split(",")]
    for variant in chosen:
        cmd = [sys.executable, "-m", "bench.selfplay_logprobs", "--variant", variant]
        cmd += ["--vocab", str(args.vocab), "--positions", str(args.positions), "--width", str(args.width)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"vocab {args.vocab}, {args.positions} positions, width {args.width}: "
        f"one fp32 logits tensor {logits_mib:.0f} MiB"
    )
    for variant in chosen:
        m = out[variant]
        assert isinstance(m, dict)
        print(f"{variant:<8} peak +{m['peak_mib']:>8.1f} MiB  {m['seconds']:>6.2f} s")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/selfplay_logprobs.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
