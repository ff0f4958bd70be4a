"""`python -m flywheel.training` / `torchrun --nproc-per-node N -m flywheel.training`.

Reads the config at $FLYWHEEL_CONFIG once, trains, exports, and reports (result.json + termination
log). Exit codes: 0 succeeded, 1 the data gate failed, training crashed or the user's training
function raised (its type and message are the run's message, its traceback goes to the log), 2 the
config is invalid or spec.trainer.entryPoint cannot be used (it says which and how to fix it).
"""

from __future__ import annotations

import sys

from flywheel import errors


def main() -> int:
    from flywheel import artifacts
    from flywheel import distributed as dist
    from flywheel.training import config, loader, result, trainer

    try:
        cfg = config.load()
    except errors.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    world = dist.init()
    store = artifacts.Store(cfg.artifacts_uri)
    try:
        outcome = trainer.run(cfg, world)
        code = 0
    except trainer.GateFailed as exc:
        outcome = result.Result(
            phase="Failed", message=str(exc), data=exc.source.lineage, validation=exc.source.validation
        )
        code = 1
    except errors.UserError as exc:
        outcome = result.Result(phase="Failed", message=str(exc))
        code = 2
    except loader.UserCodeFailed as exc:
        import traceback

        traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)  # the log: where it raised
        outcome = result.Result(phase="Failed", message=str(exc))
        code = 1
    except Exception as exc:
        if world.is_main:
            result.write(result.Result(phase="Failed", message=f"{type(exc).__name__}: {exc}"[:1000]), store)
        raise
    finally:
        dist.shutdown(world)
    if world.is_main:
        result.write(outcome, store)
        trainer.emit(
            world,
            "done" if code == 0 else "failed",
            phase=outcome.phase,
            message=outcome.message,
            metrics=outcome.metrics,
        )
    if code == 2 or (code == 1 and outcome.message.startswith(loader.FIELD)):
        print(f"error: {outcome.message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
