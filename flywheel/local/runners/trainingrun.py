"""TrainingRun on one machine: the operator's controller, with local children (see runners.jobrun).

controllers.trainingrun renders the ConfigMap and the PyTorchJob into the store; the realiser runs
the job as `torchrun --standalone -m flywheel.training`, and the trainer itself resolves the DVC
dataset (into <home>/cache/data) and runs the Great Expectations gate, exactly as in the pod: a
failed gate ends the run Failed (ValidationFailed) with nothing trained. The outcome comes from the
termination message, read by the controller from the Master pod.

data.repo may be a path relative to the home (flywheel.local.paths; the trainer runs in the home,
so it reads it the same way); the example repositories (`datasets/example`, as in
examples/trainingrun-local.yaml, and `datasets/digits`, as in examples/custom-digits) are created
there on first use.
"""

from __future__ import annotations

from pathlib import Path

from flywheel.api import trainingrun as api
from flywheel.api.common import Manifest
from flywheel.controllers import trainingrun as controller
from flywheel.local import paths, progress
from flywheel.local.runners import Context, jobrun

KIND = api.TrainingRun.KIND
EXAMPLE_REPO = "datasets/example"
"""The data.repo of examples/trainingrun-local.yaml: created with flywheel.data.examples when missing."""
DIGITS_REPO = "datasets/digits"
"""The data.repo of examples/custom-digits: created with flywheel.data.digits when missing."""
_EXAMPLE_BUILDERS = {EXAMPLE_REPO: "flywheel.data.examples", DIGITS_REPO: "flywheel.data.digits"}


class TrainingRunJob(jobrun.JobRun):
    controller = controller
    noun = "trainingrun"

    def prepare(self, resource: Manifest) -> None:
        repo = str(((resource.get("spec") or {}).get("data") or {}).get("repo") or "")
        if paths.is_remote(repo):
            return
        path = Path(paths.resolve(self.ctx.home, repo))  # against the home, never the cwd
        builder = _EXAMPLE_BUILDERS.get(Path(repo).as_posix().removeprefix("./"))
        if builder is not None and not path.exists():
            import importlib  # DVC behind it is heavy: only when needed

            self.ctx.console.print(f"creating the example DVC repository at {path}")
            importlib.import_module(builder).make_repo(path)

    def on_event(self, event: progress.Event, bars: progress.Bars) -> bool:
        bars.on_training_event(event)
        return False

    def report(self, resource: Manifest) -> None:
        status = resource.get("status") or {}
        version = (status.get("model") or {}).get("version") or "?"
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((status.get("metrics") or {}).items()))
        self.ctx.console.print(
            f"[green]{self.ref}: succeeded[/green] model {version} {metrics}", highlight=False
        )


def run(ctx: Context, manifest: Manifest) -> bool:
    """Drive one stored TrainingRun to its end (see runners.jobrun)."""
    return TrainingRunJob(ctx, manifest).run()


def observe(ctx: Context, manifest: Manifest) -> Manifest:
    """Notice a run whose trainer ended or is gone without a CLI to record it."""
    return jobrun.observe(ctx, manifest, TrainingRunJob)
