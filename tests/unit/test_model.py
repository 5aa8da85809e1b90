"""The model view: deltas, full-status health facts, queries and event-driven waiting."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import model as model_view


def _status(current: str, message: str = "") -> dict[str, Any]:
    return {"current": current, "message": message}


def _unit(name: str, machine: str, **fields: Any) -> list[Any]:
    info: dict[str, Any] = {
        "name": name,
        "application": name.split("/")[0],
        "machine-id": machine,
        "life": "alive",
        "workload-status": _status("active"),
        "agent-status": _status("idle"),
    }
    info.update(fields)
    return ["unit", "change", info]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2026-01-02T03:04:05.123456789Z",
            datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc),
        ),
        (
            "2026-01-02T03:04:05+02:00",
            datetime.datetime(
                2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
            ),
        ),
        (
            "2026-01-02T03:04:05",
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        ),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_since(text: Any, expected: datetime.datetime | None) -> None:
    assert model_view.parse_since(text) == expected


def test_deltas_snapshot_change_and_remove() -> None:
    view = model_view.ModelView()
    view.apply_deltas(
        [
            ["application", "change", {"name": "app"}],
            ["machine", "change", {"id": "0", "jobs": ["JobHostUnits"]}],
            _unit("app/0", "0"),
            _unit("app/1", "1", **{"workload-status": _status("error", "hook failed")}),
            ["annotation", "change", {"tag": "unit-app-0", "annotations": {"k": "v"}}],
        ],
        snapshot=True,
    )
    assert view.synced
    assert [u.name for u in view.get_units("app")] == ["app/0", "app/1"]
    assert view.get_unit_annotations("app/0") == {"k": "v"}
    assert view.count_healthy("app") == 1
    assert view.get_unit("app/1").workload_message == "hook failed"  # type: ignore[union-attr]

    view.apply_deltas([["unit", "remove", {"name": "app/0"}]])

    assert view.get_unit("app/0") is None
    assert view.get_unit_annotations("app/0") == {}


def test_full_status_marks_lost_units_and_down_machines_unhealthy() -> None:
    view = model_view.ModelView()
    view.apply_deltas([_unit("app/0", "0"), _unit("app/1", "1"), _unit("app/2", "2")])

    view.apply_full_status(
        {
            "applications": {"app": {"units": {"app/0": {"agent-status": {"status": "lost"}}}}},
            "machines": {"1": {"agent-status": {"status": "down"}}},
        }
    )

    assert [view.is_lost(n) for n in ("app/0", "app/1", "app/2")] == [True, True, False]
    assert view.count_healthy("app") == 1


@pytest.mark.parametrize(
    ("workload", "agent", "healthy", "broken"),
    [
        ("active", "idle", True, False),
        # What Juju shows after the start hook of a charm that never calls status-set.
        ("unknown", "idle", True, False),
        ("active", "executing", False, False),
        ("maintenance", "idle", False, False),
        ("waiting", "idle", False, False),
        ("blocked", "idle", False, False),
        ("error", "idle", False, True),
        ("active", "error", False, True),
    ],
)
def test_health_needs_an_idle_agent_and_an_active_or_unset_workload(
    workload: str, agent: str, healthy: bool, broken: bool
) -> None:
    view = model_view.ModelView()
    view.apply_deltas(
        [
            _unit(
                "app/0",
                "0",
                **{"workload-status": _status(workload), "agent-status": _status(agent)},
            )
        ]
    )

    assert view.is_healthy("app/0") is healthy
    assert view.is_broken("app/0") is broken


def test_full_status_lists_units_and_numbers_polls() -> None:
    view = model_view.ModelView()
    first = view.begin_status_poll()
    second = view.begin_status_poll()

    view.apply_full_status(
        {
            "applications": {
                "app": {"units": {"app/0": {}, "app/7": {"subordinates": {"s/1": {}}}}}
            }
        },
        first,
    )

    assert view.status_units == {"app/0", "app/7", "s/1"}
    assert view.polled_since(0)
    assert not view.polled_since(first)  # the poll sent after `first` has not answered yet
    view.apply_full_status({"applications": {}}, second)
    assert view.polled_since(first)
    assert view.status_units == frozenset()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unit-app-3", "app/3"),
        ("unit-my-app-12", "my-app/12"),
        ("machine-3", None),
        ("unit-x", None),
    ],
)
def test_unit_tags(name: str, expected: str | None) -> None:
    assert model_view.unit_name_from_tag(name) == expected
    if expected is not None:
        assert model_view.unit_tag(expected) == name


def test_wait_until_wakes_on_change_and_times_out() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        view = model_view.ModelView()
        loop = asyncio.get_running_loop()
        loop.call_later(5, view.apply_deltas, [_unit("app/0", "0")])
        found = await view.wait_until(lambda v: v.get_unit("app/0") is not None, 60)
        at = loop.time()
        missing = await view.wait_until(lambda v: v.get_unit("app/9") is not None, 30)
        return found, missing, at

    found, missing, at = imb.run_virtual(scenario())

    assert (found, missing, at) == (True, False, 5)
