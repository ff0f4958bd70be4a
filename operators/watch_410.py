"""Keep kopf's own watches alive through what a relist fixes.

kopf 1.45 relists when a watch stream carries an ERROR event with code 410, but an HTTP 410 (or a
5xx after its retries) as the answer to the watch request itself raises out of its watcher and
ends the operator (measured: exit 1 on one 410), and any other ERROR event raises WatchingError,
with the same end. A restart fixes none of these better than a relist does, and a restart of the
whole operator costs a resume of every object. So `install()` wraps kopf's `watch_objs` (a module
global that `continuous_watch` looks up on every call) so that such answers come out as the 410
ERROR event kopf already handles: kopf returns to its infinite stream, waits
`watching.reconnect_backoff` and lists again, resuming from the list's resourceVersion.

What still ends the operator, by design, is what a relist cannot fix and a person or a restart
can: 401/403 (credentials, RBAC) and 404 (the CRD is gone); kopf logs why before it exits.

This patches a private kopf module, hence kopf's pin in pyproject.toml and the test that fails
when the function is not where this expects it (tests/integration/operators/test_faults.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching as kopf_watching

logger = logging.getLogger("flywheel.operator")
FATAL = (401, 403, 404)
"""Statuses a relist cannot fix: kopf exits and says why."""
_ORIGINAL = kopf_watching.watch_objs


def _gone(reason: str) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": reason},
    }


async def watch_objs(**kwargs: Any) -> AsyncIterator[Any]:
    """kopf's watch_objs, with relistable failures turned into a 410 ERROR event."""
    resource = kwargs.get("resource")
    try:
        async for raw in _ORIGINAL(**kwargs):
            if raw.get("type") == "ERROR" and (raw.get("object") or {}).get("code") != 410:
                logger.warning("Watch of %s: ERROR event %s, listing again", resource, raw.get("object"))
                yield _gone(str(raw.get("object")))
                return
            yield raw
    except kopf_errors.APIError as exc:
        if exc.status in FATAL:
            raise
        logger.warning("Watch of %s answered %s, listing again: %s", resource, exc.status, exc)
        yield _gone(str(exc))


def install() -> None:
    """Idempotent: wrap kopf's watch_objs once."""
    kopf_watching.watch_objs = watch_objs


def installed() -> bool:
    return kopf_watching.watch_objs is watch_objs
