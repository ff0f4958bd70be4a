"""The hostile corpus (>= 40 programs) is rejected or contained, and afterwards the host is unaffected.

Runs against a real jailed pool; the final test checks the host side: no new files, canary intact,
no stray sandbox processes, worker memory bounded, and the same pool still answers correctly.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from flywheel.selfplay import executor
from tests.integration.selfplay.executor import corpus_data

pytestmark = pytest.mark.slow  # ~10 s: several programs run into the 1 s timeout on purpose

HOSTILE = corpus_data.load("hostile.yaml")
CANARY_TEXT = "flywheel canary: must survive the hostile corpus\n"
SANDBOX_UIDS = range(60000, 65000)


def test_corpus_is_big_enough() -> None:
    assert len(HOSTILE) >= 40
    assert len({entry["name"] for entry in HOSTILE}) == len(HOSTILE)


@pytest.fixture(scope="module")
def host(pool: executor.Pool) -> Iterator[dict[str, Any]]:
    """A world-writable canary directory and a marker path the programs try to create."""
    canary = pathlib.Path(tempfile.mkdtemp(prefix="flywheel-canary-"))
    canary.chmod(0o777)
    (canary / "canary.txt").write_text(CANARY_TEXT)
    (canary / "canary.txt").chmod(0o666)
    marker = pathlib.Path(tempfile.gettempdir()) / f"flywheel-pwned-{uuid.uuid4().hex}"
    yield {
        "canary": canary,
        "marker": marker,
        "pids": list(pool.worker_pids),
        "replaced": pool.replaced,
        "rss": psutil.Process().memory_info().rss,
    }
    for path in canary.iterdir():
        path.unlink()
    canary.rmdir()


def _program(entry: dict[str, Any], host: dict[str, Any]) -> tuple[str, str]:
    def fill(text: str) -> str:
        return text.replace("{canary}", str(host["canary"])).replace("{marker}", str(host["marker"]))

    return fill(entry["code"]), fill(entry.get("input", "1"))


@pytest.mark.parametrize("entry", HOSTILE, ids=[entry["name"] for entry in HOSTILE])
def test_hostile_program_is_rejected_or_contained(
    pool: executor.Pool, host: dict[str, Any], entry: dict[str, Any]
) -> None:
    result = pool.run_program(*_program(entry, host))
    assert result.kind in entry.get("expect", ["rejected"]), result
    assert result.error is None or len(result.error) <= 2000
    assert result.output_repr is None or len(result.output_repr) <= pool.max_output_chars


def test_host_is_unaffected_after_the_corpus(pool: executor.Pool, host: dict[str, Any]) -> None:
    # Files: the canary survived, nothing was added next to it, the marker never appeared.
    assert (host["canary"] / "canary.txt").read_text() == CANARY_TEXT
    assert sorted(p.name for p in host["canary"].iterdir()) == ["canary.txt"]
    assert not host["marker"].exists()
    assert os.listdir(pool.jail) == []
    # Processes: the same zygotes serve, none was replaced, no jailed child outlived its request.
    assert pool.worker_pids == host["pids"]
    assert pool.replaced == host["replaced"]
    for pid in pool.worker_pids:
        assert psutil.Process(pid).children(recursive=True) == []
    strays = [
        p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in SANDBOX_UIDS
    ]
    assert strays == []
    # Memory: zygotes stay small; the test process did not balloon.
    for pid in pool.worker_pids:
        assert psutil.Process(pid).memory_info().rss < 150 * 2**20
    assert psutil.Process().memory_info().rss - host["rss"] < 200 * 2**20
    # And the pool still answers a normal program correctly.
    result = pool.run_program("def f(xs):\n    return sorted(set(xs))", "[3, 1, 3, 2]")
    assert (result.ok, result.output_repr) == (True, "[1, 2, 3]")
