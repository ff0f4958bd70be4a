"""execute.merge / execute.diff: the one status patch converge() writes must leave the status
exactly where two patches applied in turn would."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.controllers import plans
from flywheel.kube import execute

TARGETS: list[dict[str, Any]] = [
    {},
    {"phase": "Pending", "nested": {"a": 1, "b": {"c": 2}}, "conditions": [{"type": "Ready"}]},
    {"nested": 5, "gone": "x"},
]
PATCHES: list[dict[str, Any]] = [
    {},
    {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    {"nested": {"a": None, "b": {"d": 3}}},
    {"nested": 7, "gone": None},
    {"nested": None},
    {"nested": {"b": None, "e": {"f": None, "g": 1}}},
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("first", PATCHES)
@pytest.mark.parametrize("second", PATCHES)
def test_one_diff_patch_equals_two_patches_in_turn(target: Any, first: Any, second: Any) -> None:
    in_turn = plans.merge_patch(plans.merge_patch(target, first), second)
    assert plans.merge_patch(target, execute.diff(target, in_turn)) == in_turn


def test_diff_of_equal_objects_is_empty() -> None:
    assert execute.diff(TARGETS[1], TARGETS[1]) == {}


def test_merge_is_rfc7386_and_leaves_inputs_alone() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    patch = {"a": {"b": None, "x": 9}, "d": [3], "e": "new"}
    assert plans.merge_patch(target, patch) == {"a": {"c": 2, "x": 9}, "d": [3], "e": "new"}
    assert target == {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    assert patch["a"] == {"b": None, "x": 9}
