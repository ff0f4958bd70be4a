"""KServe's Python model server over a Flywheel model: baseline (c) of bench/serving.py.

Runs in the KServe venv (.bench-venv-kserve: kserve 0.21, onnxruntime), not Flywheel's, as a real
`kserve.ModelServer` (FastAPI + uvicorn, one worker), with the V1 protocol:

    POST /v1/models/<name>:predict {"instances": [{<feature>: value, ...}, ...]}
      -> {"predictions": [<label>, ...], "probabilities": [<p of that label>, ...]}

The model is the same int8 ONNX file and preprocessor Flywheel serves, loaded with the same code
(flywheel.training.inference, importable here: it needs numpy, pandas, pydantic and onnxruntime), so
the two servers differ only in the serving stack. `predict` is synchronous, like KServe's own
sklearn and xgboost servers: KServe calls it on the event loop, one request at a time, unbatched.
KServe's extra per-request latency log line is off (`--enable_latency_logging false`, set by the
bench), and so is its access log, as BentoML's is by default in Flywheel's service
(`--bentoml-observability` turns both back on).

    .bench-venv-kserve/bin/python bench/_kserve_server.py --model_dir DIR --model_name shuttle \
        --http_port 8080
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import kserve

from flywheel.training import inference


class FlywheelOnnxModel(kserve.Model):  # type: ignore[misc]  # kserve ships no type hints
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.predictor: inference.Predictor | None = None

    def load(self) -> bool:
        self.predictor = inference.load(self.model_dir, quantized=True)
        self.ready = True
        return self.ready

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise kserve.errors.InvalidInput('"instances" must be a non-empty list of records')
        assert self.predictor is not None  # load() ran before the server started
        result = self.predictor.predict(instances)
        probs = result.probabilities or [[None]] * len(result.predictions)
        return {"predictions": result.predictions, "probabilities": [max(p) for p in probs]}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, type=Path)
    args, _ = parser.parse_known_args()
    model = FlywheelOnnxModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
