"""The condition vocabulary: types, every reason and the phases, shared by the controllers, the
operators, the local backend, the workloads and tests. A reason is defined here and only here."""

from __future__ import annotations

from typing import NamedTuple


class Condition(NamedTuple):
    """One condition as a controller decides it. The wire form, what status.conditions[] holds
    (metav1.Condition: plus lastTransitionTime and observedGeneration), is api.common.Condition;
    plans.set_condition is the one conversion from this to that."""

    type: str
    status: str
    """"True", "False" or "Unknown"."""
    reason: str
    message: str = ""


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
R_NO_DECISION = "NoDecision"  # DriftMonitor Promoted: no challenger decided yet
R_RECONCILE_ERROR = "ReconcileError"  # the operator's reconcile raised (operators/reconcile.py)
R_EPHEMERAL = "EphemeralArtifacts"  # spec.artifacts would be lost with the pod
# Runs (TrainingRun, SelfPlayRun) and their job
R_CREATING = "CreatingJob"
R_RECREATING = "RecreatingJob"
R_SPEC_CHANGED = "SpecChangedAfterStart"
R_SPEC_MATCHES = "SpecMatchesJob"
R_NAME_CONFLICT = "JobNameConflict"
# Deployment
R_WAITING_MODEL = "WaitingForModel"
R_MODEL_FAILED = "ModelUnavailable"
R_ROLLING_OUT = "RollingOut"
R_AVAILABLE = "Available"
R_NO_CHALLENGER = "NotConfigured"
R_CHAMPION_CHANGED = "ChampionChanged"
R_ROLLOUT_FAILED = "RolloutFailed"  # the pods of the desired template never became ready
R_UNAVAILABLE = "ServingUnavailable"  # the ready pods went away after the rollout finished
# DriftMonitor: the check and the monitor
R_MONITORING = "Monitoring"
R_CHECKING = "Checking"
R_NO_CHECK = "NotCheckedYet"
R_NOT_ENOUGH_ROWS = "NotEnoughRows"
R_CHECK_FAILED = "CheckFailed"
R_DRIFTED = "Drifted"
R_NO_DRIFT = "NoDrift"
R_PERFORMANCE_DROPPED = "PerformanceDropped"
R_NO_DEPLOYMENT = "DeploymentNotFound"
R_CLAIMED = "DeploymentClaimed"  # another monitor already watches the Deployment
R_LOOP_EXITED = "MonitorNotRunning"  # local backend: the monitor's loop ended
# DriftMonitor: retraining and promotion
R_RETRAIN_STARTED = "RetrainStarted"
R_IDLE = "Idle"
R_DISABLED = "Disabled"
R_PROMOTED = "Promoted"
R_REJECTED = "Rejected"
R_AWAITING_APPROVAL = "AwaitingApproval"
R_APPROVAL_IGNORED = "ApprovalIgnored"
R_CHALLENGER_FAILED = "ChallengerFailed"
R_ROLLED_BACK = "RolledBack"

# Phases
PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
