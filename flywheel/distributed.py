"""One entry point for 1 or N processes, for every workload that trains (flywheel.training,
flywheel.selfplay): read torchrun's env, pick the backend, size the thread pool, and the few
collectives they use. A world of one initialises nothing and each collective is the identity."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclasses.dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(env: dict[str, str] | None = None) -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK): NCCL when this
    process has a GPU, gloo on CPU. Without torchrun it is a world of one and nothing is initialised."""
    env = dict(os.environ) if env is None else env
    rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    local_rank = int(env.get("LOCAL_RANK", "0"))
    local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    set_threads(env, local_world)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend=backend(device), device_id=device if device.type == "cuda" else None
        )
    return World(rank, world, local_rank, local_world, device)


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def set_threads(env: dict[str, str], local_world: int) -> int:
    """OMP_NUM_THREADS when set (torchrun sets 1 for N>1), else the cores split between local workers,
    so two workers on two cores do not each start two threads and fight."""
    configured = env.get("OMP_NUM_THREADS")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = int(configured) if configured else max(1, cores // max(1, local_world))
    torch.set_num_threads(threads)
    return threads


def all_mean(world: World, value: float) -> float:
    """Mean of a scalar across ranks (identity for a world of one)."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=world.device)
    torch_dist.all_reduce(tensor)
    return float(tensor.item()) / world.world_size


def all_gather(world: World, obj: Any) -> list[Any]:
    """Every rank's object, in rank order ([obj] for a world of one)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's object on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        torch_dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
