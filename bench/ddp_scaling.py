"""DDP scaling of the real trainer on CPU: 2 workers x 1 thread vs 1 worker x 2 threads (the same
2-thread budget), plus 1 worker x 1 thread as the per-worker baseline, all in one run.

Workload: the TrainingRun trainer itself (torchrun -m flywheel.training, gloo), MLP hidden [512, 256],
40 numeric features, 3 classes, 24,000 rows (sklearn make_classification), batch 128 per worker,
2 epochs, no mid-epoch checkpoints. Timings come from rank 0's own counters (model card
`training`): step time (data + forward + backward + all-reduce + optimiser) and the data-pipeline part
(batch indexing). samples/s = samples processed by all workers / rank 0's step time.
Goal: efficiency >= 80%, data share < 5%.

    python -m bench.ddp_scaling  ->  table on stdout, bench/results/ddp_scaling.json
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from sklearn import datasets

from bench import _common

RESULTS = Path(__file__).parent / "results" / "ddp_scaling.json"
ROWS, FEATURES, BATCH, EPOCHS = 24_000, 40, 128, 2


def _config(tmp: Path, data: dict, name: str) -> Path:
    spec = {
        "data": data,
        "model": {"task": "classification", "target": "y", "architecture": {"hiddenLayers": [512, 256]}},
        "training": {"epochs": EPOCHS, "batchSize": BATCH, "checkpointEvery": 10_000_000},
        "export": {"quantization": "none"},
    }
    cfg = {"name": name, "spec": spec, "artifactsUri": (tmp / name).as_uri()}
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _run(tmp: Path, data: dict, workers: int, threads: int) -> dict:
    name = f"w{workers}t{threads}"
    env = {**os.environ, "FLYWHEEL_CONFIG": str(_config(tmp, data, name)), "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(workers),
        "-m",
        "flywheel.training",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
    card = json.loads((tmp / name / "model" / "model_card.json").read_text())
    train = card["training"]
    samples = train["samples"]
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "steps": train["steps"],
        "samples": samples,
        "step_seconds": train["stepSeconds"],
        "data_seconds": train["dataSeconds"],
        "samples_per_s": samples / train["stepSeconds"],
        "data_share": train["dataSeconds"] / train["stepSeconds"],
        "holdout_accuracy": card["metrics"]["accuracy"],
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        x, y = datasets.make_classification(
            n_samples=ROWS, n_features=FEATURES, n_informative=24, n_classes=3, random_state=0
        )
        import pandas as pd

        from flywheel.data import examples

        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
        frame["y"] = y
        # The trainer resolves its data with DVC, as in a pod (cached after the first run).
        data = examples.file_repo(tmp / "dvc", frame).to_dict()
        rows = [_run(tmp, data, 1, 1), _run(tmp, data, 1, 2), _run(tmp, data, 2, 1)]
    one, threaded, ddp = rows
    summary = {
        "efficiency_vs_1w2t": ddp["samples_per_s"] / threaded["samples_per_s"],
        "efficiency_vs_2x_1w1t": ddp["samples_per_s"] / (2 * one["samples_per_s"]),
        "data_share_2w": ddp["data_share"],
    }
    print(f"{'config':14} {'steps':>6} {'samples/s':>10} {'step s':>8} {'data %':>7} {'acc %':>6}")
    for r in rows:
        print(
            f"{r['workers']}w x {r['threads_per_worker']}t{'':7} {r['steps']:6d} {r['samples_per_s']:10.0f} "
            f"{r['step_seconds']:8.2f} {r['data_share'] * 100:7.2f} {r['holdout_accuracy'] * 100:6.2f}"
        )
    print(f"efficiency 2w x 1t vs 1w x 2t (same thread budget): {summary['efficiency_vs_1w2t']:.1%}")
    print(f"efficiency 2w x 1t vs 2 x (1w x 1t) (classic):      {summary['efficiency_vs_2x_1w1t']:.1%}")
    print(f"data pipeline share of step time (2 workers):       {summary['data_share_2w']:.2%}")
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "rows": ROWS,
        "features": FEATURES,
        "batch_per_worker": BATCH,
        "epochs": EPOCHS,
        "model": "MLP 40-512-256-3",
        "runs": rows,
        **summary,
    }
    _common.write_results(RESULTS, meta)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
