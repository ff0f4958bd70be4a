"""Argo CD health Lua (run with a real Lua runtime), the Flux example, the RDMA presets and the
platform files, checked offline."""

from __future__ import annotations

from pathlib import Path

import lupa
import pytest
import yaml

from flywheel import api

ROOT = Path(__file__).resolve().parents[3]
ARGO = ROOT / "platform" / "gitops" / "argocd"
LUA = (ARGO / "health.lua").read_text()


def health(obj: dict) -> dict:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    fn = lua.eval(f"function(obj) {LUA} end")

    def to_lua(value):
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    result = fn(to_lua(obj))
    return {"status": result["status"], "message": result["message"]}


def obj(generation=2, observed=2, ready=None, phase=None, reconciling=None, stalled=None):
    status = {"observedGeneration": observed}
    if phase:
        status["phase"] = phase
    conditions = []
    for type_, value in (("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled)):
        if value:
            conditions.append({"type": type_, "status": value, "reason": "X", "message": "m"})
    if conditions:
        status["conditions"] = conditions
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"metadata": {"generation": 1}}, "Progressing"),
        (obj(generation=3, observed=2, ready="True"), "Progressing"),
        (obj(ready="True"), "Healthy"),
        (obj(ready="False"), "Degraded"),
        (obj(ready="Unknown"), "Progressing"),
        (obj(ready="Unknown", phase="Suspended"), "Suspended"),
        (obj(ready="False", reconciling="True", stalled="False"), "Progressing"),
        (obj(ready="Unknown", reconciling="False", stalled="True"), "Degraded"),
        (obj(ready="True", reconciling="False", stalled="False"), "Healthy"),
    ],
    ids=[
        "no-status",
        "stale-generation",
        "ready",
        "failed",
        "in-progress",
        "suspended",
        "retrying-after-an-api-error",
        "stalled",
        "kstatus-current",
    ],
)
def test_argocd_health(resource, expected):
    assert health(resource)["status"] == expected


def test_argocd_cm_embeds_the_lua_for_every_kind():
    cm = yaml.safe_load((ARGO / "argocd-cm.yaml").read_text())
    keys = {f"resource.customizations.health.flywheel.dev_{kind}" for kind in api.KINDS}
    assert set(cm["data"]) == keys
    assert all(value == LUA for value in cm["data"].values())


def test_flux_and_argo_examples_parse():
    for path in [ARGO / "application.yaml", ROOT / "platform/gitops/flux/kustomization.yaml"]:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert all(d["apiVersion"] and d["kind"] for d in docs)


def test_rdma_presets_match_what_the_controller_renders():
    """The documented NCCL presets are what `flywheel render` puts on an RDMA pod."""
    from flywheel.api import loading
    from flywheel.controllers import settings, trainingrun

    (run,) = loading.load_file(ROOT / "examples" / "trainingrun-roce.yaml")
    children = trainingrun.render_children(run.to_manifest(), settings.Settings())
    job = next(c for c in children if c["kind"] == "PyTorchJob")
    container = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    preset = dict(
        line.split("=", 1)
        for line in (ROOT / "platform/rdma/nccl-roce.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for key in ("NCCL_IB_DISABLE", "NCCL_IB_GID_INDEX", "NCCL_SOCKET_IFNAME", "NCCL_IB_TIMEOUT"):
        assert env[key] == preset[key], key
    for nad in ("infiniband-nad.yaml", "roce-nad.yaml"):
        docs = list(yaml.safe_load_all((ROOT / "platform/rdma" / nad).read_text()))
        assert all(d["kind"] == "NetworkAttachmentDefinition" for d in docs)
