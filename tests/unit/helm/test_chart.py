"""The Helm chart, rendered by the real Helm engine (helm-python-sdk) over a values matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm_python import Chart, lint

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "flywheel"
# Kinds whose schemas live in CRDs that kubernetes-validate does not ship; each is checked by shape.
CUSTOM_KINDS = {"ServiceMonitor", "NetworkAttachmentDefinition", "ClusterKopfPeering", "KopfPeering"}
DIGEST = "sha256:" + "0123456789abcdef" * 4

MATRIX = {
    "defaults": {},
    "ha": {
        "operators": {
            "trainingrun": {"replicas": 2},
            "deployment": {"enabled": True, "replicas": 2},
            "selfplayrun": {"enabled": True},
        }
    },
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "rdma": {
        "rdma": {
            "enabled": True,
            "networks": [
                {"name": "ib-rail-0", "config": '{"cniVersion":"0.3.1","type":"ib-sriov"}'},
                {"name": "roce-net", "config": '{"cniVersion":"0.3.1","type":"host-device"}'},
            ],
        }
    },
    "namespaced-no-selfplay": {"watchNamespaces": ["ml"], "operators": {"selfplayrun": {"enabled": False}}},
    "namespaced-ha-digest": {
        "watchNamespaces": ["ml", "serving"],
        "operators": {"deployment": {"replicas": 2}},
        "image": {"digest": DIGEST},
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = Chart.load(str(CHART))
    out = chart.render(values, name="fw", namespace="flywheel")
    docs = []
    for name, text in out.items():
        if name.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@pytest.fixture(scope="module", params=sorted(MATRIX), ids=sorted(MATRIX))
def manifests(request):
    return request.param, render(MATRIX[request.param])


def test_every_manifest_is_valid_kubernetes(manifests):
    _, docs = manifests
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] and doc["metadata"]["name"]
            continue
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_rbac_has_no_wildcards(manifests):
    _, docs = manifests
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for key in ("verbs", "resources", "apiGroups"):
                    assert "*" not in rule.get(key, []), (doc["metadata"]["name"], rule)


def test_pods_are_locked_down(manifests):
    _, docs = manifests
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["livenessProbe"] and container["resources"]["limits"]


def test_operand_images_flow_from_values_to_operators():
    docs = render({"workloadImages": {"trainer": "reg/t:1", "selfplay": "reg/s:1", "serving": "reg/v:1"}})
    for doc in (d for d in docs if d["kind"] == "Deployment"):
        env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["FLYWHEEL_TRAINER_IMAGE"] == "reg/t:1" and env["FLYWHEEL_SERVING_IMAGE"] == "reg/v:1"


def test_ha_turns_on_peering_and_rolling_updates():
    docs = render(MATRIX["ha"])
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    ha = deployments["fw-trainingrun-operator"]
    assert ha["spec"]["replicas"] == 2 and "strategy" not in ha["spec"]
    assert "--peering=fw-trainingrun-operator" in ha["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deployments["fw-selfplayrun-operator"]["spec"]["strategy"] == {"type": "Recreate"}
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterKopfPeering"} == {
        "fw-trainingrun-operator",
        "fw-deployment-operator",
    }


def test_chart_crds_equal_crds_dir_and_are_kept():
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    originals = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    assert copies == originals, "helm/flywheel/files/crds is stale: run `make crds`"
    rendered = [d for d in render({}) if d["kind"] == "CustomResourceDefinition"]
    assert len(rendered) == 4
    assert all(d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for d in rendered)
    assert not [d for d in render({"crds": {"install": False}}) if d["kind"] == "CustomResourceDefinition"]


def test_values_schema_rejects_a_typo():
    with pytest.raises(Exception, match="replicas"):
        render({"operators": {"trainingrun": {"replicas": "two"}}})
    with pytest.raises(Exception, match=r"(?i)additional"):
        render({"operatorz": {}})


def test_lint_is_clean():
    result = lint(str(CHART))
    assert result["errors"] == []
    assert all(m["severity"] <= 1 for m in result["messages"]), result["messages"]


def test_every_values_key_is_commented():
    """Top-level keys and their children carry a comment line right above them; deeper keys are part of
    a documented value (e.g. the fields of a documented securityContext)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped or indent > 2:
            continue
        assert lines[i - 1].strip().startswith("#"), f"values.yaml line {i + 1} ({stripped}) has no comment"


def _rbac(docs: list[dict[str, Any]], kind: str) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs if d["kind"] == kind}


def test_watch_namespaces_get_roles_and_only_reads_stay_cluster_wide():
    """With watchNamespaces, each operator's rights on workloads are a Role per watched namespace
    bound to its ServiceAccount; cluster-wide it may only read CRDs and namespaces (kopf's start).
    Without, one ClusterRole holds it all and there are no Roles."""
    docs = render(MATRIX["namespaced-ha-digest"])
    roles, bindings = _rbac(docs, "Role"), _rbac(docs, "RoleBinding")
    operators = ["trainingrun", "selfplayrun", "deployment", "driftmonitor"]
    assert (
        set(roles)
        == set(bindings)
        == {(ns, f"fw-{k}-operator") for ns in ("ml", "serving") for k in operators}
    )
    for (_, name), binding in bindings.items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "flywheel"}]
    for (_, name), role in _rbac(docs, "ClusterRole").items():
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert resources == {"customresourcedefinitions", "namespaces"}, name
        assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in role["rules"]), name
    deployment_role = roles[("ml", "fw-deployment-operator")]
    granted = {
        (g, r) for rule in deployment_role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert {
        ("apps", "deployments"),
        ("flywheel.dev", "deployments/status"),
        ("kopf.dev", "kopfpeerings"),
    } <= granted
    assert {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "KopfPeering"
    } == {
        ("ml", "fw-deployment-operator"),
        ("serving", "fw-deployment-operator"),
    }
    args = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "fw-deployment-operator"
    )["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml" in args and "--namespace=serving" in args

    cluster_wide = render({})
    assert not _rbac(cluster_wide, "Role") and not _rbac(cluster_wide, "RoleBinding")
    role = _rbac(cluster_wide, "ClusterRole")[(None, "fw-deployment-operator")]
    assert "deployments" in {r for rule in role["rules"] for r in rule["resources"]}


def test_image_digest_pins_the_operator_image():
    pinned = render({"image": {"digest": DIGEST, "tag": "0.2.0"}})
    images = {
        c["image"]
        for d in pinned
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"ghcr.io/flywheel-dev/operator@{DIGEST}"}
    tagged = render({"image": {"tag": "0.2.0"}})
    assert {
        c["image"]
        for d in tagged
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    } == {"ghcr.io/flywheel-dev/operator:0.2.0"}
    with pytest.raises(Exception, match="tag"):  # what the chart once suggested: an invalid reference
        render({"image": {"tag": "@" + DIGEST}})
    with pytest.raises(Exception, match="digest"):
        render({"image": {"digest": "0123abcd"}})


def test_the_platform_artifact_store_reaches_every_operator():
    docs = render({"artifacts": {"uri": "s3://flywheel-artifacts", "s3CredentialsSecret": "keys"}})
    for doc in (d for d in docs if d["kind"] == "Deployment"):
        env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["FLYWHEEL_ARTIFACTS_URI"] == "s3://flywheel-artifacts"
        assert env["FLYWHEEL_ARTIFACTS_CREDENTIALS_SECRET"] == "keys"
    with pytest.raises(Exception, match="uri"):  # a path in the operator's pods: scratch space
        render({"artifacts": {"uri": "file:///var/lib/flywheel/artifacts"}})


def test_the_operators_get_no_artifact_keys_or_claim():
    """The drift check runs in its own Job with the monitor's spec.artifacts; no operator reads
    the store, so none holds its keys (envFrom) or mounts a claim."""
    docs = render({"artifacts": {"uri": "s3://flywheel-artifacts", "s3CredentialsSecret": "keys"}})
    for doc in (d for d in docs if d["kind"] == "Deployment"):
        pod = doc["spec"]["template"]["spec"]
        assert all("envFrom" not in c for c in pod["containers"]), doc["metadata"]["name"]
        assert all("persistentVolumeClaim" not in v for v in pod.get("volumes", [])), doc["metadata"]["name"]
    with pytest.raises(Exception, match="pvcClaimName"):  # gone: nothing mounts it
        render({"artifacts": {"pvcClaimName": "models"}})
