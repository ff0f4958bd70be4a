"""The local stand-in for the Training Operator and the kubelet: stored children become processes.

A controller's plan puts a PyTorchJob (and its ConfigMap) in the store, as it would create them on
a cluster. Here `sync_job` turns that job into one supervised `torchrun --standalone` process group
and writes the job's status the way the Training Operator does (conditions Created, Running,
Suspended, Succeeded/Failed in the operator's order; startTime, completionTime), and, when the
process ends, a Master Pod object whose `pytorch` container is terminated with the termination log
as its message. So `controllers.pytorchjob.job_state` and `termination_message` read the local
child exactly as they read the cluster's, and the controllers decide everything else.

Running one pod template here (`run_template`, built from `local_command`, `start_pod` and
`pod_end`; `pod_manifest` for the terminated Pod) is kind-agnostic: a batch/v1 Job's template runs
the same way, with its own status writer. The contract paths of the pod are remapped to local
files:

- configMap volumes: their data is written under <home>/runs/<owner kind>/<owner>/volumes/<volume>,
  and env values below the mount path point there (FLYWHEEL_CONFIG -> .../volumes/config/config.json);
  emptyDir volumes (but /tmp) are folders there too (a server's BENTOML_HOME);
- contract.TERMINATION_LOG -> <run dir>/termination-log (read back into the Pod's status);
- the in-cluster default artifact URI -> file://<home>/artifacts (also inside ConfigMap data);
- HOME is left as the user's (the pod's points at an emptyDir);
- added: FLYWHEEL_DATA_CACHE=<home>/cache/data, FLYWHEEL_RESULT_PATH=<run dir>/result.json and
  OMP_NUM_THREADS (the cores split between the workers).

A PyTorchJob's processes are keyed by the child's owner (labels flywheel.dev/owner-kind and
owner-name), so the log stays <home>/logs/<owner kind>/<owner>.log, where `flywheel logs` finds it.
A batch/v1 Job's (`sync_batch_job`, the DriftMonitor's check) are keyed by the Job itself: the
monitor's own loop holds the owner's key, and one monitor has a Job per window (logs:
<home>/logs/job/<job>.log, `flywheel logs job/<job>`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel import artifacts
from flywheel.api import common, conditions, contract
from flywheel.api.common import Manifest
from flywheel.controllers import driftcheck, plans, pytorchjob
from flywheel.local import supervisor

if TYPE_CHECKING:
    from flywheel.local.runners import Context

TERMINATION_FILE = "termination-log"
JOB_UID_FILE = "job-uid"
"""In the run dir: the uid of the job the recorded process belongs to (a recreated job of the same
owner must not adopt the previous job's process or its last words)."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """Who a local pod's processes belong to: the supervisor's key, the log's and run dir's name."""

    kind: str
    name: str


@dataclasses.dataclass(frozen=True)
class PodEnd:
    """How a local pod's container ended."""

    exit_code: int | None
    """None when the process was not started by this CLI (its code is unknown)."""
    message: str | None
    """The termination log, as the kubelet would copy it into the container status."""

    @property
    def succeeded(self) -> bool:
        if self.exit_code is not None:
            return self.exit_code == 0
        try:
            said = json.loads(self.message or "")
        except ValueError:
            return False
        return isinstance(said, dict) and said.get("phase") != conditions.FAILED


def owner_of(child: Manifest) -> Workload:
    """The owner named by a child's labels (the child itself when it has none)."""
    meta = child["metadata"]
    labels = meta.get("labels") or {}
    kind = labels.get(contract.LABEL_OWNER_KIND) or child["kind"]
    return Workload(kind, labels.get(contract.LABEL_OWNER_NAME) or meta["name"])


def local_artifacts_uri(ctx: Context, uri: str) -> str:
    """The in-cluster default artifact root (a path no one mounts here) is <home>/artifacts."""
    default = common.Artifacts().uri
    return f"file://{ctx.home / 'artifacts'}{uri[len(default) :]}" if uri.startswith(default) else uri


def local_command(
    ctx: Context, template: Manifest, namespace: str, workload: Workload, nproc: int = 1
) -> tuple[list[str], dict[str, str]] | str:
    """(argv, env) that run the template's first container on this machine, or a sentence saying
    what it waits for (a ConfigMap it mounts is missing, as a pod would wait in ContainerCreating).
    Writes the mounted ConfigMaps' data into the run dir."""
    spec = template.get("spec") or {}
    container = (spec.get("containers") or [{}])[0]
    run_dir = ctx.supervisor.run_dir(workload.kind, workload.name)
    mounts: dict[str, Path] = {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name")) or {}
        source = volume.get("configMap")
        if "emptyDir" in volume and mount["mountPath"] != "/tmp":
            mounts[mount["mountPath"]] = run_dir / "volumes" / mount["name"]  # a pod's scratch space
            mounts[mount["mountPath"]].mkdir(parents=True, exist_ok=True)
            continue
        if not source:
            continue
        config_map = ctx.store.get("ConfigMap", source["name"], namespace)
        if config_map is None:
            return f"waiting for ConfigMap {source['name']}"
        local = run_dir / "volumes" / mount["name"]
        for key, text in (config_map.get("data") or {}).items():
            artifacts.atomic_write_text(local / key, _remap_artifacts(ctx, str(text)))
        mounts[mount["mountPath"]] = local
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item and item["name"] != "HOME":
            env[item["name"]] = _remap(ctx, str(item["value"]), mounts, run_dir)
    threads = max(1, ctx.cores() // max(1, nproc))
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            "FLYWHEEL_DATA_CACHE": str(ctx.home / "cache" / "data"),
            contract.ENV_RESULT_PATH: str(run_dir / contract.RESULT_FILE),
        }
    )
    return _argv([*container.get("command", []), *container.get("args", [])], nproc), env


def _argv(command: list[str], nproc: int) -> list[str]:
    """The container's command with its program made local: torchrun as this interpreter's
    `torch.distributed.run --standalone` (never a torchrun found on PATH), python as this one."""
    head, rest = (command[0], command[1:]) if command else ("python", [])
    if head == "torchrun":
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        return [*run, *rest]
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    if head == "flywheel":
        return [sys.executable, "-m", "flywheel", *rest]
    if head == "bentoml":  # a pod serves on its pod IP; here on loopback only
        return [sys.executable, "-m", "bentoml", *["127.0.0.1" if a == "0.0.0.0" else a for a in rest]]  # noqa: S104
    return command


def _remap_artifacts(ctx: Context, text: str) -> str:
    default = common.Artifacts().uri
    return text.replace(default, f"file://{ctx.home / 'artifacts'}")


def _remap(ctx: Context, value: str, mounts: dict[str, Path], run_dir: Path) -> str:
    if value == contract.TERMINATION_LOG:
        return str(run_dir / TERMINATION_FILE)
    for path, local in mounts.items():
        if value == path or value.startswith(path.rstrip("/") + "/"):
            return str(local) + value[len(path.rstrip("/")) :]
    return _remap_artifacts(ctx, value)


def start_pod(
    ctx: Context, workload: Workload, argv: list[str], env: dict[str, str], uid: str
) -> supervisor.ProcessInfo:
    """Start one local pod's processes (stopping an earlier attempt); what the last attempt left
    (termination log, result.json) is removed first, so what is found later is this attempt's."""
    run_dir = ctx.supervisor.run_dir(workload.kind, workload.name)
    for stale in (run_dir / TERMINATION_FILE, run_dir / contract.RESULT_FILE):
        stale.unlink(missing_ok=True)
    info = ctx.supervisor.start(
        workload.kind, workload.name, argv, env, cwd=ctx.home, tie_to_parent=not ctx.detach
    )
    artifacts.atomic_write_text(run_dir / JOB_UID_FILE, uid)
    return info


def pod_end(ctx: Context, workload: Workload, info: supervisor.ProcessInfo) -> PodEnd | None:
    """How an ended pod's process ended; None when it ended without a word and not under this
    CLI (killed with its CLI, or Ctrl-C): an interrupted attempt, not a verdict."""
    path = ctx.supervisor.run_dir(workload.kind, workload.name) / TERMINATION_FILE
    try:
        message: str | None = path.read_text(errors="replace")
    except FileNotFoundError:
        message = None
    code = ctx.supervisor.exit_code(info)
    if message is None and code is None:
        return None
    return PodEnd(code, message)


def pod_manifest(
    name: str, namespace: str, owner: Manifest, container: str, end: PodEnd, now: datetime.datetime
) -> tuple[Manifest, dict[str, Any]]:
    """(Pod, its status) as the kubelet leaves a terminated pod: the container's state carries
    the exit code and the termination message."""
    meta = owner["metadata"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [plans.owner_reference(owner)],
        },
        "spec": {"containers": [{"name": container}]},
    }
    terminated: dict[str, Any] = {
        "exitCode": end.exit_code if end.exit_code is not None else (0 if end.succeeded else 1),
        "reason": "Completed" if end.succeeded else "Error",
        "finishedAt": plans.now_rfc3339(now),
    }
    if end.message:
        terminated["message"] = end.message
    status = {
        "phase": "Succeeded" if end.succeeded else "Failed",
        "containerStatuses": [{"name": container, "state": {"terminated": terminated}}],
    }
    return pod, status


# --- PyTorchJob: the Training Operator's part -----------------------------------------------------


def run_template(
    ctx: Context,
    child: Manifest,
    template: Manifest,
    nproc: int = 1,
    start: bool = True,
    workload: Workload | None = None,
    extra_env: dict[str, str] | None = None,
) -> str | PodEnd:
    """Run a child's pod template on this machine: the one call a realiser needs per look.

    Returns "running" (its process runs), a PodEnd (it ended since: record the verdict), "gone"
    (its process ended without a word and not under this CLI: interrupted), "started" (started
    now), "waiting: ..." (a ConfigMap it mounts is missing) or "idle" (start=False, not running).
    The process belongs to `workload` (default: the child's owner, owner_of) and to this child's
    uid only; `extra_env` is added to the container's.
    """
    meta = child["metadata"]
    workload = workload or owner_of(child)
    info = ctx.supervisor.find(workload.kind, workload.name)
    run_dir = ctx.supervisor.run_dir(workload.kind, workload.name)
    if info is not None and _read(run_dir / JOB_UID_FILE) == meta.get("uid"):
        if ctx.supervisor.alive(info):
            return "running"
        end = pod_end(ctx, workload, info)
        if end is not None:
            return end
        if not start:
            return "gone"
    if not start:
        return "idle"
    command = local_command(ctx, template, meta.get("namespace") or "default", workload, nproc)
    if isinstance(command, str):
        return f"waiting: {command}"
    argv, env = command
    start_pod(ctx, workload, argv, {**env, **(extra_env or {})}, str(meta.get("uid")))
    return "started"


def sync_job(ctx: Context, job: Manifest, start: bool = True) -> str:
    """Move one stored PyTorchJob on: start its processes, notice they ended, write its status.
    Returns what it did: "running", "started", "finished", "suspended", "waiting..." or
    "terminal". With start=False (`flywheel get`) nothing is started; an attempt whose process is
    gone without a word is marked Suspended (the next `flywheel run` resumes it)."""
    state = pytorchjob.job_state(job)
    if state.terminal:
        return "terminal"
    spec = job.get("spec") or {}
    replica_specs = spec.get("pytorchReplicaSpecs") or {}
    master = (replica_specs.get("Master") or {}).get("template") or {}
    replicas = sum(int(r.get("replicas") or 1) for r in replica_specs.values())
    per_node = int(spec.get("nprocPerNode") or 1) if str(spec.get("nprocPerNode", "1")).isdigit() else 1
    nproc = max(1, min(per_node * replicas, ctx.cores()))  # more workers than cores is contention
    step = run_template(ctx, job, master, nproc, start)
    if isinstance(step, PodEnd):
        _finish(ctx, job, step, datetime.datetime.now(datetime.UTC))
        return "finished"
    if step == "started":
        mark_running(ctx, job)
    elif step in ("gone", "idle") and state.started and state.phase != conditions.SUSPENDED:
        suspend(ctx, job, "the trainer process is gone")
        return "suspended"
    return "waiting" if step in ("gone", "idle") else step


def mark_running(ctx: Context, job: Manifest) -> None:
    """The job's pods run: Created (once), Running, not Suspended; startTime on the first start."""
    now = datetime.datetime.now(datetime.UTC)
    _set_job_conditions(ctx, job, now, ("Created", "True"), ("Running", "True"), ("Suspended", "False"))


def suspend(ctx: Context, job: Manifest, message: str) -> None:
    """The job's processes were stopped before the end (Ctrl-C, a killed CLI): Suspended."""
    now = datetime.datetime.now(datetime.UTC)
    _set_job_conditions(ctx, job, now, ("Running", "False"), ("Suspended", "True", message))


def _finish(ctx: Context, job: Manifest, end: PodEnd, now: datetime.datetime) -> None:
    """The Master pod ended: the Pod first (its message is the result), then the job's verdict,
    in the order the Training Operator makes them visible."""
    meta = job["metadata"]
    namespace = meta.get("namespace") or "default"
    name = pytorchjob.master_pod_name(meta["name"])
    pod, status = pod_manifest(name, namespace, job, pytorchjob.CONTAINER, end, now)
    ctx.store.put(pod)
    ctx.store.patch_status("Pod", name, status, namespace)
    verdict = "Succeeded" if end.succeeded else "Failed"
    said = f"PyTorchJob {meta['name']} is {'successfully completed' if end.succeeded else 'failed'}."
    _set_job_conditions(ctx, job, now, ("Running", "False"), (verdict, "True", said))


def _set_job_conditions(ctx: Context, job: Manifest, now: datetime.datetime, *rows: tuple[str, ...]) -> None:
    """Set job conditions in place (the Training Operator keeps one entry per type, in the order
    they first appeared), plus startTime on the first Running and completionTime on a verdict."""
    meta = job["metadata"]
    current = ctx.store.get(job["kind"], meta["name"], meta.get("namespace") or "default") or job
    status = dict(current.get("status") or {})
    conds = [dict(c) for c in status.get("conditions") or []]
    stamp = plans.now_rfc3339(now)
    for row in rows:
        type_, value = row[0], row[1]
        message = row[2] if len(row) > 2 else f"PyTorchJob {meta['name']} is {type_.lower()}."
        found = next((c for c in conds if c.get("type") == type_), None)
        if found is None and value == "False":
            continue  # the operator never writes a False it never had True
        if found is None:
            found = {"type": type_}
            conds.append(found)
        if found.get("status") != value:
            found["lastTransitionTime"] = stamp
        found.update(status=value, reason=f"PyTorchJob{type_}", message=message, lastUpdateTime=stamp)
    patch: dict[str, Any] = {"conditions": conds}
    if any(r[0] == "Running" and r[1] == "True" for r in rows) and not status.get("startTime"):
        patch["startTime"] = stamp
    if any(r[0] in ("Succeeded", "Failed") and r[1] == "True" for r in rows):
        patch["completionTime"] = stamp
    ctx.store.patch_status(job["kind"], meta["name"], patch, meta.get("namespace") or "default")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


# --- batch/v1 Job: the Job controller's part ------------------------------------------------------


def job_workload(job: Manifest) -> Workload:
    """A batch Job's process is keyed by the Job itself, not its owner: a DriftMonitor runs a loop
    of its own under its name, and several Jobs of one owner may exist. Logs:
    <home>/logs/job/<job>.log."""
    return Workload(job["kind"], job["metadata"]["name"])


def sync_batch_job(
    ctx: Context, job: Manifest, start: bool = True, extra_env: dict[str, str] | None = None
) -> str:
    """Move one stored batch/v1 Job on: start its pod's process, notice it ended, and then write
    its Pod (terminated, with the termination message, labelled job-name) and its status
    (Complete or Failed) as the Job controller and the kubelet do. Returns "running", "started",
    "finished", "terminal", "waiting: ...", "gone" or "idle" (see run_template)."""
    conds = (job.get("status") or {}).get("conditions") or []
    if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds):
        return "terminal"
    template = (job.get("spec") or {}).get("template") or {}
    step = run_template(ctx, job, template, 1, start, job_workload(job), extra_env)
    now = datetime.datetime.now(datetime.UTC)
    if isinstance(step, PodEnd):
        finish_batch_job(ctx, job, step, now)
        return "finished"
    if step == "started":
        meta = job["metadata"]
        ctx.store.patch_status(
            job["kind"], meta["name"], {"active": 1, "startTime": plans.now_rfc3339(now)},
            meta.get("namespace") or "default",
        )  # fmt: skip
    return step


def finish_batch_job(ctx: Context, job: Manifest, end: PodEnd, now: datetime.datetime) -> None:
    """The Job's pod ended: the Pod first (its message is the result), then the Job's verdict."""
    meta = job["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [{}]
    pod, status = pod_manifest(f"{name}-local", namespace, job, str(containers[0].get("name")), end, now)
    pod["metadata"]["labels"][driftcheck.JOB_NAME_LABEL] = name  # as the Job controller labels pods
    ctx.store.put(pod)
    ctx.store.patch_status("Pod", pod["metadata"]["name"], status, namespace)
    stamp = plans.now_rfc3339(now)
    if end.succeeded:
        verdict = {"type": "Complete", "status": "True", "lastTransitionTime": stamp}
        counts = {"succeeded": 1, "completionTime": stamp}
    else:
        log = ctx.supervisor.log_path(*dataclasses.astuple(job_workload(job)))
        why = f"exit code {end.exit_code}; see {log}"
        verdict = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": why,
                   "lastTransitionTime": stamp}  # fmt: skip
        counts = {"failed": 1}
    ctx.store.patch_status(job["kind"], name, {"active": 0, "conditions": [verdict], **counts}, namespace)
