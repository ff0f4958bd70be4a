"""The kind path's artifact store is one consistent thing (offline; no cluster here): the examples
platform/kind-up.sh runs write s3:// into the bucket MinIO is told to create, with a credentials
Secret that exists in their namespace (the DriftMonitor's own reports too: its check Job writes
them), and the chart, as it renders with kind-up.sh's values, names a Secret for defaulted stores
that exists where the examples run, while its operators hold no keys."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from helm_python import Chart

from flywheel import artifacts
from flywheel.api import loading

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
KIND_UP = (PLATFORM / "kind-up.sh").read_text()
# The examples of the kind path: the set examples/kustomization.yaml applies (kubectl apply -k).
KIND_EXAMPLES = yaml.safe_load((ROOT / "examples" / "kustomization.yaml").read_text())["resources"]
CREDENTIAL_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}


def helm_install(release: str) -> list[str]:
    """The argv of kind-up.sh's `helm upgrade --install <release> ...` (continuation lines joined)."""
    script = KIND_UP.replace("\\\n", " ")
    line = next(ln for ln in script.splitlines() if f"helm upgrade --install {release} " in ln)
    return shlex.split(line, comments=True)


def flag(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def secrets() -> dict[tuple[str, str], dict[str, str]]:
    docs = yaml.safe_load_all((PLATFORM / "artifacts.yaml").read_text())
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["stringData"]
        for d in docs
        if d and d["kind"] == "Secret"
    }


def test_kind_up_applies_the_store_before_the_chart() -> None:
    assert KIND_UP.index('kubectl apply -f "$here/artifacts.yaml"') < KIND_UP.index(
        "helm upgrade --install flywheel"
    )
    assert "--wait-for-jobs" in helm_install("minio")  # MinIO's bucket job has run before any write


def test_credentials_reach_minio_with_its_own_user() -> None:
    minio = yaml.safe_load((PLATFORM / "minio-values.yaml").read_text())
    namespace = flag(helm_install("minio"), "-n")[0]
    for data in secrets().values():
        assert set(data) == CREDENTIAL_KEYS
        assert (data["AWS_ACCESS_KEY_ID"], data["AWS_SECRET_ACCESS_KEY"]) == (
            minio["rootUser"],
            minio["rootPassword"],
        )
        assert re.fullmatch(
            rf"http://minio\.{namespace}\.svc(\.cluster\.local)?:9000", data["AWS_ENDPOINT_URL"]
        )


def test_examples_write_to_the_minio_bucket_with_a_secret_of_their_namespace() -> None:
    buckets = {b["name"] for b in yaml.safe_load((PLATFORM / "minio-values.yaml").read_text())["buckets"]}
    available = secrets()
    for example in KIND_EXAMPLES:
        for resource in loading.load_file(ROOT / "examples" / example):
            manifest = resource.to_manifest()
            namespace = manifest["metadata"].get("namespace") or "default"
            for where, uri, secret in artifact_refs(manifest["spec"]):
                assert uri.startswith("s3://"), f"{example} {where}: {uri} (pods on other nodes read it)"
                assert artifacts.Store(uri).uri.removeprefix("s3://").split("/")[0] in buckets
                assert (namespace, secret) in available, f"{example} {where}: Secret {secret} in {namespace}"


def artifact_refs(spec: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(field, uri, credentialsSecret) of every artifact root and model URI in a spec."""
    refs = []
    for where, block in [("artifacts", spec.get("artifacts")),
                         ("retrain.template.artifacts", (spec.get("retrain") or {}).get("template", {}).get("artifacts"))]:  # fmt: skip
        if block:
            refs.append((where, block["uri"], block.get("credentialsSecret")))
    secret = (spec.get("artifacts") or {}).get("credentialsSecret")
    for role in ("champion", "challenger"):
        uri = (spec.get(role) or {}).get("uri")
        if uri:  # read by the serving pods with the Deployment's own artifacts Secret
            refs.append((f"{role}.uri", uri, secret))
    return refs


def test_the_chart_names_a_secret_the_examples_namespace_has_and_gives_its_operators_no_keys() -> None:
    argv = helm_install("flywheel")
    namespace = flag(argv, "-n")[0]
    values: dict[str, Any] = {}
    for setting in flag(argv, "--set"):
        key, _, value = setting.partition("=")
        # kind-up.sh's own variables: the images' tag (the chart's appVersion) and their registry.
        app_version = yaml.safe_load((ROOT / "helm/flywheel/Chart.yaml").read_text())["appVersion"]
        value = value.replace("$tag", app_version).replace("$registry", "ghcr.io/flywheel-dev")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = {"true": True, "false": False}.get(value, value)
    values["metrics"]["serviceMonitor"]["enabled"] = False  # "$with_prometheus": the default run
    rendered = Chart.load(str(ROOT / "helm" / "flywheel")).render(
        values, name="flywheel", namespace=namespace
    )
    docs = [
        d for name, text in rendered.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d
    ]
    operators = [d for d in docs if d["kind"] == "Deployment"]
    assert operators
    for operator in operators:
        assert operator["metadata"].get("namespace", namespace) == namespace
        (container,) = operator["spec"]["template"]["spec"]["containers"]
        assert "envFrom" not in container  # the check Job reads the store, not the operator
        env = {e["name"]: e.get("value") for e in container["env"]}
        # A resource that leaves spec.artifacts at its default gets this Secret in its own namespace.
        assert ("default", env["FLYWHEEL_ARTIFACTS_CREDENTIALS_SECRET"]) in secrets()
