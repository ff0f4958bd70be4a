"""flywheel.artifacts.Store on s3:// against a real S3 API over HTTP (moto's server, an emulator:
see conftest): bytes, listings, removal, and publishing and fetching whole folders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from flywheel import artifact_cache, artifacts, errors
from flywheel.api import contract


def test_bytes_round_trip(s3) -> None:
    store = artifacts.Store(s3.root).child("default", "deployments", "shuttle")
    assert store.list() == [] and store.list("nothing/here") == []
    assert not store.exists("a.bin")
    uri = store.write_bytes("a.bin", b"\x00\x01payload")
    store.write_bytes("sub/b.txt", b"b")
    assert uri == f"{s3.root}/default/deployments/shuttle/a.bin"
    assert store.read_bytes("a.bin") == b"\x00\x01payload"
    assert store.exists("a.bin") and store.exists("sub/b.txt")
    assert store.list() == ["a.bin", "sub"]
    assert store.list("sub") == ["b.txt"]
    store.write_bytes("a.bin", b"replaced")
    assert store.read_bytes("a.bin") == b"replaced"
    store.remove("a.bin")
    store.remove("a.bin")  # missing is fine
    assert not store.exists("a.bin") and store.list() == ["sub"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a.bin")


def test_listing_sees_objects_other_processes_wrote(s3) -> None:
    """A long-lived reader (the DriftMonitor operator) must see files serving replicas add later:
    s3fs's default listing cache would hide them."""
    store = artifacts.Store(s3.root).child("traffic")
    store.write_bytes("1.parquet", b"1")
    assert store.list() == ["1.parquet"]
    s3.client().put_object(Bucket=s3.bucket, Key="traffic/2.parquet", Body=b"2")
    assert store.list() == ["1.parquet", "2.parquet"]
    assert store.exists("2.parquet")


def _model(root: Path, version: str, extra: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True)
    files = {"model_int8.onnx": f"onnx {version}".encode(), "nested/preprocessor.json": b"{}"}
    for name, data in {**files, **(extra or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / contract.MODEL_CARD).write_text(json.dumps({"version": version}))
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_put_dir_and_fetch_dir(s3, tmp_path: Path) -> None:
    store = artifacts.Store(s3.root).child("default", "trainingruns", "a")
    v1 = _model(tmp_path / "v1", "a-1", {"old-only.bin": b"x"})
    assert store.put_dir("model", v1) == f"{s3.root}/default/trainingruns/a/model"
    assert sorted(store.list("model")) == ["model_card.json", "model_int8.onnx", "nested", "old-only.bin"]

    cache = tmp_path / "cache" / "a"
    assert store.fetch_dir("model", cache) == cache
    assert _tree(cache) == _tree(v1)
    assert [p.name for p in cache.parent.iterdir()] == ["a"]  # no staging folder left behind

    # Complete and unchanged: not downloaded again (a body file deleted remotely is not noticed).
    s3.client().delete_object(Bucket=s3.bucket, Key="default/trainingruns/a/model/model_int8.onnx")
    assert store.fetch_dir("model", cache) == cache
    assert (cache / "model_int8.onnx").read_bytes() == b"onnx a-1"

    # Republished: the card differs, so the cache is replaced whole; leftovers of v1 are gone.
    v2 = _model(tmp_path / "v2", "a-2")
    store.put_dir("model", v2)
    assert not store.exists("model/old-only.bin")
    store.fetch_dir("model", cache)
    assert _tree(cache) == _tree(v2)


def test_fetch_dir_refuses_an_incomplete_folder(s3, tmp_path: Path) -> None:
    """No card (an upload cut short, or a rewrite under way): nothing is fetched."""
    s3.client().put_object(Bucket=s3.bucket, Key="m/model_int8.onnx", Body=b"half")
    store = artifacts.Store(s3.root)
    with pytest.raises(errors.UserError, match=r"no model_card\.json"):
        store.fetch_dir("m", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_fetch_dir_keeps_keys_inside_the_cache(s3, tmp_path: Path) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="m/model_card.json", Body=b"{}")
    client.put_object(Bucket=s3.bucket, Key="m/x/../../../escaped", Body=b"evil")
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(errors.UserError, match=r"'\.\.'"):
        artifacts.Store(s3.root).fetch_dir("m", cache)
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))


def test_fetch_dir_on_a_local_store_is_the_folder_itself(tmp_path: Path) -> None:
    model = _model(tmp_path / "models" / "m", "m-1")
    store = artifacts.Store((tmp_path / "models").as_uri())
    assert store.fetch_dir("m", tmp_path / "unused") == model
    assert not (tmp_path / "unused").exists()


def test_fetch_dir_keeps_nothing_when_the_folder_is_republished_meanwhile(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new card uploaded between the first card read and the end of the download: the copy would
    mix two versions, so it is dropped and the caller retries."""
    store = artifacts.Store(s3.root)
    store.put_dir("m", _model(tmp_path / "v1", "m-1"))
    real = artifacts._fs()

    class RepublishDuringGet:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(real, name)

        def get(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            real.get(*args, **kwargs)
            s3.client().put_object(Bucket=s3.bucket, Key="m/model_card.json", Body=b'{"version": "m-2"}')

    with monkeypatch.context() as patched, pytest.raises(artifacts.ChangedWhileRead):
        patched.setattr(artifacts, "_fs", RepublishDuringGet)
        store.fetch_dir("m", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    assert json.loads((store.fetch_dir("m", tmp_path / "cache") / contract.MODEL_CARD).read_text()) == {
        "version": "m-2"
    }


def test_local_dir_keeps_only_the_most_recently_used_models(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived process fetching one model after another (the DriftMonitor operator, a serving
    pod across promotions) keeps `keep` of them; a model used again counts as recent."""
    monkeypatch.setattr(artifact_cache, "MIN_AGE_S", 0.0)
    store = artifacts.Store(s3.root)
    uris = {v: store.put_dir(v, _model(tmp_path / "src" / v, v)) for v in ("m1", "m2", "m3")}
    cache = tmp_path / "cache"
    first = artifact_cache.local_dir(uris["m1"], cache, keep=2)
    second = artifact_cache.local_dir(uris["m2"], cache, keep=2)
    assert artifact_cache.local_dir(uris["m1"], cache, keep=2) == first  # m1 used again: newest
    third = artifact_cache.local_dir(uris["m3"], cache, keep=2)
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, third.name])
    assert not second.exists()
    assert json.loads((first / contract.MODEL_CARD).read_text()) == {"version": "m1"}
    # Pruned is not lost: the next use fetches it again.
    assert json.loads(
        (artifact_cache.local_dir(uris["m2"], cache, keep=2) / contract.MODEL_CARD).read_text()
    ) == {"version": "m2"}


def test_prune_cache_spares_recent_entries_and_staging_folders(tmp_path: Path) -> None:
    """Entries past `keep` go only once unused for `min_age_s` (a reader may hold the path), and a
    fetch's own dot-named staging or previous copy is never touched."""
    now = time.time()
    ages = {"newest": 0, "recent": 60, "old": 3600, "older": 7200, ".old.staging": 9000}
    for name, age in ages.items():
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (now - age, now - age))
    removed = artifact_cache.prune(tmp_path, keep=1, min_age_s=600)
    assert sorted(p.name for p in removed) == ["old", "older"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".old.staging", "newest", "recent"]
    assert artifact_cache.prune(tmp_path / "absent", keep=1) == []
