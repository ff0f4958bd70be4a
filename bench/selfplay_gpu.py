"""The self-play update's GPU path on a small transformers model built from a local config.

python -m bench.selfplay_gpu [--steps 5] [--layers 4] [--width 512] [--vocab 151936] [--seq 1024]
Builds a Qwen2-style causal LM from a config (random weights, nothing downloaded), loads it the way
the trainer does (policy.HFPolicy: fp32 weights, bf16 autocast on a GPU), and runs --steps TRR++
updates (trr.update: chunked log-probs) at the paper's lr 1e-6 on synthetic responses. Reports
tokens/s, peak GPU memory and the fraction of weights that moved. On a machine without CUDA it
runs the same code on the CPU (autocast bf16 on CPU), as a smoke test of the script only.
Writes bench/results/selfplay_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def build(path: Path, args: argparse.Namespace) -> None:
    import tokenizers
    import transformers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["def f(a):\n    return a + 1"] * 10, vocab_size=300, special_tokens=["<|endoftext|>"]
    )
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    tok.save_pretrained(path)
    config = transformers.Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.width,
        intermediate_size=args.width * 4,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.width // 64),
        num_key_value_heads=max(1, args.width // 128),
        max_position_embeddings=args.seq * 2,
        tie_word_embeddings=True,
    )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)


def main() -> None:
    from flywheel.selfplay import policy, rollout, trr

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args)
        pol = policy.HFPolicy(Path(tmp), dtype="bfloat16")
        if not cuda:
            pol.autocast_dtype = torch.bfloat16  # exercise the same autocast path on the CPU
    before = [p.detach().clone() for p in pol.module.parameters()]
    optimizer = torch.optim.AdamW(pol.module.parameters(), lr=1e-6, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    half = args.seq // 2
    samples = [
        policy.Sample(
            torch.randint(0, args.vocab, (half,), generator=gen).tolist(),
            torch.randint(0, args.vocab, (half,), generator=gen).tolist(),
            "",
        )
        for _ in range(args.batch)
    ]
    rewards = [1.0 if i % 2 else -0.5 for i in range(args.batch)]
    batch = rollout.Batch("deduction", "solve", samples, rewards)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    started = time.monotonic()
    for _ in range(args.steps):
        trr.update(pol, pol.module, optimizer, [batch], entropy_coefficient=0.001, grad_clip=1.0)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.monotonic() - started
    moved = sum(int((p.detach() != b).sum()) for p, b in zip(pol.module.parameters(), before, strict=True))
    total = sum(b.numel() for b in before)
    out = {
        "device": torch.cuda.get_device_name() if cuda else "cpu (smoke test only)",
        "params": total,
        "tokens_per_s": round(args.steps * args.batch * args.seq / seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "moved_fraction": round(moved / total, 4),
        "args": vars(args),
    }
    print(json.dumps(out, indent=2))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/selfplay_gpu.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
