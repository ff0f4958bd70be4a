"""Log-probs for the policy gradient: chunked equals full, at the sampling temperature, and a
bf16-autocast update still moves the (fp32 master) weights at the paper's learning rate."""

from __future__ import annotations

import pytest
import torch

from flywheel.selfplay import logprobs, policy, rollout, tiny, trr

torch.set_num_threads(1)


def _full(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float):
    logp_all = torch.log_softmax((hidden @ weight.T) / temperature, dim=-1)
    chosen = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    return chosen, -(logp_all.exp() * logp_all).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_equals_full_values_and_gradients(temperature: float) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    full_logp, full_ent = _full(hidden, weight, targets, temperature)
    (full_logp.sum() + 0.3 * full_ent.sum()).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad, weight.grad = None, None
    # 50 * 4 elements a chunk: 4 rows, so 10 chunks, the last one short
    logp, ent = logprobs.selected(hidden, weight, targets, temperature, chunk_elements=200)
    (logp.sum() + 0.3 * ent.sum()).backward()
    assert torch.allclose(logp, full_logp, atol=1e-5) and torch.allclose(ent, full_ent, atol=1e-5)
    assert torch.allclose(hidden.grad, grads[0], atol=1e-5) and torch.allclose(
        weight.grad, grads[1], atol=1e-5
    )


def test_token_logprobs_are_those_of_the_sampling_temperature() -> None:
    torch.manual_seed(0)
    pol = policy.TinyPolicy()
    (sample,) = pol.generate(["def f(a):"], temperature=0.5, max_new_tokens=6)
    ids = torch.tensor([sample.prompt_ids + sample.response_ids])
    start = len(sample.prompt_ids) - 1
    with torch.no_grad():
        logits = pol.module(ids)[0, start:-1]
        logp, _, mask = policy.token_logprobs(pol, pol.module, [sample], temperature=0.5)
    expected = torch.log_softmax(logits / 0.5, -1).gather(-1, torch.tensor(sample.response_ids)[:, None])
    assert torch.allclose(logp[0][mask[0]], expected.squeeze(-1), atol=1e-5)
    at_one = torch.log_softmax(logits, -1).gather(-1, torch.tensor(sample.response_ids)[:, None])
    assert not torch.allclose(logp[0][mask[0]], at_one.squeeze(-1), atol=1e-3)


def _changed_after_updates(pol: policy.TinyPolicy) -> float:
    """Fraction of weights that moved after 3 REINFORCE updates at lr 1e-6."""
    before = [p.detach().clone() for p in pol.module.parameters()]
    optimizer = torch.optim.AdamW(pol.module.parameters(), lr=1e-6, weight_decay=0.0)
    samples = [policy.Sample(tiny.encode("ab"), tiny.encode(t), t) for t in ("cd", "xyz")]
    batch = rollout.Batch("deduction", "solve", samples, [1.0, -0.5])
    for _ in range(3):
        trr.update(pol, pol.module, optimizer, [batch], entropy_coefficient=0.0, grad_clip=1.0)
    moved = sum(int((p.detach() != b).sum()) for p, b in zip(pol.module.parameters(), before, strict=True))
    return moved / sum(b.numel() for b in before)


def test_bf16_compute_over_fp32_weights_moves_them_at_the_paper_lr() -> None:
    torch.manual_seed(0)
    master = policy.TinyPolicy()
    master.autocast_dtype = torch.bfloat16  # what policy.dtype: bfloat16 does on a GPU
    assert all(p.dtype == torch.float32 for p in master.module.parameters())
    # every weight that receives a gradient moves (position embeddings past the sequence do not)
    assert _changed_after_updates(master) > 0.5
    torch.manual_seed(0)
    cast = policy.TinyPolicy()
    cast.module.to(torch.bfloat16)  # the old path: bf16 weights stepped directly
    assert _changed_after_updates(cast) < 0.1
