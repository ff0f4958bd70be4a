"""Pick the launcher module of a run: pytorchjob (the default) or trainjob (spec.launcher).

Both modules offer the same surface (Launcher), so the run controllers are written once against
it and the choice is made here, from the raw manifest (observe_refs runs before the spec is
validated) or from the validated spec.
"""

from __future__ import annotations

from typing import Any, Protocol

from flywheel.api import launcher as api
from flywheel.controllers import plans, pytorchjob, trainjob


class Launcher(Protocol):
    API_VERSION: str
    KIND: str
    CONTAINER: str

    def job_name(self, owner_name: str) -> str: ...
    def config_map_name(self, owner_name: str) -> str: ...
    def render_job(self, owner: plans.Manifest, **kwargs: Any) -> tuple[plans.Manifest, plans.Manifest]: ...
    def job_state(self, job: plans.Manifest) -> pytorchjob.JobState: ...
    def rank0_pod_name(self, name: str) -> str: ...
    def rank0_pod_ref(self, name: str, namespace: str) -> plans.Ref: ...
    def rank0_pod(self, observation: plans.Manifest | None) -> plans.Manifest | None: ...
    def termination_message(self, pod: plans.Manifest | None) -> str | None: ...


def of(resource: plans.Manifest) -> Launcher:
    """The launcher a run manifest asks for; anything but TrainJob is the PyTorchJob default
    (an invalid value is the spec validation's to report)."""
    chosen = (resource.get("spec") or {}).get("launcher")
    return trainjob if chosen == api.Launcher.TRAINJOB else pytorchjob
