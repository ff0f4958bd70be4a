"""Reading CSV/Parquet with actionable errors (pure pandas/pyarrow; no GX)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flywheel.data import frames


def test_reads_csv_and_parquet_alike(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    for name in ("d.csv", "d.parquet"):
        pd.testing.assert_frame_equal(frames.read(tmp_path / name), frame)
        assert frames.count_rows(tmp_path / name) == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty (0 bytes)"),
        (b"a,b,c\n1,2,3\n4,5", "is truncated (its last row is cut off): line 3 has 2 fields"),
        (b"a,b,c\n1,2\n4,5,6\n", "is ragged: line 2 has 2 fields"),
        (b"\n\n", "has no header row"),
    ],
)
def test_damaged_csv_is_explained(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    with pytest.raises(frames.ReadError) as info:
        frames.read(path)
    assert expected in str(info.value)


def test_damaged_parquet_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(frames.ReadError, match="not a readable Parquet file"):
        frames.read(tmp_path / "d.parquet")
    with pytest.raises(frames.ReadError, match="does not exist"):
        frames.read(tmp_path / "nope.csv")
    assert frames.count_rows(tmp_path / "nope.csv") is None
