"""What every benchmark records about the machine, and how it writes its results JSON.

Underscored: `python -m bench all` runs only the modules without a leading underscore."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The host every result file names: core count, CPU model, Python version."""
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()}


def write_results(path: Path, data: Any, **dumps: Any) -> Path:
    """Write `data` as JSON (indent 2) to `path` atomically, so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, **dumps))
    os.replace(tmp, path)
    return path
