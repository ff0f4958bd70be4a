"""The condition vocabulary: types and reasons shared by operators, the local backend and tests."""

from __future__ import annotations

# Types. Ready is on every kind; kstatus reads Ready plus observedGeneration.
READY = "Ready"
RECONCILING = "Reconciling"  # kstatus "abnormal-true": work in progress
STALLED = "Stalled"  # kstatus "abnormal-true": cannot progress without a person
SPEC_DIVERGED = "SpecDiverged"  # a run's spec differs from the one its job was started with
# TrainingRun
DATA_RESOLVED = "DataResolved"
DATA_VALIDATED = "DataValidated"
TRAINED = "Trained"
EXPORTED = "Exported"
# Deployment
CHAMPION_READY = "ChampionReady"
CHALLENGER_READY = "ChallengerReady"
# DriftMonitor
DRIFT_DETECTED = "DriftDetected"
RETRAINING = "Retraining"
PROMOTED = "Promoted"

# Reasons
R_RECONCILING = "Reconciling"
R_INVALID_SPEC = "InvalidSpec"
R_SUCCEEDED = "Succeeded"
R_FAILED = "Failed"
R_JOB_CREATED = "JobCreated"
R_JOB_RUNNING = "JobRunning"
R_JOB_RESTARTING = "JobRestarting"
R_JOB_SUSPENDED = "JobSuspended"
R_VALIDATION_FAILED = "ValidationFailed"
R_WAITING = "Waiting"

# Phases
PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
