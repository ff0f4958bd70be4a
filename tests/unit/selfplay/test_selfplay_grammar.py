"""The warm-start grammar: its outputs are what the sandbox computes, its examples are well formed
for the loop's own parsers, and the held-out set is fixed by its seed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from flywheel.api import selfplayrun as api
from flywheel.selfplay import buffers, executor, grammar, heldout, parsing, policy, pretrain, tasks


def test_every_rule_computes_what_the_executor_computes() -> None:
    rng = random.Random(3)
    triplets = [grammar.triplet(rng) for _ in range(60)]
    assert {t.code.split("return")[1].split("\n")[0] for t in triplets} and len(
        {t.code for t in triplets}
    ) > 20
    with executor.Pool(workers=2, timeout_s=5.0, memory_mb=256) as pool:
        results = pool.run_programs([(t.code, t.input) for t in triplets])
        for t, result in zip(triplets, results, strict=True):
            assert result.ok, (t, result)
            assert executor.eval_literal_equal(result.output_repr, t.output), (t, result.output_repr)
        fn = grammar.function_task(rng, 4)
        assert pool.check_function(fn.code, list(zip(fn.inputs, fn.outputs, strict=True))) == [True] * 4


@pytest.mark.parametrize("task", buffers.TASKS)
@pytest.mark.parametrize("role", ["propose", "solve"])
def test_warm_start_examples_are_well_formed_answers_that_fit(task: str, role: str) -> None:
    pol = policy.TinyPolicy()
    fits = lambda p: pol.prompt_fits(p, 192)  # noqa: E731
    prompt, response = pretrain.example(random.Random(0), task, role, 4, 2, fits)
    text = tasks.full_text(response)
    assert fits(prompt) and prompt.endswith("Assistant: <think>") and parsing.format_ok(text)
    assert len(response) + 1 <= 192  # with EOS, inside the response room
    if role == "propose" and task == buffers.INDUCTION:
        assert parsing.parse_induction_proposal(text, 4) is not None
    elif role == "propose":
        assert parsing.parse_program_proposal(text) is not None


def test_held_out_set_is_fixed_by_its_seed_and_covers_the_chosen_tasks() -> None:
    spec = api.SelfPlayRunSpec.model_validate(
        {"selfPlay": {"taskTypes": ["deduction", "induction"], "inductionInputs": 4}, "heldOut": {"tasks": 5}}
    )
    first, again = heldout.task_set(spec), heldout.task_set(spec)
    assert first == again and set(first) == {"deduction", "induction"}
    assert all(len(v) == 5 for v in first.values()) and len(first["induction"][0].inputs) == 4
    other = heldout.task_set(spec.model_copy(update={"held_out": api.HeldOut(tasks=5, seed=9)}))
    assert other != first


def test_warm_start_is_cached_with_its_card_and_keyed_by_its_recipe(tmp_path: Path) -> None:
    spec = api.SelfPlayRunSpec.model_validate(
        {
            "policy": {"warmStart": {"steps": 2, "batchSize": 2}},
            "selfPlay": {"maxNewTokens": 192, "inductionInputs": 4, "references": 1},
        }
    )
    folder = pretrain.ensure(spec, tmp_path)
    assert {p.name for p in folder.iterdir()} == {"weights.pt", "MODEL_CARD.md", "card.json"}
    assert "no outside data" in (folder / "MODEL_CARD.md").read_text()
    stamp = (folder / "weights.pt").stat().st_mtime_ns
    assert pretrain.ensure(spec, tmp_path) == folder and (folder / "weights.pt").stat().st_mtime_ns == stamp
    other = spec.model_copy(
        update={"policy": api.Policy(warm_start=api.WarmStart(steps=2, batch_size=2, seed=1))}
    )
    assert pretrain.key(other) != pretrain.key(spec)
    pol = policy.TinyPolicy()
    pol.module.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))


def test_pretrain_cli_refuses_a_hugging_face_policy(capsys: pytest.CaptureFixture[str]) -> None:
    from flywheel import cli

    example = Path(__file__).resolve().parents[3] / "examples" / "selfplayrun-distributed.yaml"
    assert cli.main(["selfplay", "pretrain", "-f", str(example)]) == 1
    assert "only tiny is warm-started" in capsys.readouterr().err
