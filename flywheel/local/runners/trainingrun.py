"""TrainingRun on one machine: resolve the data, gate it, train with torchrun, record the outcome.

The same steps the operator takes on Kubernetes, with local adapters: the DVC dataset is resolved
into <home>/cache/data, the Great Expectations gate runs in this process (a failure ends the run
Failed with nothing trained), and `torchrun --standalone -m flywheel.training` runs as a supervised
process group whose JSON event lines drive the progress bars. Status uses the operator's condition
vocabulary, so `flywheel get -o yaml` reads like `kubectl get -o yaml`.

Resuming: the trainer checkpoints under <artifacts>/checkpoints and resumes from there. A run that
was interrupted (Ctrl-C, or the CLI killed) is found not finished on the next `flywheel run`, which
starts torchrun again. A run already Succeeded for the current generation is not run again. When the
spec changes (a new generation), the old checkpoints are moved aside so training starts afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel import artifacts, errors
from flywheel.api import conditions, contract
from flywheel.api import trainingrun as api
from flywheel.controllers import plans
from flywheel.local import paths, progress, torchrun
from flywheel.local.runners import Context
from flywheel.local.runners import status as status_mod

if TYPE_CHECKING:  # DVC behind it is heavy: imported when a run resolves its data
    from flywheel.data.resolve import Resolved

KIND = api.TrainingRun.KIND
EXAMPLE_REPO = "datasets/example"
"""The data.repo of examples/trainingrun-local.yaml: created with flywheel.data.examples when missing."""
Manifest = dict[str, Any]


def run(ctx: Context, manifest: Manifest) -> bool:
    """Drive one stored TrainingRun to Succeeded or Failed (see the module docstring)."""
    job = _Job(ctx, manifest)
    status = manifest.get("status") or {}
    if status.get("phase") == conditions.SUCCEEDED and status.get("observedGeneration") == job.generation:
        ctx.console.print(
            f"trainingrun/{job.name}: already succeeded (generation {job.generation}), skipping"
        )
        return True
    try:
        return job.drive(status)
    except KeyboardInterrupt:
        ctx.supervisor.stop(KIND, job.name)
        job.status.suspend("interrupted; run `flywheel run` again to resume from the last checkpoint")
        raise
    except Exception as exc:  # a bug, not a user mistake: record it, stop the workload, show the trace
        ctx.supervisor.stop(KIND, job.name)
        job.status.fail(conditions.R_FAILED, f"{type(exc).__name__}: {exc}"[:500], conditions.READY)
        raise


def observe(ctx: Context, manifest: Manifest) -> Manifest:
    """Notice a run whose trainer is gone without a CLI to record it (killed CLI, or --detach)."""
    status = manifest.get("status") or {}
    name = manifest["metadata"]["name"]
    info = ctx.supervisor.find(KIND, name)
    if status.get("phase") != conditions.RUNNING or info is None or ctx.supervisor.alive(info):
        return manifest
    job = _Job(ctx, manifest)
    if job.result_path.exists():
        job.finish(exit_code=None)
    else:
        job.status.suspend(
            "the trainer process is gone; run `flywheel run` again to resume from the last checkpoint"
        )
    return ctx.store.get(KIND, name, job.namespace) or manifest


class _Job:
    """One attempt at a TrainingRun: its paths, its status patches, its steps."""

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        self.ctx = ctx
        self.resource = api.TrainingRun.model_validate({k: v for k, v in manifest.items() if k != "status"})
        self.spec = self.resource.spec
        self.name = self.resource.name
        self.namespace = self.resource.namespace
        self.generation = int(manifest["metadata"].get("generation") or 1)
        self.status = status_mod.Writer(ctx, manifest)
        uri = ctx.artifacts_uri(self.spec.artifacts.uri)
        self.root = artifacts.run_root(uri, self.namespace, api.TrainingRun.PLURAL, self.name)
        self.run_dir = ctx.supervisor.run_dir(KIND, self.name)
        self.result_path = self.run_dir / contract.RESULT_FILE

    # --- steps ----------------------------------------------------------------------------------
    def drive(self, status: dict[str, Any]) -> bool:
        same_generation = status.get("observedGeneration") == self.generation
        if not same_generation and status.get("observedGeneration") is not None:
            self._archive_checkpoints(status["observedGeneration"])
        live = self.ctx.supervisor.find(KIND, self.name)
        if same_generation and live is not None and self.ctx.supervisor.alive(live):
            return self._attach(live)  # started with --detach and still training
        self.status.patch(
            {
                "phase": conditions.RUNNING,
                "observedGeneration": self.generation,
                "message": None,
                "startTime": (same_generation and status.get("startTime"))
                or plans.now_rfc3339(self.ctx.now()),
                "completionTime": None,
            },
            (conditions.READY, "False", conditions.R_RECONCILING, "resolving and validating data"),
        )
        with progress.Bars(self.ctx.console) as bars:
            resolved = self._resolve(bars)
            if resolved is None or not self._gate(resolved):
                return False
            data_path, lineage = resolved.local_path, _as_dict(resolved.lineage)
            info = self._start(data_path, lineage)
            if self.ctx.detach:
                self.ctx.console.print(
                    f"trainingrun/{self.name}: started (pid {info.pid}); see `flywheel get`"
                )
                return True
            exit_code = self._follow(info, bars)
        return self.finish(exit_code)

    def _attach(self, live: Any) -> bool:
        self.ctx.console.print(f"trainingrun/{self.name}: already training (pid {live.pid}), following it")
        if self.ctx.detach:
            return True
        self._offset = _size(self.ctx.supervisor.log_path(KIND, self.name))
        with progress.Bars(self.ctx.console) as bars:
            exit_code = self._follow(live, bars)
        return self.finish(exit_code)

    def _resolve(self, bars: progress.Bars) -> Resolved | None:
        """The data resolved, or None when the run failed on it."""
        from flywheel.data import resolve as data

        bars.update("data", total=None, note=f"{self.spec.data.path}@{self.spec.data.rev}")
        spec_data = self.spec.data.model_copy(update={"repo": self._repo()})
        try:
            resolved = data.resolve(spec_data, self.ctx.home / "cache" / "data")
        except errors.UserError as exc:  # the data cannot be had as written: the run fails, not the CLI
            self.status.fail(conditions.R_FAILED, str(exc), conditions.DATA_RESOLVED)
            return None
        lineage = _as_dict(resolved.lineage)
        bars.done(
            "data", note=f"{lineage.get('rows', '?')} rows, commit {str(lineage.get('commit', ''))[:8]}"
        )
        self.status.patch(
            {"data": lineage},
            (conditions.DATA_RESOLVED, "True", conditions.R_SUCCEEDED, f"{self.spec.data.path} resolved"),
        )
        return resolved

    def _repo(self) -> str:
        """data.repo with relative paths made absolute (against the home: flywheel.local.paths); the
        example repo is created on first use."""
        repo = self.spec.data.repo
        if paths.is_remote(repo):
            return repo
        path = Path(paths.resolve(self.ctx.home, repo))  # against the home, never the cwd
        if Path(repo).as_posix().removeprefix("./") == EXAMPLE_REPO and not path.exists():
            from flywheel.data import examples

            self.ctx.console.print(f"creating the example DVC repository at {path}")
            examples.make_repo(path)
        return str(path)

    def _gate(self, resolved: Resolved) -> bool:
        if not self.spec.data.validation.enabled:
            self.status.patch(
                {}, (conditions.DATA_VALIDATED, "True", conditions.R_SUCCEEDED, "validation disabled")
            )
            return True
        from flywheel.data import gate

        # validation.file comes from the repository at the resolved commit (flywheel.data.resolve)
        data_path, extra = resolved.local_path, resolved.expectations
        result = gate.validate(data_path, self.spec, extra)
        if not result.success:
            lines = result.summary.splitlines() or ["see status.validation"]
            more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
            message = f"data validation failed, nothing trained: {lines[0]}{more}"
            validation = {"validation": result.to_status()}
            return self.status.fail(
                conditions.R_VALIDATION_FAILED, message, conditions.DATA_VALIDATED, validation
            )
        self.status.patch(
            {"validation": result.to_status()},
            (conditions.DATA_VALIDATED, "True", conditions.R_SUCCEEDED, result.summary),
        )
        return True

    def _start(self, data_path: Path, lineage: dict[str, Any]) -> Any:
        spec = self.spec.to_dict()
        spec["artifacts"]["uri"] = self.root.uri.rsplit(f"/{self.namespace}/", 1)[0]
        config = {
            "name": self.name,
            "namespace": self.namespace,
            "spec": spec,
            "artifactsUri": self.root.uri,
            "dataPath": str(data_path),
            "lineage": lineage,
        }
        config_path = self.run_dir / contract.CONFIG_FILE
        artifacts.atomic_write_text(config_path, json.dumps(config, indent=2))
        self.result_path.unlink(missing_ok=True)  # a result.json here is always this attempt's
        run = torchrun.launch(self.spec.resources, contract.TRAINER_MODULE, self.ctx.cores())
        env = {
            **run.env,
            contract.ENV_CONFIG: str(config_path),
            contract.ENV_RESULT_PATH: str(self.result_path),
            contract.ENV_ARTIFACTS_URI: self.root.uri,
            contract.ENV_RUN_NAME: self.name,
            contract.ENV_NAMESPACE: self.namespace,
        }
        self._offset = _size(self.ctx.supervisor.log_path(KIND, self.name))
        info = self.ctx.supervisor.start(
            KIND, self.name, run.argv, env, cwd=self.ctx.cwd, tie_to_parent=not self.ctx.detach
        )
        job_name = f"torchrun-{info.pid}"
        self.status.patch(
            {"jobName": job_name},
            (conditions.TRAINED, "Unknown", conditions.R_JOB_RUNNING, f"torchrun with {run.nproc} workers"),
            (conditions.READY, "False", conditions.R_JOB_RUNNING, "training"),
        )
        self.status.event(
            conditions.R_JOB_CREATED,
            f"started {job_name}: {run.nproc} workers, {run.threads} threads each",
        )
        return info

    def _follow(self, info: Any, bars: progress.Bars) -> int | None:
        log = self.ctx.supervisor.log_path(KIND, self.name)
        for line in progress.follow(log, self._offset, lambda: self.ctx.supervisor.alive(info)):
            event = progress.parse_event(line)
            if event is None:
                continue
            bars.on_training_event(event)
            if event["event"] == "checkpoint":
                self.status.patch({"checkpoint": {"uri": event.get("uri"), "step": event.get("step")}})
        return self.ctx.supervisor.exit_code(info)

    def finish(self, exit_code: int | None) -> bool:
        """Record the outcome from result.json (and the exit code when this process started it)."""
        from flywheel.training import result as result_mod

        if not self.result_path.exists():
            where = f"`flywheel logs trainingrun/{self.name}`"
            return self.status.fail(
                conditions.R_FAILED,
                f"the trainer exited with code {exit_code} and no result; see {where}",
                conditions.TRAINED,
            )
        outcome = result_mod.Result.model_validate_json(self.result_path.read_text())
        fields = {
            k: v
            for k, v in outcome.to_dict().items()
            if k in ("metrics", "model", "data", "checkpoint", "validation")
        }
        if outcome.phase != conditions.SUCCEEDED or exit_code not in (0, None):
            return self.status.fail(
                conditions.R_FAILED,
                outcome.message or f"the trainer exited with code {exit_code}",
                conditions.TRAINED,
                fields,
            )
        version = (outcome.model.version if outcome.model else None) or "?"
        self.status.patch(
            {
                **fields,
                "phase": conditions.SUCCEEDED,
                "message": outcome.message or None,
                "completionTime": plans.now_rfc3339(self.ctx.now()),
            },
            (conditions.TRAINED, "True", conditions.R_SUCCEEDED, _metrics_text(outcome.metrics)),
            (conditions.EXPORTED, "True", conditions.R_SUCCEEDED, f"model {version}"),
            (conditions.READY, "True", conditions.R_SUCCEEDED, f"model {version} trained and exported"),
        )
        self.status.event(conditions.R_SUCCEEDED, f"model {version}: {_metrics_text(outcome.metrics)}")
        metrics = _metrics_text(outcome.metrics)
        self.ctx.console.print(f"[green]trainingrun/{self.name}: succeeded[/green] model {version} {metrics}")
        return True

    def _archive_checkpoints(self, old_generation: int) -> None:
        """A new spec must not resume an old one's checkpoints: move them aside (kept, not deleted)."""
        if self.root.local_root is None:
            return
        old = self.root.local_path(contract.CHECKPOINTS_DIR)
        if old.exists():
            target = old.with_name(f"{contract.CHECKPOINTS_DIR}-generation-{old_generation}")
            shutil.rmtree(target, ignore_errors=True)
            old.rename(target)


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        return dict(value.to_dict())
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(by_alias=True, exclude_none=True, mode="json"))
    if isinstance(value, dict):
        return value
    return {"summary": str(value)}


def _metrics_text(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
