"""The one kopf start-up handler every Flywheel operator shares.

kopf's bookkeeping (handler progress, the last-handled spec) goes to annotations under the
flywheel.dev/ prefix instead of status, so status stays a declared API written only by our
controllers. kopf's own log lines are posted as Kubernetes events only from WARNING up: a
reconcile that changed nothing then writes nothing at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from flywheel.api import contract
from flywheel.kube import client
from operators import reconcile

FINALIZER = f"{contract.ANNOTATION_PREFIX}/finalizer"


def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = contract.ANNOTATION_PREFIX
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = reconcile.WORKERS
    # Connect flywheel.kube with the same credentials kopf logs in with (in-cluster or kubeconfig).
    client.connect()


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
