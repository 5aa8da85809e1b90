"""Pure decisions, table-driven: no mocks, no I/O, time and randomness passed in."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from tests.unit.model_builders import at as _at
from tests.unit.model_builders import unit as _unit
from tests.unit.model_builders import view as _view
from whirlwind import model as model_view
from whirlwind import policy

SETTINGS = imb.make_settings(pathlib.Path("/nonexistent"), services=("app", "web", "db"))


# -- breaker ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "result", "expected"),
    [
        (0, "ok", 0),
        (2, "ok", 0),
        (0, "rolled-back", 1),
        (2, "failed", 3),
        (2, "dry-run", 2),
        (1, "running", 1),
    ],
)
def test_breaker_counts_consecutive_failures(failures: int, result: str, expected: int) -> None:
    state = policy.BreakerState(failures, "before")

    after = policy.record_result(state, result, "why")

    assert after.failures == expected
    assert after.is_open(3) == (expected >= 3)


def test_breaker_description_names_count_and_last_reason() -> None:
    state = policy.BreakerState(3, "new unit app/4 failed: hook failed")

    assert policy.describe_breaker(state) == (
        "3 consecutive failures; last: new unit app/4 failed: hook failed"
    )


# -- settle -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observations", "now", "settled", "remaining"),
    [
        ([(0, True)], 0, False, 60),
        ([(0, True), (30, True)], 59, False, 1),
        ([(0, True), (30, True)], 60, True, 0),
        ([(0, True), (30, False), (31, True)], 90, False, 1),
        ([(0, True), (30, False)], 200, False, None),
        ([(0, False), (10, True)], 70, True, 0),
    ],
)
def test_settle_needs_continuous_health_for_the_settle_period(
    observations: list[tuple[int, bool]], now: int, settled: bool, remaining: float | None
) -> None:
    state = policy.SettleState()
    for at, healthy in observations:
        state = state.observe(healthy, _at(at))

    assert state.is_settled(_at(now), 60) == settled
    assert state.remaining(_at(now), 60) == remaining


@pytest.mark.parametrize(
    ("markers", "now", "remaining"),
    [
        ([(0, "a"), (30, "a")], 60, 0),
        # The status changed in between (a hook ran) though both deltas say healthy: the
        # watcher coalesced the break away, Juju's `since` did not.
        ([(0, "a"), (30, "b")], 60, 30),
        ([(0, "a"), (30, "b"), (40, "b")], 90, 0),
    ],
)
def test_a_break_coalesced_away_still_restarts_the_settle_period(
    markers: list[tuple[int, str]], now: int, remaining: float
) -> None:
    state = policy.SettleState()
    for at, marker in markers:
        state = state.observe(True, _at(at), (marker, marker))

    assert state.remaining(_at(now), 60) == remaining


@pytest.mark.parametrize(
    ("unit", "machine", "lost", "seen", "expected"),
    [
        (_unit("a/3"), None, False, True, None),
        # Added but its delta has not come yet: pending, not gone.
        (None, None, False, False, None),
        (None, None, False, True, policy.SettleFailure("new unit a/3 disappeared")),
        (
            _unit("a/3", life="dying"),
            None,
            False,
            True,
            policy.SettleFailure("new unit a/3 is dying"),
        ),
        (
            _unit("a/3", workload_status="error", workload_message='hook failed: "install"'),
            None,
            False,
            True,
            policy.SettleFailure('new unit a/3 failed: hook failed: "install"', needs_force=True),
        ),
        (
            _unit("a/3", agent_status="error", agent_message="uniter failed"),
            None,
            False,
            True,
            policy.SettleFailure("new unit a/3 failed: uniter failed", needs_force=True),
        ),
        (
            _unit("a/3", workload_status="waiting", agent_status="allocating"),
            model_view.MachineState(
                id="3", instance_status="provisioning error", instance_message="no image"
            ),
            False,
            True,
            # An allocating unit is removed at once by Juju: no force needed.
            policy.SettleFailure("machine 3 of new unit a/3 failed to provision: no image"),
        ),
        (
            _unit("a/3"),
            model_view.MachineState(id="3", instance_status="error"),
            False,
            True,
            policy.SettleFailure("machine 3 of new unit a/3 failed to provision: error"),
        ),
        (
            _unit("a/3"),
            None,
            True,
            True,
            policy.SettleFailure("new unit a/3 is lost", needs_force=True),
        ),
        (_unit("a/3", workload_status="maintenance"), None, False, True, None),
        (_unit("a/3", workload_status="unknown"), None, False, True, None),
    ],
)
def test_settle_fails_fast_on_error_provisioning_error_and_lost(
    unit: model_view.UnitState | None,
    machine: model_view.MachineState | None,
    lost: bool,
    seen: bool,
    expected: policy.SettleFailure | None,
) -> None:
    assert policy.get_settle_failure(unit, machine, name="a/3", lost=lost, seen=seen) == expected


# -- eligibility --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ready", None),
        ("missing", "not in the model"),
        ("subordinate", "subordinate applications cannot be replaced"),
        ("dying-app", "application is dying"),
        ("own", "Whirlwind never replaces its own units"),
        ("controller-model", "the controller model is never touched"),
        # Until the watcher's model info came, it may be the controller model: refuse.
        ("model-unseen", "the model's own information has not arrived yet"),
    ],
)
def test_refusal(case: str, expected: str | None) -> None:
    # What may never be touched; what holds work back for now is the planner's (gates).
    apps: dict[str, dict[str, Any]] = {}
    settings = SETTINGS
    app = "app"
    if case == "missing":
        app = "db"
    elif case == "subordinate":
        apps["app"] = {"subordinate": True}
    elif case == "dying-app":
        apps["app"] = {"life": "dying"}
    elif case == "own":
        settings = imb.make_settings(
            pathlib.Path("/nonexistent"), services=("app",), own_application="app"
        )
    view = _view(_unit("app/0"), _unit("app/1"), apps=apps)
    view.is_controller_model = case == "controller-model"
    view.model_seen = case != "model-unseen"

    assert policy.get_refusal(app, view, settings) == expected


# -- facts for the replacer ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "annotations", "expected"),
    [
        ([], {}, None),
        ([_unit("app/3")], {}, "app/3"),
        ([_unit("app/3"), _unit("app/4")], {"app/4": {"whirlwind/op": "7-x"}}, "app/4"),
        ([_unit("app/3")], {"app/3": {"whirlwind/op": "6-other"}}, None),
        ([_unit("app/3", subordinate=True)], {}, None),
    ],
)
def test_adopted_unit_is_ours_by_annotation_else_by_number(
    extra: list[model_view.UnitState], annotations: dict[str, dict[str, str]], expected: str | None
) -> None:
    # app/0 is the old unit: it carries our op annotation too, but is not above the max.
    view = _view(_unit("app/0"), _unit("app/1"), _unit("app/2"), *extra)
    view.annotations[model_view.unit_tag("app/0")] = {"whirlwind/op": "7-x"}
    for name, values in annotations.items():
        view.annotations[model_view.unit_tag(name)] = values

    assert policy.find_adopted_unit(view, "app", "7-x", max_number=2) == expected


def test_adopted_unit_may_be_known_only_from_full_status() -> None:
    # AddUnits took effect but its deltas have not come: only a status poll lists the unit.
    view = _view(_unit("app/0"), _unit("app/1"))
    view.status_of = {name: ("active", "idle") for name in ("app/0", "app/1", "app/2", "other/9")}

    assert policy.find_adopted_unit(view, "app", "7-x", max_number=1) == "app/2"
    assert policy.find_adopted_unit(view, "app", "7-x", max_number=2) is None


def test_dedicated_machine_hosts_only_the_unit_and_its_subordinates() -> None:
    view = _view(
        _unit("app/0", machine_id="0"),
        _unit("sub/0", machine_id="0", subordinate=True, principal="app/0"),
        _unit("app/1", machine_id="1"),
        _unit("other/0", machine_id="1"),
        _unit("app/2", machine_id="2"),
    )
    view.machines["2"] = model_view.MachineState(id="2", jobs=("JobManageModel",))

    assert policy.is_dedicated_machine(view, "0", "app/0") is True
    assert policy.is_dedicated_machine(view, "1", "app/1") is False
    assert policy.is_dedicated_machine(view, "2", "app/2") is False


def test_healthy_after_removal_counts_only_healthy_units() -> None:
    view = _view(_unit("app/0"), _unit("app/1"), _unit("app/2", workload_status="error"))

    assert policy.healthy_after_removal(view, "app", "app/0") == 1
    assert policy.healthy_after_removal(view, "app", "app/2") == 2


@pytest.mark.parametrize(
    ("annotations", "known", "expected"),
    [
        ({}, set(), []),
        ({"app/0": "9-x", "app/3": "9-x"}, set(), [("9-x", "app/0", "app/3")]),
        ({"app/0": "9-x", "app/3": "9-x"}, {"9-x"}, []),  # ours: the journal knows it
        ({"app/3": "9-x"}, set(), []),  # finished: only one unit carries it
        ({"app/0": "9-x", "app/1": "9-x", "app/3": "9-x"}, set(), []),  # not an operation
    ],
)
def test_foreign_operations_are_two_live_units_sharing_an_unknown_op_id(
    annotations: dict[str, str], known: set[str], expected: list[tuple[str, str, str]]
) -> None:
    view = _view(_unit("app/0"), _unit("app/1"), _unit("app/2"), _unit("app/3"))
    for name, op_id in annotations.items():
        view.annotations[model_view.unit_tag(name)] = {"whirlwind/op": op_id}

    found = policy.find_foreign_operations(view, "app", known)

    assert [(f.op_id, f.old_unit.name, f.new_unit.name) for f in found] == expected
