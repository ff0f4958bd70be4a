"""Keep kopf's own watches alive through what a relist fixes.

kopf 1.45 relists when a watch stream carries an ERROR event with code 410, but an API error as
the answer to its list or watch request (an HTTP 410, a 5xx after its retries) raises out of its
watcher and ends the operator (measured: exit 1 on one 410 to the watch request), and so does
any ERROR event of another code (WatchingError). A restart fixes none of these better than a
relist does, and a restart costs a resume of every object. So `install()` wraps kopf's
`continuous_watch` (one list, then watches from its resourceVersion; a module global that kopf's
infinite stream looks up on every round): such an error ends the round quietly instead, after a
backoff that grows while the rounds keep failing, and kopf's infinite stream lists again.

What still ends the operator, by design, is what a relist cannot fix and a person or a restart
can: 401/403 (credentials, RBAC) and 404 (the CRD is gone); kopf logs why before it exits.

This patches a private kopf module, hence kopf's pin in pyproject.toml and the test that fails
when the function is not where this expects it (tests/integration/operators/test_faults.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching as kopf_watching

from flywheel.kube import throttle

logger = logging.getLogger("flywheel.operator")
FATAL = (401, 403, 404)
"""Statuses a relist cannot fix: kopf exits and says why."""
BACKOFF = throttle.Backoff(base=0.5, cap=30.0)
_ORIGINAL = kopf_watching.continuous_watch
_failures: dict[str, int] = {}
"""Consecutive failed rounds per watched resource and namespace (reset by any event)."""


async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
    """kopf's continuous_watch; a relistable error ends the round instead of the operator."""
    where = f"{kwargs.get('resource')} in {kwargs.get('namespace') or 'all namespaces'}"
    try:
        async for event in _ORIGINAL(**kwargs):
            _failures.pop(where, None)
            yield event
    except kopf_errors.APIError as exc:
        if exc.status in FATAL:
            raise
        await _pause(where, f"answered {exc.status}: {exc}")
    except kopf_watching.WatchingError as exc:
        await _pause(where, str(exc))


async def _pause(where: str, why: str) -> None:
    failures = _failures[where] = _failures.get(where, 0) + 1
    delay = BACKOFF.delay(failures)
    logger.warning("Watch of %s %s; listing again in %.1fs", where, why, delay)
    await asyncio.sleep(delay)


def install() -> None:
    """Idempotent: wrap kopf's continuous_watch once."""
    kopf_watching.continuous_watch = continuous_watch


def installed() -> bool:
    return kopf_watching.continuous_watch is continuous_watch
