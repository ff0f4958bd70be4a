"""is_due / next_check: pure functions of spec, status and an injected clock."""

from __future__ import annotations

import datetime

import pytest

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.drift import schedule

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def _spec(interval: int = 300) -> driftmonitor.DriftMonitorSpec:
    return driftmonitor.DriftMonitorSpec.model_validate(
        {
            "deploymentRef": "shuttle",
            "schedule": {"intervalSeconds": interval},
            "retrain": {
                "template": {
                    "data": {"repo": "/r", "path": "d.csv"},
                    "model": {"task": "classification", "target": "y"},
                }
            },
        }
    )


def _status(last: str | None) -> driftmonitor.DriftMonitorStatus:
    return driftmonitor.DriftMonitorStatus(last_check_time=last)


@pytest.mark.parametrize("status", [None, _status(None)])
def test_never_checked_is_due_now(status: driftmonitor.DriftMonitorStatus | None) -> None:
    assert schedule.is_due(_spec(), status, T0)
    assert schedule.next_check(_spec(), status, T0) == T0


def test_due_exactly_at_last_check_plus_interval_and_not_a_second_before() -> None:
    status = _status(T0.isoformat())
    due = T0 + datetime.timedelta(seconds=300)
    assert not schedule.is_due(_spec(), status, due - datetime.timedelta(seconds=1))
    assert schedule.next_check(_spec(), status, T0 + datetime.timedelta(seconds=10)) == due
    assert schedule.is_due(_spec(), status, due)
    assert schedule.next_check(
        _spec(), status, due + datetime.timedelta(hours=1)
    ) == due + datetime.timedelta(hours=1)  # overdue: never a time in the past


def test_z_suffix_and_naive_now_are_utc() -> None:
    status = _status("2026-01-01T12:00:00Z")
    assert schedule.is_due(_spec(60), status, datetime.datetime(2026, 1, 1, 12, 1))
    assert not schedule.is_due(_spec(60), status, datetime.datetime(2026, 1, 1, 12, 0, 59))


def test_other_time_zones_compare_by_instant() -> None:
    status = _status("2026-01-01T13:00:00+01:00")  # 12:00 UTC
    assert schedule.is_due(_spec(60), status, T0 + datetime.timedelta(seconds=60))


def test_garbage_last_check_time_is_a_user_error_naming_the_field() -> None:
    with pytest.raises(errors.UserError, match=r"status\.lastCheckTime"):
        schedule.is_due(_spec(), _status("yesterday"), T0)
