"""`flywheel validate` on a corpus of bad resources: exit 1, one line per problem naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel import cli
from flywheel.api import crds, loading
from tests.unit.api import cel

BAD = sorted((Path(__file__).parent / "bad").glob("*.yaml"))
EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))
EXAMPLES = [p for p in EXAMPLES if p.name != "kustomization.yaml"]  # kustomize's, not a resource


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: '"
    return first.removeprefix("# expect: ")


def test_corpus_is_big_enough():
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_resource_is_rejected_with_a_clear_line(path, capsys):
    assert cli.main(["validate", "-f", str(path)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert _expected(path) in text
    assert "Traceback" not in text
    for line in out.out.strip().splitlines():
        assert line.startswith(f"{path}:"), line


CROSS_FIELD = ["05", "06", "07", "08", "09", "15", "17", "24", "30", "31"]


@pytest.mark.parametrize("prefix", CROSS_FIELD)
def test_cel_rules_agree_with_the_models(prefix):
    """What the models reject across fields, the API server's CEL rules reject too."""
    (path,) = [p for p in BAD if p.name.startswith(prefix)]
    (doc,) = loading.read_documents(path)
    schema = crds.openapi_schema(doc["kind"])
    assert cel.failures(schema, cel.defaulted(schema, doc)), f"no CEL rule rejects {path.name}"


def test_valid_files_pass(capsys):
    args = ["validate"] + [a for p in EXAMPLES for a in ("-f", str(p))]
    assert cli.main(args) == 0
    assert "valid" in capsys.readouterr().out


def test_missing_file_is_one_line(capsys):
    assert cli.main(["validate", "-f", "/nonexistent.yaml"]) == 1
    assert "no such file" in capsys.readouterr().out


def test_kubernetes_target_refuses_artifacts_in_the_pod_unless_the_platform_has_a_store(
    capsys, monkeypatch, tmp_path
):
    monkeypatch.delenv("FLYWHEEL_ARTIFACTS_URI", raising=False)
    local = str(Path(__file__).parents[3] / "examples" / "trainingrun-local.yaml")
    written = tmp_path / "scratch.yaml"
    text = Path(local).read_text()
    written.write_text(
        text.replace("name: shuttle", "name: scratch") + "  artifacts:\n    uri: file:///data/runs\n"
    )
    assert cli.main(["validate", "-f", local]) == 0  # locally the default is the home's store
    assert cli.main(["validate", "-f", local, "--target", "kubernetes"]) == 1
    out = capsys.readouterr().out
    assert "spec.artifacts.uri: file:///var/lib/flywheel/artifacts is a path inside the pod" in out
    assert "pvc://" in out and "artifacts.uri" in out
    # The default with a platform store is that store; a file:// path the author wrote never is.
    assert cli.main(["validate", "-f", local, "--target", "kubernetes", "--artifacts-uri", "s3://b/p"]) == 0
    monkeypatch.setenv("FLYWHEEL_ARTIFACTS_URI", "s3://b/p")
    assert cli.main(["validate", "-f", local, "--target", "kubernetes"]) == 0
    capsys.readouterr()
    assert cli.main(["validate", "-f", str(written), "--target", "kubernetes"]) == 1
    assert "file:///data/runs is a path inside the pod" in capsys.readouterr().out
