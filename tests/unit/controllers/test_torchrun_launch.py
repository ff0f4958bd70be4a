"""The rendered launch command works with what the Training Operator injects: real torchrun, two
"nodes" on loopback (Master and Worker pods stand-ins; the operator and DNS are the only fakes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.api import common
from flywheel.controllers import pytorchjob, settings
from tests.unit.controllers import upstream

PROBE = "tests.unit.controllers.torchrun_probe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_rendered_command_forms_the_world_from_pet_env(tmp_path: Path) -> None:
    resources = common.Resources(replicas=2, procs_per_replica=2)
    owner = upstream.trainingrun()
    job, _ = pytorchjob.render_job(
        owner,
        resources=resources,
        networking=common.Networking(),
        scheduling=common.Scheduling(),
        run_policy=common.RunPolicy(),
        artifacts=common.Artifacts(),
        image="unused",
        module=PROBE,
        config={},
        component="trainer",
        settings=settings.Settings(),
    )
    specs = job["spec"]["pytorchReplicaSpecs"]
    nnodes = sum(s["replicas"] for s in specs.values())
    command = specs["Master"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "torchrun"
    launcher = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    port = free_port()
    procs = []
    for node_rank in range(nnodes):
        # What the operator injects (reference 1.8); MASTER_ADDR is <job>-master-0 in a cluster.
        env = {
            **os.environ,
            "PET_NNODES": str(nnodes),
            "PET_NPROC_PER_NODE": job["spec"]["nprocPerNode"],
            "PET_NODE_RANK": str(node_rank),
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": str(port),
            "PYTHONPATH": str(upstream.REPO),
            "PROBE_DIR": str(tmp_path),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                launcher, env=env, cwd=upstream.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()[-2000:]
    seen = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank-*.json"))]
    assert sorted(int(s["RANK"]) for s in seen) == [0, 1, 2, 3]
    assert {s["WORLD_SIZE"] for s in seen} == {"4"}  # process-level, not the operator's node count
    assert {s["LOCAL_WORLD_SIZE"] for s in seen} == {"2"}
    assert sorted((s["GROUP_RANK"], s["LOCAL_RANK"]) for s in seen) == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
