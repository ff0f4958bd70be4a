"""The program corpus per task type gets the expected verdicts from a real sandbox pool."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.selfplay import executor
from tests.integration.selfplay.executor import corpus_data

CORPUS = corpus_data.load("programs.yaml")


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["name"] for entry in entries]


@pytest.mark.parametrize("case", CORPUS["proposals"], ids=_ids(CORPUS["proposals"]))
def test_proposal_validation(pool: executor.Pool, case: dict[str, Any]) -> None:
    result = pool.run_program(case["code"], case["input"])
    assert result.kind == case["kind"], result
    assert result.ok is (case["kind"] == "ok")
    if result.ok:
        assert result.error is None
        assert result.output_repr is not None and len(result.output_repr) <= pool.max_output_chars
        assert executor.eval_literal_equal(result.output_repr, result.output_repr)
        if "output" in case:
            assert result.output_repr == case["output"]
    else:
        assert result.output_repr is None
        assert result.error


@pytest.mark.parametrize("case", CORPUS["abduction"], ids=_ids(CORPUS["abduction"]))
def test_abduction_check(pool: executor.Pool, case: dict[str, Any]) -> None:
    assert pool.check_output(case["code"], case["input"], case["gold"]) is case["expect"]


@pytest.mark.parametrize("case", CORPUS["induction"], ids=_ids(CORPUS["induction"]))
def test_induction_check(pool: executor.Pool, case: dict[str, Any]) -> None:
    pairs = [(inputs, output) for inputs, output in case["pairs"]]
    assert pool.check_function(case["code"], pairs) == case["expect"]


def test_batch_apis_match_single_calls(pool: executor.Pool) -> None:
    cases = CORPUS["proposals"][:8]
    batch = pool.run_programs([(case["code"], case["input"]) for case in cases])
    assert [result.kind for result in batch] == [case["kind"] for case in cases]
    checks = CORPUS["abduction"][:5]
    assert pool.check_outputs([(c["code"], c["input"], c["gold"]) for c in checks]) == [
        c["expect"] for c in checks
    ]
    functions = CORPUS["induction"][:3]
    assert pool.check_functions([(c["code"], [tuple(p) for p in c["pairs"]]) for c in functions]) == [
        c["expect"] for c in functions
    ]


def test_gold_output_from_validation_checks_as_abduction_and_induction(pool: executor.Pool) -> None:
    code = "def f(xs, k):\n    return sorted(xs)[-k:]"
    result = pool.run_program(code, "[5, 1, 4], 2")
    assert result.ok and result.output_repr == "[4, 5]"
    assert pool.check_output(code, "[4, 5, 0], 2", result.output_repr)
    assert pool.check_function(
        "def f(a, k):\n    return sorted(a)[len(a) - k:]", [("[5, 1, 4], 2", "[4, 5]")]
    ) == [True]


def test_a_single_worker_pool_still_runs_each_program_under_distinct_hash_seeds() -> None:
    # workers=1 is one program at a time, not one hash seed: hash-order output is still caught.
    with executor.Pool(workers=1, timeout_s=1.0) as single:
        assert len({worker.seed for worker in single._all}) == executor.pool.HASH_SEEDS
        assert single.run_program("def f(x):\n    return [x] * 2", "'a'").output_repr == "['a', 'a']"
        assert single.run_program("def f(x):\n    return 1 / 0", "1").kind == "error"
        assert single.run_program("def f(x):\n    return hash('flywheel')", "1").kind == "nondeterministic"


def test_pool_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="workers >= 1"):
        executor.Pool(workers=0)
