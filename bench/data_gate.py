"""Gate cost: GX validation of N rows x 20 numeric columns (schema from model.features).

python -m bench.data_gate [ROWS...]   (default 100000 1000000); writes bench/results/data_gate.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.api import trainingrun
from flywheel.data import gate


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {f"x{i}": rng.normal(size=rows) for i in range(19)}
    data["y"] = rng.integers(0, 2, size=rows)
    return pd.DataFrame(data)


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [100_000, 1_000_000]
    start = time.perf_counter()
    gate.warm_up()
    warm = time.perf_counter() - start
    features = [trainingrun.Feature(name=f"x{i}", min=-10, max=10) for i in range(19)]
    spec = trainingrun.TrainingRunSpec(
        data=trainingrun.Data(repo="/unused", path="d.csv"),
        model=trainingrun.ModelSpec(task="classification", target="y", features=features),
    )
    rows_out = [
        {"rows": 0, "seconds": round(warm, 3), "what": "import GX + build context (once per process)"}
    ]
    print(f"{'rows':>10} {'seconds':>8} {'rows/s':>12} expectations")
    print(f"{'(warm-up)':>10} {warm:8.2f}")
    for rows in sizes:
        frame = _frame(rows)
        start = time.perf_counter()
        result = gate.validate(frame, spec)
        took = time.perf_counter() - start
        assert result.success, result.summary
        print(f"{rows:>10} {took:8.2f} {rows / took:12.0f} {result.evaluated}")
        rows_out.append({"rows": rows, "seconds": round(took, 3), "rows_per_s": round(rows / took),
                         "expectations": result.evaluated})  # fmt: skip
    out = Path("bench/results/data_gate.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows_out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
