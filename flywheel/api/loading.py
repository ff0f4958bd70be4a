"""Reading resource files: YAML streams of Flywheel manifests, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pydantic
import yaml

from flywheel import errors
from flywheel.api import KINDS, common, trainingrun
from flywheel.api.common import Manifest

PATTERN_HINTS = {
    common.DNS_LABEL_PATTERN: "use lowercase letters, digits and '-', starting and ending alphanumeric",
    common.QUANTITY_PATTERN: "use a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi",
    common.ARTIFACT_URI_PATTERN: "use file:///path, pvc://claim/path or s3://bucket/prefix",
    trainingrun.ENTRY_POINT_PATTERN: "use module:function, e.g. my_models.tabular:train",
}


# A folder of manifests (e.g. examples/custom-tabular/) is applied in this order, whatever its file
# names: a Deployment serves a TrainingRun's model, a DriftMonitor watches a Deployment.
KIND_ORDER = ("TrainingRun", "SelfPlayRun", "Deployment", "DriftMonitor")


def manifest_files(path: str | Path) -> list[Path]:
    """The YAML files of a folder (sorted; kustomization.yaml is kustomize's, not a resource)."""
    folder = Path(path)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [p for p in files if p.name not in ("kustomization.yaml", "kustomization.yml")]


def read_documents(path: str | Path) -> list[Manifest]:
    """Every non-empty YAML document of a file (or '-' for stdin), or of every YAML file of a folder
    in KIND_ORDER; UserError on unreadable YAML."""
    if str(path) != "-" and Path(path).is_dir():
        docs = [doc for file in manifest_files(path) for doc in read_documents(file)]
        if not docs:
            raise errors.UserError(
                f"{path}: a folder without YAML manifests; pass a file or a folder of them"
            )
        rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
        return sorted(docs, key=lambda d: rank.get(str(d.get("kind")), len(rank)))
    source = Path(path)
    try:
        text = source.read_text() if str(path) != "-" else _stdin()
    except FileNotFoundError as exc:
        raise errors.UserError(f"{path}: no such file; pass the path of a YAML manifest with -f") from exc
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise errors.UserError(f"{path}: not a YAML text file") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise errors.UserError(f"{path}:{where}: invalid YAML: {problem}") from exc
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise errors.UserError(f"{path}: document {index + 1} is not a mapping (apiVersion, kind, ...)")
    return docs


def _stdin() -> str:
    import sys

    return sys.stdin.read()


def describe(doc: Manifest) -> str:
    """'Kind/name' for messages, tolerant of broken documents."""
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{doc.get('kind', '?')}/{name or '?'}"


def model_class(doc: Manifest, where: str) -> type[common.Resource]:
    """The model of a document's kind; UserError when apiVersion or kind are not ours."""
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    if kind not in KINDS:
        raise errors.UserError(
            f"{where}: kind: {kind!r} is not a Flywheel kind; use one of {', '.join(sorted(KINDS))}"
        )
    if api_version != common.API_VERSION:
        raise errors.UserError(f"{where}: apiVersion: {api_version!r}; use apiVersion: {common.API_VERSION}")
    return KINDS[kind]


def error_lines(where: str, exc: pydantic.ValidationError) -> list[str]:
    """One line per problem: location (as on the wire), what is wrong, the offending value."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling (fields are camelCase)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "string_pattern_mismatch":
            msg = PATTERN_HINTS.get(str((err.get("ctx") or {}).get("pattern")), msg)
        value = err.get("input")
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(value, dict)
            else f" (got {value!r})"
        )
        lines.append(f"{where}: {loc or '<root>'}: {msg}{shown}")
    return lines


def parse(doc: Manifest, where: str) -> common.Resource:
    """Validate one document into its model; UserError listing every problem."""
    cls = model_class(doc, where)
    try:
        return cls.model_validate(doc)
    except pydantic.ValidationError as exc:
        lines = error_lines(where, exc)
        raise errors.UserError(f"{where}: {len(lines)} problem(s)", problems=lines) from exc


def load_file(path: str | Path) -> list[common.Resource]:
    """Every resource of a file, validated; UserError naming the first broken document's problems."""
    return [parse(doc, f"{path}: {describe(doc)}") for doc in read_documents(path)]


def load_files(paths: list[str]) -> list[common.Resource]:
    out: list[common.Resource] = []
    for path in paths:
        out.extend(load_file(path))
    return out
