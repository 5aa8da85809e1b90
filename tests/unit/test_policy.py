"""Pure decisions, table-driven: no mocks, no I/O, time and randomness passed in."""

from __future__ import annotations

import datetime
import pathlib
import random
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import model as model_view
from whirlwind import policy

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
SETTINGS = imb.make_settings(pathlib.Path("/nonexistent"), services=("app", "web", "db"))


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _unit(name: str, **fields: Any) -> model_view.UnitState:
    values: dict[str, Any] = {
        "application": name.split("/")[0],
        "machine_id": name.split("/")[1],
        "workload_status": "active",
        "agent_status": "idle",
    }
    values.update(fields)
    return model_view.UnitState(name=name, **values)


def _view(*units: model_view.UnitState, apps: dict[str, dict[str, Any]] | None = None) -> Any:
    view = model_view.ModelView()
    view.model_seen = True
    names = {u.application for u in units} | set(apps or {})
    for app in sorted(names):
        view.applications[app] = model_view.ApplicationState(name=app, **(apps or {}).get(app, {}))
    for unit in units:
        view.units[unit.name] = unit
        if unit.machine_id is not None:
            view.machines.setdefault(unit.machine_id, model_view.MachineState(id=unit.machine_id))
    return view


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


# -- round robin and due time -------------------------------------------------------------


@pytest.mark.parametrize(
    ("services", "ready", "last", "expected"),
    [
        (("a", "b", "c"), {"a", "b", "c"}, None, "a"),
        (("a", "b", "c"), {"a", "b", "c"}, "a", "b"),
        (("a", "b", "c"), {"a", "b", "c"}, "c", "a"),
        (("a", "b", "c"), {"a", "c"}, "a", "c"),
        (("a", "b", "c"), {"a"}, "a", "a"),
        (("a", "b", "c"), set(), "a", None),
        (("a", "b"), {"a", "b"}, "removed-from-config", "a"),
        ((), set(), None, None),
    ],
)
def test_next_service_is_round_robin_over_ready_targets(
    services: tuple[str, ...], ready: set[str], last: str | None, expected: str | None
) -> None:
    assert policy.get_next_service(services, ready, last) == expected


@pytest.mark.parametrize(
    ("last_run", "started", "interval", "expected"),
    [
        (None, _at(0), 600, _at(600)),
        (_at(100), _at(0), 600, _at(700)),
        (_at(-5000), _at(0), 600, _at(-4400)),  # overdue: due at once
    ],
)
def test_next_due_is_one_interval_after_the_last_run_or_the_start(
    last_run: datetime.datetime | None,
    started: datetime.datetime,
    interval: int,
    expected: datetime.datetime,
) -> None:
    assert policy.get_next_due(last_run, started, interval) == expected


# -- victims ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "busy", "expected"),
    [
        ([_unit("a/0"), _unit("a/1")], set(), ["a/0", "a/1"]),
        ([_unit("a/0", life="dying"), _unit("a/1")], set(), ["a/1"]),
        ([_unit("a/0"), _unit("a/1")], {"a/0"}, ["a/1"]),
        ([_unit("a/0", subordinate=True)], set(), []),
    ],
)
def test_candidates_are_alive_principal_and_not_busy(
    units: list[model_view.UnitState], busy: set[str], expected: list[str]
) -> None:
    assert [u.name for u in policy.get_candidates(units, busy)] == expected


def test_oldest_strategy_picks_the_lowest_unit_number() -> None:
    # Juju numbers units from a sequence that never goes back: lowest number, oldest unit.
    units = [_unit("a/12"), _unit("a/3"), _unit("a/7")]

    victim = policy.choose_victim(units, "oldest", random.Random(0))

    assert victim is not None
    assert victim.name == "a/3"


def test_random_strategy_uses_the_given_random_source() -> None:
    units = [_unit(f"a/{n}") for n in range(5)]

    picks = [policy.choose_victim(units, "random", random.Random(7)) for _ in range(3)]
    spread = {policy.choose_victim(units, "random", random.Random(s)) for s in range(40)}

    assert len({p.name for p in picks if p is not None}) == 1  # same seed, same choice
    assert {u.name for u in spread if u is not None} == {u.name for u in units}
    assert policy.choose_victim([], "random", random.Random(0)) is None


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


def _ready_reason(view: Any, app: str, **kwargs: Any) -> str | None:
    settings = kwargs.pop("settings", SETTINGS)
    return policy.get_not_ready_reason(
        app,
        view,
        settings,
        breakers=kwargs.get("breakers", {}),
        busy_units=kwargs.get("busy", set()),
        in_flight_apps=kwargs.get("in_flight", set()),
    )


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
        ("breaker", "3 consecutive failures; last: boom"),
        ("in-flight", "a replacement is in flight"),
        ("no-healthy", "no healthy unit"),
        ("all-busy", "no unit can be replaced"),
    ],
)
def test_eligibility(case: str, expected: str | None) -> None:
    units = [_unit("app/0"), _unit("app/1")]
    apps: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {}
    app = "app"
    if case == "missing":
        app = "db"
    elif case == "subordinate":
        apps["app"] = {"subordinate": True}
    elif case == "dying-app":
        apps["app"] = {"life": "dying"}
    elif case == "own":
        kwargs["settings"] = imb.make_settings(
            pathlib.Path("/nonexistent"), services=("app",), own_application="app"
        )
    elif case == "breaker":
        kwargs["breakers"] = {"app": policy.BreakerState(3, "boom")}
    elif case == "in-flight":
        kwargs["in_flight"] = {"app"}
    elif case == "no-healthy":
        units = [_unit("app/0", workload_status="blocked"), _unit("app/1", agent_status="lost")]
    elif case == "all-busy":
        kwargs["busy"] = {"app/0", "app/1"}
    view = _view(*units, apps=apps)
    view.is_controller_model = case == "controller-model"
    view.model_seen = case != "model-unseen"

    assert _ready_reason(view, app, **kwargs) == expected


def test_ready_services_keep_configured_order_and_skip_untargeted() -> None:
    view = _view(_unit("db/0"), _unit("web/0"), _unit("other/0"), _unit("app/0", life="dying"))

    ready = policy.get_ready_services(
        view, SETTINGS, breakers={}, busy_units=set(), in_flight_apps=set()
    )

    assert ready == ["web", "db"]


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
