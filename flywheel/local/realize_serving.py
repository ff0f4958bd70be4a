"""The local stand-in for the Deployment controller and the kubelet of a serving apps/v1 Deployment.

controllers.deployment puts the serving children in the store (a ConfigMap with the serving config,
the apps/v1 Deployment `<name>-serving`, a Service, an HPA and a PDB when wanted), as it creates
them on a cluster. `sync` turns the stored apps/v1 Deployment into one supervised `bentoml serve`
on 127.0.0.1:<containerPort> (the pod template's container, made local by realize.local_command:
the ConfigMap mounted as a file, the emptyDirs as folders of the run dir) and writes the child's
status the way the Deployment controller does: observedGeneration, replicas / updatedReplicas /
readyReplicas / availableReplicas, conditions Available and Progressing. So the controller's
rollout() and rollout_failure() read the local child exactly as the cluster's, and decide Ready.

One process stands for every wanted replica (a port is bound once): the counts say the wanted
number when it serves. A rollout (the template's config-hash changed: a new champion, traffic,
batching, port...) restarts the process, readiness being BentoML's /readyz as in the pod's probe.
The one local optimisation: when only the champion model changed and the server runs one worker,
the live process is told to load the new model and swap it in (/admin/promote, with a token only
this home can read) instead of being restarted: the same rollout, with no failed request. A model
the server refuses leaves the old one serving and the rollout failed (Progressing False), as new
pods that never get ready do under maxUnavailable 0. A server that is gone (killed, crashed)
makes Available False with the rollout done (Progressing NewReplicaSetAvailable), and its
leftover workers are stopped; the controller then says ServingUnavailable.

The Service, HPA and PDB have no meaning here (the process is the endpoint; there is one) and
are stored but not realised. The process is keyed by the owner (logs/deployment/<name>.log, where
`flywheel logs` finds it); bookkeeping in its run dir:

    served.json   {"uid", "hash", "fixed", "config"}: the child and template the live process runs
    admin-token   the bearer token of /admin/promote, readable by this user only
"""

from __future__ import annotations

import copy
import datetime
import json
import secrets
from typing import Any

from flywheel import artifacts
from flywheel.api import contract
from flywheel.api.common import Manifest
from flywheel.controllers import plans
from flywheel.local import realize
from flywheel.local.runners import Context
from flywheel.local.runners import deployment_process as process
from flywheel.serving import config as serving_config

SERVED_FILE = "served.json"


def sync(ctx: Context, child: Manifest, start: bool = True) -> str:
    """Move one stored serving Deployment on; returns what it did: "unchanged", "swapped",
    "started", "failed" (status says why), "gone" (its process is gone; start=False), "idle"
    (nothing runs; start=False) or "waiting: ..." (its ConfigMap is missing)."""
    workload = realize.owner_of(child)
    info = ctx.supervisor.find(workload.kind, workload.name)
    alive = info is not None and ctx.supervisor.alive(info)
    record = _record(ctx, workload) if alive else None
    if record is not None and record.get("uid") != child["metadata"].get("uid"):
        record = None  # a recreated child: not this one's process
    want = _wanted(ctx, child)
    if isinstance(want, str):
        return want
    if record is not None and record.get("hash") == want["hash"]:
        _serving(ctx, child)
        return "unchanged"
    if not start:  # `flywheel get`: notice, never act
        if info is not None and not alive and _record(ctx, workload) is not None:
            return _gone(ctx, child, workload)
        return "idle"
    if record is not None and _swappable(record, want):
        return _swap(ctx, child, workload, want)
    return _start(ctx, child, workload, want)


def stop(ctx: Context, child: Manifest, workload: realize.Workload) -> None:
    """Stop the process (Ctrl-C, `flywheel stop`): the child has no ready replica any more."""
    ctx.supervisor.stop(workload.kind, workload.name)
    (ctx.supervisor.run_dir(workload.kind, workload.name) / SERVED_FILE).unlink(missing_ok=True)
    _write_status(
        ctx, child, ready=0, updated=0, available=("False", "MinimumReplicasUnavailable", "stopped")
    )


# --- what is wanted, what runs --------------------------------------------------------------------


def _wanted(ctx: Context, child: Manifest) -> dict[str, Any] | str:
    """The template's hash, its fixed part (what a hot swap cannot change) and its serving config."""
    template = (child.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    config = _config(ctx, child, template)
    if config is None:
        return "waiting: the serving ConfigMap"
    return {
        "hash": annotations.get(contract.ANNOTATION_CONFIG_HASH),
        "fixed": _fixed(template),
        "config": config,
    }


def _config(ctx: Context, child: Manifest, template: Manifest) -> dict[str, Any] | None:
    """The serving config of the ConfigMap the template mounts (None: not there yet)."""
    volumes = (template.get("spec") or {}).get("volumes") or []
    name = next((v["configMap"]["name"] for v in volumes if "configMap" in v), None)
    config_map = (
        ctx.store.get("ConfigMap", name, child["metadata"].get("namespace") or "default") if name else None
    )
    text = ((config_map or {}).get("data") or {}).get(contract.CONFIG_FILE)
    return json.loads(text) if text else None


def _fixed(template: Manifest) -> Manifest:
    """The template without what a new champion changes (its config hash and champion env)."""
    out: Manifest = copy.deepcopy(template)
    (out.get("metadata") or {}).get("annotations", {}).pop(contract.ANNOTATION_CONFIG_HASH, None)
    for container in (out.get("spec") or {}).get("containers") or []:
        container["env"] = [
            e for e in container.get("env") or [] if e.get("name") != contract.ENV_CHAMPION_URI
        ]
    return out


def _swappable(record: dict[str, Any], want: dict[str, Any]) -> bool:
    """Only the champion differs, and one worker holds the models (deployment_process.swappable)."""
    return record.get("fixed") == want["fixed"] and process.swappable(
        record.get("config") or {}, want["config"]
    )


def _record(ctx: Context, workload: realize.Workload) -> dict[str, Any] | None:
    try:
        got = json.loads((ctx.supervisor.run_dir(workload.kind, workload.name) / SERVED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) else None


def _mark(ctx: Context, child: Manifest, workload: realize.Workload, want: dict[str, Any]) -> None:
    record = {"uid": child["metadata"].get("uid"), **want}
    path = ctx.supervisor.run_dir(workload.kind, workload.name) / SERVED_FILE
    artifacts.atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True))


def _port(child: Manifest) -> int:
    container = (((child.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", [{}])[
        0
    ]
    return int((container.get("ports") or [{}])[0].get("containerPort") or 3000)


# --- the three ways a template gets to run --------------------------------------------------------


def _swap(ctx: Context, child: Manifest, workload: realize.Workload, want: dict[str, Any]) -> str:
    """The live server loads the new champion and swaps it in; no restart, no failed request."""
    namespace = child["metadata"].get("namespace") or "default"
    template = child["spec"]["template"]
    realize.local_command(ctx, template, namespace, workload)  # the mounted config follows the swap
    champion = want["config"]["champion"]
    _write_status(
        ctx,
        child,
        ready=_replicas(ctx, child),
        updated=0,
        progressing=("True", "ReplicaSetUpdated", "swapping in the new champion"),
    )
    refused = process.hot_swap(
        ctx, workload.name, _port(child), champion["uri"], bool(champion.get("quantized"))
    )
    if refused is not None:  # the old model keeps serving, as old pods do under maxUnavailable 0
        message = f"the server refused the new champion {champion['uri']}: {refused}"
        _write_status(
            ctx,
            child,
            ready=_replicas(ctx, child),
            updated=0,
            progressing=("False", "ProgressDeadlineExceeded", message),
        )
        return "failed"
    _mark(ctx, child, workload, want)
    _serving(ctx, child)
    return "swapped"


def _start(ctx: Context, child: Manifest, workload: realize.Workload, want: dict[str, Any]) -> str:
    """(Re)start the server for the template and wait until /readyz says it is ready."""
    namespace = child["metadata"].get("namespace") or "default"
    ctx.supervisor.stop(workload.kind, workload.name)  # a rollout: the old process goes first
    run_dir = ctx.supervisor.run_dir(workload.kind, workload.name)
    (run_dir / SERVED_FILE).unlink(missing_ok=True)
    port = _port(child)
    if not process.wait_for_port(port):
        return _failed(ctx, child, f"port {port} is in use on 127.0.0.1; choose another spec.port")
    command = realize.local_command(ctx, child["spec"]["template"], namespace, workload)
    if isinstance(command, str):
        return f"waiting: {command}"
    argv, env = command
    token = secrets.token_urlsafe(24)
    process.write_private(run_dir / process.TOKEN_FILE, token)
    env[serving_config.ENV_ADMIN_TOKEN] = token  # the hot swap's door, local only
    info = ctx.supervisor.start(
        workload.kind, workload.name, argv, env, cwd=ctx.cwd, tie_to_parent=not ctx.detach,
        rotate=(process.LOG_MAX_BYTES, process.LOG_BACKUPS),
    )  # fmt: skip
    _write_status(
        ctx,
        child,
        ready=0,
        updated=_replicas(ctx, child),
        progressing=("True", "ReplicaSetUpdated", f"starting the server (pid {info.pid}) on port {port}"),
    )
    problem = process.wait_ready(ctx, workload.name, info, port)
    if problem is not None:
        ctx.supervisor.stop(workload.kind, workload.name)
        return _failed(ctx, child, problem)
    _mark(ctx, child, workload, want)
    _serving(ctx, child)
    return "started"


def _gone(ctx: Context, child: Manifest, workload: realize.Workload) -> str:
    """The server ended without a CLI to see it: no ready replica; its leftover workers go too
    (BentoML's workers run in sessions of their own and would keep the socket)."""
    ctx.supervisor.stop(workload.kind, workload.name, grace=5.0)
    (ctx.supervisor.run_dir(workload.kind, workload.name) / SERVED_FILE).unlink(missing_ok=True)
    message = (
        f"the server process is gone; see `flywheel logs deployment/{workload.name}`, "
        "then `flywheel run` again"
    )
    _write_status(
        ctx,
        child,
        ready=0,
        updated=_replicas(ctx, child),
        available=("False", "MinimumReplicasUnavailable", message),
    )
    return "gone"


def _failed(ctx: Context, child: Manifest, message: str) -> str:
    _write_status(ctx, child, ready=0, updated=0, progressing=("False", "ProgressDeadlineExceeded", message))
    return "failed"


def _serving(ctx: Context, child: Manifest) -> None:
    n = _replicas(ctx, child)
    _write_status(
        ctx, child, ready=n, updated=n,
        progressing=("True", "NewReplicaSetAvailable", "the serving process is ready"),
    )  # fmt: skip


# --- status, the Deployment controller's way ------------------------------------------------------


def _replicas(ctx: Context, child: Manifest) -> int:
    """The wanted replicas: spec.replicas, else (an HPA owns it) the stored HPA's minReplicas."""
    spec = child.get("spec") or {}
    if spec.get("replicas") is not None:
        return int(spec["replicas"])
    meta = child["metadata"]
    hpa = ctx.store.get("HorizontalPodAutoscaler", meta["name"], meta.get("namespace") or "default")
    return int(((hpa or {}).get("spec") or {}).get("minReplicas") or 1)


def _write_status(
    ctx: Context,
    child: Manifest,
    ready: int,
    updated: int,
    progressing: tuple[str, str, str] | None = None,
    available: tuple[str, str, str] | None = None,
) -> None:
    """replicas, updatedReplicas, readyReplicas, availableReplicas, observedGeneration, and the
    Available / Progressing conditions (one entry per type, lastTransitionTime on change)."""
    meta = child["metadata"]
    namespace = meta.get("namespace") or "default"
    current = ctx.store.get(child["kind"], meta["name"], namespace) or child
    status = current.get("status") or {}
    wanted = _replicas(ctx, child)
    if available is None:
        available = (
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if ready >= wanted
            else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        )
    now = plans.now_rfc3339(datetime.datetime.now(datetime.UTC))
    conds = [dict(c) for c in status.get("conditions") or []]
    for type_, row in (("Available", available), ("Progressing", progressing)):
        if row is None:
            continue
        found = next((c for c in conds if c.get("type") == type_), None)
        if found is None:
            found = {"type": type_}
            conds.append(found)
        if found.get("status") != row[0]:
            found["lastTransitionTime"] = now
        if (found.get("status"), found.get("reason"), found.get("message")) != row:
            found.update(status=row[0], reason=row[1], message=row[2], lastUpdateTime=now)
    patch = {
        "observedGeneration": current["metadata"].get("generation"),
        "replicas": max(ready, updated),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, wanted - ready),
        "conditions": conds,
    }
    if plans.contains(status, patch):
        return  # nothing moved: no write, so the resourceVersion says nothing happened
    ctx.store.patch_status(child["kind"], meta["name"], patch, namespace)
