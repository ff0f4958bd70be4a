"""How a distributed workload runs on one machine: `torchrun --standalone` with N local workers.

On Kubernetes a PyTorchJob has `replicas` pods of `nproc_per_replica()` processes each. Locally the
same world size runs as one torchrun, capped by the cores this process may use (more workers than
cores only adds contention), and OMP_NUM_THREADS splits the cores between the workers so that two
workers do not each start a thread per core and oversubscribe the machine. --standalone makes
torchrun pick a free rendezvous port, so several runs can train side by side.
"""

from __future__ import annotations

import dataclasses
import sys

from flywheel.api import common


@dataclasses.dataclass(frozen=True)
class Launch:
    """One local torchrun: how many workers, how many threads each, and the command line."""

    nproc: int
    threads: int
    argv: list[str]

    @property
    def env(self) -> dict[str, str]:
        return {"OMP_NUM_THREADS": str(self.threads)}


def launch(resources: common.Resources, module: str, cores: int) -> Launch:
    """The torchrun for `resources` (world size = replicas x processes per replica) on `cores`."""
    wanted = resources.nproc_per_replica() * resources.replicas
    nproc = max(1, min(wanted, cores))
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        module,
    ]
    return Launch(nproc=nproc, threads=max(1, cores // nproc), argv=argv)
