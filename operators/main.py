"""`flywheel operator [KIND...]`: run the kopf operators for the chosen kinds (default: all).

Standalone (no leader election) unless --peering names a KopfPeering: then replicas elect one
active operator through kopf's peering objects (the chart installs the peering CRD).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import urllib.parse
from collections.abc import Mapping, Sequence

import kopf

from flywheel import api, errors
from flywheel.api import contract
from flywheel.controllers import settings as settings_mod
from flywheel.kube import throttle
from operators import _startup, metrics, reconcile

logger = logging.getLogger("flywheel.operator")

# Kind -> module with `register(registry, settings) -> reconcile.Binding` (see operators/__init__.py).
OPERATORS: dict[str, str] = {
    "TrainingRun": "operators.trainingrun",
    "DriftMonitor": "operators.driftmonitor",
    "Deployment": "operators.deployment",
    "SelfPlayRun": "operators.selfplayrun",
}


def resolve_kinds(names: Sequence[str]) -> list[str]:
    """Kinds from what a person typed (kind, plural or short name, any case); all when empty."""
    if not names:
        return list(OPERATORS)
    aliases = {}
    for kind in OPERATORS:
        cls = api.KINDS[kind]
        for alias in (kind, cls.PLURAL, *cls.SHORT_NAMES):
            aliases[alias.lower()] = kind
    kinds = []
    for name in names:
        if name.lower() not in aliases:
            raise errors.UserError(f"unknown operator kind {name!r}: choose from {', '.join(OPERATORS)}")
        kinds.append(aliases[name.lower()])
    return list(dict.fromkeys(kinds))


def build_registry(
    kinds: Sequence[str], settings: settings_mod.Settings | None = None
) -> tuple[kopf.OperatorRegistry, list[reconcile.Binding]]:
    """A kopf registry with the shared start-up handler and one reconciler per kind."""
    registry = kopf.OperatorRegistry()
    _startup.register(registry)
    bindings = [importlib.import_module(OPERATORS[kind]).register(registry, settings) for kind in kinds]
    return registry, bindings


def _serve_metrics(liveness: str | None) -> None:
    """/metrics on $FLYWHEEL_METRICS_PORT (default contract.METRICS_PORT; 0 turns it off)."""
    port = int(os.environ.get("FLYWHEEL_METRICS_PORT", contract.METRICS_PORT))
    liveness_port = urllib.parse.urlsplit(liveness).port if liveness else None
    if port and port == liveness_port:
        logger.warning("--liveness uses the metrics port %s: serving no /metrics", port)
    elif port:
        metrics.serve(port)


def check_settings(env: Mapping[str, str]) -> None:
    """Read the API and retry settings now, before kopf starts: a bad value is one clear line
    naming the variable (inside kopf's start-up it became a handler retried forever)."""
    try:
        throttle.Limits.from_env(env)
        reconcile.configure(env)
    except ValueError as exc:
        raise errors.UserError(str(exc)) from None


def cli(args: argparse.Namespace) -> int:
    check_settings(os.environ)
    kinds = resolve_kinds(args.kinds)
    registry, _ = build_registry(kinds)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _serve_metrics(args.liveness)
    namespaces = args.namespace or []
    reconcile.WATCH_NAMESPACES = tuple(namespaces)  # child watches stay inside them too
    kopf.run(
        registry=registry,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
        namespaces=namespaces,
        clusterwide=not namespaces,
    )
    return 0
