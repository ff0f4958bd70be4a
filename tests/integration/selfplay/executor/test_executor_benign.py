"""Ordinary programs are accepted and answered exactly as plain Python answers them.

The static check is a filter, and a filter that turns away ordinary programs costs self-play its
rewards (a rejected proposal scores -1). The corpus (`benign.py`) is what Absolute-Zero proposals
look like, with the things that used to be refused: dataclasses, `self.__class__.__name__`,
`__slots__`, `str.format` on a variable, star imports, json, enum, typing annotations. It runs as
root here and, through the same harness as the hostile corpus, as the non-root pod would.
"""

from __future__ import annotations

import ast
from typing import Any

import pytest

from flywheel.selfplay import executor
from tests.integration.selfplay.executor import benign

MAX_REJECTED_SHARE = 0.02


def _plain(code: str, inputs: str) -> str:
    """What plain Python answers: the program run in this process, no sandbox."""
    namespace: dict[str, Any] = {"__name__": "__plain__"}
    exec(compile(code, "<plain>", "exec", dont_inherit=True), namespace)
    value = eval(compile(f"f({inputs})", "<plain>", "eval", dont_inherit=True), namespace)
    return repr(value)


def test_corpus_is_big_enough() -> None:
    assert len(benign.PROGRAMS) >= 80
    assert len({name for name, _, _ in benign.PROGRAMS}) == len(benign.PROGRAMS)


def _judge(results: list[executor.ExecResult]) -> None:
    rejected = [(name, r.error) for (name, _, _), r in zip(benign.PROGRAMS, results, strict=True) if not r.ok]
    assert len(rejected) <= MAX_REJECTED_SHARE * len(benign.PROGRAMS), rejected
    for (name, code, inputs), result in zip(benign.PROGRAMS, results, strict=True):
        if result.ok:
            plain = _plain(code, inputs)
            assert ast.literal_eval(result.output_repr or "") == ast.literal_eval(plain), (
                name,
                result,
                plain,
            )


def test_benign_programs_are_accepted_with_plain_pythons_answer(pool: executor.Pool) -> None:
    _judge(pool.run_programs([(code, inputs) for _, code, inputs in benign.PROGRAMS]))


@pytest.mark.slow
def test_benign_programs_pass_in_the_pod_layer_set() -> None:
    # The layers a pod without user namespaces gets: seccomp and Landlock; the same answers.
    with executor.Pool(workers=2, timeout_s=2.0, disable=["namespaces", "chroot", "setuid"]) as pod:
        _judge(pod.run_programs([(code, inputs) for _, code, inputs in benign.PROGRAMS]))
