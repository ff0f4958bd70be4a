"""The in-cluster example-data publisher, for real on loopback: build the repository (local DVC
remote), serve it with the real HTTP server, and resolve both tags through resolve.py (git clone
over dumb HTTP, DVC fetch). What cannot run here: the s3 remote on the kind MinIO (no MinIO, no
cluster); tests/unit/data/test_publish.py checks the DVC config written for it instead."""

from __future__ import annotations

import collections.abc
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from flywheel.api import trainingrun
from flywheel.data import examples, publish, resolve

pytestmark = pytest.mark.slow  # builds a real DVC repository (~5-10 s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> collections.abc.Iterator[tuple[str, Path]]:
    """(base URL, publisher directory): the pod's command, `python -m flywheel.data.publish DIR
    --serve PORT`, run for real, waited for as the readiness probe does (GET info/refs)."""
    root = tmp_path_factory.mktemp("publish")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flywheel.data.publish", str(root), f"--serve={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the publisher exited"
            try:
                with urllib.request.urlopen(f"{base}/{publish.REPO_NAME}/info/refs", timeout=2) as got:
                    assert got.status == 200
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "the publisher never became ready"
                time.sleep(0.2)
        # Ready only once published: the served repository is complete, the staging name gone.
        assert (root / publish.PUBLIC / publish.REPO_NAME / "info" / "refs").is_file()
        assert not (root / publish.PUBLIC / (publish.REPO_NAME + ".tmp")).exists()
        yield base, root
    finally:
        proc.terminate()
        proc.wait(10)


def test_both_tags_resolve_over_http_with_different_rows(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    got = {}
    for tag in ("period-1", "period-2"):
        data = trainingrun.Data(repo=f"{base}/{publish.REPO_NAME}", rev=tag, path=examples.DATA_PATH)
        got[tag] = resolve.resolve(data, tmp_path / "cache")
        assert got[tag].lineage.rows == examples.ROWS_PER_PERIOD
        assert got[tag].lineage.repo == data.repo
    one, two = (pd.read_csv(got[t].local_path) for t in ("period-1", "period-2"))
    assert got["period-1"].lineage.commit != got["period-2"].lineage.commit
    assert got["period-1"].lineage.hash != got["period-2"].lineage.hash
    assert not one.equals(two)
    # The periods really differ as the example promises: later mission time, more anomalies.
    assert two[examples.TIME_COLUMN].min() > one[examples.TIME_COLUMN].max() - 1
    assert two[examples.TARGET].mean() > 10 * one[examples.TARGET].mean()  # anomaly rate


def test_served_repository_is_read_only(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    url = f"{base}/{publish.REPO_NAME}"
    with urllib.request.urlopen(f"{url}/HEAD", timeout=5) as head:  # the manifest's liveness probe
        assert head.read().strip() == b"ref: refs/heads/main"
    for method, path, code in (
        ("POST", "git-receive-pack", 403),
        ("POST", "info/refs", 403),
        ("PUT", "info/refs", 501),
        ("DELETE", "HEAD", 501),
    ):
        request = urllib.request.Request(f"{url}/{path}", data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == code, (method, path)
    with pytest.raises(urllib.error.HTTPError) as advert:  # http-backend refuses the push advert
        urllib.request.urlopen(f"{url}/info/refs?service=git-receive-pack", timeout=5)
    assert advert.value.code == 403
    # Nothing outside public/ is reachable: the working repository and its DVC remote stay private.
    with pytest.raises(urllib.error.HTTPError) as outside:
        urllib.request.urlopen(f"{base}/../{publish.WORK}/shuttle/.dvc/config", timeout=5)
    assert outside.value.code == 404
    # A real `git push` over HTTP fails and the served refs do not move.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, capture_output=True)
    before = (root / publish.PUBLIC / publish.REPO_NAME / "info" / "refs").read_text()
    examples.git(clone, "commit", "-q", "--allow-empty", "-m", "should not land")
    pushed = subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:main"], cwd=clone, capture_output=True, check=False
    )
    assert pushed.returncode != 0
    assert (root / publish.PUBLIC / publish.REPO_NAME / "info" / "refs").read_text() == before


def test_rebuild_replaces_a_previous_build_with_the_same_commits(served: tuple[str, Path]) -> None:
    """A restarted publisher container finds its emptyDir full: it rebuilds, same data and hashes."""
    _, root = served
    refs = (root / publish.PUBLIC / publish.REPO_NAME / "info" / "refs").read_text()
    assert "refs/tags/period-1" in refs and "refs/tags/period-2" in refs
    bare = publish.build(root)
    assert (bare / "info" / "refs").read_text() == refs  # same commits: recorded lineage still resolves
    assert not bare.with_name(publish.REPO_NAME + ".tmp").exists()
    assert "origin" not in examples.git(bare, "remote")
