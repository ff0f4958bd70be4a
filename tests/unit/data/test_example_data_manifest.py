"""platform/example-data.yaml, the in-cluster publisher of the example dataset, is consistent with
everything it meets on kind (offline: no cluster here; the live check is a tests/e2e kind run).

The manifest passes the official schemas (kubernetes-validate --strict); the examples' data.repo
names its Service, port and served path; its remote is a bucket MinIO creates, at the endpoint the
credentials Secret names; its args are ones publish.py accepts; kind-up.sh applies it and waits
for it before the first example."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from flywheel.data import publish

ROOT = Path(__file__).resolve().parents[3]
PLATFORM = ROOT / "platform"
DOCS = list(yaml.safe_load_all((PLATFORM / "example-data.yaml").read_text()))
KIND_UP = (PLATFORM / "kind-up.sh").read_text()


def _doc(kind: str) -> dict[str, Any]:
    (doc,) = (d for d in DOCS if d["kind"] == kind)
    return doc


def _container() -> dict[str, Any]:
    (container,) = _doc("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _args() -> Any:
    return publish._parser().parse_args(_container()["args"])


def test_manifest_validates_strictly() -> None:
    assert {d["kind"] for d in DOCS} == {"Deployment", "Service"}
    for doc in DOCS:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_cluster_examples_point_at_the_served_repository() -> None:
    service = _doc("Service")
    (port,) = service["spec"]["ports"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    repos = []
    for name in yaml.safe_load((ROOT / "examples" / "kustomization.yaml").read_text())["resources"]:
        for doc in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
            spec = doc["spec"]
            data = spec.get("data") or spec.get("retrain", {}).get("template", {}).get("data")
            if data:
                repos.append(data["repo"])
                assert data["credentialsSecret"] == "artifacts-s3-credentials", name
    assert len(repos) >= 3  # minimal, candidate, the DriftMonitor's retrain template
    for repo in repos:
        url = urllib.parse.urlsplit(repo)
        assert (url.scheme, url.hostname, url.port) == ("http", host, port["port"])
        assert url.path == f"/{publish.REPO_NAME}"
    assert _args().serve == _container()["ports"][0]["containerPort"]
    probe = _container()["readinessProbe"]["httpGet"]
    assert probe["path"] == f"/{publish.REPO_NAME}/info/refs"
    assert _container()["livenessProbe"]["httpGet"]["path"] == f"/{publish.REPO_NAME}/HEAD"


def test_remote_is_a_minio_bucket_with_the_secrets_endpoint() -> None:
    args = _args()
    bucket = urllib.parse.urlsplit(args.remote_url)
    minio = yaml.safe_load((PLATFORM / "minio-values.yaml").read_text())
    assert bucket.scheme == "s3" and bucket.hostname in {b["name"] for b in minio["buckets"]}
    secrets = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["stringData"]
        for d in yaml.safe_load_all((PLATFORM / "artifacts.yaml").read_text())
        if d
    }
    (source,) = _container()["envFrom"]
    pushed_with = secrets[("flywheel-system", source["secretRef"]["name"])]
    pulled_with = secrets[("default", "artifacts-s3-credentials")]
    assert args.endpoint_url == pushed_with["AWS_ENDPOINT_URL"] == pulled_with["AWS_ENDPOINT_URL"]
    assert publish.remote_options(args.remote_url, args.endpoint_url) == {
        "url": args.remote_url,
        "endpointurl": args.endpoint_url,
    }


def test_kind_up_publishes_and_waits_before_the_first_example() -> None:
    applied = KIND_UP.index('kubectl apply -f "$here/example-data.yaml"')
    waited = KIND_UP.index("rollout status deploy/example-data")
    assert KIND_UP.index('kubectl apply -f "$here/artifacts.yaml"') < applied < waited
    assert KIND_UP.index("kind load docker-image") < applied  # local images are loaded first
    assert waited < KIND_UP.index('kubectl apply -f "$root/examples/')
