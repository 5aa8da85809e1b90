"""How a unit is doing, and since when it has been broken (pure).

Broken: a hook failed (workload `error`; with Juju's automatic retries the unit flips to
`executing` and back, and stays broken meanwhile), its agent is lost (only a status poll
shows that), its machine failed to provision, or it never got past `allocating` within
`settle-timeout`. A unit is no longer broken once it is seen healthy again (or goes away).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Collection, Mapping

from whirlwind import model as model_view

HEALTHY = "healthy"
SETTLING = "settling"
BROKEN = "broken"
DYING = "dying"


def get_condition(view: model_view.ModelView, unit: model_view.UnitState) -> tuple[str, str]:
    """(condition, reason) of one unit right now, from the view."""
    if unit.life != model_view.ALIVE:
        return DYING, f"unit is {unit.life}"
    if view.is_lost(unit.name):
        return BROKEN, "agent lost"
    if unit.workload_status == "error" or unit.agent_status == "error":
        return BROKEN, unit.workload_message or unit.agent_message or "error"
    machine = view.machines.get(unit.machine_id) if unit.machine_id else None
    if machine is not None and machine.instance_status in ("error", "provisioning error"):
        return BROKEN, f"machine {machine.id}: {machine.instance_message or 'provisioning error'}"
    if view.is_healthy(unit.name):
        return HEALTHY, ""
    return SETTLING, f"{unit.workload_status}/{unit.agent_status}"


@dataclasses.dataclass(frozen=True)
class Watch:
    """What the agent remembers of a unit that is not healthy."""

    # When it was first seen allocating (the clock for "stuck allocating").
    allocating_since: datetime.datetime | None = None
    # When it was first seen broken, and why (None: not broken).
    broken_since: datetime.datetime | None = None
    reason: str = ""


def track(
    previous: Mapping[str, Watch],
    view: model_view.ModelView,
    applications: Collection[str],
    now: datetime.datetime,
    settle_timeout: Callable[[str], int],
    busy_units: Collection[str] = (),
) -> dict[str, Watch]:
    """The watch list after looking at the view at `now` (units of `applications` only).

    Units in an operation in flight are left to it (its own deadlines judge them).
    """
    watches: dict[str, Watch] = {}
    for application in applications:
        for unit in view.get_units(application):
            if unit.subordinate or unit.name in busy_units:
                continue
            condition, reason = get_condition(view, unit)
            if condition in (HEALTHY, DYING):
                continue
            old = previous.get(unit.name, Watch())
            allocating = old.allocating_since
            if unit.agent_status == "allocating" and allocating is None:
                allocating = now
            if condition == BROKEN:
                watches[unit.name] = Watch(allocating, old.broken_since or now, reason)
                continue
            if old.broken_since is not None:
                # A hook retry (executing) between two errors: still broken.
                watches[unit.name] = dataclasses.replace(old, allocating_since=allocating)
                continue
            timeout = datetime.timedelta(seconds=settle_timeout(application))
            stuck = (
                allocating is not None
                and unit.agent_status == "allocating"
                and now - allocating >= timeout
            )
            if allocating is not None and stuck:
                why = f"still allocating after {int(timeout.total_seconds())}s"
                watches[unit.name] = Watch(allocating, allocating + timeout, why)
                continue
            watches[unit.name] = Watch(allocating)
    return watches


def to_state(watches: Mapping[str, Watch]) -> dict[str, dict[str, str | None]]:
    """The watch list as JSON (the journal keeps it, so a restart keeps heal-after's clock)."""
    return {
        unit: {
            "allocating-since": _iso(w.allocating_since),
            "broken-since": _iso(w.broken_since),
            "reason": w.reason,
        }
        for unit, w in watches.items()
    }


def from_state(data: object) -> dict[str, Watch]:
    """The watch list from `to_state`'s JSON (anything malformed is dropped)."""
    watches: dict[str, Watch] = {}
    if not isinstance(data, Mapping):
        return watches
    for unit, item in data.items():
        if isinstance(unit, str) and isinstance(item, Mapping):
            watches[unit] = Watch(
                _parse(item.get("allocating-since")),
                _parse(item.get("broken-since")),
                str(item.get("reason") or ""),
            )
    return watches


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
