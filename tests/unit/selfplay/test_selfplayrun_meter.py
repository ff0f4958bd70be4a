"""The trainer's executor meter (the throughput in every step event): it counts what the real
sandbox pool judged and keeps the pool's batch path, so metering never slows self-play down."""

from __future__ import annotations

from typing import Any

from flywheel.selfplay import executor, tasks, trainer


class OneAtATime:
    """An executor without batch methods (the shape tasks falls back to)."""

    def run_program(self, code: str, inputs: str) -> Any:
        return None

    def check_output(self, code: str, inputs: str, expected_repr: str) -> bool:
        return False

    def check_function(self, code: str, pairs: list[tuple[str, str]]) -> list[bool]:
        return [False] * len(pairs)

    def eval_literal_equal(self, a: str, b: str) -> bool:
        return a == b


def test_meter_keeps_the_batch_path_and_counts_real_verdicts() -> None:
    with executor.Pool(workers=1, timeout_s=2, memory_mb=256) as pool:
        meter = trainer.metered(pool)
        assert isinstance(meter, tasks.BatchExecutor)  # tasks.validate_many batches through it
        code = "def f(x):\n    return x * 2"
        results = meter.run_programs(
            [(code, "3"), (code, "'a'"), ("import os\ndef f(x):\n    return x", "1")]
        )
        assert [r.ok for r in results] == [True, True, False]
        assert meter.check_outputs([(code, "3", "6"), (code, "3", "7")]) == [True, False]
        assert meter.eval_literal_equal("{1, 2}", "{2, 1}")  # no code runs: not counted
        programs, seconds = meter.take()
        assert programs == 5 and seconds > 0
        assert meter.take() == (0, 0.0)
    single = trainer.metered(OneAtATime())
    assert not isinstance(single, tasks.BatchExecutor)  # tasks falls back to one call at a time
    single.check_function("def f(a):\n    return a", [("1", "1"), ("2", "2")])
    assert single.take()[0] == 1


def test_throughput_sums_ranks_that_run_side_by_side() -> None:
    figures = trainer._throughput([(100, 0.5), (50, 0.5), (0, 0.0)])
    assert figures == {"programs": 150, "seconds": 0.5, "programsPerSecond": 300.0}
