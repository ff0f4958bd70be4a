"""The TrainingRun workload: a torchrun DDP trainer, checkpoint/resume, export.

Entry point: ``python -m flywheel.training`` (1 process) or ``torchrun -m flywheel.training`` (N).
Importing this package is cheap (no torch): ``inference`` and ``preprocess`` are what the serving and
drift workloads load. A user's training function (spec.trainer.entryPoint) uses
``flywheel.training.TrainContext`` and returns ``flywheel.training.Trained`` (loaded on first use,
so the serving image never imports torch for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.training.context import TrainContext, Trained

__all__ = ["TrainContext", "Trained"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from flywheel.training import context

        return getattr(context, name)
    raise AttributeError(f"module 'flywheel.training' has no attribute {name!r}")
