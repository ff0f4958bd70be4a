"""When a DriftMonitor checks next: pure functions of the spec, the status and an injected `now`.

A monitor is due when it has never checked, or when schedule.intervalSeconds have passed since
status.lastCheckTime. Times in status are RFC 3339 strings; a naive datetime means UTC.
"""

from __future__ import annotations

import datetime

from flywheel import errors
from flywheel.api import driftmonitor


def last_check(status: driftmonitor.DriftMonitorStatus | None) -> datetime.datetime | None:
    """status.lastCheckTime as an aware datetime (None when the monitor has never checked)."""
    if status is None or not status.last_check_time:
        return None
    try:
        return _aware(datetime.datetime.fromisoformat(status.last_check_time))
    except ValueError as exc:
        raise errors.UserError(
            f"status.lastCheckTime {status.last_check_time!r} is not RFC 3339; clear it to check now"
        ) from exc


def next_check(
    spec: driftmonitor.DriftMonitorSpec,
    status: driftmonitor.DriftMonitorStatus | None,
    now: datetime.datetime,
) -> datetime.datetime:
    """When the next check is due, never earlier than `now` (so `next_check(...) - now` is a delay)."""
    now = _aware(now)
    last = last_check(status)
    if last is None:
        return now
    return max(now, last + datetime.timedelta(seconds=spec.schedule.interval_seconds))


def is_due(
    spec: driftmonitor.DriftMonitorSpec,
    status: driftmonitor.DriftMonitorStatus | None,
    now: datetime.datetime,
) -> bool:
    """True when never checked, or now >= lastCheckTime + schedule.intervalSeconds."""
    return next_check(spec, status, now) <= _aware(now)


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
