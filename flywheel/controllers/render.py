"""`flywheel render -f FILE...`: print, as one YAML stream, the children the operators would create.

Like `helm template`: for review and GitOps diffs, no cluster needed. Outside a cluster there is no
uid, so owner references carry the owner's name with uid "" (the operator fills in the real one).
Every file is read and rendered before anything is printed, so a broken document leaves no partial
stream behind.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

import pydantic
import yaml

from flywheel import errors
from flywheel.api import loading
from flywheel.controllers import plans, settings

# kind -> "module:function(resource, settings) -> list[Manifest]", imported only when needed.
RENDERERS: dict[str, str] = {
    "TrainingRun": "flywheel.controllers.trainingrun:render_children",
    "SelfPlayRun": "flywheel.controllers.selfplayrun:render_children",
    "Deployment": "flywheel.controllers.deployment:render_children",
    "DriftMonitor": "flywheel.controllers.driftmonitor:render_children",
}

Renderer = Callable[[plans.Manifest, settings.Settings], list[plans.Manifest]]


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
    fn: Renderer = getattr(module, func)
    return fn


def render_file(path: str, config: settings.Settings) -> list[plans.Manifest]:
    """The children of every resource in one file; UserError naming the file, field and fix."""
    children: list[plans.Manifest] = []
    for doc in loading.read_documents(path):
        where = f"{path}: {loading.describe(doc)}"
        resource = loading.parse(doc, where)  # UserError listing every problem
        fn = _renderer(resource.KIND)
        if fn is None:
            continue
        try:
            children.extend(fn(resource.to_manifest(), config))
        except pydantic.ValidationError as exc:  # a renderer's own checks beyond the model
            lines = loading.error_lines(where, exc)
            raise errors.UserError(f"{where}: {len(lines)} problem(s)", problems=lines) from exc
    return children


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config JSON in ConfigMaps) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(manifests: list[plans.Manifest]) -> str:
    """A YAML stream, keys in the order written (apiVersion, kind, metadata, spec)."""
    out: str = yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, explicit_start=True)
    return out


def cli(args: argparse.Namespace) -> int:
    """Entry of `flywheel render`: args.filename is the list of -f paths; 0 on success."""
    config = settings.Settings.from_env()
    children: list[plans.Manifest] = []
    for path in args.filename:
        children.extend(render_file(path, config))
    if children:
        sys.stdout.write(dump(children))
    return 0
