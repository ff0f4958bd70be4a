"""The TrainingRun workload: a torchrun DDP trainer for tabular MLPs, checkpoint/resume, export.

Entry point: ``python -m flywheel.training`` (1 process) or ``torchrun -m flywheel.training`` (N).
Importing this package is cheap (no torch): ``inference`` and ``preprocess`` are what the serving and
drift workloads load.
"""
