"""The `flywheel` command. Each subcommand imports its implementation lazily, so `flywheel validate`
never pays for torch, and a missing optional extra is reported as such."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flywheel import errors

DEFAULT_HOME = ".flywheel"

# command -> "module:function"; each function takes the parsed args and returns an exit code.
COMMANDS: dict[str, str] = {
    "crds": "flywheel.api.crds:cli",
    "validate": "flywheel.api.validation:cli",
    "render": "flywheel.controllers.render:cli",
    "run": "flywheel.local.commands:run",
    "get": "flywheel.local.commands:get",
    "logs": "flywheel.local.commands:logs",
    "approve": "flywheel.local.actions:approve",
    "rollback": "flywheel.local.actions:rollback",
    "demo": "flywheel.demo:cli",
    "operator": "operators.main:cli",
    "selfplay": "flywheel.selfplay.pretrain:cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel",
        description="Kubernetes-native MLOps: train, serve, watch for drift, retrain, promote.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("crds", help="write the CRDs generated from the API models")
    p.add_argument("--out", default="crds", help="directory to write into (default: crds)")

    p = sub.add_parser("validate", help="schema and semantic checks of resource files")
    p.add_argument("-f", "--filename", action="append", required=True, help="YAML file (repeatable)")

    p = sub.add_parser("render", help="print the child manifests the operators create, as YAML")
    p.add_argument("-f", "--filename", action="append", required=True, help="YAML file (repeatable)")

    p = sub.add_parser("run", help="run resources on the local backend")
    p.add_argument("-f", "--filename", action="append", required=True, help="YAML file (repeatable)")
    p.add_argument("--home", default=DEFAULT_HOME, help="local state directory (default: ./.flywheel)")
    p.add_argument("--detach", action="store_true", help="start long-running resources and return")

    p = sub.add_parser("get", help="show resources of the local backend")
    p.add_argument("kind", nargs="?", help="TrainingRun, SelfPlayRun, Deployment, DriftMonitor")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    p.add_argument("--home", default=DEFAULT_HOME)

    p = sub.add_parser("logs", help="print a local resource's workload logs")
    p.add_argument("ref", help="KIND/NAME, e.g. trainingrun/iris")
    p.add_argument("--home", default=DEFAULT_HOME)

    p = sub.add_parser("approve", help="promote a DriftMonitor's pending challenger (local backend)")
    p.add_argument("ref", help="the monitor: NAME or driftmonitor/NAME")
    p.add_argument("challenger", nargs="?", help="default: the last decision's, when it is pending")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--home", default=DEFAULT_HOME)

    p = sub.add_parser("rollback", help="serve a Deployment's previous champion again (local backend)")
    p.add_argument("ref", help="the Deployment: NAME or deployment/NAME")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--home", default=DEFAULT_HOME)

    p = sub.add_parser("demo", help="the whole loop locally: train, serve, drift, retrain, promote")
    p.add_argument("--home", default=DEFAULT_HOME)
    p.add_argument("--report", default=None, help="report folder (default: <home>/report)")

    p = sub.add_parser("selfplay", help="self-play tools: `selfplay pretrain` warm-starts the tiny policy")
    p.add_argument(
        "action", choices=["pretrain"], help="pretrain: build the cached warm-start of a SelfPlayRun"
    )
    p.add_argument("-f", "--filename", required=True, help="YAML file with a SelfPlayRun (tiny policy)")
    p.add_argument(
        "--cache", default=None, help="cache folder (default: $FLYWHEEL_CACHE_DIR or the temp dir)"
    )

    p = sub.add_parser("operator", help="run the kopf operators (what the operator image runs)")
    p.add_argument("kinds", nargs="*", help="kinds to reconcile (default: all)")
    p.add_argument("--namespace", action="append", help="watch only these namespaces")
    p.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="kopf liveness endpoint")
    p.add_argument("--peering", default=None, help="kopf peering name (leader election for HA)")
    return parser


def _resolve(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, func = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise errors.UserError(
            f"this command needs the optional dependency {exc.name!r}: pip install 'flywheel[all]'"
        ) from exc
    fn: Callable[[argparse.Namespace], int] = getattr(module, func)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    args: Any = build_parser().parse_args(argv)
    try:
        return _resolve(COMMANDS[args.command])(args)
    except errors.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
