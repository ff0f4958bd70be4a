"""A workload's log rotated by size: flywheel.local.logwriter alone and under the supervisor."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from flywheel.local import logwriter, supervisor


def test_copy_rotates_by_size_keeps_lines_whole_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    lines = [f"line {i:04d}\n".encode() for i in range(200)]  # 10 bytes each
    logwriter.copy(io.BufferedReader(io.BytesIO(b"".join(lines))), log, max_bytes=100, backups=2)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["server.log", "server.log.1", "server.log.2"]
    assert all(f.stat().st_size <= 100 for f in files)
    kept = b"".join((tmp_path / n).read_bytes() for n in ("server.log.2", "server.log.1", "server.log"))
    assert kept == b"".join(lines[-len(kept) // 10 :])  # the newest lines, in order, none split


def test_supervised_output_is_rotated_and_the_writer_ends_with_the_workload(tmp_path: Path) -> None:
    sup = supervisor.Supervisor(tmp_path)
    script = "import sys\nfor i in range(5000): print(f'row {i:05d} ' + 'x' * 50)\nprint('last line')"
    info = sup.start("Deployment", "noisy", [sys.executable, "-c", script], rotate=(20_000, 2))
    assert sup.wait(info) == 0
    sup.stop("Deployment", "noisy", grace=10)  # returns once the writer has drained and exited
    assert supervisor.tagged(sup.tag("Deployment", "noisy")) == []
    log = sup.log_path("Deployment", "noisy")
    files = sorted(log.parent.iterdir())
    assert [f.name for f in files] == ["noisy.log", "noisy.log.1", "noisy.log.2"]
    assert sum(f.stat().st_size for f in files) <= 3 * 20_000
    assert log.read_text().splitlines()[-1] == "last line"
