"""Pure decisions: eligibility, victim, next due time, settle bookkeeping, circuit breaker."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection

from whirlwind import model as model_view
from whirlwind import provenance
from whirlwind import settings as settings_mod

BORN_ANNOTATION = provenance.BORN_ANNOTATION
OP_ANNOTATION = provenance.OP_ANNOTATION

# Why a target is not ready (kept short: they show in status and logs).
NOT_IN_MODEL = "not in the model"


@dataclasses.dataclass(frozen=True)
class BreakerState:
    """Consecutive failures of replacements on one application, and the last reason."""

    failures: int = 0
    reason: str = ""

    def is_open(self, limit: int) -> bool:
        """Whether the breaker stops work on the application (too many failures in a row)."""
        return self.failures >= limit


def record_result(state: BreakerState, result: str, reason: str) -> BreakerState:
    """The breaker after an operation ended with `result` ("ok", "rolled-back", ...)."""
    if result == "ok":
        return BreakerState()
    if result in ("rolled-back", "failed"):
        return BreakerState(failures=state.failures + 1, reason=reason)
    return state


def describe_breaker(state: BreakerState) -> str:
    """Operator-facing reason why an application is blocked."""
    count = "1 failure" if state.failures == 1 else f"{state.failures} consecutive failures"
    return f"{count}; last: {state.reason}"


def get_refusal(
    application: str,
    view: model_view.ModelView,
    settings: settings_mod.AgentSettings,
) -> str | None:
    """Why Whirlwind must never touch `application` at all (None: it may, if asked)."""
    if not view.model_seen:
        # Nothing is known of the model itself yet, not even whether it is the controller's.
        return "the model's own information has not arrived yet"
    if view.is_controller_model:
        return "the controller model is never touched"
    if settings.own_application is not None and application == settings.own_application:
        return "Whirlwind never replaces its own units"
    app = view.applications.get(application)
    if app is None:
        return NOT_IN_MODEL
    if app.subordinate:
        return "subordinate applications cannot be replaced"
    if app.life != model_view.ALIVE:
        return f"application is {app.life}"
    return None


@dataclasses.dataclass(frozen=True)
class SettleFailure:
    """Why a new unit will never settle, and whether removing it needs force at once.

    A unit whose hook failed or whose agent is lost cannot run its stop hooks (the uniter
    only waits for `juju resolve` after a hook error), so only a forced removal gets rid of it.
    """

    reason: str
    needs_force: bool = False


def get_settle_failure(
    unit: model_view.UnitState | None,
    machine: model_view.MachineState | None,
    *,
    name: str,
    lost: bool,
    seen: bool,
) -> SettleFailure | None:
    """Why a new unit will never settle (fail fast), or None while it still may.

    A unit the agent added but has not seen yet is pending (its delta comes after the reply
    of AddUnits), not gone: `seen` says whether the view ever showed it.
    """
    if unit is None:
        return SettleFailure(f"new unit {name} disappeared") if seen else None
    if unit.life != model_view.ALIVE:
        return SettleFailure(f"new unit {name} is {unit.life}")
    if unit.workload_status == "error" or unit.agent_status == "error":
        message = unit.workload_message or unit.agent_message or "error"
        return SettleFailure(f"new unit {name} failed: {message}", needs_force=True)
    if machine is not None and machine.instance_status in ("error", "provisioning error"):
        message = machine.instance_message or machine.instance_status
        return SettleFailure(
            f"machine {machine.id} of new unit {name} failed to provision: {message}"
        )
    if lost:
        return SettleFailure(f"new unit {name} is lost", needs_force=True)
    return None


@dataclasses.dataclass(frozen=True)
class SettleState:
    """Since when a unit has been healthy without interruption (None: not healthy now).

    `marker` is Juju's own record of the unit's last status changes (the `since` of its
    workload and agent status). The watcher coalesces what happens between two Next calls,
    so a short break (a hook run: executing, then idle again) can arrive as one healthy delta
    whose `since` moved: that is a break too, and the settle period starts over.
    """

    healthy_since: datetime.datetime | None = None
    marker: tuple[str, str] | None = None

    def observe(
        self, healthy: bool, now: datetime.datetime, marker: tuple[str, str] | None = None
    ) -> SettleState:
        """The state after seeing the unit healthy or not at `now` (with its status marker)."""
        if not healthy:
            return SettleState()
        if self.healthy_since is None or marker != self.marker:
            return SettleState(healthy_since=now, marker=marker)
        return self

    def remaining(self, now: datetime.datetime, settle_period: int) -> float | None:
        """Seconds of continuous health still needed (0: settled; None: not healthy now)."""
        if self.healthy_since is None:
            return None
        elapsed = (now - self.healthy_since).total_seconds()
        return max(0.0, settle_period - elapsed)

    def is_settled(self, now: datetime.datetime, settle_period: int) -> bool:
        """Whether the unit has been healthy continuously for `settle_period` seconds."""
        return self.remaining(now, settle_period) == 0.0


def healthy_after_removal(view: model_view.ModelView, application: str, unit: str) -> int:
    """How many healthy units `application` keeps if `unit` goes."""
    count = view.count_healthy(application)
    return count - 1 if view.is_healthy(unit) else count


def is_dedicated_machine(view: model_view.ModelView, machine_id: str, unit: str) -> bool:
    """Whether `machine_id` hosts only `unit` and its subordinates (and is no controller)."""
    machine = view.machines.get(machine_id)
    if machine is not None and machine.is_controller:
        return False
    return all(
        u.name == unit or (u.subordinate and u.principal == unit)
        for u in view.get_units_on_machine(machine_id)
    )


def find_adopted_unit(
    view: model_view.ModelView, application: str, op_id: str, max_number: int
) -> str | None:
    """The unit an interrupted ADD created: annotated with `op_id`, else numbered above max.

    Only units numbered above the application's highest number at PLAN can be ours (the old
    unit carries the same op annotation); a unit annotated by another operation is not ours.
    Units the last FullStatus listed count too: their deltas may not have arrived yet.
    """
    fresh = [u for u in view.get_units(application) if u.number > max_number and not u.subordinate]
    for unit in fresh:
        if view.get_unit_annotations(unit.name).get(OP_ANNOTATION) == op_id:
            return unit.name
    names = {u.name for u in fresh if OP_ANNOTATION not in view.get_unit_annotations(u.name)}
    for name in view.status_units - set(view.units):
        app, _, number = name.rpartition("/")
        if app == application and number.isdigit() and int(number) > max_number:
            names.add(name)
    return min(names, key=lambda n: int(n.rsplit("/", 1)[1]), default=None)


@dataclasses.dataclass(frozen=True)
class ForeignOperation:
    """An operation another agent (a previous leader) left in flight, seen in annotations."""

    op_id: str
    service: str
    old_unit: model_view.UnitState
    new_unit: model_view.UnitState


def find_foreign_operations(
    view: model_view.ModelView, application: str, known_ops: Collection[str]
) -> list[ForeignOperation]:
    """Operations unknown to our journal whose old and new units are both still there.

    ADD annotates both units with the operation's id; when it finishes one of them is gone,
    so two live units sharing an unknown id mean an operation was interrupted in flight.
    """
    groups: dict[str, list[model_view.UnitState]] = {}
    for unit in view.get_units(application):
        op_id = view.get_unit_annotations(unit.name).get(OP_ANNOTATION)
        if op_id is not None and op_id not in known_ops and not unit.subordinate:
            groups.setdefault(op_id, []).append(unit)
    found = []
    for op_id, units in sorted(groups.items()):
        if len(units) != 2:
            continue
        old, new = sorted(units, key=lambda u: u.number)
        found.append(ForeignOperation(op_id, application, old, new))
    return found
