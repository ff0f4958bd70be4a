"""The `flywheel` command. Each subcommand imports its implementation lazily, so `flywheel validate`
never pays for torch, and a missing optional extra is reported as such.

The local backend's commands share one home: `--home DIR` (before or after the subcommand), else
$FLYWHEEL_HOME, else ./.flywheel (flywheel.local.paths)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flywheel import errors
from flywheel.local import paths

DEFAULT_HOME = paths.DEFAULT_HOME
HOME_HELP = "local state directory (default: $FLYWHEEL_HOME, else ./.flywheel)"

# command -> "module:function"; each function takes the parsed args and returns an exit code.
COMMANDS: dict[str, str] = {
    "crds": "flywheel.api.crds:cli",
    "validate": "flywheel.training.entrycheck:cli",
    "render": "flywheel.controllers.render:cli",
    "run": "flywheel.local.commands:run",
    "get": "flywheel.local.commands:get",
    "logs": "flywheel.local.commands:logs",
    "stop": "flywheel.local.lifecycle:stop",
    "delete": "flywheel.local.lifecycle:delete",
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
    parser.add_argument("--home", default=None, help=HOME_HELP)
    # The subcommands' --home does not default (SUPPRESS), so one given before the subcommand stays.
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", default=argparse.SUPPRESS, help=HOME_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("crds", help="write the CRDs generated from the API models")
    p.add_argument("--out", default="crds", help="directory to write into (default: crds)")

    p = sub.add_parser("validate", help="schema and semantic checks of resource files")
    p.add_argument(
        "-f", "--filename", action="append", required=True, help="YAML file, or a folder of them (repeatable)"
    )
    p.add_argument(
        "--target",
        choices=("local", "kubernetes"),
        default="local",
        help="kubernetes: also refuse what the operator would (artifacts in the pod's scratch space)",
    )
    p.add_argument(
        "--artifacts-uri",
        help="the platform's artifact store (the chart's artifacts.uri; default $FLYWHEEL_ARTIFACTS_URI): "
        "a resource that leaves spec.artifacts.uri at its default writes there",
    )

    p = sub.add_parser("render", help="print the child manifests the operators create, as YAML")
    p.add_argument(
        "-f", "--filename", action="append", required=True, help="YAML file, or a folder of them (repeatable)"
    )

    p = sub.add_parser(
        "run",
        parents=[home],
        help="run resources on the local backend",
        description="Run resources on the local backend. A resource that another `flywheel run` "
        "drives is not started twice: this one follows it and exits with its result. A relative "
        "data.repo is resolved against the home, never the working directory.",
    )
    p.add_argument(
        "-f", "--filename", action="append", required=True, help="YAML file, or a folder of them (repeatable)"
    )
    p.add_argument("--detach", action="store_true", help="start long-running resources and return")

    p = sub.add_parser("get", parents=[home], help="show resources of the local backend")
    p.add_argument("kind", nargs="?", help="TrainingRun, SelfPlayRun, Deployment, DriftMonitor")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")

    p = sub.add_parser("logs", parents=[home], help="print a local resource's workload logs")
    p.add_argument("ref", help="KIND/NAME, e.g. trainingrun/iris (or KIND NAME)")
    p.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing while the workload runs")
    p.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default="text",
        help="text: event lines as `time level message key=value` (default); json: as written",
    )

    p = sub.add_parser(
        "stop",
        parents=[home],
        help="stop local resources' processes; `flywheel run` resumes them",
        description="Stop the processes of local resources (all of the home's when none is named). "
        "Their status says Suspended; `flywheel run` of the same file resumes them.",
    )
    _add_refs(p)

    p = sub.add_parser(
        "delete",
        parents=[home],
        help="stop local resources and remove their state (artifacts stay)",
        description="Stop local resources and remove their state: store entry, events, run folder, "
        "logs. Their artifacts (models, checkpoints, traffic, reports) stay unless --purge-artifacts.",
    )
    _add_refs(p)
    p.add_argument("--all", action="store_true", help="every resource (of KIND, when given)")
    p.add_argument(
        "--purge-artifacts", action="store_true", help="also remove the artifacts Flywheel wrote for them"
    )

    p = sub.add_parser(
        "approve", parents=[home], help="promote a DriftMonitor's pending challenger (local backend)"
    )
    p.add_argument("ref", help="the monitor: NAME or driftmonitor/NAME")
    p.add_argument("challenger", nargs="?", help="default: the last decision's, when it is pending")
    p.add_argument("-n", "--namespace", default="default")

    p = sub.add_parser(
        "rollback", parents=[home], help="serve a Deployment's previous champion again (local backend)"
    )
    p.add_argument("ref", help="the Deployment: NAME or deployment/NAME")
    p.add_argument("-n", "--namespace", default="default")

    p = sub.add_parser(
        "demo", parents=[home], help="the whole loop locally: train, serve, drift, retrain, promote"
    )
    p.add_argument("--report", default=None, help="report folder (default: <home>/report)")
    p.add_argument(
        "--scenario",
        choices=("closed-loop", "concept-drift"),
        default="closed-loop",
        help="closed-loop: feature drift, retrain, promote; concept-drift: no feature drift, a drop "
        "seen through POST /feedback, a fine-tuned challenger promoted by a statistical test",
    )

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


def _add_refs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "refs", nargs="*", metavar="KIND/NAME", help="KIND/NAME..., KIND NAME..., or KIND (all of a kind)"
    )
    p.add_argument("-f", "--filename", action="append", help="the resources of a YAML file (repeatable)")
    p.add_argument("-n", "--namespace", default="default")


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
    args.home = str(paths.home(args.home))
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
