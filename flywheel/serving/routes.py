"""The fixed set of routes the server answers: what a path is called in metrics and logs.

BentoML labels its HTTP metrics with the raw URL path, 404s included, so every distinct unknown
path became a new time series (4,000 of them made /metrics 16 MB). Paths are matched here against
a fixed list of templates instead: a known path is labelled by its template (`/v2/models/{name}`,
not the name a caller sent), an unknown one is answered 404 by the guard and labelled OTHER.
"""

from __future__ import annotations

import re

OTHER = "other"

# template -> methods. HEAD is served wherever GET is (Starlette answers it).
ROUTES: dict[str, frozenset[str]] = {
    "/predict": frozenset({"POST"}),
    "/feedback": frozenset({"POST"}),  # ground truth for earlier requests: flywheel.serving.feedback
    "/admin/promote": frozenset({"POST"}),
    "/readyz": frozenset({"GET", "HEAD"}),
    "/livez": frozenset({"GET", "HEAD"}),
    "/healthz": frozenset({"GET", "HEAD"}),
    "/metrics": frozenset({"GET", "HEAD"}),
    "/": frozenset({"GET", "HEAD"}),
    "/docs.json": frozenset({"GET", "HEAD"}),
    "/schema.json": frozenset({"GET", "HEAD"}),
    "/static_content/{file}": frozenset({"GET", "HEAD"}),  # BentoML's API page assets
    # The Open Inference Protocol v2 (REST), see flywheel.serving.oip.
    "/v2": frozenset({"GET", "HEAD"}),
    "/v2/health/live": frozenset({"GET", "HEAD"}),
    "/v2/health/ready": frozenset({"GET", "HEAD"}),
    "/v2/models/{name}": frozenset({"GET", "HEAD"}),
    "/v2/models/{name}/ready": frozenset({"GET", "HEAD"}),
    "/v2/models/{name}/infer": frozenset({"POST"}),
    "/v2/models/{name}/versions/{version}": frozenset({"GET", "HEAD"}),
    "/v2/models/{name}/versions/{version}/ready": frozenset({"GET", "HEAD"}),
    "/v2/models/{name}/versions/{version}/infer": frozenset({"POST"}),
}

# Routes whose POST body the guard reads (type, encoding and size checked before BentoML parses).
BODY_ROUTES = frozenset(t for t, methods in ROUTES.items() if "POST" in methods)

_SEGMENT = "[^/]{1,256}"  # a path parameter: one segment, bounded
_EXACT = {t for t in ROUTES if "{" not in t}
_PATTERNS = [(re.compile("^" + re.sub(r"\{[a-z]+\}", _SEGMENT, t) + "$"), t) for t in ROUTES if "{" in t]


def template(path: str) -> str | None:
    """The route template `path` matches, or None when the server has no such route."""
    if path in _EXACT:
        return path
    if len(path) > 1024:
        return None
    for pattern, name in _PATTERNS:
        if pattern.match(path):
            return name
    return None


def label(path: str) -> str:
    """What metrics call `path`: its template, or OTHER."""
    return template(path) or OTHER
