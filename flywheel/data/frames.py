"""Reading a dataset file (CSV or Parquet) with errors a person can act on.

pandas' defaults hide damage: a truncated CSV (the last line cut mid-row) silently becomes a row
of NaNs, and an empty file raises an error naming a parser internal. The gate must say "the file
is truncated at line N" instead, so CSV rows are checked for a consistent field count here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

PARQUET_SUFFIXES = (".parquet", ".pq")


class ReadError(Exception):
    """The file cannot be read as a table; the message says why and what to do."""


def read(path: Path) -> pd.DataFrame:
    """The table in `path`; ReadError with an actionable message when it is not one."""
    if not path.is_file():
        raise ReadError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ReadError(f"{path} is empty (0 bytes): re-export the data, a header row at least")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path)
    return _read_csv(path)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ReadError(f"{path} is not a readable Parquet file ({exc}): re-export it") from None


def _read_csv(path: Path) -> pd.DataFrame:
    import pyarrow
    import pyarrow.csv as pacsv

    try:  # pyarrow: multi-threaded, and strict about rows whose field count differs from the header
        return pacsv.read_csv(path).to_pandas()
    except pyarrow.ArrowInvalid as exc:
        _explain_csv(path)  # raises with the line when the file is ragged or truncated
        raise ReadError(f"{path} is not valid CSV ({exc}): fix or re-export it") from None
    except UnicodeDecodeError as exc:
        raise ReadError(f"{path} is not UTF-8 text at byte {exc.start}: export it as UTF-8 CSV") from None


def _explain_csv(path: Path) -> None:
    """Find the first row whose field count differs from the header's (slow path, errors only)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"{path} is not UTF-8 text at byte {exc.start}: export it as UTF-8 CSV") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header or not any(h.strip() for h in header):
        raise ReadError(f"{path} has no header row: re-export the data with column names")
    last_line = text.rstrip("\n").count("\n") + 1
    for row in rows:
        if row and len(row) != len(header):
            line = rows.line_num
            what = "truncated (its last row is cut off)" if line >= last_line else "ragged"
            raise ReadError(
                f"{path} is {what}: line {line} has {len(row)} fields, the header has {len(header)}; "
                "re-export or re-fetch the file"
            )


def count_rows(path: Path) -> int | None:
    """Data rows in a CSV or Parquet file without loading it whole; None when unreadable."""
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        import pyarrow.csv as pacsv

        with pacsv.open_csv(path) as reader:
            return sum(batch.num_rows for batch in reader)
    except Exception:  # counting is informative only; the gate reports what is wrong
        return None
