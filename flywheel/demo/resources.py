"""The demo's resources: the example manifests a user would `flywheel run`, adapted to the demo home.

Only what the demo must change is changed, and each change says why:
- data.repo points at the demo's own DVC repository (<home>/datasets/shuttle), which grows one
  period at a time; the examples' repository is created with both periods at once.
- the Deployment listens on a free port found at start, so the demo never collides with a server
  already on the example's port 3000.
- the Deployment's batching latency budget is raised from the example's 20 ms to LATENCY_BUDGET_MS:
  here the challenger trains on the same cores as the server (torchrun takes both), and a request the
  batcher cannot serve within the budget is shed with a 503; a serving pod has its cores to itself.
- the DriftMonitor starts with retrain.enabled false and is switched on once period-2's labels are
  committed: drift is detected on unlabelled traffic first, and a challenger can only be trained
  once the labels exist (its template's data.rev, period-2, does not resolve before that).
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path

from flywheel.api import loading
from flywheel.api.common import Manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRAININGRUN = EXAMPLES / "trainingrun-local.yaml"
DEPLOYMENT = EXAMPLES / "deployment-local.yaml"
DRIFTMONITOR = EXAMPLES / "driftmonitor-local.yaml"
LATENCY_BUDGET_MS = 1000


def _load(path: Path) -> Manifest:
    (doc,) = loading.read_documents(path)
    return doc


def _validated(doc: Manifest, path: Path) -> Manifest:
    return loading.parse(doc, f"{path.name} (as adapted by the demo)").to_manifest()


def trainingrun(repo: Path) -> Manifest:
    doc = copy.deepcopy(_load(TRAININGRUN))
    doc["spec"]["data"]["repo"] = str(repo)
    return _validated(doc, TRAININGRUN)


def deployment(port: int | None = None) -> Manifest:
    doc = copy.deepcopy(_load(DEPLOYMENT))
    doc["spec"]["port"] = port or free_port()
    doc["spec"].setdefault("batching", {})["maxLatencyMs"] = LATENCY_BUDGET_MS
    return _validated(doc, DEPLOYMENT)


def driftmonitor(repo: Path, retrain: bool) -> Manifest:
    doc = copy.deepcopy(_load(DRIFTMONITOR))
    doc["spec"]["retrain"]["template"]["data"]["repo"] = str(repo)
    doc["spec"]["retrain"]["enabled"] = retrain
    return _validated(doc, DRIFTMONITOR)


def name(manifest: Manifest) -> str:
    return str(manifest["metadata"]["name"])


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; the server binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONCEPT_ROWS = 400
"""Labelled requests the concept-drift scenario sends: enough for the live interval to separate."""


def driftmonitor_concept(repo: Path, tag: str) -> Manifest:
    """The example monitor, set for concept drift: it retrains on a performance drop as well as on
    feature drift, fine-tunes the champion on the relabelled rows (`tag`), and promotes only when
    the paired interval's lower bound clears minImprovement. The window is the scenario's traffic."""
    doc = copy.deepcopy(_load(DRIFTMONITOR))
    retrain = doc["spec"]["retrain"]
    retrain["template"]["data"].update(repo=str(repo), rev=tag)
    retrain["template"]["training"]["epochs"] = 3  # fine-tuning: a third of a fresh run's epochs
    retrain.update(triggers=["featureDrift", "performanceDrop"], mode="fineTune")
    doc["spec"]["window"].update(rows=CONCEPT_ROWS, minRows=CONCEPT_ROWS // 2)
    doc["spec"]["promotion"]["rule"] = "lowerBound"
    return _validated(doc, DRIFTMONITOR)
