"""How a unit is doing (get_condition), and since when it has been broken (track)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model_builders import T0
from tests.unit.model_builders import at as _at
from tests.unit.model_builders import unit as _unit
from tests.unit.model_builders import view as _view
from whirlwind import model as model_view
from whirlwind.planner import health


def _timeout(seconds: int) -> Any:
    return lambda application: seconds


HOOK_FAILED = 'hook failed: "config-changed"'
ERROR = {"workload_status": "error", "workload_message": HOOK_FAILED}
EXECUTING = {"workload_status": "maintenance", "agent_status": "executing"}
ALLOCATING = {"workload_status": "waiting", "agent_status": "allocating"}


# -- get_condition ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "setup", "expected"),
    [
        ({}, None, (health.HEALTHY, "")),
        ({"workload_status": "unknown"}, None, (health.HEALTHY, "")),
        (ERROR, None, (health.BROKEN, HOOK_FAILED)),
        ({"workload_status": "error"}, None, (health.BROKEN, "error")),
        (
            {"agent_status": "error", "agent_message": "uniter failed"},
            None,
            (health.BROKEN, "uniter failed"),
        ),
        ({"agent_status": "error"}, None, (health.BROKEN, "error")),
        ({}, "lost", (health.BROKEN, "agent lost")),
        ({}, "machine-down", (health.BROKEN, "agent lost")),
        # Lost is told before the error the last delta showed.
        (ERROR, "lost", (health.BROKEN, "agent lost")),
        (ALLOCATING, "provisioning-error", (health.BROKEN, "machine 0: no matching image")),
        (ALLOCATING, "instance-error", (health.BROKEN, "machine 0: provisioning error")),
        ({"life": "dying"}, None, (health.DYING, "unit is dying")),
        ({"life": "dead"}, None, (health.DYING, "unit is dead")),
        ({"life": "dying", **ERROR}, "lost", (health.DYING, "unit is dying")),
        (EXECUTING, None, (health.SETTLING, "maintenance/executing")),
        (ALLOCATING, None, (health.SETTLING, "waiting/allocating")),
        ({"workload_status": "blocked"}, None, (health.SETTLING, "blocked/idle")),
        ({"agent_status": "executing"}, None, (health.SETTLING, "active/executing")),
    ],
)
def test_condition_of_a_unit(
    fields: dict[str, Any], setup: str | None, expected: tuple[str, str]
) -> None:
    unit = _unit("app/0", **fields)
    view = _view(unit, _unit("app/1"))
    if setup == "lost":
        view.lost_units = frozenset({"app/0"})
    elif setup == "machine-down":
        view.down_machines = frozenset({"0"})
    elif setup == "provisioning-error":
        view.machines["0"] = model_view.MachineState(
            id="0", instance_status="provisioning error", instance_message="no matching image"
        )
    elif setup == "instance-error":
        view.machines["0"] = model_view.MachineState(id="0", instance_status="error")

    assert health.get_condition(view, unit) == expected
    # The neighbour on another machine is not affected.
    assert health.get_condition(view, view.units["app/1"]) == (health.HEALTHY, "")


def test_a_unit_without_a_machine_yet_is_settling() -> None:
    unit = _unit("app/0", machine_id=None, **ALLOCATING)

    assert health.get_condition(_view(unit), unit) == (health.SETTLING, "waiting/allocating")


# -- track -------------------------------------------------------------------------------------


def _track(
    previous: dict[str, health.Watch],
    *units: model_view.UnitState,
    at: float,
    timeout: int = 600,
    busy: tuple[str, ...] = (),
    applications: tuple[str, ...] = ("app",),
) -> dict[str, health.Watch]:
    return health.track(previous, _view(*units), applications, _at(at), _timeout(timeout), busy)


def test_broken_since_is_set_on_first_sighting_and_kept() -> None:
    first = _track({}, _unit("app/0", **ERROR), _unit("app/1"), at=10)
    later = _track(first, _unit("app/0", **ERROR), _unit("app/1"), at=500)

    assert first == {"app/0": health.Watch(None, _at(10), HOOK_FAILED)}
    assert later == {"app/0": health.Watch(None, _at(10), HOOK_FAILED)}


def test_a_hook_retry_between_two_errors_stays_broken() -> None:
    # Juju retries a failed hook: error, executing, error again.
    watches: dict[str, health.Watch] = {}
    seen = []
    for at, fields in ((0, ERROR), (30, EXECUTING), (60, ERROR), (90, EXECUTING)):
        watches = _track(watches, _unit("app/0", **fields), at=at)
        seen.append(watches["app/0"].broken_since)

    assert seen == [_at(0)] * 4
    assert watches["app/0"].reason == HOOK_FAILED


def test_the_latest_reason_is_kept_while_broken() -> None:
    first = _track({}, _unit("app/0", **ERROR), at=0)
    lost = health.track(first, _lost_view(_unit("app/0")), ("app",), _at(30), _timeout(600))

    assert lost == {"app/0": health.Watch(None, _at(0), "agent lost")}


def _lost_view(*units: model_view.UnitState) -> model_view.ModelView:
    view = _view(*units)
    view.lost_units = frozenset(u.name for u in units)
    return view


@pytest.mark.parametrize(
    "fields", [{}, {"workload_status": "unknown"}, {"life": "dying"}, {"life": "dead"}]
)
def test_healthy_or_dying_again_clears_the_watch(fields: dict[str, Any]) -> None:
    broken = _track({}, _unit("app/0", **ERROR), at=0)

    assert _track(broken, _unit("app/0", **fields), at=30) == {}


def test_broken_after_healthy_again_starts_a_new_clock() -> None:
    watches = _track({}, _unit("app/0", **ERROR), at=0)
    watches = _track(watches, _unit("app/0"), at=30)
    watches = _track(watches, _unit("app/0", **ERROR), at=90)

    assert watches == {"app/0": health.Watch(None, _at(90), HOOK_FAILED)}


def test_a_unit_gone_from_the_view_is_forgotten() -> None:
    watches = _track({}, _unit("app/0", **ERROR), _unit("app/1"), at=0)

    assert _track(watches, _unit("app/1"), at=30) == {}


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (0, health.Watch(_at(0))),
        (599, health.Watch(_at(0))),
        (600, health.Watch(_at(0), _at(600), "still allocating after 600s")),
        (5000, health.Watch(_at(0), _at(600), "still allocating after 600s")),
    ],
)
def test_allocating_past_settle_timeout_becomes_broken(at: int, expected: health.Watch) -> None:
    first = _track({}, _unit("app/0", **ALLOCATING), at=0)

    assert _track(first, _unit("app/0", **ALLOCATING), at=at) == {"app/0": expected}


def test_stuck_allocating_stays_broken_after_it_moves_on() -> None:
    watches = _track({}, _unit("app/0", **ALLOCATING), at=0)
    watches = _track(watches, _unit("app/0", **ALLOCATING), at=600)
    watches = _track(watches, _unit("app/0", **EXECUTING), at=700)

    assert watches == {"app/0": health.Watch(_at(0), _at(600), "still allocating after 600s")}


def test_settle_timeout_is_asked_per_application() -> None:
    timeouts = {"app": 600, "db": 60}
    units = (_unit("app/0", **ALLOCATING), _unit("db/1", **ALLOCATING))
    first = health.track({}, _view(*units), ("app", "db"), _at(0), timeouts.__getitem__)

    later = health.track(first, _view(*units), ("app", "db"), _at(60), timeouts.__getitem__)

    assert later == {
        "app/0": health.Watch(_at(0)),
        "db/1": health.Watch(_at(0), _at(60), "still allocating after 60s"),
    }


def test_settling_but_not_allocating_is_watched_without_a_clock() -> None:
    assert _track({}, _unit("app/0", **EXECUTING), at=0) == {"app/0": health.Watch()}
    assert _track({}, _unit("app/0", **EXECUTING), at=10_000) == {"app/0": health.Watch()}


def test_busy_units_are_left_to_their_operation() -> None:
    broken = _track({}, _unit("app/0", **ERROR), _unit("app/1", **ERROR), at=0)

    later = _track(
        broken, _unit("app/0", **ERROR), _unit("app/1", **ERROR), at=30, busy=("app/0",)
    )

    assert later == {"app/1": health.Watch(None, _at(0), HOOK_FAILED)}


def test_subordinates_and_other_applications_are_not_tracked() -> None:
    watches = _track(
        {},
        _unit("app/0", **ERROR, subordinate=True, principal="web/0"),
        _unit("other/1", **ERROR),
        _unit("app/2", **ERROR),
        at=0,
    )

    assert list(watches) == ["app/2"]


def test_watches_survive_a_round_trip_through_the_journals_json() -> None:
    watches = {
        "app/1": health.Watch(None, T0, 'hook failed: "update-status"'),
        "app/2": health.Watch(T0, None, ""),
    }

    assert health.from_state(health.to_state(watches)) == watches


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {"app/1": "x"}, {"app/1": {"broken-since": "yesterday"}}],
)
def test_malformed_watch_state_is_dropped_not_fatal(data: object) -> None:
    restored = health.from_state(data)

    assert all(w.broken_since is None for w in restored.values())
