"""Which model answers a request: pure functions of the traffic settings, a header and a draw.

Canary sends challengerPercent of requests to the challenger. A request that carries the sticky
header is routed by a hash of its value, so one caller (session, user) keeps one model across
requests; otherwise an independent random draw decides. Shadow always answers with the champion.
"""

from __future__ import annotations

import hashlib
import random

from flywheel.api import deployment

CHAMPION = "champion"
CHALLENGER = "challenger"


def bucket(value: str) -> int:
    """A stable bucket in [0, 100) for a header value (the same in every process and pod)."""
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big") % 100


def choose(
    traffic: deployment.Traffic,
    has_challenger: bool,
    sticky_value: str | None,
    rng: random.Random,
) -> str:
    """The role that answers this request."""
    if not has_challenger or traffic.mode == deployment.TrafficMode.SHADOW:
        return CHAMPION
    percent = traffic.challenger_percent
    draw = bucket(sticky_value) if sticky_value else rng.randrange(100)
    return CHALLENGER if draw < percent else CHAMPION


def shadows(traffic: deployment.Traffic, has_challenger: bool) -> bool:
    """Whether the challenger scores a copy of every request off the response path."""
    return has_challenger and traffic.mode == deployment.TrafficMode.SHADOW
