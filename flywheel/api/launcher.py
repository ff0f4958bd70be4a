"""Which Kubeflow job runs a run's pods on Kubernetes, and what a TrainJob cannot express.

PyTorchJob (Kubeflow Training Operator v1) is the default; TrainJob (Kubeflow Trainer v2,
trainer.kubeflow.org/v1alpha1) is the line Kubeflow develops. A TrainJob says less than a
PyTorchJob: restarts, retention and pod-group sizing belong to its runtime (a
ClusterTrainingRuntime), and its per-job pod patches (v2.3 `runtimePatches`) carry no priority
class and no `hostUsers`. A spec that sets one of those with launcher TrainJob is refused, naming
the field, instead of being silently half-applied.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import pydantic

if TYPE_CHECKING:
    from flywheel.api import common


class Launcher(enum.StrEnum):
    PYTORCHJOB = "PyTorchJob"
    TRAINJOB = "TrainJob"


DEFAULT_BACKOFF_LIMIT = 3
"""RunPolicy's default; Flywheel's runtime sets JobSet failurePolicy.maxRestarts to the same."""

_USE = "or use launcher: PyTorchJob"


def trainjob_problems(
    *, scheduling: common.Scheduling, run_policy: common.RunPolicy, user_namespace: bool = False
) -> list[str]:
    """One sentence per field a TrainJob cannot express: `<field>: why; the fix`."""
    out: list[str] = []
    if scheduling.priority_class_name:
        out.append(
            "scheduling.priorityClassName: a TrainJob (Trainer v2.3) cannot set a pod priority class; "
            f"remove it (set one in the runtime's pod template instead) {_USE}"
        )
    gang = scheduling.gang
    if gang.min_available is not None:
        out.append(
            "scheduling.gang.minAvailable: a TrainJob's pod group is sized by its runtime (every node); "
            f"remove it {_USE}"
        )
    if gang.schedule_timeout_seconds is not None:
        out.append(
            "scheduling.gang.scheduleTimeoutSeconds: belongs to the runtime's podGroupPolicy for a TrainJob; "
            f"remove it (set trainJob.runtime.podGroupPolicy in the chart) {_USE}"
        )
    if run_policy.backoff_limit != DEFAULT_BACKOFF_LIMIT:
        out.append(
            "runPolicy.backoffLimit: a TrainJob's restarts are its runtime's JobSet "
            "failurePolicy.maxRestarts "
            f"({DEFAULT_BACKOFF_LIMIT} in Flywheel's runtime); remove it {_USE}"
        )
    if run_policy.ttl_seconds_after_finished is not None:
        out.append(
            "runPolicy.ttlSecondsAfterFinished: a TrainJob's retention is its runtime's JobSet "
            f"ttlSecondsAfterFinished; remove it {_USE}"
        )
    if run_policy.restart_policy != "ExitCode":
        out.append(
            "runPolicy.restartPolicy: a TrainJob's pod restart policy is its runtime's; remove it "
            f"(Flywheel's runtime restarts the whole job on failure) {_USE}"
        )
    if user_namespace:
        out.append(
            "executor.userNamespace: a TrainJob (Trainer v2.3) cannot set hostUsers on its pods; "
            f"set it to false {_USE}"
        )
    return out


_TRAINJOB = "!has(self.launcher) || self.launcher != 'TrainJob' || "
_CEL_ABSENT = (
    # (field path under spec, CEL "it is fine" test with the parents present, the message's head)
    (
        "scheduling.priorityClassName",
        "!has(self.scheduling.priorityClassName)",
        "cannot set a pod priority class",
    ),
    (
        "scheduling.gang.minAvailable",
        "!has(self.scheduling.gang.minAvailable)",
        "its pod group is its runtime's",
    ),
    (
        "scheduling.gang.scheduleTimeoutSeconds",
        "!has(self.scheduling.gang.scheduleTimeoutSeconds)",
        "its pod group is its runtime's",
    ),
    (
        "runPolicy.backoffLimit",
        f"!has(self.runPolicy.backoffLimit) || self.runPolicy.backoffLimit == {DEFAULT_BACKOFF_LIMIT}",
        "its restarts are its runtime's",
    ),
    (
        "runPolicy.ttlSecondsAfterFinished",
        "!has(self.runPolicy.ttlSecondsAfterFinished)",
        "its retention is its runtime's",
    ),
    (
        "runPolicy.restartPolicy",
        "!has(self.runPolicy.restartPolicy) || self.runPolicy.restartPolicy == 'ExitCode'",
        "its restart policy is its runtime's",
    ),
)


def cel_rules(*, executor: bool = False) -> list[pydantic.JsonValue]:
    """The API server's side of trainjob_problems: one x-kubernetes-validations rule per field."""
    rules: list[pydantic.JsonValue] = []
    for path, ok, why in _CEL_ABSENT:
        parents = path.split(".")[:-1]
        present = " && ".join(f"has(self.{'.'.join(parents[: i + 1])})" for i in range(len(parents)))
        rules.append(
            {
                "rule": f"{_TRAINJOB}!({present}) || {ok}",
                "message": f"launcher TrainJob: {why}; remove {path} or use launcher: PyTorchJob",
                "fieldPath": f".{path}",
            }
        )
    if executor:
        rules.append(
            {
                "rule": f"{_TRAINJOB}!has(self.executor) || !has(self.executor.userNamespace) "
                "|| !self.executor.userNamespace",
                "message": "launcher TrainJob: cannot set hostUsers; set executor.userNamespace: false "
                "or use launcher: PyTorchJob",
                "fieldPath": ".executor.userNamespace",
            }
        )
    return rules


def check(
    launcher: Launcher | None,
    *,
    scheduling: common.Scheduling,
    run_policy: common.RunPolicy,
    user_namespace: bool = False,
) -> None:
    """Raise ValueError listing every field the chosen launcher cannot express (none for PyTorchJob)."""
    if launcher != Launcher.TRAINJOB:
        return
    problems = trainjob_problems(scheduling=scheduling, run_policy=run_policy, user_namespace=user_namespace)
    if problems:
        raise ValueError("launcher TrainJob: " + "; ".join(problems))
