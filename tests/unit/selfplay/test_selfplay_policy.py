"""The policies: the built-in tiny model, and a Hugging Face causal LM loaded from local files.

The HF model is a randomly initialised 2-layer GPT-2 with a byte-level BPE tokenizer trained here,
both saved with save_pretrained: no download, nothing from the Hub.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flywheel import errors
from flywheel.api import selfplayrun
from flywheel.selfplay import policy, tiny

torch.set_num_threads(1)


def test_tiny_policy_is_a_few_hundred_thousand_weights() -> None:
    n = sum(p.numel() for p in policy.TinyPolicy().module.parameters())
    assert 100_000 < n < 1_000_000


def test_tiny_generation_is_greedy_consistent_with_token_logprobs() -> None:
    torch.manual_seed(0)
    pol = policy.TinyPolicy()
    samples = pol.generate(["def f(a):", "x" * 2000], temperature=1.0, max_new_tokens=12, greedy=True)
    assert [len(s.prompt_ids) for s in samples] == [9, pol.context - 12]  # long prompts keep the tail
    logp, entropy, mask = policy.token_logprobs(pol, pol.module, samples)
    for row, sample in enumerate(samples):
        assert int(mask[row].sum()) == len(sample.response_ids) > 0
        full = torch.log_softmax(pol.module(torch.tensor([sample.prompt_ids + sample.response_ids])), -1)[0]
        start = len(sample.prompt_ids) - 1
        # greedy = argmax of the full forward pass: the KV cache and left padding change nothing
        assert full[start:-1].argmax(-1).tolist() == sample.response_ids
        expected = full[start:-1].gather(-1, torch.tensor(sample.response_ids)[:, None]).squeeze(-1)
        assert torch.allclose(logp[row][mask[row]], expected, atol=1e-5)
    assert bool((entropy[mask] > 0).all())


def test_tiny_sampling_stops_at_eos() -> None:
    pol = policy.TinyPolicy()
    with torch.no_grad():
        # final norm outputs e0 everywhere and only EOS's (tied) embedding points along e0
        pol.module.ln.weight.zero_()
        pol.module.ln.bias.zero_()
        pol.module.ln.bias[0] = 1.0
        pol.module.tok.weight[tiny.EOS, 0] = 100.0
    (sample,) = pol.generate(["hi"], temperature=1.0, max_new_tokens=30)
    assert sample.response_ids == [tiny.EOS] and sample.text == ""


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tokenizers
    import transformers

    path = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    bpe = tokenizers.ByteLevelBPETokenizer()
    corpus = ["def f(a):\n    return a", "<think> </think> <answer> ```python ``` </answer>"] * 20
    bpe.train_from_iterator(corpus, vocab_size=300, special_tokens=["<|endoftext|>"])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    tok.save_pretrained(path)
    config = transformers.GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.mark.slow  # importing transformers and building the model takes several seconds
def test_hf_policy_loads_from_a_file_uri_and_samples(hf_model: Path) -> None:
    torch.manual_seed(0)
    pol = policy.load(selfplayrun.Policy(model=f"file://{hf_model}"))
    assert isinstance(pol, policy.HFPolicy) and pol.device.type == "cpu"
    prompts = ["User: write f\nAssistant: <think>", "def f(a):" * 100]
    samples = pol.generate(prompts, temperature=1.0, max_new_tokens=8)
    assert len(samples) == 2
    assert all(0 < len(s.response_ids) <= 8 for s in samples)
    assert len(samples[1].prompt_ids) <= 256 - 8  # truncated from the left to fit the context
    logp, _, mask = policy.token_logprobs(pol, pol.module, samples)
    assert bool((logp[mask] < 0).all())
    greedy = pol.generate(prompts[:1], temperature=1.0, max_new_tokens=8, greedy=True)
    assert (
        greedy[0].response_ids
        == pol.generate(prompts[:1], temperature=1.0, max_new_tokens=8, greedy=True)[0].response_ids
    )


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(errors.UserError, match=r"spec.policy.model"):
        policy.load(selfplayrun.Policy(model=str(tmp_path / "nothing")))
