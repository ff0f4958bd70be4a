"""FlywheelService over real HTTP (`bentoml serve` subprocesses).

Routing, shadow scoring, traffic logging, metrics and promotion run on real trainer exports
(conftest.models: wine models trained by flywheel.training, int8 ONNX, loaded by the default
flywheel.training.inference loader). The malformed-request corpus, the probes and the admin checks
run on the stand-in model (model_fixture): they exercise only the request schema and the config.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from scipy import stats

from flywheel.drift import feedback as drift_feedback
from flywheel.serving import feedback, routing, traffic
from flywheel.training import inference
from tests.integration.serving import trained
from tests.integration.serving.conftest import ADMIN_TOKEN, Server

pytestmark = pytest.mark.slow

GOOD = {"x0": 0.5, "x1": -1.0, "x2": 0.25, "x3": 0.0, "x4": 1.0, "x5": 2.0, "color": "red"}
JSON = {"content-type": "application/json"}
QUANT_NOISE = 0.02


def body(records: Any) -> bytes:
    return json.dumps({"records": records}).encode()


def row(**change: Any) -> dict[str, Any]:
    out = {**GOOD, **change}
    return {k: v for k, v in out.items() if v is not ...}


def huge_stream() -> Any:
    yield b'{"records": ['
    for _ in range(2000):
        yield json.dumps(GOOD).encode() + b","
    yield json.dumps(GOOD).encode() + b"]}"


# (id, content, headers, status, words the error must contain)
MALFORMED = [
    ("missing-feature", body([row(x3=...)]), JSON, 400, ["x3", "Field required"]),
    ("extra-feature", body([row(surprise=1.0)]), JSON, 400, ["surprise", "Extra inputs"]),
    ("wrong-type-list", body([row(x0=[1, 2])]), JSON, 400, ["x0", "valid number"]),
    ("nan", body([GOOD]).replace(b"0.5", b"NaN", 1), JSON, 400, ["x0", "finite"]),
    ("inf-literal", body([GOOD]).replace(b"0.5", b"Infinity", 1), JSON, 400, ["x0", "finite"]),
    ("inf-overflow", body([GOOD]).replace(b"0.5", b"1e999", 1), JSON, 400, ["x0", "finite"]),
    ("beyond-float32", body([row(x0=1e45)]), JSON, 400, ["x0", "less than or equal"]),
    ("beyond-float32-negative", body([row(x3=-1e308)]), JSON, 400, ["x3", "greater than or equal"]),
    # Within float32, yet the stand-in's fp32 logits overflow: refused, naming the row and feature.
    ("non-finite-answer", body([GOOD, row(x0=3e38)]), JSON, 422, ["records[1]", "x0=3e+38", "finite"]),
    ("unknown-top-level-key", b'{"records": [], "recrods": []}', JSON, 400, ["recrods", "Extra inputs"]),
    (
        "gzip-unsupported-encoding",
        body([GOOD]),
        {**JSON, "content-encoding": "br"},
        415,
        ["Content-Encoding"],
    ),
    ("gzip-not-gzip", body([GOOD]), {**JSON, "content-encoding": "gzip"}, 400, ["gzip"]),
    ("request-id-too-long", body([GOOD]), {**JSON, "x-request-id": "r" * 129}, 400, ["x-request-id"]),
    ("request-id-charset", body([GOOD]), {**JSON, "x-request-id": "a b<script>"}, 400, ["x-request-id"]),
    ("huge-key", body([{("k" * 60_000): 1.0}]), JSON, 400, ["kkkk", "characters)"]),
    ("empty-batch", body([]), JSON, 400, ["records", "at least 1"]),
    ("oversized-batch", body([GOOD] * 101), JSON, 400, ["records", "at most 100"]),
    ("wrong-content-type", body([GOOD]), {"content-type": "text/plain"}, 415, ["application/json"]),
    (
        "form-content-type",
        b"records=1",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        ["Content-Type"],
    ),
    ("no-content-type", body([GOOD]), {}, 415, ["Content-Type"]),
    ("invalid-json", b'{"records": [{"x0": 1,', JSON, 400, ["Invalid JSON"]),
    ("json-null", b"null", JSON, 400, ["object"]),
    ("records-null", b'{"records": null}', JSON, 400, ["records", "valid array"]),
    ("records-object", b'{"records": {"x0": 1}}', JSON, 400, ["records", "valid array"]),
    ("top-level-list", json.dumps([GOOD]).encode(), JSON, 400, ["object"]),
    ("empty-body", b"", JSON, 400, ["records", "Field required"]),
    ("nested-garbage", body([row(x1={"a": {"b": [None]}})]), JSON, 400, ["x1", "valid number"]),
    ("string-for-number", body([row(x2="0.25")]), JSON, 400, ["x2", "valid number"]),
    ("bool-for-number", body([row(x4=True)]), JSON, 400, ["x4", "valid number"]),
    ("null-feature", body([row(x5=None)]), JSON, 400, ["x5", "valid number"]),
    ("out-of-category", body([row(color="purple")]), JSON, 400, ["color", "'red', 'green' or 'blue'"]),
    ("number-for-category", body([row(color=3)]), JSON, 400, ["color"]),
    ("record-not-object", body([1, 2]), JSON, 400, ["records", "object"]),
    ("huge-body", body([GOOD] * 2000), JSON, 413, ["limit"]),
    ("huge-body-streamed", None, JSON, 413, ["limit"]),
]


@pytest.mark.parametrize(
    ("content", "headers", "status", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_request_is_a_clear_4xx(
    servers: dict[str, Server], content: Any, headers: dict[str, str], status: int, words: list[str]
) -> None:
    payload = huge_stream() if content is None else content
    resp = httpx.post(f"{servers['schema'].url}/predict", content=payload, headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert "error" in error and error["request_id"] == resp.headers["x-request-id"]
    assert len(resp.content) < 20_000  # nothing a caller sent is echoed whole
    for word in words:
        assert word in resp.text, (word, resp.text)


def test_client_errors_leave_no_traceback_in_the_log(servers: dict[str, Server]) -> None:
    """Runs after the corpus: each client error is one INFO line with its request id, no ERROR."""
    url = servers["schema"].url
    # The corpus spent the log's burst allowance: ask again until the limiter lets a line through.
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        httpx.post(f"{url}/predict", json={"records": [{}]}, headers={"x-request-id": "log-check"})
        time.sleep(0.5)
        lines = [line for line in servers["schema"].log_path.read_text().splitlines() if "log-check" in line]
    text = servers["schema"].log_path.read_text()
    assert lines and "[INFO]" in lines[0] and "POST /predict -> 400 request_id=log-check" in lines[0]
    assert "Traceback" not in text and "[ERROR]" not in text


def test_http_hygiene_unknown_paths_methods_and_gzip(servers: dict[str, Server]) -> None:
    url = servers["schema"].url
    with httpx.Client(timeout=30) as client:
        for method, path in (("POST", "/predictX"), ("GET", "/nope"), ("DELETE", "/admin/x")):
            resp = client.request(method, f"{url}{path}", json={"records": [GOOD]})
            assert resp.status_code == 404 and path in resp.json()["error"] and resp.json()["request_id"]
        resp = client.get(f"{url}/predict", headers={"x-request-id": "m-1"})
        assert resp.status_code == 405 and resp.headers["allow"] == "POST"
        assert resp.json() == {"error": "GET is not allowed on /predict; use POST", "request_id": "m-1"}
        packed = gzip.compress(body([GOOD]))
        zipped = client.post(f"{url}/predict", content=packed, headers={**JSON, "content-encoding": "gzip"})
        plain = client.post(f"{url}/predict", content=body([GOOD]), headers=JSON)
        assert zipped.status_code == 200 and zipped.json()["predictions"] == plain.json()["predictions"]
        bomb = gzip.compress(b" " * 200_000)  # inflates past maxBodyBytes (64 KiB here)
        resp = client.post(f"{url}/predict", content=bomb, headers={**JSON, "content-encoding": "gzip"})
        assert resp.status_code == 413 and "inflates" in resp.json()["error"]


def test_metrics_stay_bounded_after_many_unknown_paths(servers: dict[str, Server]) -> None:
    url = servers["schema"].url
    before = httpx.get(f"{url}/metrics").text
    with httpx.Client(timeout=30) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: client.get(f"{url}/unknown/{i}").status_code, range(10_000)))
    assert set(statuses) == {404}
    after = httpx.get(f"{url}/metrics").text
    assert "/unknown/" not in after and 'endpoint="other"' in after
    # The same series as before, one more label set at most (`other`'s), whatever the count.
    assert len(after) < len(before) + 6_000, (len(before), len(after))


def test_extreme_finite_inputs_never_answer_null(servers: dict[str, Server], models: dict[str, str]) -> None:
    """Every float32 extreme on every numeric feature of a real export: a 4xx naming the feature,
    or a 200 whose numbers are all finite (static int8 saturates); never NaN written as null."""
    record = trained.records(Path(models["trained"]), 1)[0]
    numeric = [k for k, v in record.items() if isinstance(v, float)]
    with httpx.Client(timeout=30) as client:
        for name in numeric:
            for value in (3.4e38, -3.4e38, 1e39, -1e308):
                resp = client.post(
                    f"{servers['canary'].url}/predict", json={"records": [{**record, name: value}]}
                )
                assert resp.status_code in (200, 400, 422), resp.text
                if resp.status_code == 200:
                    assert None not in resp.json()["probabilities"], (name, value)
                else:
                    assert name in resp.text, resp.text
    metrics = httpx.get(f"{servers['canary'].url}/metrics").text
    assert "NaN" not in metrics


def test_probes_and_a_valid_request(servers: dict[str, Server]) -> None:
    url = servers["schema"].url
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/livez").status_code == 200
    resp = httpx.post(
        f"{url}/predict",
        json={"records": [GOOD, row(color="blue", x0=-3.0)]},
        headers={"x-request-id": "r-1"},
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["request_id"] == "r-1"
    assert out["model"] == {"role": routing.CHAMPION, "version": "v1"}
    assert resp.headers["x-flywheel-model-version"] == out["model"]["version"]
    assert len(out["predictions"]) == 2 and set(out["predictions"]) <= {"yes", "no"}
    assert all(0.5 <= p <= 1.0 for p in out["probabilities"])
    # Without x-request-id the server makes one: 32 hex digits (per-process random prefix and a
    # counter), a new one per request.
    made = [httpx.post(f"{url}/predict", json={"records": [GOOD]}).json()["request_id"] for _ in range(3)]
    assert len(set(made)) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_access_log_follows_config(servers: dict[str, Server]) -> None:
    """BentoML's access log line appears only where the serving config turns it on (accessLog)."""
    for name in ("schema", "canary"):
        resp = httpx.post(f"{servers[name].url}/predict", json={"records": [{}]}, timeout=30)
        assert resp.status_code == 400, resp.text  # a reply is enough: the line logs every status
    deadline = time.monotonic() + 10
    while "path=/predict" not in servers["canary"].log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "path=/predict" in servers["canary"].log_path.read_text()
    assert "path=/predict" not in servers["schema"].log_path.read_text()


def _post_many(url: str, requests: list[dict[str, str]], record: dict[str, Any]) -> list[httpx.Response]:
    with httpx.Client(timeout=30) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(lambda h: client.post(f"{url}/predict", json={"records": [record]}, headers=h), requests)
        )


def _version(models: dict[str, str], name: str) -> str:
    return str(trained.card(Path(models["trained"]), name)["version"])


def test_canary_split_matches_challenger_percent(servers: dict[str, Server], models: dict[str, str]) -> None:
    n = 400
    record = trained.records(Path(models["trained"]), 1)[0]
    responses = _post_many(servers["canary"].url, [{}] * n, record)
    assert all(r.status_code == 200 for r in responses)
    to_challenger = sum(r.json()["model"]["role"] == routing.CHALLENGER for r in responses)
    # Two-sided exact binomial test against p = 0.30; p < 0.001 would mean the split is off.
    assert stats.binomtest(to_challenger, n, 0.30).pvalue > 0.001, to_challenger
    versions = {routing.CHAMPION: _version(models, "wine-a"), routing.CHALLENGER: _version(models, "wine-b")}
    assert all(r.json()["model"]["version"] == versions[r.json()["model"]["role"]] for r in responses)


def test_canary_is_sticky_by_header(servers: dict[str, Server], models: dict[str, str]) -> None:
    ids = [f"user-{i}" for i in range(150)]
    record = trained.records(Path(models["trained"]), 1)[0]
    first = _post_many(servers["canary"].url, [{"x-request-id": i} for i in ids], record)
    again = _post_many(servers["canary"].url, [{"x-request-id": i} for i in ids], record)
    for key, a, b in zip(ids, first, again, strict=True):
        expected = routing.CHALLENGER if routing.bucket(key) < 30 else routing.CHAMPION
        assert a.json()["model"]["role"] == b.json()["model"]["role"] == expected


def _local(
    model: str, models: dict[str, str], records: list[dict[str, Any]]
) -> tuple[list[str], list[float]]:
    """What the exported int8 model answers in this process: labels and top probabilities."""
    predictor = inference.load(Path(models[model].removeprefix("file://")), quantized=True)
    out = predictor.predict(pd.DataFrame.from_records(records))
    return [str(p) for p in out.predictions], [max(row) for row in out.probabilities or []]


def _wait_rows(sink: str, predicate: Any, timeout: float = 15.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        frame = traffic.read(sink)
        if predicate(frame) or time.monotonic() > deadline:
            return frame
        time.sleep(0.25)


def test_shadow_answers_with_champion_and_logs_challenger(
    servers: dict[str, Server], models: dict[str, str]
) -> None:
    server = servers["shadow"]
    records = trained.records(Path(models["trained"]), 60, seed=7)
    batches = [records[i : i + 3] for i in range(0, 60, 3)]
    with httpx.Client(timeout=30) as client:
        responses = [
            client.post(f"{server.url}/predict", json={"records": b}, headers={"x-request-id": f"s-{i}"})
            for i, b in enumerate(batches)
        ]
    assert all(r.status_code == 200 for r in responses)
    served = [p for r in responses for p in r.json()["predictions"]]
    served_probs = [p for r in responses for p in r.json()["probabilities"]]
    assert {r.json()["model"]["role"] for r in responses} == {routing.CHAMPION}
    champion, champion_probs = _local("wine-a", models, records)
    challenger, challenger_probs = _local("wine-b", models, records)
    # Static int8 scales: the server's batches (its own 3-row requests, others beside them) give
    # exactly what a local run over all 60 rows at once gives.
    assert served == champion
    assert served_probs == champion_probs
    # The models really differ (well beyond that noise), so the checks above mean something.
    assert (
        sum(abs(a - b) > 5 * QUANT_NOISE for a, b in zip(champion_probs, challenger_probs, strict=True)) > 15
    )

    ids = {f"s-{i}" for i in range(len(batches))}
    frame = _wait_rows(
        server.sink(),
        lambda f: set(f.get("request_id", [])) >= ids and len(f[f["request_id"].isin(ids)]) >= 120,
    )
    mine = frame[frame["request_id"].isin(ids)]
    shadow = mine[mine["role"] == routing.CHALLENGER]
    main = mine[mine["role"] == routing.CHAMPION]
    assert len(shadow) == len(main) == 60
    assert not shadow["served"].any() and main["served"].all()
    order = {f"s-{i}": i for i in range(len(batches))}
    shadow = shadow.sort_values("request_id", key=lambda s: s.map(order), kind="stable")
    assert shadow["prediction"].tolist() == challenger
    assert shadow["probability"].tolist() == challenger_probs
    assert set(shadow["model_version"]) == {_version(models, "wine-b")}


def _neighbour_cases(
    models: dict[str, str], server: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ordinary rows, and extreme ones (finite, far outside the training range) to batch them with."""
    if server == "schema":  # the stand-in: dynamic int8 TorchScript, scored one row per call
        rows = [row(x0=i / 4 - 2.0, x3=-i / 8) for i in range(12)]
        return rows, [row(x0=1e6), row(x1=-1e6, x2=1e30), row(x5=3e7, color="blue")]
    rows = trained.records(Path(models["trained"]), 12, seed=3)
    numeric = [k for k, v in rows[0].items() if isinstance(v, float)]
    extremes = [{**rows[0], numeric[0]: 1e6}, {**rows[1], numeric[1]: -1e6, numeric[2]: 1e30}]
    return rows, extremes


@pytest.mark.parametrize("server", ["shadow", "schema"])
def test_a_rows_answer_does_not_depend_on_its_neighbours(
    servers: dict[str, Server], models: dict[str, str], server: str
) -> None:
    """Alone, beside extreme rows in its own request, and among other callers' extreme requests
    (8 concurrent callers, so the batcher mixes them): the same prediction and probability."""
    url = f"{servers[server].url}/predict"
    rows, extremes = _neighbour_cases(models, server)
    with httpx.Client(timeout=30) as client:

        def answer(records: list[dict[str, Any]]) -> list[tuple[Any, float]]:
            resp = client.post(url, json={"records": records})
            assert resp.status_code == 200, resp.text
            out = resp.json()
            return list(zip(out["predictions"], out["probabilities"], strict=True))

        alone = [answer([r])[0] for r in rows]
        jobs: list[tuple[int | None, list[dict[str, Any]]]] = []
        for i, r in enumerate(rows * 6):
            x = extremes[i % len(extremes)]
            jobs += [(i % len(rows), [r]), (None, [x, x]), (i % len(rows), [x, r, x]), (None, [x])]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda job: answer(job[1]), jobs))
    changed = []
    for (index, records), got in zip(jobs, answers, strict=True):
        if index is None:
            continue
        mine = got[records.index(rows[index])]
        if mine != alone[index]:
            changed.append((index, alone[index], mine))
    assert changed == []


def test_traffic_log_reads_back_with_documented_schema(
    servers: dict[str, Server], models: dict[str, str]
) -> None:
    sink = servers["shadow"].sink()
    frame = _wait_rows(sink, lambda f: len(f) >= 2)
    card = trained.card(Path(models["trained"]), "wine-a")
    features = [f["name"] for f in card["features"]]
    numeric = [f["name"] for f in card["features"] if f["type"] == "numeric"]
    (categorical,) = [f for f in card["features"] if f["type"] == "categorical"]
    assert list(frame.columns) == [
        *traffic.FIXED_COLUMNS,
        *features,
        *traffic.OUTPUT_COLUMNS,
        traffic.RECORD_INDEX,
    ]
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["served"].dtype == bool
    assert frame[numeric].dtypes.map(str).eq("float64").all()
    assert frame[categorical["name"]].isin(categorical["categories"]).all()
    assert frame["prediction"].isin(card["classes"]).all()
    assert frame["probability"].between(1 / 3, 1.0).all() and (frame["latency_ms"] > 0).all()
    assert frame[traffic.ERROR].isna().all()  # every scoring succeeded (failures: test_shadow_logging)
    tail = traffic.read(sink, last_rows=5)
    assert len(tail) == 5 and tail["timestamp"].tolist() == frame["timestamp"].tail(5).tolist()
    cut = frame["timestamp"].iloc[len(frame) // 2].to_pydatetime()
    assert traffic.read(sink, since=cut)["timestamp"].min() >= cut
    assert traffic.read(sink, since=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).empty


def test_metrics_are_per_model(servers: dict[str, Server], models: dict[str, str]) -> None:
    text = httpx.get(f"{servers['shadow'].url}/metrics").text
    a, b = _version(models, "wine-a"), _version(models, "wine-b")
    assert f'flywheel_serving_requests_total{{model_version="{a}",role="champion",served="true"}}' in text
    assert f'flywheel_serving_requests_total{{model_version="{b}",role="challenger",served="false"}}' in text
    assert 'flywheel_serving_latency_seconds_bucket{le="+Inf",role="challenger"}' in text
    classes = trained.card(Path(models["trained"]), "wine-a")["classes"]
    assert any(
        f'flywheel_serving_predictions_total{{prediction="{c}",role="champion"}}' in text for c in classes
    )
    schema = httpx.get(f"{servers['schema'].url}/metrics").text
    assert 'flywheel_serving_errors_total{reason="body_too_large",role="none"}' in schema


def test_admin_needs_token_and_artifact_store_uri(servers: dict[str, Server], models: dict[str, str]) -> None:
    url = f"{servers['schema'].url}/admin/promote"
    assert httpx.post(url, json={"uri": models["standin"]}).status_code == 401
    # The token is checked first: a body BentoML would refuse tells a caller without it nothing more.
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, content=b"{not json", headers=JSON).status_code == 401
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    outside = httpx.post(url, json={"uri": "file:///etc/models/m3"}, headers=auth)
    assert outside.status_code == 400 and "artifact store" in outside.text
    # Starts with the store's root, but `..` leads out of it: normalised before the check.
    escape = httpx.post(url, json={"uri": f"{models['root']}/standin/../../../etc"}, headers=auth)
    assert escape.status_code == 400 and "artifact store" in escape.text
    missing = httpx.post(url, json={"uri": f"{models['root']}/models/nope"}, headers=auth)
    assert missing.status_code == 400 and "model_card.json" in missing.text
    # A directory the server's loader cannot read (here: a real export, the stand-in's loader).
    broken = httpx.post(url, json={"uri": models["wine-a"]}, headers=auth)
    assert broken.status_code == 400 and "cannot load the model" in broken.text
    assert httpx.post(f"{servers['schema'].url}/predict", json={"records": [GOOD]}).status_code == 200


def test_promotion_under_load_fails_no_request(servers: dict[str, Server], models: dict[str, str]) -> None:
    """Runs last: it makes the shadow server's challenger (wine-b) its champion, under load."""
    url = servers["shadow"].url
    record = trained.records(Path(models["trained"]), 1)[0]
    stop = threading.Event()
    seen: list[tuple[float, int, str]] = []

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                resp = client.post(f"{url}/predict", json={"records": [record]})
                version = resp.json().get("model", {}).get("version", "") if resp.status_code == 200 else ""
                seen.append((time.monotonic(), resp.status_code, version))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    promoted = httpx.post(
        f"{url}/admin/promote",
        json={"uri": models["wine-b"]},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    done_at = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for w in workers:
        w.join()
    old, new = _version(models, "wine-a"), _version(models, "wine-b")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["previous"]["version"] == old
    assert [s for _, s, _ in seen if s != 200] == []
    assert len(seen) > 20
    versions = [v for _, _, v in seen]
    assert old in versions and new in versions
    assert {v for t, _, v in seen if t > done_at + 0.2} == {new}


def test_feedback_joins_late_duplicate_and_unknown_labels(
    servers: dict[str, Server], models: dict[str, str]
) -> None:
    """Ground truth through POST /feedback on the real server, joined to its real traffic log:
    labels sent before the log is flushed still join, the last label for a record wins, labels for
    ids the log lacks are counted, and a malformed upload is a 400 naming the field, storing nothing."""
    server = servers["shadow"]
    records = trained.records(Path(models["trained"]), 6, seed=11)
    ids = [f"fb-{i}" for i in range(3)]
    with httpx.Client(timeout=30) as client:
        answers = [
            client.post(
                f"{server.url}/predict",
                json={"records": records[2 * i : 2 * i + 2]},
                headers={"x-request-id": rid},
            ).json()
            for i, rid in enumerate(ids)
        ]
        first = [{"request_id": rid, "record_index": k, "label": "wrong"} for rid in ids for k in (0, 1)]
        later = [
            {"request_id": rid, "record_index": k, "label": answers[i]["predictions"][k]}
            for i, rid in enumerate(ids)
            for k in (0, 1)
        ]
        unknown = [
            {"request_id": "fb-nobody", "label": "x"},
            {"request_id": ids[0], "record_index": 7, "label": "x"},
        ]
        bad = [
            ({"labels": [{"request_id": "fb-0", "label": True}]}, "label"),
            ({"labels": [{"request_id": "a b", "label": "x"}]}, "request_id"),
            ({"labels": [{"request_id": "fb-0", "label": "x", "extra": 1}]}, "extra"),
            ({"labels": [{"request_id": "fb-0", "record_index": -1, "label": "x"}]}, "record_index"),
            ({"labels": [{"request_id": "fb-0", "label": "x"}] * (feedback.MAX_LABELS + 1)}, "labels"),
            ({"labels": []}, "labels"),
        ]
        stored_before = _feedback_files(server.sink())
        for payload, field in bad:
            reply = client.post(f"{server.url}/feedback", json=payload)
            if reply.status_code == 413:  # this server's maxBodyBytes is below MAX_LABELS' size
                assert field == "labels" and "limit" in reply.json()["error"]
                continue
            assert reply.status_code == 400, (field, reply.text)
            assert field in json.dumps(reply.json()["detail"]), reply.text
        assert _feedback_files(server.sink()) == stored_before
        for batch in (first, later, unknown):
            reply = client.post(f"{server.url}/feedback", json={"labels": batch})
            assert reply.status_code == 200, reply.text
            assert reply.json()["accepted"] == len(batch)
        metrics_text = client.get(f"{server.url}/metrics").text
    assert "flywheel_serving_feedback_labels_total" in metrics_text
    frame = _wait_rows(server.sink(), lambda f: len(f[f["request_id"].isin(ids)]) >= 12)
    joined = drift_feedback.join(frame[frame["request_id"].isin(ids)], server.sink())
    served = joined.rows[joined.rows["served"]]
    assert len(served) == 6 and len(joined.rows) == 12  # the shadow rows are labelled too
    assert (served["label"] == served["prediction"].astype(str)).all()  # the later label won
    assert joined.duplicates >= 6 and joined.unknown == 2 and joined.problems == []


def _feedback_files(sink: str) -> list[str]:
    folder = Path(sink.removeprefix("file://")) / feedback.FOLDER
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
