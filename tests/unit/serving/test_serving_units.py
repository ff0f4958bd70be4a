"""Serving pieces without a server: routing, config, request schema, traffic log, batcher
(the guard: test_guard.py)."""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic
import pytest

from flywheel import errors
from flywheel.api import contract, deployment
from flywheel.serving import config, models, routing, schema, scoring, traffic

CARD = models.parse_card(
    {
        "version": "v7",
        "task": "classification",
        "classes": ["no", "yes"],
        "features": [
            {"name": "age", "type": "numeric", "min": 0, "max": 120},
            {"name": "plan", "type": "categorical", "categories": ["free", "pro"]},
            {"name": "score", "type": "numeric", "nullable": True},
        ],
    }
)


# --- routing ------------------------------------------------------------------------------------
def test_canary_draw_follows_percent_and_shadow_always_champion() -> None:
    canary = deployment.Traffic(mode="canary", challenger_percent=25)
    rng = random.Random(0)
    picks = [routing.choose(canary, True, None, rng) for _ in range(4000)]
    assert 0.22 < picks.count(routing.CHALLENGER) / 4000 < 0.28
    shadow = deployment.Traffic(mode="shadow")
    assert {routing.choose(shadow, True, None, rng) for _ in range(100)} == {routing.CHAMPION}
    assert (
        routing.shadows(shadow, True)
        and not routing.shadows(shadow, False)
        and not routing.shadows(canary, True)
    )
    assert routing.choose(canary, False, None, rng) == routing.CHAMPION


def test_sticky_header_keeps_a_caller_on_one_model() -> None:
    canary = deployment.Traffic(mode="canary", challenger_percent=50)
    for user in (f"user-{i}" for i in range(200)):
        roles = {routing.choose(canary, True, user, random.Random(i)) for i in range(5)}
        assert len(roles) == 1
        assert roles == {routing.CHALLENGER if routing.bucket(user) < 50 else routing.CHAMPION}
    share = sum(routing.bucket(f"u{i}") < 50 for i in range(4000)) / 4000
    assert 0.46 < share < 0.54  # the hash spreads callers evenly


# --- config -------------------------------------------------------------------------------------
def test_config_from_file_and_from_uri_env(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"name": "d", "champion": {"uri": "file:///a/m1"}, "artifactsUri": "file:///a"})
    )
    cfg = config.load({contract.ENV_SERVING_CONFIG: str(path)})
    assert cfg.sink_uri() == "file:///a/traffic/d" and cfg.batching.max_batch_size == 64
    env = {contract.ENV_CHAMPION_URI: "file:///a/m1", contract.ENV_CHALLENGER_URI: "file:///a/m2"}
    cfg = config.load(env)
    assert cfg.challenger is not None and cfg.traffic.mode == "shadow"


@pytest.mark.parametrize(
    ("env", "content", "words"),
    [
        ({}, None, ["FLYWHEEL_SERVING_CONFIG", "FLYWHEEL_CHAMPION_URI"]),
        ({contract.ENV_SERVING_CONFIG: "/nope.json"}, None, ["cannot read"]),
        ({contract.ENV_SERVING_CONFIG: "FILE"}, "{not json", ["cannot read"]),
        ({contract.ENV_SERVING_CONFIG: "FILE"}, '{"champion": {"uri": "http://x"}}', ["champion.uri"]),
        (
            {contract.ENV_SERVING_CONFIG: "FILE"},
            '{"champion": {"uri": "file:///m"}, "trafic": {}}',
            ["trafic"],
        ),
    ],
)
def test_config_mistakes_are_one_line_user_errors(
    tmp_path: Path, env: dict[str, str], content: str | None, words: list[str]
) -> None:
    if content is not None:
        (tmp_path / "c.json").write_text(content)
        env = {k: str(tmp_path / "c.json") for k in env}
    with pytest.raises(errors.UserError) as err:
        config.load(env)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


# --- schema -------------------------------------------------------------------------------------
def test_record_model_is_strict_and_typed_from_the_card() -> None:
    rows = pydantic.TypeAdapter(schema.records_type(CARD, max_rows=3))
    ok = rows.validate_python([{"age": 30, "plan": "pro"}, {"age": 200.5, "plan": "free", "score": None}])
    # Plain dicts; a nullable feature may be absent. Out of the training range is served (drift shows).
    assert ok == [{"age": 30.0, "plan": "pro"}, {"age": 200.5, "plan": "free", "score": None}]
    bad = [
        ([{"age": "30", "plan": "pro"}], ("0", "age")),
        ([{"age": float("nan"), "plan": "pro"}], ("0", "age")),
        ([{"age": True, "plan": "pro"}], ("0", "age")),
        ([{"age": 1, "plan": "gold"}], ("0", "plan")),
        ([{"age": 1}], ("0", "plan")),
        ([{"age": 1, "plan": "pro", "x": 1}], ("0", "x")),
        ([], ()),
        ([{"age": 1, "plan": "pro"}] * 4, ()),
    ]
    for value, loc in bad:
        with pytest.raises(pydantic.ValidationError) as err:
            rows.validate_python(value)
        assert tuple(str(p) for p in err.value.errors()[0]["loc"]) == loc


def test_card_parsing_and_schema_key() -> None:
    assert CARD.feature_names == ["age", "plan", "score"] and CARD.classes == ("no", "yes")
    with pytest.raises(errors.UserError):
        models.parse_card({"version": "x"})


# --- traffic log --------------------------------------------------------------------------------
def _rows(n: int, start: datetime.datetime, role: str = "champion") -> list[dict[str, Any]]:
    return [
        {
            "timestamp": start + datetime.timedelta(seconds=i),
            "request_id": f"r{i}",
            "role": role,
            "served": True,
            "model_version": "v1",
            "age": float(i),
            "plan": "pro",
            "prediction": "yes",
            "probability": 0.9,
            "latency_ms": 1.5,
        }
        for i in range(n)
    ]


def test_traffic_log_flushes_by_rows_and_reads_back(tmp_path: Path) -> None:
    sink = f"file://{tmp_path}/traffic/d"
    log = traffic.TrafficLogger(sink, flush_rows=10, flush_seconds=3600)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    log.add(_rows(4, start))
    assert not log.due()
    log.add(_rows(6, start + datetime.timedelta(minutes=1)))
    assert log.due()
    log.flush()
    log.add(_rows(5, start + datetime.timedelta(minutes=2)))
    log.flush()
    assert log.flush() is None and log.files_written == 2
    frame = traffic.read(sink)
    assert len(frame) == 15 and frame["timestamp"].is_monotonic_increasing
    assert list(frame.columns)[:5] == list(traffic.FIXED_COLUMNS)
    assert traffic.read(sink, last_rows=3)["timestamp"].tolist() == frame["timestamp"].tail(3).tolist()
    since = start + datetime.timedelta(minutes=1, seconds=3)
    assert len(traffic.read(sink, since=since)) == 3 + 5
    assert len(traffic.read(sink, since=since.replace(tzinfo=None))) == 8  # naive means UTC
    assert traffic.read(f"file://{tmp_path}/none").empty
    assert not [
        p for p in (tmp_path / "traffic" / "d").iterdir() if p.name.startswith(".")
    ]  # no temp leftovers


def test_traffic_log_flushes_by_time(tmp_path: Path) -> None:
    log = traffic.TrafficLogger(f"file://{tmp_path}", flush_rows=1000, flush_seconds=0.05)
    log.add(_rows(1, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)))
    threading.Event().wait(0.08)
    assert log.due()


def test_traffic_log_types_columns_and_falls_back_for_mixed_labels(tmp_path: Path) -> None:
    """Arrow types the columns as documented (UTC timestamps, float features, null probability for
    regression); a column Arrow cannot type (int and str labels) is written as strings."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    plain = traffic.TrafficLogger(f"file://{tmp_path}/plain", flush_rows=10, flush_seconds=60)
    rows = _rows(3, start)
    rows[0]["age"], rows[1]["age"] = 30, None  # an int and a null in a float feature
    for row in rows:
        row["probability"] = None
    plain.add(rows)
    plain.flush()
    frame = traffic.read(f"file://{tmp_path}/plain")
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["age"].dtype == "float64" and frame["age"].isna().tolist() == [False, True, False]
    assert frame["probability"].isna().all()
    mixed = traffic.TrafficLogger(f"file://{tmp_path}/mixed", flush_rows=10, flush_seconds=60)
    rows = _rows(2, start)
    rows[0]["prediction"], rows[1]["prediction"] = 1, "yes"
    mixed.add(rows)
    assert mixed.flush() is not None
    back = traffic.read(f"file://{tmp_path}/mixed")
    assert back["prediction"].tolist() == ["1", "yes"] and back["age"].tolist() == [0.0, 1.0]


def test_traffic_log_columns_and_rows_share_a_file_and_a_missing_column_is_null(tmp_path: Path) -> None:
    sink = f"file://{tmp_path}/cols"
    log = traffic.TrafficLogger(sink, flush_rows=3, flush_seconds=60)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    log.add(_rows(1, start))
    columns = {k: [v, v] for k, v in _rows(1, start + datetime.timedelta(seconds=5))[0].items()}
    del columns["plan"]
    log.add_columns(columns)
    log.add_columns({"age": []})  # nothing to log
    assert log.due()  # 3 rows buffered
    log.flush()
    frame = traffic.read(sink)
    assert len(frame) == 3 and frame["plan"].tolist() == ["pro", None, None]
    assert frame["timestamp"].tolist() == [pd.Timestamp(start), *[pd.Timestamp(start).replace(second=5)] * 2]


# --- batcher ------------------------------------------------------------------------------------
class FakePredictor:
    """Stands in for a torch model: labels each row with its 'age' and records batch sizes."""

    def __init__(self, tag: str) -> None:
        self.tag, self.batches = tag, []  # type: ignore[var-annotated]

    def predict(self, frame: pd.DataFrame) -> tuple[list[str], list[list[float]]]:
        self.batches.append(len(frame))
        threading.Event().wait(0.01)  # a model call costs time, so requests pile up
        return [f"{self.tag}:{a:g}" for a in frame["age"]], [[0.2, 0.8]] * len(frame)


def _model(tag: str) -> models.LoadedModel:
    card = models.parse_card({**CARD.raw, "version": tag})
    return models.LoadedModel(uri=f"file:///m/{tag}", quantized=True, card=card, predictor=FakePredictor(tag))


async def test_batcher_groups_concurrent_requests_and_keeps_their_rows_apart() -> None:
    scorer = scoring.Scorer(_model("v1"), deployment.Batching(max_batch_size=16, max_latency_ms=5000))
    requests = [
        [{"age": float(i * 10 + j), "plan": "pro", "score": None} for j in range(i % 3 + 1)]
        for i in range(40)
    ]
    results = await asyncio.gather(*(scorer.score(r) for r in requests))
    for request, result in zip(requests, results, strict=True):
        assert result.predictions == [f"v1:{row['age']:g}" for row in request]
        assert result.probabilities == [0.8] * len(request) and result.version == "v1"
    batches = scorer.model.predictor.batches  # type: ignore[attr-defined]
    assert max(batches) > 3 and max(batches) <= 16 and sum(batches) == sum(map(len, requests))


async def test_swap_takes_effect_on_the_next_batch_without_failures() -> None:
    scorer = scoring.Scorer(_model("v1"), deployment.Batching(max_batch_size=8, max_latency_ms=5000))
    row = [{"age": 1.0, "plan": "free", "score": 0.5}]
    first = await asyncio.gather(*(scorer.score(row) for _ in range(10)))
    old = scorer.swap(_model("v2"))
    second = await asyncio.gather(*(scorer.score(row) for _ in range(10)))
    assert old.version == "v1"
    assert {r.version for r in first} == {"v1"} and {r.version for r in second} == {"v2"}
    assert {r.predictions[0] for r in second} == {"v2:1"}


async def test_unbatched_scoring_calls_the_model_per_request() -> None:
    scorer = scoring.Scorer(_model("v1"), deployment.Batching(enabled=False))
    await asyncio.gather(*(scorer.score([{"age": 2.0, "plan": "pro", "score": None}]) for _ in range(5)))
    assert scorer.model.predictor.batches == [1] * 5  # type: ignore[attr-defined]
