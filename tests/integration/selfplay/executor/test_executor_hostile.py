"""The hostile corpus, in the configuration we ship and as root: nothing reaches the host.

The self-play image runs as a non-root uid with every capability dropped and no privilege
escalation; there a chroot, a uid switch and (under a RuntimeDefault seccomp profile) a user
namespace are all refused, and the kernel layers that need no privilege (the seccomp filter,
Landlock) are the boundary. CI runs as root, so the corpus runs four times:

- as root, in this process, every layer on;
- as uid 10001 with no capabilities and no_new_privs (`setpriv`), every layer the kernel grants;
- the same uid with namespaces and chroot switched off: a pod whose runtime refuses user namespaces;
- the same uid with Landlock off too: the seccomp filter alone.

Each run goes through `harness.py` (a real pool, a host to attack, a benign program after every
hostile one); a report with any breach, a forged verdict, an exception out of the pool or a wrong
benign answer fails the test, naming the program.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from bench import _nonroot
from tests.integration.selfplay.executor import attacks, benign, corpus_data, harness, test_executor_benign

pytestmark = pytest.mark.slow  # a few programs run into the 1 s timeout on purpose, in each run

REPO = pathlib.Path(__file__).resolve().parents[4]
SANDBOX_UID = 10001  # the self-play image's USER
POOL = {"workers": 2, "timeout_s": 1.0, "memory_mb": 256}
POD_WITHOUT_USERNS = ["namespaces", "chroot"]
SECCOMP_ONLY = ["namespaces", "chroot", "landlock"]


def _corpus() -> list[dict[str, Any]]:
    # The hand-written programs name the verdicts they may get (default: rejected); the generated
    # ones are judged by their effects alone (breaches, forged verdicts, exceptions).
    written = [
        {**entry, "mode": "proposal", "expect": entry.get("expect", ["rejected"])}
        for entry in corpus_data.load("hostile.yaml")
    ]
    return written + attacks.corpus()


CORPUS = _corpus()
EXPECT = {entry["name"]: entry.get("expect") for entry in CORPUS}
# The benign corpus rides along in every run: the same layers must still give plain Python's answers.
BENIGN = [
    {"name": name, "mode": "benign", "code": code, "input": inputs} for name, code, inputs in benign.PROGRAMS
]


def test_corpus_is_big_enough_and_covers_every_class() -> None:
    assert len(CORPUS) >= 100
    assert len({entry["name"] for entry in CORPUS}) == len(CORPUS)
    modes = {entry["mode"] for entry in CORPUS}
    assert modes == {"proposal", "raw", "induction", "raw_induction", "abduction"}


def _assert_contained(result: dict[str, Any]) -> None:
    assert result["isolation"]["seccomp"] is True
    assert result["jail_empty"]
    assert len(result["reports"]) == len(CORPUS) + len(BENIGN)
    hostile, ordinary = result["reports"][: len(CORPUS)], result["reports"][len(CORPUS) :]
    rejected = [report["name"] for report in ordinary if report["kind"] != "ok"]
    assert len(rejected) <= 0.02 * len(BENIGN), rejected
    for report, (name, code, inputs) in zip(ordinary, benign.PROGRAMS, strict=True):
        if report["kind"] == "ok":
            expected = ast.literal_eval(test_executor_benign._plain(code, inputs))
            assert ast.literal_eval(report["extra"]) == expected, (name, report)
    failures = []
    for report in hostile:
        expected = EXPECT[report["name"]]
        problems = list(report["breaches"])
        if report["kind"] in ("raised", "forged"):
            problems.append(f"{report['kind']}: {report['extra']}")
        if expected is not None and report["kind"] not in expected:
            problems.append(f"verdict {report['kind']}, expected one of {expected}")
        if not report["benign_ok"]:
            problems.append("the pool no longer answers a benign program correctly")
        if problems:
            failures.append(f"{report['name']}: {problems}")
    assert failures == [], "\n".join(failures)


def test_contained_as_root_with_every_layer() -> None:
    result = harness.run({"pool": POOL, "corpus": CORPUS + BENIGN})
    _assert_contained(result)


@pytest.fixture(scope="module")
def as_sandbox_uid() -> Iterator[Any]:
    if os.getuid() != 0:  # already non-root (a developer's machine): run in this process
        yield lambda disable: harness.run({"pool": {**POOL, "disable": disable}, "corpus": CORPUS + BENIGN})
        return
    # Not under pytest's tmp_path: /tmp/pytest-of-root is private to root.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="flywheel-nonroot-"))
    tree = _nonroot.copy_files(REPO, _nonroot.EXECUTOR_FILES, scratch / "tree")
    shutil.copy(pathlib.Path(harness.__file__), tree / "harness.py")
    _nonroot.readable(scratch)
    python = _nonroot.interpreter(SANDBOX_UID)

    def run(disable: list[str]) -> dict[str, Any]:
        config = json.dumps({"pool": {**POOL, "disable": disable}, "corpus": CORPUS + BENIGN})
        done = subprocess.run(
            _nonroot.command(SANDBOX_UID, python, "-B", "harness.py"),
            input=config,
            capture_output=True,
            text=True,
            cwd=tree,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "LC_ALL": "C.UTF-8"},
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert result["uid"] == SANDBOX_UID and result["cap_eff"] == 0 and result["no_new_privs"]
        return result

    yield run
    shutil.rmtree(scratch)


@pytest.mark.parametrize(
    "disable",
    [[], POD_WITHOUT_USERNS, SECCOMP_ONLY],
    ids=["every_layer", "pod_without_userns", "seccomp_only"],
)
def test_contained_as_a_non_root_uid_without_capabilities(as_sandbox_uid: Any, disable: list[str]) -> None:
    result = as_sandbox_uid(disable)
    isolation = result["isolation"]
    assert isolation["setuid"] is False  # nothing to switch to: the trainer's own uid
    if disable:
        assert not isolation["userns"] and not isolation["chroot"]
    if "landlock" in disable:
        assert isolation["landlock"] == 0
    _assert_contained(result)
