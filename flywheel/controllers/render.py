"""`flywheel render -f FILE...`: print, as one YAML stream, the children the operators would create.

Like `helm template`: for review and GitOps diffs, no cluster needed. Outside a cluster there is no
uid, so owner references carry the owner's name with uid "" (the operator fills in the real one).
Each file is rendered whole before it is printed, so a broken document leaves no partial file behind;
a file that fails is reported on stderr (one line per problem, never a traceback) and the others are
still printed, so one bad file does not hide the rest of a directory's diff; the exit code is 1 when
any file failed. A kind with nothing to render before it runs (a DriftMonitor: its check Jobs and
challenger TrainingRuns come from its schedule and its findings) appears as a YAML comment saying so.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pydantic
import yaml

from flywheel import errors
from flywheel.api import common, loading
from flywheel.controllers import artifact_store, plans, settings

# kind -> "module:function(resource, settings) -> list[Manifest]", imported only when needed.
RENDERERS: dict[str, str] = {
    "TrainingRun": "flywheel.controllers.trainingrun:render_children",
    "SelfPlayRun": "flywheel.controllers.selfplayrun:render_children",
    "Deployment": "flywheel.controllers.deployment:render_children",
    "DriftMonitor": "flywheel.controllers.driftmonitor:render_children",
}

Renderer = Callable[[plans.Manifest, settings.Settings], list[plans.Manifest]]
Rendered = plans.Manifest | str  # a child manifest, or a comment about a resource without children

# Kinds whose children depend on what they observe: why rendering shows none (a comment in the stream).
NOTHING_YET = {
    "DriftMonitor": (
        "no children until it runs: its check Jobs and challenger TrainingRuns are created from its "
        "schedule and what a check finds"
    ),
}


def _renderer(kind: str) -> Renderer | None:
    """The kind's render_children, or None (with a note) when that controller is not installed."""
    target = RENDERERS.get(kind)
    if target is None:
        print(f"note: {kind} has no children to render; skipped", file=sys.stderr)
        return None
    module_name, func = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a real missing dependency of an existing module is a bug, not a skip
        print(f"note: rendering {kind} is not available yet ({module_name}); skipped", file=sys.stderr)
        return None
    fn: Renderer | None = getattr(module, func, None)
    return fn


def render_file(path: str, config: settings.Settings) -> list[Rendered]:
    """The children of every resource in one file; UserError naming the file, field and fix."""
    children: list[Rendered] = []
    for doc in loading.read_documents(path):
        where = f"{path}: {loading.describe(doc)}"
        if _foreign(doc):  # e.g. the kustomization.yaml beside the examples: not ours to render
            print(f"note: {where}: {doc.get('apiVersion')} is not a Flywheel API; skipped", file=sys.stderr)
            continue
        resource = loading.parse(doc, where)  # UserError listing every problem
        fn = _renderer(resource.KIND)
        nothing = f"{resource.KIND} {resource.namespace}/{resource.name}: {NOTHING_YET.get(resource.KIND)}"
        if fn is None:
            if resource.KIND in NOTHING_YET:
                children.append(nothing)
            continue
        manifest, ephemeral = artifact_store.resolve(resource.to_manifest(), config)
        if ephemeral is not None:  # rendered all the same: it is what `flywheel run` uses locally
            print(f"note: {where}: on Kubernetes the operator refuses this: {ephemeral}", file=sys.stderr)
        try:
            rendered = fn(manifest, config)
            children.extend(rendered)
            if not rendered and resource.KIND in NOTHING_YET:  # say why the stream has none
                children.append(nothing)
        except pydantic.ValidationError as exc:  # a renderer's own checks beyond the model
            lines = loading.error_lines(where, exc)
            raise errors.UserError(f"{where}: {len(lines)} problem(s)", problems=lines) from exc
    return children


def _foreign(doc: plans.Manifest) -> bool:
    """A document of another API group (a typo in a Flywheel kind or apiVersion is still an error)."""
    api_version = doc.get("apiVersion")
    return isinstance(api_version, str) and api_version.split("/")[0] != common.GROUP


def files(paths: list[str]) -> list[str]:
    """The -f paths, a directory standing for its *.yaml and *.yml files (sorted), as kubectl does."""
    out: list[str] = []
    for path in paths:
        folder = Path(path)
        if path != "-" and folder.is_dir():
            out.extend(str(p) for p in sorted(folder.iterdir()) if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config JSON in ConfigMaps) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(manifests: list[Rendered]) -> str:
    """A YAML stream, keys in the order written (apiVersion, kind, metadata, spec); a string is a
    comment line (# ...) where its resource's children would be."""
    out: list[str] = []
    for item in manifests:
        if isinstance(item, str):
            out.append(f"# {item}\n")
        else:
            out.append(yaml.dump(item, Dumper=_Dumper, sort_keys=False, explicit_start=True))
    return "".join(out)


def cli(args: argparse.Namespace) -> int:
    """Entry of `flywheel render`: args.filename is the list of -f paths; 0 when every file rendered,
    1 when any failed (each failure on stderr, the other files still printed)."""
    config = settings.Settings.from_env()
    failed = 0
    paths = files(args.filename)
    for path in paths:
        try:
            children = render_file(path, config)
        except errors.UserError as exc:
            failed += 1
            _report(str(exc), exc.problems)
            continue
        except Exception as exc:  # a renderer's bug: still one line, and the other files still render
            failed += 1
            _report(f"{path}: cannot render ({type(exc).__name__}: {exc}); please report this", [])
            continue
        if children:
            sys.stdout.write(dump(children))
            sys.stdout.flush()
    if failed:
        print(f"error: {failed} of {len(paths)} file(s) failed to render", file=sys.stderr)
    return 1 if failed else 0


def _report(message: str, problems: list[str]) -> None:
    print(f"error: {message}", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
