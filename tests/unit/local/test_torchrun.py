"""The local torchrun: world size from the spec, capped by cores, threads split between workers."""

from __future__ import annotations

import sys

from flywheel.api import common
from flywheel.local import torchrun


def test_two_cpu_workers_on_two_cores_get_one_thread_each():
    run = torchrun.launch(common.Resources(procs_per_replica=2), "flywheel.training", cores=2)
    assert (run.nproc, run.threads) == (2, 1)
    assert run.env == {"OMP_NUM_THREADS": "1"}
    assert run.argv == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "flywheel.training"]  # fmt: skip


def test_world_size_is_replicas_times_procs_capped_by_cores():
    spec = common.Resources(replicas=4, procs_per_replica=2)  # 8 ranks on a cluster
    assert torchrun.launch(spec, "m", cores=16).nproc == 8
    assert torchrun.launch(spec, "m", cores=16).threads == 2
    assert torchrun.launch(spec, "m", cores=2).nproc == 2
    gpus = common.Resources(replicas=2, gpus_per_replica=4)  # one process per GPU
    assert torchrun.launch(gpus, "m", cores=64).nproc == 8


def test_a_single_process_gets_every_core():
    run = torchrun.launch(common.Resources(), "m", cores=6)
    assert (run.nproc, run.threads) == (1, 6)
