"""The DriftMonitor's check Job: render it (batch/v1 Job + ConfigMap) and read its outcome back.

The drift check and the champion/challenger evaluation need Evidently, scikit-learn and ONNX
Runtime, which the operator image does not carry; so they run as a child Job of the monitor in the
drift image (`python -m flywheel.drift`, flywheel/drift/job.py), as a TrainingRun's training runs
in a PyTorchJob. The workload reads its config once from contract.CONFIG_PATH (the ConfigMap) and
writes its outcome as JSON to its termination message (contract.TERMINATION_LOG), which the
monitor's next reconcile reads from the Job's pod.

Names are deterministic: `<monitor>-check-<window>` (window = the check interval's index since
the epoch, so one check Job per interval) and `<monitor>-eval-<n>` for an evaluation of challenger
n outside a check. The config holds no clock reading: re-planning in the same window renders the
same Job, so a reconcile that lost its status write finds "already there" instead of a second Job.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from flywheel.api import common, contract
from flywheel.controllers import plans, podspec, pytorchjob, settings

API_VERSION = "batch/v1"
KIND = "Job"
COMPONENT = "drift-check"
CONTAINER = "drift"
MODULE = "flywheel.drift"
JOB_NAME_LABEL = "job-name"
"""The label the Job controller puts on its pods (read back through a list ref)."""
DEADLINE_S = 1800
"""A check or evaluation that takes longer is stuck (a hung read of the store): the Job fails."""
MAX_COLUMNS = 20
"""Drifted columns kept in the termination message (4096 bytes at most); the report has all."""


def check_name(monitor: str, interval_s: float, now: datetime.datetime) -> str:
    window = int(now.timestamp() // max(interval_s, 1.0))
    return plans.child_name(monitor, f"check-{window}")


def is_check(name: str) -> bool:
    """Whether Job `name` is a check (else an evaluation only)."""
    return "-check-" in name


def eval_name(monitor: str, challenger: str) -> str:
    return plans.child_name(monitor, f"eval-{challenger.removeprefix(f'{monitor}-')}")


def evaluated_by(job: str, monitor: str) -> str | None:
    """The challenger an evaluation Job (eval_name) was for, or None for a check Job."""
    prefix = plans.child_name(monitor, "eval-")
    return f"{monitor}-{job.removeprefix(prefix)}" if job.startswith(prefix) else None


def render(
    owner: plans.Manifest,
    name: str,
    config: dict[str, Any],
    artifacts: common.Artifacts,
    config_: settings.Settings,
) -> list[plans.Manifest]:
    """[ConfigMap, Job] named `name`: the same inputs always give the same manifests."""
    meta = owner["metadata"]
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": plans.child_metadata(owner, name, COMPONENT),
        "data": {contract.CONFIG_FILE: pytorchjob.config_text(config)},
    }
    volumes, mounts = podspec.base_volumes(name, "64Mi")
    art_volumes, art_mounts, secrets = podspec.artifact_storage(artifacts)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config_.drift_image,
        "imagePullPolicy": config_.image_pull_policy,
        "command": ["python", "-m", MODULE],
        "env": [
            {"name": contract.ENV_CONFIG, "value": contract.CONFIG_PATH},
            {"name": contract.ENV_RUN_NAME, "value": meta["name"]},
            {"name": contract.ENV_NAMESPACE, "value": meta.get("namespace") or "default"},
            {"name": contract.ENV_TERMINATION_LOG, "value": contract.TERMINATION_LOG},
            {"name": "HOME", "value": contract.WORK_DIR},
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "securityContext": podspec.container_security_context(rdma=False),
        "terminationMessagePath": contract.TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts + art_mounts,
    }
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    pod_spec = {
        "restartPolicy": "Never",
        **podspec.job_pod_spec(container, volumes + art_volumes, config_.service_account),
    }
    job = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": plans.child_metadata(owner, name, COMPONENT),
        "spec": {
            "backoffLimit": 0,  # a failed check is retried at the next interval, not at once
            "activeDeadlineSeconds": DEADLINE_S,
            "template": {
                "metadata": {
                    "labels": plans.labels(owner["kind"], meta["name"], COMPONENT),
                    "annotations": {contract.ANNOTATION_CONFIG_HASH: plans.config_hash(config)},
                },
                "spec": pod_spec,
            },
        },
    }
    return [config_map, job]


def pods_ref(job: str, namespace: str) -> plans.Ref:
    return plans.list_ref("v1", "Pod", job, namespace, f"{JOB_NAME_LABEL}={job}")


def of_job(pod: plans.Manifest, job: str) -> bool:
    """Whether `pod` is one of Job `job`'s (a list that ignored the selector must not mislead)."""
    return ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == job


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A finished check Job: its result (parsed from the termination message), or why none."""

    result: dict[str, Any] | None
    error: str | None = None


def finished(job: plans.Manifest | None, pods: list[plans.Manifest]) -> Outcome | None:
    """None while the Job runs; else its outcome (Complete or Failed, per status.conditions)."""
    if job is None:
        return None
    conds = (job.get("status") or {}).get("conditions") or []
    done = {c.get("type"): c for c in conds if c.get("status") == "True"}
    if "Complete" not in done and "Failed" not in done:
        return None
    raw = next((m for m in (_message(p) for p in reversed(pods)) if m), None)
    result = _parse(raw)
    if result is not None:
        return Outcome(result)
    failed = done.get("Failed") or {}
    why = failed.get("message") or failed.get("reason") or "it left no result in its termination message"
    return Outcome(None, f"check Job {job['metadata']['name']} failed: {why}")


def _message(pod: plans.Manifest) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                return str(message)
    return None


def _parse(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
