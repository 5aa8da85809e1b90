"""Model views for the pure planner and policy tests: units, applications, born annotations."""

from __future__ import annotations

import datetime
from typing import Any

from whirlwind import model as model_view
from whirlwind import policy

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    """`seconds` after T0."""
    return T0 + datetime.timedelta(seconds=seconds)


def unit(name: str, **fields: Any) -> model_view.UnitState:
    """An active/idle unit on the machine of its own number, unless `fields` say otherwise."""
    values: dict[str, Any] = {
        "application": name.split("/")[0],
        "machine_id": name.split("/")[1],
        "workload_status": "active",
        "agent_status": "idle",
    }
    values.update(fields)
    return model_view.UnitState(name=name, **values)


def view(
    *units: model_view.UnitState,
    apps: dict[str, dict[str, Any]] | None = None,
    born: dict[str, float] | None = None,
) -> model_view.ModelView:
    """A synced view of `units`, their applications and machines.

    `apps` adds applications (with ApplicationState fields); `born` gives units a
    `whirlwind/born` annotation (seconds after T0).
    """
    found = model_view.ModelView()
    found.model_seen = True
    names = {u.application for u in units} | set(apps or {})
    for app in sorted(names):
        found.applications[app] = model_view.ApplicationState(
            name=app, **(apps or {}).get(app, {})
        )
    for each in units:
        found.units[each.name] = each
        if each.machine_id is not None:
            found.machines.setdefault(each.machine_id, model_view.MachineState(id=each.machine_id))
    for name, seconds in (born or {}).items():
        found.annotations[model_view.unit_tag(name)] = {
            policy.BORN_ANNOTATION: at(seconds).isoformat()
        }
    return found
