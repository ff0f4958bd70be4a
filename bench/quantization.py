"""Pick the int8 method for exported models by measurement, all methods side by side in one run.

Model: the trainer's own MLP (flywheel.training.model.build_mlp) with hidden [512, 256] on 40 numeric
features, 3 classes (sklearn make_classification, 12,000 rows, seed 0; 20% holdout), trained 4 epochs.
Candidates: fp32 eager (baseline), torch.ao quantize_dynamic (qint8 Linear), torchao
Int8DynamicActivationInt8WeightConfig and Int8WeightOnlyConfig (eager, no torch.compile), ONNX Runtime
fp32, ONNX Runtime dynamic int8 (QInt8 weights, activation scales per batch) and ONNX Runtime static
int8 (QDQ, QInt8 weights, QUInt8 activations, scales calibrated on the training split: what the
trainer exports). For each: median latency at batch 1 and 64 (1 intra-op thread, as one serving
worker), serialised size, holdout accuracy, agreement with fp32, and batch independence: the share
of 200 holdout rows whose output is bit-identical scored alone and in one batch with an extreme row
(a feature at 1e6), i.e. whether one caller's rows can change another's answers when batched.
Goal: >= 2x faster than fp32, <= 0.3x size, accuracy within 0.5 points, 100% batch independence.

    python -m bench.quantization  ->  table on stdout, bench/results/quantization.json
"""

from __future__ import annotations

import copy
import io
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn import datasets, model_selection, preprocessing

from bench import _common
from flywheel.training import model as mlp

warnings.filterwarnings("ignore")
RESULTS = Path(__file__).parent / "results" / "quantization.json"
Runner = Callable[[np.ndarray], np.ndarray]


def _data() -> tuple[np.ndarray, ...]:
    x, y = datasets.make_classification(
        n_samples=12_000, n_features=40, n_informative=24, n_classes=3, random_state=0
    )
    xtr, xte, ytr, yte = model_selection.train_test_split(x, y, test_size=0.2, random_state=0)
    scaler = preprocessing.StandardScaler().fit(xtr)
    return (scaler.transform(xtr).astype(np.float32), scaler.transform(xte).astype(np.float32), ytr, yte)


def _train(xtr: np.ndarray, ytr: np.ndarray) -> torch.nn.Module:
    torch.manual_seed(0)
    net = mlp.build_mlp(40, [512, 256], 3, 0.1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(4):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _torch_runner(net: torch.nn.Module) -> Runner:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run


def _torch_size(net: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return len(buf.getvalue())


def _torchao(net: torch.nn.Module, config_name: str) -> torch.nn.Module:
    import torchao.quantization as tq

    q = copy.deepcopy(net)
    tq.quantize_(q, getattr(tq, config_name)())
    return q


def _onnx(
    net: torch.nn.Module, tmp: Path, quantize: bool, calibration: np.ndarray | None = None
) -> tuple[Runner, int]:
    import onnxruntime as ort

    fp32 = tmp / "model.onnx"
    if not fp32.exists():
        torch.onnx.export(
            net,
            (torch.zeros(1, 40),),
            str(fp32),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
            dynamo=False,
        )
    path = fp32
    if quantize and calibration is not None:  # as flywheel.training.export does
        from onnxruntime import quantization as ortq

        path = tmp / "model_int8_static.onnx"
        batches = iter([{"x": calibration[i : i + 256]} for i in range(0, len(calibration), 256)])
        reader = type("Reader", (), {"get_next": lambda self: next(batches, None)})()
        ortq.quantize_static(
            str(fp32),
            str(path),
            reader,
            quant_format=ortq.QuantFormat.QDQ,
            activation_type=ortq.QuantType.QUInt8,
            weight_type=ortq.QuantType.QInt8,
        )
    elif quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = tmp / "model_int8.onnx"
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return (lambda x: session.run(["y"], {"x": x})[0]), path.stat().st_size


def _latency_ms(run: Runner, x: np.ndarray, budget_s: float = 1.0) -> float:
    for _ in range(20):
        run(x)
    times = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(times) < 50:
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _batch_independence(run: Runner, x: np.ndarray) -> float:
    """Share of rows scored bit-identically alone and beside an extreme row in one batch."""
    extreme = x[:1].copy()
    extreme[0, 5] = 1e6
    alone = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
    batched = run(np.concatenate([x, extreme]))[: len(x)]
    return float((alone == batched).all(axis=1).mean())


def main() -> None:
    torch.set_num_threads(1)
    xtr, xte, ytr, yte = _data()
    net = _train(xtr, ytr)
    candidates: dict[str, Callable[[Path], tuple[Runner, int]]] = {
        "fp32 (torch eager)": lambda _: (_torch_runner(net), _torch_size(net)),
        "torch.ao quantize_dynamic int8": lambda _: (
            _torch_runner(q := mlp.quantize_dynamic_int8(copy.deepcopy(net))),
            _torch_size(q),
        ),
        "torchao Int8DynamicActivationInt8Weight": lambda _: (
            _torch_runner(q := _torchao(net, "Int8DynamicActivationInt8WeightConfig")),
            _torch_size(q),
        ),
        "torchao Int8WeightOnly": lambda _: (
            _torch_runner(q := _torchao(net, "Int8WeightOnlyConfig")),
            _torch_size(q),
        ),
        "onnxruntime fp32": lambda tmp: _onnx(net, tmp, quantize=False),
        "onnxruntime dynamic int8": lambda tmp: _onnx(net, tmp, quantize=True),
        "onnxruntime static int8 (QDQ, train calib)": lambda tmp: _onnx(
            net, tmp, quantize=True, calibration=xtr[:4096]
        ),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in candidates.items():
            try:
                run, size = make(Path(tmp))
                pred = run(xte).argmax(axis=1)
            except Exception as exc:  # report a method that does not work here instead of dying
                rows.append({"method": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            rows.append(
                {
                    "method": name,
                    "size_bytes": size,
                    "accuracy": float((pred == yte).mean()),
                    "latency_ms_b1": _latency_ms(run, xte[:1]),
                    "latency_ms_b64": _latency_ms(run, xte[:64]),
                    "batch_independent": _batch_independence(run, xte[:200]),
                    "pred": pred,
                }
            )
    _report(rows)


def _report(rows: list[dict]) -> None:
    base = rows[0]
    base_pred = base["pred"]
    print(
        f"{'method':42} {'size KiB':>9} {'x size':>7} {'b1 ms':>8} {'b1 x':>6} {'b64 ms':>8} "
        f"{'b64 x':>6} {'acc %':>6} {'agree %':>8} {'indep %':>8}"
    )
    for row in rows:
        if "error" in row:
            print(f"{row['method']:42} ERROR {row['error']}")
            continue
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"]
        row["speedup_b1"] = base["latency_ms_b1"] / row["latency_ms_b1"]
        row["speedup_b64"] = base["latency_ms_b64"] / row["latency_ms_b64"]
        row["agreement_with_fp32"] = float((row.pop("pred") == base_pred).mean())
        print(
            f"{row['method']:42} {row['size_bytes'] / 1024:9.0f} {row['size_ratio']:7.2f} "
            f"{row['latency_ms_b1']:8.3f} {row['speedup_b1']:6.2f} {row['latency_ms_b64']:8.3f} "
            f"{row['speedup_b64']:6.2f} {row['accuracy'] * 100:6.2f} {row['agreement_with_fp32'] * 100:8.2f}"
            f" {row['batch_independent'] * 100:8.1f}"
        )
    meta = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "threads": 1,
        "model": "MLP 40-512-256-3",
        "rows": rows,
    }
    _common.write_results(RESULTS, meta)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
