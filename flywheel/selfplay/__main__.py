"""Entry point: `python -m flywheel.selfplay` or `torchrun -m flywheel.selfplay`.

Reads FLYWHEEL_CONFIG once. A user mistake prints one line and exits 2; a crash writes a Failed
termination message (so the operator can say why) before the traceback and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from flywheel import errors
from flywheel.api import contract
from flywheel.selfplay import config


def _pool(cfg: config.Config) -> Any:
    from flywheel.selfplay import executor

    ex = cfg.spec.executor
    try:
        return executor.Pool(workers=ex.workers, timeout_s=ex.timeout_seconds, memory_mb=ex.memory_mb)
    except executor.SandboxUnavailable as exc:  # the node's kernel or runtime, not a crash: say so
        raise errors.UserError(str(exc)) from None


def _report_failure(message: str) -> None:
    log = os.environ.get(contract.ENV_TERMINATION_LOG)
    if log and os.environ.get("RANK", "0") == "0":
        Path(log).write_text(json.dumps({"phase": "Failed", "message": message[:1000]}))


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        cfg = config.load()  # before importing torch: a config mistake is reported in a blink
        from flywheel.selfplay import trainer

        trainer.run(cfg, _pool)
    except errors.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _report_failure(str(exc))
        return 2
    except Exception as exc:
        _report_failure(f"{type(exc).__name__}: {exc}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
