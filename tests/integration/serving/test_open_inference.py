"""The Open Inference Protocol v2 through a real client from PyPI (tritonclient's HTTP client),
against the shadow server on real trainer exports: the same answers, routing, log and metrics
as /predict, and the protocol's error object on the error path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from flywheel.serving import routing
from tests.integration.serving import trained
from tests.integration.serving.conftest import Server, logged_rows

pytestmark = pytest.mark.slow


def _client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"))


def _tensors(card: dict[str, Any], records: list[dict[str, Any]]) -> list[triton.InferInput]:
    numeric = [f["name"] for f in card["features"] if f["type"] == "numeric"]
    matrix = np.array([[r[n] for n in numeric] for r in records], dtype=np.float32)
    first = triton.InferInput("input", list(matrix.shape), "FP32")
    first.set_data_from_numpy(matrix, binary_data=False)
    out = [first]
    for f in card["features"]:
        if f["type"] != "numeric":
            column = triton.InferInput(f["name"], [len(records)], "BYTES")
            column.set_data_from_numpy(
                np.array([r[f["name"]].encode() for r in records], dtype=object), binary_data=False
            )
            out.append(column)
    return out


OUTPUTS = [triton.InferRequestedOutput(n, binary_data=False) for n in ("predictions", "probabilities")]


def test_metadata_and_health_through_the_client(servers: dict[str, Server], models: dict[str, str]) -> None:
    client = _client(servers["shadow"])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("shadow")
    assert client.get_server_metadata()["name"] == "flywheel"
    card = trained.card(Path(models["trained"]), "wine-a")
    meta = client.get_model_metadata("shadow")
    numeric = [f for f in card["features"] if f["type"] == "numeric"]
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, len(numeric)]}
    assert meta["inputs"][1:] == [
        {"name": f["name"], "datatype": "BYTES", "shape": [-1]}
        for f in card["features"]
        if f["type"] != "numeric"
    ]
    assert [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities"]
    assert str(card["version"]) in meta["versions"]


def test_infer_answers_as_predict_does_and_is_logged(
    servers: dict[str, Server], models: dict[str, str]
) -> None:
    server = servers["shadow"]
    card = trained.card(Path(models["trained"]), "wine-a")
    records = trained.records(Path(models["trained"]), 6, seed=21)
    # What FP32 tensors carry: the records rounded to float32, sent to /predict too.
    records = [
        {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in r.items()} for r in records
    ]
    result = _client(server).infer("shadow", _tensors(card, records), outputs=OUTPUTS, request_id="oip-t1")
    reply = result.get_response()
    assert reply["id"] == "oip-t1" and reply["model_name"] == "shadow"
    assert reply["model_version"] == str(card["version"]) and reply["parameters"]["role"] == routing.CHAMPION
    labels = [str(p) for p in result.as_numpy("predictions")]
    probs = result.as_numpy("probabilities").tolist()
    plain = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30).json()
    assert labels == plain["predictions"]
    assert probs == pytest.approx(plain["probabilities"], rel=1e-6)  # JSON FP32 round trip
    frame = logged_rows(server.sink(), "oip-t1", 12, timeout=15)
    assert sorted(frame["role"]) == sorted([routing.CHAMPION] * 6 + [routing.CHALLENGER] * 6)  # shadowed
    text = httpx.get(f"{server.url}/metrics").text
    assert 'endpoint="/v2/models/{name}/infer"' in text


def test_a_version_pins_the_model(servers: dict[str, Server], models: dict[str, str]) -> None:
    card_b = trained.card(Path(models["trained"]), "wine-b")
    records = trained.records(Path(models["trained"]), 2, seed=5)
    result = _client(servers["shadow"]).infer(
        "shadow", _tensors(card_b, records), model_version=str(card_b["version"]), outputs=OUTPUTS
    )
    assert result.get_response()["parameters"]["role"] == routing.CHALLENGER
    assert result.get_response()["model_version"] == str(card_b["version"])


def test_error_path_is_the_protocol_error_object(servers: dict[str, Server], models: dict[str, str]) -> None:
    client = _client(servers["shadow"])
    card = trained.card(Path(models["trained"]), "wine-a")
    records = trained.records(Path(models["trained"]), 2, seed=5)
    tensors = _tensors(card, records)
    cases = [
        (lambda: client.infer("shadow", tensors[:1], outputs=OUTPUTS), 400, "missing ['hue_band']"),
        (lambda: client.infer("nope", tensors, outputs=OUTPUTS), 404, "model 'nope' not found"),
        (lambda: client.infer("shadow", tensors, model_version="v-none", outputs=OUTPUTS), 404, "no version"),
        (lambda: client.get_model_metadata("nope"), 404, "not found"),
        # Binary tensors (the client's default) are Triton's extension, refused by name.
        (lambda: client.infer("shadow", [_binary(tensors[0]), *tensors[1:]]), 415, "binary tensor extension"),
    ]
    for call, status, words in cases:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == str(status) and words in caught.value.message(), caught.value
    bad = dict(records[0])
    bad[next(f["name"] for f in card["features"] if f["type"] == "numeric")] = 1e39  # beyond float32
    resp = httpx.post(
        f"{servers['shadow'].url}/v2/models/shadow/infer",
        json={"inputs": _tensors_raw(card, [bad])},
        headers={"x-request-id": "oip-bad"},
    )
    assert resp.status_code == 400 and resp.json()["request_id"] == "oip-bad"
    assert "input input row 0" in resp.json()["error"] and "less than or equal" in resp.json()["error"]


def _binary(tensor: triton.InferInput) -> triton.InferInput:
    out = triton.InferInput(tensor.name(), tensor.shape(), tensor.datatype())
    out.set_data_from_numpy(np.zeros(tensor.shape(), dtype=np.float32))  # binary_data=True
    return out


def _tensors_raw(card: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON tensors by hand (float64 values numpy would turn into inf)."""
    numeric = [f["name"] for f in card["features"] if f["type"] == "numeric"]
    out = [{"name": "input", "datatype": "FP32", "shape": [len(records), len(numeric)],
            "data": [r[n] for r in records for n in numeric]}]  # fmt: skip
    out += [
        {
            "name": f["name"],
            "datatype": "BYTES",
            "shape": [len(records)],
            "data": [r[f["name"]] for r in records],
        }
        for f in card["features"]
        if f["type"] != "numeric"
    ]
    return out
