"""The condition vocabulary and its one conversion: api.conditions.Condition rows become the wire
form (metav1.Condition) only through plans.set_condition, and every reason is defined once."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from flywheel.api import conditions
from flywheel.controllers import plans

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)
ROOT = Path(__file__).resolve().parents[3]


def test_rows_become_the_wire_form_ready_first_and_the_input_is_left_alone() -> None:
    rows = [
        conditions.Condition(conditions.TRAINED, "Unknown", conditions.R_JOB_RUNNING, "step 3"),
        conditions.Condition(conditions.READY, "Unknown", conditions.R_JOB_RUNNING, "step 3"),
    ]
    before: list[dict[str, object]] = []
    wire = plans.set_conditions(before, rows, T0, generation=2)
    assert before == []
    assert wire == [
        {"type": "Ready", "status": "Unknown", "reason": "JobRunning", "message": "step 3",
         "lastTransitionTime": "2026-01-01T12:00:00Z", "observedGeneration": 2},
        {"type": "Trained", "status": "Unknown", "reason": "JobRunning", "message": "step 3",
         "lastTransitionTime": "2026-01-01T12:00:00Z", "observedGeneration": 2},
    ]  # fmt: skip
    assert list(wire[0]) == [
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    ]


def test_last_transition_time_moves_only_when_the_status_changes() -> None:
    running = conditions.Condition(conditions.READY, "Unknown", conditions.R_JOB_RUNNING, "step 3")
    first = plans.set_condition([], running, T0)
    same = plans.set_condition(first, running._replace(message="step 9"), T1)
    assert same[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z" and same[0]["message"] == "step 9"
    done = plans.set_condition(
        same, conditions.Condition(conditions.READY, "True", conditions.R_SUCCEEDED), T1
    )
    assert done[0]["lastTransitionTime"] == "2026-01-01T12:05:00Z" and "observedGeneration" not in done[0]


def test_progress_rows_follow_the_ready_row() -> None:
    waiting = conditions.Condition(conditions.READY, "Unknown", conditions.R_WAITING_MODEL, "no model yet")
    assert plans.progress_rows(waiting) == [
        (conditions.RECONCILING, "True", conditions.R_WAITING_MODEL, "no model yet"),
        (conditions.STALLED, "False", conditions.R_WAITING_MODEL, ""),
    ]
    failed = waiting._replace(status="False", reason=conditions.R_MODEL_FAILED)
    assert [(c.type, c.status) for c in plans.progress_rows(failed)] == [
        ("Reconciling", "False"),
        ("Stalled", "True"),
    ]
    held = plans.progress_rows(waiting, stalled=True)
    assert [(c.type, c.status) for c in held] == [("Reconciling", "False"), ("Stalled", "True")]


def test_every_reason_is_defined_once_in_api_conditions() -> None:
    """No module outside api/conditions.py defines or aliases a reason constant again."""
    definition = re.compile(r"^R_[A-Z_]+\s*=", re.M)
    elsewhere = [
        str(path.relative_to(ROOT))
        for folder in ("flywheel", "operators", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "conditions.py" and definition.search(path.read_text())
    ]
    assert elsewhere == []
    reasons = {name: value for name, value in vars(conditions).items() if name.startswith("R_")}
    assert len(set(reasons.values())) == len(reasons)  # one name per reason
