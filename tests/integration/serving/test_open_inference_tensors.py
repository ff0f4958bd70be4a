"""Named tensor inputs through the Open Inference Protocol: a real client (tritonclient's HTTP
client) against the real BentoML server serving real CNNs on the 8x8 digits (cnn_fixture: a
`tensors` card, image [N, 1, 8, 8], int8 ONNX; a champion and a shadowed challenger) through
Flywheel's own loader. It answers the right digit for held-out images, the same as /predict, logs
px columns for both roles, pins a version, and refuses bad tensors with a 400 naming them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from flywheel.serving import routing
from tests.integration.serving import cnn_fixture
from tests.integration.serving.conftest import Server, logged_rows

pytestmark = pytest.mark.slow
NAME = "digits"
# The fixture's CNN scores 0.91-0.92 on these 300 held-out images (fp32 and int8, measured); the
# floor leaves room for another seed, not for a broken feed (a wrong layout scores ~0.1).
ACCURACY_FLOOR = 0.85


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("digits")
    cnn_fixture.build(root / "model", "cnn-v1")
    cnn_fixture.build(root / "challenger", "cnn-v2", seed=1)  # shadowed: answers every request too
    cfg = {
        "name": NAME,
        "champion": {"uri": (root / "model").as_uri(), "quantized": True},
        "challenger": {"uri": (root / "challenger").as_uri(), "quantized": True},
        "traffic": {"mode": "shadow"},
        "batching": {"enabled": True, "maxBatchSize": 32, "maxLatencyMs": 5000},
        "logging": {"enabled": True, "sampleRate": 1.0, "sink": (root / "traffic").as_uri(),
                    "flushRows": 50, "flushSeconds": 0.5},
        "artifactsUri": root.as_uri(),
        "maxRequestRows": 300,
        "maxBodyBytes": 256 * 1024,
    }  # fmt: skip
    started = Server(root / "server", cfg)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def _client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"))


def _image(images: np.ndarray, shape: list[int] | None = None) -> triton.InferInput:
    batch = images.reshape(shape or [-1, 1, 8, 8]).astype(np.float32)
    tensor = triton.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    return tensor


OUTPUTS = [triton.InferRequestedOutput(n, binary_data=False) for n in ("predictions", "probabilities")]


def test_metadata_lists_the_declared_tensor(server: Server) -> None:
    meta = _client(server).get_model_metadata(NAME)
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["parameters"]["features"] == cnn_fixture.PIXELS
    assert [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities"]


def test_the_image_tensor_gets_the_right_digit_as_predict_does_and_is_logged(server: Server) -> None:
    images, labels = cnn_fixture.holdout()
    result = _client(server).infer(NAME, [_image(images)], outputs=OUTPUTS, request_id="img-1")
    predicted = [str(p) for p in result.as_numpy("predictions")]
    accuracy = float(np.mean(np.array(predicted) == labels.astype(str)))
    assert accuracy >= ACCURACY_FLOOR, accuracy
    # [N, 64] is the same tensor; /predict with the px records gives the same answers.
    flat = _client(server).infer(NAME, [_image(images[:20], [20, 64])], outputs=OUTPUTS)
    assert [str(p) for p in flat.as_numpy("predictions")] == predicted[:20]
    records = pd.DataFrame(images[:20], columns=cnn_fixture.PIXELS).to_dict(orient="records")
    plain = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30).json()
    assert plain["predictions"] == predicted[:20]
    assert plain["probabilities"] == pytest.approx(flat.as_numpy("probabilities").tolist(), rel=1e-6)
    # The traffic log holds the pixels as columns, as /predict's requests: what drift reads.
    # ... and shadowed on the challenger, as /predict requests are: both roles logged.
    frame = logged_rows(server.sink(), "img-1", 2 * len(images))
    assert sorted(set(frame["role"])) == [routing.CHALLENGER, routing.CHAMPION]
    assert set(cnn_fixture.PIXELS) <= set(frame.columns)
    frame = frame[frame["role"] == routing.CHAMPION]
    logged = frame.sort_values("record_index")[cnn_fixture.PIXELS].to_numpy(dtype=np.float32)
    assert np.array_equal(logged, images)


def test_a_version_pins_the_challenger_for_tensor_requests(server: Server) -> None:
    images, _ = cnn_fixture.holdout()
    result = _client(server).infer(NAME, [_image(images[:3])], model_version="cnn-v2", outputs=OUTPUTS)
    reply = result.get_response()
    assert reply["model_version"] == "cnn-v2" and reply["parameters"]["role"] == routing.CHALLENGER
    assert _client(server).get_model_metadata(NAME)["versions"] == ["cnn-v1", "cnn-v2"]


def test_bad_tensors_are_400s_from_the_client_and_over_http(server: Server) -> None:
    client = _client(server)
    images, _ = cnn_fixture.holdout()
    cases = [
        ([_image(images[:2], [2, 8, 8])], "input image: shape [2, 8, 8]; expected 'image' FP32 [N, 1, 8, 8] or [N, 64]"),
        ([_image(images[:2]), _image(images[:2])], "tensor 'image' sent twice"),
        ([], "inputs: a non-empty list"),
    ]  # fmt: skip
    for inputs, words in cases:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(NAME, inputs, outputs=OUTPUTS)
        assert caught.value.status() == "400" and words in caught.value.message(), caught.value
    url = f"{server.url}/v2/models/{NAME}/infer"
    pixels = images[0].tolist()
    raw = [
        ({"name": "image", "datatype": "FP32", "shape": [10**9, 64], "data": pixels}, 400, "1 to 300 rows"),
        ({"name": "image", "datatype": "FP32", "shape": [1, 64], "data": [*pixels[:63], "x"]}, 400,
         "input image row 0 (px63): 'x' is not a number"),
        ({"name": "image", "datatype": "FP32", "shape": [2, 64], "data": [pixels, pixels[:60]]}, 400,
         "nested data does not match shape [2, 64]: 60 items"),
    ]  # fmt: skip
    for tensor, status, words in raw:
        resp = httpx.post(url, json={"inputs": [tensor]}, headers={"x-request-id": "bad-img"}, timeout=30)
        assert resp.status_code == status and words in resp.json()["error"], resp.text
        assert resp.json()["request_id"] == "bad-img"
    nan = json.dumps(
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 64], "data": [float("nan")] * 64}]}
    )
    resp = httpx.post(url, content=nan, headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == 400 and "(px0): 'nan' is not a finite number" in resp.json()["error"]
    # The body limit (the guard's) bounds N x 64 values before any JSON is parsed.
    big = {"name": "image", "datatype": "FP32", "shape": [300, 64], "data": [1234567.8901234] * (300 * 64)}
    resp = httpx.post(url, json={"inputs": [big]}, timeout=30)
    assert resp.status_code == 413 and "limit" in resp.json()["error"]
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # still serving
