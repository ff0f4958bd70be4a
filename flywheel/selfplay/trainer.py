"""The self-play trainer: `python -m flywheel.selfplay` or `torchrun -m flywheel.selfplay`.

`selfPlay.batchSize` is the global batch per (task, role), as in the paper: every rank draws the
same batch from buffers that all ranks keep equal and plays its own share of it (rollout.share;
sampling uses a per-rank torch RNG). Each step's valid proposals are all-gathered and appended in
rank order. The update is one optimizer step with gradients all-reduced by
DistributedDataParallel (gloo on CPU, NCCL on GPU); advantages are whitened over the global batch
and the loss is a mean over the global batch's tokens (trr).
Rank 0 alone prints JSON event lines, writes checkpoints (resuming from the newest), the final
result.json and the compact termination message the operator reads. Events (one object a line):
  {"event": "start", "step": <last done>, "steps": <total>, "resumed": <checkpoint uri or null>}
  {"event": "step", "step", "steps", "buffers", "validProposalRate", "solveRate",
   "proposerReward", "solverReward" (per task), "solverRewardRange" (per task: [lowest, highest]),
   "checkpoint", "loss", "gradNorm", "tokens",
   "executor": {"programs", "seconds", "programsPerSecond"} (all ranks), "seconds" (since start),
   "batch": {"size", "perRank", "ranks"} (the global batch per task and role, the largest rank share)}
  {"event": "warmStart", "step", "steps", "loss"} while the tiny policy is warm-started, then
  {"event": "warmStart", "cache", "card"} (flywheel.selfplay.pretrain)
  {"event": "heldOut", "step", "solveRate", "sampledSolveRate"} before the first step, every
   heldOut.every steps and after the last (flywheel.selfplay.heldout); the newest is also in
   every later step event and the summary as "heldOut", and <run>/heldout.png draws them all
  {"event": "done", ...the final summary}
The local backend turns them into progress bars and status; the operator reads the newest step
event from the Master pod's log tail (flywheel.controllers.selfplayresult).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from flywheel import artifacts, distributed, errors, results
from flywheel.api import contract
from flywheel.selfplay import buffers, checkpoint, config, heldout, policy, pretrain, rollout, trr

PoolFactory = Callable[[config.Config], Any]
WEIGHTING = "sequence"  # TRR++ whitening: per sequence (the paper's formula); "token" = reference code


def _seed(cfg: config.Config, d: distributed.World, step: int) -> random.Random:
    """The step's draw RNG, equal on every rank (it picks the global batch), and a per-(rank, step)
    torch seed for sampling; both per step, so a resumed run draws what the uninterrupted one would."""
    key = f"{cfg.spec.self_play.seed}:{d.rank}:{step}"
    torch.manual_seed(int.from_bytes(key.encode(), "little") % (2**63))
    return random.Random(f"{cfg.spec.self_play.seed}:{step}")


def batch_share(batch_size: int, world: int) -> dict[str, int]:
    """What status says about the batch: the global size per (task, role), the largest rank share."""
    return {"size": batch_size, "perRank": -(-batch_size // world), "ranks": world}


class Metered:
    """The executor, counting the verdicts it gives and the wall time spent waiting for them, so
    each step can report the sandbox's throughput. Deduction checks run no code and are not counted.
    `metered(pool)` adds the batch methods only when the pool has them, so tasks takes the same
    path with or without the meter."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.programs = 0
        self.seconds = 0.0

    def _timed(self, method: Callable[..., Any], *args: Any, count: int = 1) -> Any:
        started = time.monotonic()
        try:
            return method(*args)
        finally:
            self.seconds += time.monotonic() - started
            self.programs += count

    def take(self) -> tuple[int, float]:
        """(verdicts, seconds) since the last take."""
        out = (self.programs, self.seconds)
        self.programs, self.seconds = 0, 0.0
        return out

    def run_program(self, code: str, inputs: str) -> Any:
        return self._timed(self.pool.run_program, code, inputs)

    def check_output(self, code: str, inputs: str, expected_repr: str) -> bool:
        return bool(self._timed(self.pool.check_output, code, inputs, expected_repr))

    def check_function(self, code: str, pairs: list[tuple[str, str]]) -> list[bool]:
        return list(self._timed(self.pool.check_function, code, pairs))

    def eval_literal_equal(self, a: str, b: str) -> bool:
        return bool(self.pool.eval_literal_equal(a, b))


class MeteredBatch(Metered):
    """Metered with the batch methods (tasks.BatchExecutor), so metering keeps the pool's batching."""

    def run_programs(self, items: Iterable[tuple[str, str]]) -> list[Any]:
        batch = list(items)
        return list(self._timed(self.pool.run_programs, batch, count=len(batch)))

    def check_outputs(self, items: Iterable[tuple[str, str, str]]) -> list[bool]:
        batch = list(items)
        return list(self._timed(self.pool.check_outputs, batch, count=len(batch)))

    def check_functions(self, items: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> list[list[bool]]:
        batch = list(items)
        return list(self._timed(self.pool.check_functions, batch, count=len(batch)))


def metered(pool: Any) -> Metered:
    """The pool behind a meter with the same methods (batch ones only where the pool has them)."""
    batch = all(hasattr(pool, m) for m in ("run_programs", "check_outputs", "check_functions"))
    return MeteredBatch(pool) if batch else Metered(pool)


def _throughput(meters: list[tuple[int, float]]) -> dict[str, Any]:
    """All ranks' executor figures: programs summed; ranks run side by side, so the rate is the sum
    of each rank's programs per second of executor time."""
    rate = sum(n / s for n, s in meters if s > 0)
    return {
        "programs": sum(n for n, _ in meters),
        "seconds": round(max((s for _, s in meters), default=0.0), 3),
        "programsPerSecond": round(rate, 1),
    }


def _solver_scores(results: list[rollout.Step], task: str) -> list[float]:
    return [
        r
        for res in results
        for b in res.batches
        if b.task == task and b.role == rollout.SOLVE
        for r in b.rewards
    ]


def _solver_reward(results: list[rollout.Step]) -> dict[str, float]:
    """Mean solver reward per task over every rank's solver batch (+1 / -0.5 / -1 per answer)."""
    out: dict[str, float] = {}
    for task in results[0].solve_rate:
        scores = _solver_scores(results, task)
        out[task] = round(sum(scores) / len(scores), 4) if scores else 0.0
    return out


def _solver_range(results: list[rollout.Step]) -> dict[str, list[float]]:
    """[lowest, highest] solver reward per task: equal ends mean whitening gave that batch no signal."""
    out: dict[str, list[float]] = {}
    for task in results[0].solve_rate:
        scores = _solver_scores(results, task)
        if scores:
            out[task] = [min(scores), max(scores)]
    return out


def _merge(results: list[rollout.Step], store: buffers.Buffers) -> dict[str, Any]:
    """Append every rank's new entries (rank order) and average the per-task figures."""
    for res in results:
        for task, entries in res.new_entries.items():
            for entry in entries:
                store.add(task, entry)

    def avg(field: str) -> dict[str, float]:
        tasks = getattr(results[0], field).keys()
        return {t: round(sum(getattr(r, field)[t] for r in results) / len(results), 4) for t in tasks}

    return {
        "buffers": store.sizes(),
        "validProposalRate": avg("valid_rate"),
        "solveRate": avg("solve_rate"),
        "proposerReward": avg("proposer_reward"),
        "solverReward": _solver_reward(results),
        "solverRewardRange": _solver_range(results),
    }


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"time": contract.log_time(), **record}, sort_keys=True) + "\n")
    sys.stdout.flush()


def run(cfg: config.Config, pool_factory: PoolFactory) -> dict[str, Any]:
    """Train per `cfg`; return the final status summary (rank 0's is the one that counts)."""
    d = distributed.init()
    sp = cfg.spec.self_play
    if sp.batch_size < d.world_size:
        raise errors.UserError(
            f"spec.selfPlay.batchSize {sp.batch_size} is the global batch per task and role; "
            f"it must be at least the {d.world_size} ranks so every rank has a share"
        )
    torch.manual_seed(sp.seed)
    pol = policy.load(cfg.spec.policy, str(d.device) if d.device.type == "cuda" else None)
    run_store = artifacts.Store(cfg.artifacts_uri)
    state = checkpoint.load_latest(run_store)
    # A resumed run takes its weights from the checkpoint; DDP hands rank 0's weights to the others.
    if cfg.spec.policy.warm_start is not None and state is None and d.is_main:
        _warm_start(cfg, pol)
    module: Any = pol.module
    if d.distributed:
        module = torch.nn.parallel.DistributedDataParallel(pol.module)
    optimizer = torch.optim.AdamW(
        pol.module.parameters(), lr=sp.learning_rate, betas=(0.9, 0.999), weight_decay=sp.weight_decay
    )
    store, start, ckpt_uri = buffers.Buffers.seeded(sp.max_buffer_size), 1, None
    history: list[dict[str, Any]] = []
    if state is not None:
        done, store = checkpoint.restore(state, pol.module, optimizer)
        start, ckpt_uri = done + 1, state["uri"]
        history = list(state.get("extra", {}).get(HISTORY, []))
    summary: dict[str, Any] = {
        "step": start - 1,
        "buffers": store.sizes(),
        "batch": batch_share(sp.batch_size, d.world_size),
    }
    if ckpt_uri:
        summary["checkpoint"] = ckpt_uri
    if d.is_main:
        emit(
            {
                "event": "start",
                "step": start - 1,
                "steps": sp.steps,
                "resumed": ckpt_uri,
                "world": d.world_size,
            }
        )
    started = time.monotonic()
    ho = cfg.spec.held_out
    held = heldout.task_set(cfg.spec) if ho.every and d.is_main else {}
    with pool_factory(cfg) as raw_pool:
        pool = metered(raw_pool)
        if held and not history:
            _held_out(cfg, pol, raw_pool, held, start - 1, history, run_store)
        for step in range(start, sp.steps + 1):
            summary, stats = _step(cfg, d, step, pol, module, optimizer, store, pool)
            if held and (step % ho.every == 0 or step == sp.steps):
                _held_out(cfg, pol, raw_pool, held, step, history, run_store)
            if history:
                summary["heldOut"] = history[-1]
            if d.is_main and (step % sp.checkpoint_every == 0 or step == sp.steps):
                extra = {**summary, HISTORY: history}
                ckpt_uri = checkpoint.save(run_store, step, pol.module, optimizer, store, extra)
            if ckpt_uri:
                summary["checkpoint"] = ckpt_uri
            if d.is_main:
                emit(
                    {
                        "event": "step",
                        **summary,
                        "steps": sp.steps,
                        **stats,
                        "seconds": round(time.monotonic() - started, 2),
                    }
                )
    summary.pop("executor", None)  # a per-step figure, not part of the run's result
    if d.is_main:
        finish(cfg, run_store, summary)
        emit({"event": "done", **summary})
    distributed.barrier(d)
    distributed.shutdown(d)
    return summary


HISTORY = "heldOutHistory"  # kept in checkpoints, not in the result (the termination message is small)


def _warm_start(cfg: config.Config, pol: Any) -> None:
    """Load the cached warm-start weights (training them first when absent)."""
    folder = pretrain.ensure(cfg.spec, log=emit)
    pol.module.load_state_dict(torch.load(folder / "weights.pt", map_location=pol.device, weights_only=True))
    emit({"event": "warmStart", "cache": str(folder), "card": json.loads((folder / "card.json").read_text())})


def _held_out(
    cfg: config.Config,
    pol: Any,
    pool: Any,
    held: dict[str, Any],
    step: int,
    history: list[dict[str, Any]],
    run_store: artifacts.Store,
) -> None:
    """Evaluate on the held-out set, report it, redraw the curve."""
    figures = {"step": step, **heldout.evaluate(pol, pool, cfg.spec, held)}
    history.append(figures)
    emit({"event": "heldOut", **figures})
    run_store.write_bytes(HELD_OUT_PNG, heldout.curve_png(history))


HELD_OUT_PNG = "heldout.png"


def _step(
    cfg: config.Config,
    d: distributed.World,
    step: int,
    pol: Any,
    module: Any,
    optimizer: torch.optim.Optimizer,
    store: buffers.Buffers,
    pool: Metered,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One step: rollouts on every rank, one update, merged figures (summary, update stats)."""
    sp = cfg.spec.self_play
    result = rollout.play(pol, store, pool, sp, step, _seed(cfg, d, step), d.rank, d.world_size)
    meter = pool.take()
    gathered = distributed.all_gather(d, (result, meter))
    population = [
        (
            [r for res, _ in gathered for r in res.batches[i].rewards],
            [n for res, _ in gathered for n in trr.lengths(res.batches[i])],
        )
        for i in range(len(result.batches))
    ]
    stats = trr.update(
        pol,
        module,
        optimizer,
        result.batches,
        entropy_coefficient=sp.entropy_coefficient,
        grad_clip=sp.grad_clip,
        weighting=WEIGHTING,
        temperature=sp.temperature,
        population=population,
        world=d.world_size,
    )
    summary = {"step": step, **_merge([r for r, _ in gathered], store)}
    summary["batch"] = batch_share(sp.batch_size, d.world_size)
    summary["executor"] = _throughput([m for _, m in gathered])
    return summary, {
        "loss": round(stats.loss, 6),
        "gradNorm": round(stats.grad_norm, 6),
        "tokens": stats.tokens,
    }


def finish(cfg: config.Config, run_store: artifacts.Store, summary: dict[str, Any]) -> None:
    """result.json and the termination message, as every workload writes them (flywheel.results)."""
    message = {"phase": "Succeeded", "message": f"self-play finished at step {summary['step']}", **summary}
    compact = json.dumps(message, sort_keys=True, separators=(",", ":"))
    results.write(run_store, {"kind": "SelfPlayRun", "name": cfg.name, **summary}, compact)
