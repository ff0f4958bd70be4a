"""Ground truth joined to the predictions that were served: the rows live performance is measured on.

Labels come from <traffic sink>/feedback/ (flywheel.serving.feedback writes each POST /feedback
there; other systems may drop Parquet or CSV files with the columns request_id, label and optionally
record_index and received). They join the traffic log on (request_id, record_index):

- late and out of order: a label joins whenever both sides are readable, whatever came first;
- duplicated: the label received last wins (by `received`, then by file name, then by row);
- unknown: a label whose record the log does not hold (not sampled, not flushed yet, or a wrong id)
  is counted in `Joined.unknown`, and its file stays, so a later read may still join it;
- a file that cannot be read as labels is skipped and named in `Joined.problems` (bounded), never
  the reason the whole read fails.

Rows of the log written before record_index existed read it as 0 (their requests' first record).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math

import pandas as pd

from flywheel import artifacts
from flywheel.serving import feedback as serving_feedback
from flywheel.serving import traffic

LABEL = "label"
PROBLEMS_MAX = 20
MAX_LABELS = 2_000_000
"""Label rows one read keeps (a check Job's memory is bounded)."""
KEY = ["request_id", traffic.RECORD_INDEX]


@dataclasses.dataclass
class Joined:
    """Labelled traffic rows (every column of the log plus `label`), and what did not join."""

    rows: pd.DataFrame
    labels: int
    """Distinct labelled records (after the last-label-wins rule)."""
    unknown: int
    """Labelled records the log does not hold."""
    duplicates: int
    """Labels replaced by a later one for the same record."""
    problems: list[str] = dataclasses.field(default_factory=list)


def read_labels(sink_uri: str, since: pd.Timestamp | None = None) -> tuple[pd.DataFrame, int, list[str]]:
    """The labels under <sink>/feedback/, last one per record: (labels, replaced, problems).

    `since` (the oldest request of the window being judged) skips the files POST /feedback wrote
    before it: a label comes after its request, so they cannot join, and the folder only grows.
    Files named otherwise (dropped by another system) are always read. At most MAX_LABELS rows are
    kept, the newest files first; what is left out is said in problems."""
    store = artifacts.Store(sink_uri).child(serving_feedback.FOLDER)
    frames: list[pd.DataFrame] = []
    problems: list[str] = []
    names = [n for n in store.list() if not n.startswith(".") and not _before(n, since)]
    kept = 0
    for order, name in reversed(list(enumerate(names))):  # newest first, for the bound
        if kept >= MAX_LABELS:
            problems.append(f"{store.join('')}: over {MAX_LABELS} labels in the window; older files left out")
            break
        try:
            frame = _labels_file(name, store.read_bytes(name)).assign(_file=order)
            frames.append(frame)
            kept += len(frame)
        except Exception as exc:  # a foreign file: say which and why, keep the others
            if len(problems) < PROBLEMS_MAX:
                problems.append(f"{store.join(name)}: {type(exc).__name__}: {str(exc)[:200]}")
    if not frames:
        return pd.DataFrame(columns=[*KEY, LABEL, "received"]), 0, problems
    labels = pd.concat(frames, ignore_index=True)
    labels["_row"] = range(len(labels))
    labels = labels.sort_values(["received", "_file", "_row"], kind="stable", na_position="first")
    last = labels.drop_duplicates(KEY, keep="last")
    return last[[*KEY, LABEL, "received"]].reset_index(drop=True), len(labels) - len(last), problems


def _before(name: str, since: pd.Timestamp | None) -> bool:
    """Whether a file POST /feedback wrote (named by its UTC write time) predates `since`."""
    if since is None:
        return False
    try:
        written = pd.Timestamp(datetime.datetime.strptime(name[:23], "%Y%m%dT%H%M%S.%fZ"), tz="UTC")
    except ValueError:
        return False  # not one of ours: read it
    moment = pd.Timestamp(since)
    return bool(written < (moment.tz_convert("UTC") if moment.tzinfo else moment.tz_localize("UTC")))


def join(traffic_rows: pd.DataFrame, sink_uri: str) -> Joined:
    """The traffic rows that have a label (every role: shadow rows pair with served ones); label
    files written before the oldest of the rows are not read."""
    since = (
        traffic_rows["timestamp"].min() if "timestamp" in traffic_rows.columns and len(traffic_rows) else None
    )
    labels, replaced, problems = read_labels(sink_uri, None if pd.isna(since) else since)
    rows = traffic_rows.copy()
    if traffic.RECORD_INDEX not in rows.columns:
        rows[traffic.RECORD_INDEX] = 0
    rows[traffic.RECORD_INDEX] = rows[traffic.RECORD_INDEX].fillna(0).astype("int64")
    rows["request_id"] = rows["request_id"].astype(str)
    joined = rows.merge(labels[[*KEY, LABEL]], on=KEY, how="inner")
    known = labels.merge(rows[KEY].drop_duplicates(), on=KEY, how="inner")
    return Joined(
        rows=joined.reset_index(drop=True),
        labels=len(labels),
        unknown=len(labels) - len(known),
        duplicates=replaced,
        problems=problems,
    )


def _labels_file(name: str, data: bytes) -> pd.DataFrame:
    if name.endswith(".csv"):
        frame = pd.read_csv(io.BytesIO(data), dtype={"request_id": str, LABEL: str})
    elif name.endswith(".parquet"):
        frame = pd.read_parquet(io.BytesIO(data))
    else:
        raise ValueError("not a .parquet or .csv file")
    missing = [c for c in ("request_id", LABEL) if c not in frame.columns]
    if missing:
        raise ValueError(f"no column {', '.join(missing)} (need request_id and label)")
    out = pd.DataFrame(
        {
            "request_id": frame["request_id"].astype(str),
            traffic.RECORD_INDEX: (
                pd.to_numeric(frame[traffic.RECORD_INDEX], errors="raise").fillna(0).astype("int64")
                if traffic.RECORD_INDEX in frame.columns
                else 0
            ),
            LABEL: frame[LABEL].map(_text),
            "received": (
                pd.to_datetime(frame["received"], utc=True)
                if "received" in frame.columns
                else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
            ),
        }
    )
    return out[out[LABEL].notna()]


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return serving_feedback.label_text(value)
    return str(value)
