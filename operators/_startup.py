"""The one kopf start-up handler every Flywheel operator shares.

kopf's bookkeeping (handler progress, the last-handled spec) goes to annotations under the
flywheel.dev/ prefix instead of status, so status stays a declared API written only by our
controllers.

Events: what people must see is posted by Flywheel itself (the controllers' events, and a
ReconcileError Warning per distinct failure, see operators/reconcile.py), deduplicated by name. So
kopf's posting is set explicitly rather than left to defaults that changed between releases (kopf
1.45 posts no log lines unless `posting.loggers` is on, which an earlier docstring here missed):
enabled, so an explicit `kopf.event()` still works; `loggers` off, because kopf would post a
Warning per retry and per "handler failed permanently" line, an event write for each, next to a
status that already says it; level WARNING for anything that does post. kopf is pinned to the
range tested here (pyproject.toml), as `watch_410` patches one of its private functions.

Timeouts, rate limit: flywheel.kube.client reads FLYWHEEL_KUBE_* at connect(); kopf's own requests
get the same connect timeout and KOPF_TIMEOUT_FACTOR times the read timeout as their total (was
kopf's 300 s), so a hung answer to kopf's annotation patch cannot stall a worker for long either.
The factor: kopf's total covers the whole answer, and its lists are unpaginated (every object of
a kind in one answer), far bigger than any one call of ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from flywheel.api import contract
from flywheel.kube import client, throttle
from operators import metrics, reconcile, watch_410

FINALIZER = f"{contract.ANNOTATION_PREFIX}/finalizer"
KOPF_TIMEOUT_FACTOR = 4


def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = contract.ANNOTATION_PREFIX
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = reconcile.WORKERS
    # Connect flywheel.kube with the same credentials kopf logs in with (in-cluster or kubeconfig).
    client.connect()
    limits = client.limits()
    settings.networking.connect_timeout = limits.connect_timeout
    settings.networking.request_timeout = KOPF_TIMEOUT_FACTOR * limits.read_timeout
    # kopf retries its own failed requests (its annotation patch after each handler) 8 times at
    # 1, 1, 2, 3, 5, 8, 13, 21 s: under a 429 storm, 6 of the ~11 requests per run in 20 s
    # (bench/operator_faults.py). Growing and jittered instead, and fewer in the same time.
    settings.networking.error_backoffs = throttle.JitteredBackoffs(throttle.Backoff(base=2.0, cap=30.0), 5)
    if metrics.unavailable not in client.on_unavailable:
        client.on_unavailable.append(metrics.unavailable)
    watch_410.install()


def register(
    registry: kopf.OperatorRegistry, login: Callable[..., Any] | None = kopf.login_via_client
) -> None:
    """Add the start-up handler and a login handler to `registry`.

    kopf installs its default login handlers only in its global registry; ours are explicit, so
    they need one: the official client's (in-cluster service account, else the kubeconfig with its
    exec plugins), the same credentials flywheel.kube uses. Tests pass their own.
    """
    kopf.on.startup(id="flywheel-configure", registry=registry)(configure)
    if login is not None:
        kopf.on.login(id="flywheel-login", registry=registry)(login)
