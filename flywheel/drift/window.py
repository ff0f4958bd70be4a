"""The traffic a check reads: the newest logged rows the champion answered, capped by sampling.

flywheel.serving.traffic writes one row per scored record with every feature as its own column (see
that module's schema), one row for the model that answered and, in shadow mode, one more for the
challenger that scored the same request (served=false). Drift is measured on what callers sent, once
per record, so "current" traffic is the rows the champion served and scored (not those marked with
an `error`); the shadow rows are the challenger's copy of the same requests and feed `shadow_stats`
instead, with the failures of both roles.
"""

from __future__ import annotations

import datetime
import io

import numpy as np
import pandas as pd

from flywheel import artifacts
from flywheel.api import driftmonitor
from flywheel.drift import decide
from flywheel.serving import traffic

CHAMPION = "champion"
CHALLENGER = "challenger"
ShadowStats = decide.ShadowStats


def features(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a traffic frame: everything the logger did not add."""
    return [str(c) for c in frame.columns if c not in traffic.RESERVED]


def read(sink_uri: str, window: driftmonitor.Window, now: datetime.datetime, seed: int = 0) -> pd.DataFrame:
    """Champion-served rows: the last window.rows and/or those of the last window.minutes before
    `now`, oldest first, sampled (seeded, order kept) down to window.maxRows."""
    since = _since(window, now)
    if window.rows is None or since is not None:
        frame = _answered(traffic.read(sink_uri, since=since))
        if since is not None:
            frame = frame[frame["timestamp"] <= pd.Timestamp(_aware(now))]
    else:
        frame = _last_served(sink_uri, window.rows)
    if window.rows is not None:
        frame = frame.tail(window.rows)
    return sample(frame, window.max_rows, seed)


def sample(frame: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `max_rows` rows drawn uniformly without replacement, in their original order."""
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def shadow_stats(
    sink_uri: str, window: driftmonitor.Window, now: datetime.datetime
) -> decide.ShadowStats | None:
    """Error rate and p99 latency of champion and challenger on the shadowed requests, or None when
    the window holds no shadow rows.

    Compared only from the first to the last shadow row (before it no challenger was deployed; after
    it shadow scoring may still be in flight). The service logs a failed scoring as rows with an
    `error` (see flywheel.serving.traffic), and samples whole requests, so: the challenger's error
    rate is its failed shadowed requests over its shadowed requests, the champion's its failed
    requests over the requests it answered in that span, and each p99 is over its role's successful
    requests. Logs written before the `error` column existed are read as before (_inferred_stats)."""
    since = _since(window, now)
    frame = traffic.read(sink_uri, last_rows=None if window.rows is None else 2 * window.rows, since=since)
    shadow = frame[(frame["role"] == CHALLENGER) & ~frame["served"].astype(bool)]
    if shadow.empty:
        return None
    start, end = shadow["timestamp"].min(), shadow["timestamp"].max()
    champion = _served(frame)
    champion = champion[(champion["timestamp"] >= start) & (champion["timestamp"] <= end)]
    if traffic.ERROR not in frame.columns:
        return _inferred_stats(champion, shadow)
    challenger = _per_request(shadow)
    answered = _per_request(champion)
    return decide.ShadowStats(
        champion_error_rate=float(answered["failed"].mean()) if len(answered) else 0.0,
        challenger_error_rate=float(challenger["failed"].mean()),
        champion_p99_ms=_p99(answered.loc[~answered["failed"], "latency_ms"]),
        challenger_p99_ms=_p99(challenger.loc[~challenger["failed"], "latency_ms"]),
        rows=len(challenger),
    )


def shadow_pairs(
    sink_uri: str, window: driftmonitor.Window, now: datetime.datetime, challenger_version: str | None
) -> pd.DataFrame:
    """The window's shadowed records, one row each: the champion's served prediction and the
    challenger's shadow prediction on the same (request_id, record_index), both scored; columns
    request_id, record_index, timestamp (the request's), champion, challenger. Empty when none."""
    since = _since(window, now)
    frame = traffic.read(sink_uri, last_rows=None if window.rows is None else 2 * window.rows, since=since)
    columns = ["request_id", traffic.RECORD_INDEX, "timestamp", "champion", "challenger"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if traffic.RECORD_INDEX not in frame.columns:
        frame = frame.assign(**{traffic.RECORD_INDEX: 0})
    frame = frame.assign(**{traffic.RECORD_INDEX: frame[traffic.RECORD_INDEX].fillna(0).astype("int64")})
    shadow = frame[
        (frame["role"] == CHALLENGER) & ~frame["served"].astype(bool) & frame["prediction"].notna()
    ]
    if challenger_version is not None:
        shadow = shadow[shadow["model_version"] == challenger_version]
    served = _answered(frame)
    key = ["request_id", traffic.RECORD_INDEX]
    pairs = served[[*key, "timestamp", "prediction"]].merge(
        shadow[[*key, "prediction"]], on=key, suffixes=("_a", "_b")
    )
    pairs = pairs.drop_duplicates(key, keep="last")
    return pairs.rename(columns={"prediction_a": "champion", "prediction_b": "challenger"})[columns]


def _per_request(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request: whether any of its rows failed, and its latency (the same on each row)."""
    failed = rows[traffic.ERROR].notna()
    return (
        pd.DataFrame({"failed": failed, "latency_ms": rows["latency_ms"]})
        .groupby(rows["request_id"], sort=False)
        .agg(failed=("failed", "any"), latency_ms=("latency_ms", "first"))
    )


def _inferred_stats(champion: pd.DataFrame, shadow: pd.DataFrame) -> decide.ShadowStats | None:
    """Logs without `error` had a row only for a successful scoring: a request the champion served
    without a challenger row counts as a challenger error (right only with sampleRate 1)."""
    requests = champion.drop_duplicates("request_id")
    if requests.empty:
        return None
    answered = shadow[shadow["prediction"].notna()]["request_id"]
    challenger_errors = (~requests["request_id"].isin(set(answered))).mean()
    champion_errors = champion.groupby("request_id")["prediction"].apply(lambda p: p.isna().any()).mean()
    return decide.ShadowStats(
        champion_error_rate=float(champion_errors),
        challenger_error_rate=float(challenger_errors),
        champion_p99_ms=_p99(requests["latency_ms"]),
        challenger_p99_ms=_p99(shadow.drop_duplicates("request_id")["latency_ms"]),
        rows=len(requests),
    )


def _last_served(sink_uri: str, rows: int) -> pd.DataFrame:
    """The newest `rows` served rows: files newest first (a file's name is its flush time, as in
    traffic.read), each filtered as it is read, stopping once enough served rows are in hand; the
    shadow and canary rows are dropped per file, never concatenated or sorted."""
    store = artifacts.Store(sink_uri)
    names = [n for n in store.list() if n.endswith(traffic.SUFFIX) and not n.startswith(".")]
    frames: list[pd.DataFrame] = []
    count = 0
    for name in reversed(names):
        frame = _answered(pd.read_parquet(io.BytesIO(store.read_bytes(name))))
        frames.append(frame)
        count += len(frame)
        if count >= rows:
            break
    if not frames:
        return pd.DataFrame(columns=[*traffic.FIXED_COLUMNS, *traffic.OUTPUT_COLUMNS])
    out = traffic.concat(list(reversed(frames)))
    return out.sort_values("timestamp", kind="stable", ignore_index=True).tail(rows)


def _served(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the champion served, failed ones included (they carry an `error`)."""
    if frame.empty:
        return frame
    return frame[(frame["role"] == CHAMPION) & frame["served"].astype(bool)]


def _answered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the champion served and scored: the traffic drift is measured on."""
    frame = _served(frame)
    if frame.empty or traffic.ERROR not in frame.columns:
        return frame
    return frame[frame[traffic.ERROR].isna()]


def _p99(latency: pd.Series) -> float | None:
    values = latency.dropna().to_numpy(dtype=np.float64)
    return float(np.percentile(values, 99)) if values.size else None


def _since(window: driftmonitor.Window, now: datetime.datetime) -> datetime.datetime | None:
    if window.minutes is None:
        return None
    return _aware(now) - datetime.timedelta(minutes=window.minutes)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
