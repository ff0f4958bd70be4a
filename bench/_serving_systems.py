"""The systems bench/serving.py compares: one real model, trained once, served three ways.

The model is the repository's own: `python -m flywheel.training` on period 1 of the example Shuttle
data (flywheel.data.examples), exporting fp32 (torch) and ONNX Runtime int8. Each system is a real HTTP
server in its own process group, started side by side and stopped at the end:

  flywheel-int8-batched  `bentoml serve` FlywheelService, int8, adaptive batching   (a)
  flywheel-fp32-single   the same service, fp32, batching off                        (b)
  kserve-int8            KServe's Python model server (kserve 0.21, its own venv) running
                         bench/_kserve_server.py on the same int8 ONNX file           (c)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from flywheel.api import contract
from flywheel.data import examples

REPO = Path(__file__).resolve().parents[1]
KSERVE_PYTHON = REPO / ".bench-venv-kserve" / "bin" / "python"
KSERVE_MODEL = "shuttle"
# A generous shedding budget: the goal is zero failed requests on a shared 2-core machine, where
# queueing at concurrency 64 can pass even the 1000 ms default; batches form adaptively below it.
BATCHING = {"enabled": True, "maxBatchSize": 64, "maxLatencyMs": 2000}
ARCHITECTURE = (64, 32)  # examples/trainingrun-local.yaml


def train(work: Path, hidden: tuple[int, ...] = ARCHITECTURE) -> Path:
    """Train the Shuttle model with the repository's trainer (hidden layers `hidden`, through the
    TrainingRun's model.architecture.hiddenLayers); return the exported model directory."""
    data = examples.file_repo(work / "shuttle-dvc", examples.period_frame(1))  # resolved by the trainer
    model = examples.model_spec().to_dict()
    model["architecture"] = {"hiddenLayers": list(hidden)}
    spec = {
        "data": data.to_dict(),
        "model": model,
        "training": {"epochs": 8, "batchSize": 128, "learningRate": 0.01, "classWeighting": "balanced"},
        "export": {"quantization": "static-int8"},  # what TrainingRuns export by default
    }
    artifacts = work / "run"
    cfg = {"name": "shuttle", "spec": spec, "artifactsUri": artifacts.as_uri()}
    cfg_path = work / "trainer.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, contract.ENV_CONFIG: str(cfg_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "flywheel.training"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"training failed:\n{done.stderr[-3000:]}")
    return artifacts / contract.MODEL_DIR


def traffic_records(rows: int) -> list[dict[str, Any]]:
    """Unlabelled period-1 traffic rows (disjoint from the training rows): what clients send."""
    frame = examples.period_frame(1, part="traffic", labelled=False, rows=rows)
    return [{k: float(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]


def versions() -> dict[str, str]:
    """The serving stacks measured: BentoML here, KServe in its venv."""
    import bentoml
    import onnxruntime

    done = subprocess.run(
        [
            str(KSERVE_PYTHON),
            "-c",
            "from importlib.metadata import version as v; print(v('kserve'), v('onnxruntime'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    kserve, _, ort = done.stdout.strip().partition(" ")
    return {
        "bentoml": bentoml.__version__,
        "onnxruntime": onnxruntime.__version__,
        "kserve": kserve,
        "kserveOnnxruntime": ort,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Server:
    """One server process (its own session, so stop() ends it and its workers)."""

    name: str
    url: str
    predict_path: str
    protocol: str  # flywheel | kserve-v1
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_path: str

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}:\n{self._tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise SystemExit(f"{self.name} not ready in {timeout:.0f}s:\n{self._tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this bench started, nothing else
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_flywheel(
    work: Path,
    name: str,
    model_dir: Path,
    quantized: bool,
    batching: bool,
    observability: bool = False,
    source: Path = REPO,
) -> Server:
    """FlywheelService as deployed: metrics and traffic logging on, one worker; BentoML's access
    log and /predict tracing spans off (the defaults) unless `observability`. `source`: the
    checkout whose flywheel package serves (bench._serving_ab compares two)."""
    home = work / name
    home.mkdir(parents=True, exist_ok=True)
    cfg = {
        "name": name,
        "champion": {"uri": model_dir.as_uri(), "quantized": quantized},
        "batching": BATCHING if batching else {"enabled": False},
        "logging": {"enabled": True, "sampleRate": 1.0, "sink": (home / "traffic").as_uri()},
        "artifactsUri": (work / "run").as_uri(),
        "accessLog": observability,
        "tracing": observability,
    }
    (home / "serving.json").write_text(json.dumps(cfg))
    port = free_port()
    env = {
        **os.environ,
        contract.ENV_SERVING_CONFIG: str(home / "serving.json"),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": str(source),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "bentoml", "serve", contract.SERVING_SERVICE]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = _spawn(cmd, env, home / "server.log", source)
    url = f"http://127.0.0.1:{port}"
    return Server(name, url, "/predict", "flywheel", proc, home / "server.log", "/readyz")


def _kserve_log_config(home: Path) -> Path:
    """KServe's logging with uvicorn's per-request access line off: Flywheel's service runs with
    BentoML's access log off (its default), so neither side pays for one."""
    stream = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": stream},
        "loggers": {
            "kserve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
    path = home / "logging.json"
    path.write_text(json.dumps(config))
    return path


def start_kserve(work: Path, name: str, model_dir: Path, access_log: bool = False) -> Server:
    """KServe's ModelServer (one uvicorn worker) over the same int8 ONNX file and preprocessor."""
    if not KSERVE_PYTHON.exists():
        made_by = "`make bench-venvs` creates it from bench/kserve-requirements.txt"
        raise SystemExit(f"{KSERVE_PYTHON} is missing: {made_by}")
    home = work / name
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [str(KSERVE_PYTHON), str(REPO / "bench" / "_kserve_server.py"), "--model_dir", str(model_dir)]
    cmd += ["--model_name", KSERVE_MODEL, "--http_port", str(port), "--grpc_port", str(free_port())]
    cmd += ["--enable_latency_logging", "false"]
    if not access_log:
        cmd += ["--log_config_file", str(_kserve_log_config(home))]
    proc = _spawn(cmd, env, home / "server.log")
    url = f"http://127.0.0.1:{port}"
    ready = f"/v1/models/{KSERVE_MODEL}"
    return Server(name, url, f"{ready}:predict", "kserve-v1", proc, home / "server.log", ready)
