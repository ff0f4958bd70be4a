"""`flywheel validate -f FILE`: the checks the API server would make (the CRD schema) plus the
semantic ones it cannot express, one line per problem naming the field and the fix."""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any

import jsonschema
import pydantic

from flywheel import errors
from flywheel.api import common, crds, loading

LOCAL, KUBERNETES = "local", "kubernetes"
ENV_PLATFORM_STORE = "FLYWHEEL_ARTIFACTS_URI"
"""The platform's artifact store (the chart's artifacts.uri), as the operators read it."""


@functools.cache
def _validator(kind: str) -> jsonschema.Draft4Validator:
    # OpenAPI 3.0 schemas use Draft 4's boolean exclusiveMinimum; x-kubernetes-* keys are ignored.
    return jsonschema.Draft4Validator(crds.openapi_schema(kind))


def schema_problems(doc: dict[str, Any], where: str) -> list[str]:
    """Problems the CRD's openAPIV3Schema finds (what `kubectl apply` would reject)."""
    lines = []
    for err in sorted(_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path) or "<root>"
        lines.append(f"{where}: {path}: {err.message}")
    return lines


def problems(
    doc: dict[str, Any], where: str, target: str = LOCAL, platform_store: str | None = None
) -> list[str]:
    """Every problem of one document; empty when it is valid. `target` kubernetes adds what the
    operator would refuse there: artifacts in the pod's scratch space (unless the default is left
    and the platform has a store, `platform_store`)."""
    try:
        loading.model_class(doc, where)
    except errors.UserError as exc:
        return [str(exc)]
    try:
        model = loading.model_class(doc, where).model_validate(doc)
    except pydantic.ValidationError as exc:
        return loading.error_lines(where, exc)
    if target == KUBERNETES:
        store = getattr(getattr(model, "spec", None), "artifacts", None)
        uri = store.uri if isinstance(store, common.Artifacts) else None
        if uri is not None and not (uri == common.Artifacts().uri and platform_store):
            problem = common.pod_scratch_problem(uri)
            if problem:
                return [f"{where}: {problem}"]
    # The models passed; the schema should agree. A disagreement is our bug, but still a problem
    # the API server would report, so show it.
    return schema_problems(doc, where)


def validate_file(path: str, target: str = LOCAL, platform_store: str | None = None) -> tuple[int, list[str]]:
    """(number of resources, problem lines) for one file."""
    docs = loading.read_documents(path)
    if not docs:
        return 0, [f"{path}: no resources found; expected YAML documents with apiVersion and kind"]
    lines: list[str] = []
    for doc in docs:
        lines.extend(problems(doc, f"{path}: {loading.describe(doc)}", target, platform_store))
    return len(docs), lines


def cli(args: argparse.Namespace) -> int:
    failed = False
    target = getattr(args, "target", LOCAL) or LOCAL
    platform_store = getattr(args, "artifacts_uri", None) or os.environ.get(ENV_PLATFORM_STORE) or None
    for path in args.filename:
        try:
            count, lines = validate_file(path, target, platform_store)
        except errors.UserError as exc:
            count, lines = 0, [str(exc)]
        for line in lines:
            print(line)
        if lines:
            failed = True
        else:
            print(f"{path}: {count} resource(s) valid")
    return 1 if failed else 0
