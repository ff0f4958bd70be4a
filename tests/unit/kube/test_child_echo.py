"""The child-event bookkeeping of operators/reconcile.py: an event is skipped only when every
resourceVersion it carries is one our own reconcile read or wrote (no API, no kopf loop)."""

from __future__ import annotations

from flywheel.controllers import settings as settings_mod
from flywheel.controllers import trainingrun
from flywheel.kube import execute
from operators import reconcile

OWNER = ("default", "iris")
JOB = ("PyTorchJob", "default", "iris")


def binding() -> reconcile.Binding:
    return reconcile.Binding("TrainingRun", trainingrun, settings_mod.Settings())


def remember(b: reconcile.Binding, version: str) -> None:
    job = {
        "kind": "PyTorchJob",
        "metadata": {"name": "iris", "namespace": "default", "resourceVersion": version},
    }
    reconcile._remember(b, "default", execute.Outcome(live={"PyTorchJob/iris": job}))


def test_an_event_with_our_own_version_is_not_needed() -> None:
    b = binding()
    remember(b, "7")
    b.triggers[OWNER] = [(JOB, "7")]
    assert not reconcile._needed(b, OWNER)
    assert OWNER not in b.triggers  # taken


def test_a_newer_version_or_any_unknown_trigger_is_needed() -> None:
    b = binding()
    remember(b, "7")
    b.triggers[OWNER] = [(JOB, "7"), (JOB, "8")]
    assert reconcile._needed(b, OWNER)
    b.triggers[OWNER] = [(("ConfigMap", "default", "iris-config"), "3")]
    assert reconcile._needed(b, OWNER)


def test_forced_requeues_always_run_even_with_known_triggers() -> None:
    b = binding()
    remember(b, "7")
    b.triggers[OWNER] = [(JOB, "7")]
    b.forced.add(OWNER)
    assert reconcile._needed(b, OWNER)
    assert OWNER not in b.forced and OWNER not in b.triggers
