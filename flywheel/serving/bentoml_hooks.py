"""Two changes to BentoML's server behaviour that it offers no setting for (bentoml 1.4).

1. Its HTTP metrics middleware labels every series with the raw URL path, 404s included, and it
   is the outermost middleware, so nothing of ours runs before it reads the path. Its class is
   looked up when the app is built (in each worker, after this module is imported), so a subclass
   put in its place sees the path first: it hands BentoML the route's template (routes.label) and
   keeps the real path in the scope for the guard, which puts it back before routing.
2. It logs every 4xx caused by a request (a schema error, invalid JSON) at ERROR with a traceback:
   9,919 bad requests wrote 18.8 MB. Those are the caller's mistakes: the guard logs each once, at
   INFO, rate-limited, with its request id; a server error still goes to BentoML's ERROR log.

`install()` is idempotent and called when flywheel.serving.service is imported.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from flywheel.serving import routes

ORIGINAL_PATH = "flywheel.path"  # scope key: the path as sent, while BentoML's middlewares see the label


def install() -> None:
    from _bentoml_impl.server import app as bentoml_app
    from bentoml._internal.server.http import instruments

    current = instruments.RunnerTrafficMetricsMiddleware
    if not issubclass(current, _Labelled):
        instruments.RunnerTrafficMetricsMiddleware = type(  # type: ignore[misc,assignment]
            "RouteLabelledTrafficMetrics", (_Labelled, current), {}
        )
    if getattr(bentoml_app.log_exception, "__wrapped__", None) is None:
        bentoml_app.log_exception = _server_errors_only(bentoml_app.log_exception)


class _Labelled:
    """Mixed in before BentoML's metrics middleware: it sees the route label as the path."""

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path")
        if scope.get("type") == "http" and isinstance(path, str):
            name = routes.label(path)
            if name != path:
                scope = {**scope, "path": name, ORIGINAL_PATH: path}
        await super().__call__(scope, receive, send)  # type: ignore[misc]


def restore_path(scope: MutableMapping[str, Any]) -> None:
    """Put the path the caller sent back into `scope` (the guard calls this before routing)."""
    original = scope.pop(ORIGINAL_PATH, None)
    if original is not None:
        scope["path"] = original


def _server_errors_only(log_exception: Any) -> Any:
    def log_server_errors(request: Any, exc_info: Any = True) -> None:
        if not _is_user_error(sys.exc_info()[1]):
            log_exception(request, exc_info)

    log_server_errors.__wrapped__ = log_exception  # type: ignore[attr-defined]
    return log_server_errors


def _is_user_error(exc: BaseException | None) -> bool:
    import pydantic
    from bentoml.exceptions import BentoMLException

    if isinstance(exc, pydantic.ValidationError):
        return True
    code = getattr(exc, "error_code", None) if isinstance(exc, BentoMLException) else None
    return code is not None and 400 <= int(code) < 500
