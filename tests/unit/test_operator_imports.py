"""The operator image carries no workload library: importing every operator module, in a fresh
interpreter, loads none of torch, Evidently, ONNX Runtime or scikit-learn (the drift check runs in
its own Job, in the drift image). A real subprocess, so modules other tests imported do not count."""

from __future__ import annotations

import json
import subprocess
import sys

WORKLOAD_LIBRARIES = ("torch", "evidently", "onnxruntime", "sklearn")


def test_operator_modules_import_no_workload_library() -> None:
    code = (
        "import json, sys\n"
        "import operators.driftmonitor, operators.trainingrun, operators.deployment, operators.main\n"
        f"print(json.dumps([m for m in {WORKLOAD_LIBRARIES!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == []
    # the check itself can fail: the drift workload does pull them in
    probe = "import sys, flywheel.drift.evaluate; print('sklearn' in sys.modules)"
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert answer.stdout.strip() == "True"
