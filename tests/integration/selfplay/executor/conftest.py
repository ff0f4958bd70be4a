"""One real sandbox pool shared by the executor integration tests (starting one costs ~0.1 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flywheel.selfplay import executor


@pytest.fixture(scope="session")
def pool() -> Iterator[executor.Pool]:
    # A short timeout keeps the infinite loops in the corpora cheap (2 s: the CI box is shared and
    # busy, valid programs must not time out); 256 MB is plenty for them.
    with executor.Pool(workers=2, timeout_s=2.0, memory_mb=256) as shared:
        yield shared
