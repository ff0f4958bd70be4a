"""The self-play trainer: `python -m flywheel.selfplay` or `torchrun -m flywheel.selfplay`.

Every rank plays its own rollouts (its own RNG stream) against buffers that all ranks keep equal:
each step's valid proposals are all-gathered and appended in rank order. The update is one
optimizer step with gradients all-reduced by DistributedDataParallel (gloo on CPU, NCCL on GPU).
Rank 0 alone prints a JSON line per step, writes checkpoints (resuming from the newest), the
final result.json and the compact termination message the operator reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from flywheel import artifacts
from flywheel.api import contract
from flywheel.selfplay import buffers, checkpoint, config, policy, rollout, trr

PoolFactory = Callable[[config.Config], Any]
WEIGHTING = "sequence"  # TRR++ whitening: per sequence (the paper's formula); "token" = reference code


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_dist() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def _device() -> str | None:
    if torch.cuda.is_available():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return None


def _gather(obj: Any, d: Dist) -> list[Any]:
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def _seed(cfg: config.Config, d: Dist, step: int) -> random.Random:
    """A per-(rank, step) RNG, so a resumed run draws what the uninterrupted one would have."""
    key = f"{cfg.spec.self_play.seed}:{d.rank}:{step}"
    torch.manual_seed(int.from_bytes(key.encode(), "little") % (2**63))
    return random.Random(key)


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
    }


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def run(cfg: config.Config, pool_factory: PoolFactory) -> dict[str, Any]:
    """Train per `cfg`; return the final status summary (rank 0's is the one that counts)."""
    d = _init_dist()
    sp = cfg.spec.self_play
    torch.manual_seed(sp.seed)
    pol = policy.load(cfg.spec.policy, _device())
    module: Any = pol.module
    if d.world > 1:
        module = torch.nn.parallel.DistributedDataParallel(pol.module)
    optimizer = torch.optim.AdamW(
        pol.module.parameters(), lr=sp.learning_rate, betas=(0.9, 0.999), weight_decay=sp.weight_decay
    )
    run_store = artifacts.Store(cfg.artifacts_uri)
    store, start, ckpt_uri = buffers.Buffers.seeded(sp.max_buffer_size), 1, None
    state = checkpoint.load_latest(run_store)
    if state is not None:
        done, store = checkpoint.restore(state, pol.module, optimizer)
        start, ckpt_uri = done + 1, state["uri"]
    summary: dict[str, Any] = {"step": start - 1, "buffers": store.sizes()}
    started = time.monotonic()
    with pool_factory(cfg) as pool:
        for step in range(start, sp.steps + 1):
            rng = _seed(cfg, d, step)
            result = rollout.play(pol, store, pool, sp, step, rng)
            stats = trr.update(
                pol,
                module,
                optimizer,
                result.batches,
                entropy_coefficient=sp.entropy_coefficient,
                grad_clip=sp.grad_clip,
                weighting=WEIGHTING,
            )
            summary = {"step": step, **_merge(_gather(result, d), store)}
            if d.main and (step % sp.checkpoint_every == 0 or step == sp.steps):
                ckpt_uri = checkpoint.save(run_store, step, pol.module, optimizer, store, summary)
            if ckpt_uri:
                summary["checkpoint"] = ckpt_uri
            if d.main:
                emit(
                    {
                        "event": "step",
                        **summary,
                        "loss": round(stats.loss, 6),
                        "gradNorm": round(stats.grad_norm, 6),
                        "tokens": stats.tokens,
                        "seconds": round(time.monotonic() - started, 2),
                    }
                )
    if d.main:
        finish(cfg, run_store, summary)
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def finish(cfg: config.Config, run_store: artifacts.Store, summary: dict[str, Any]) -> None:
    """result.json (FLYWHEEL_RESULT_PATH or <run>/result.json) and the termination message."""
    body = json.dumps({"kind": "SelfPlayRun", "name": cfg.name, **summary}, sort_keys=True)
    result_path = os.environ.get(contract.ENV_RESULT_PATH)
    if result_path:
        artifacts.atomic_write_text(Path(result_path), body)
    else:
        run_store.write_bytes(contract.RESULT_FILE, body.encode())
    log = os.environ.get(contract.ENV_TERMINATION_LOG) or (
        contract.TERMINATION_LOG if os.access(contract.TERMINATION_LOG, os.W_OK) else None
    )
    if log:
        message = {
            "phase": "Succeeded",
            "message": f"self-play finished at step {summary['step']}",
            **summary,
        }
        Path(log).write_text(json.dumps(message, sort_keys=True, separators=(",", ":")))
