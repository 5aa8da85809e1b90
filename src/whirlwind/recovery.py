"""Pure decisions for work left in flight: whether it may be taken up now, and how.

Recovery (the agent's own journal) and adoption (an operation a previous leader left in the
model) are mutating paths like any other: they obey pause (but for a heal of our own, which
pause does not hold while heal is on, as for new heals) and dry-run, adoption only takes
operations on target applications that are provably Whirlwind's own (signed), and the
controller model and Whirlwind's own application are never touched.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection

from whirlwind import journal as journal_mod
from whirlwind import model as model_view
from whirlwind import policy, provenance
from whirlwind import settings as settings_mod

PAUSED = "paused"
DRY_RUN = "dry-run"
HEAL_TRIGGER = "heal"  # the journal's name of the planner's heal trigger (planview)


def get_hold(
    settings: settings_mod.AgentSettings, paused: bool, view: model_view.ModelView
) -> str | None:
    """Why nothing left in flight may be taken up now (None: it may)."""
    if not view.model_seen:
        return "the model's own information has not arrived yet"
    if view.is_controller_model:
        return "the controller model is never touched"
    if paused:
        return PAUSED
    if settings.dry_run:
        return DRY_RUN
    return None


def may_heal_while_paused(op: journal_mod.Operation, settings: settings_mod.AgentSettings) -> bool:
    """Whether an unfinished operation is a heal that pause does not hold (heal is on)."""
    return op.trigger == HEAL_TRIGGER and settings.policy_for(op.service).heal


def why_not_adopt(
    foreign: policy.ForeignOperation,
    view: model_view.ModelView,
    settings: settings_mod.AgentSettings,
    key: bytes,
) -> str | None:
    """Why an operation found in the model must not be adopted (None: it may)."""
    if foreign.service not in settings.services:
        return f"{foreign.service} is not a target (services)"
    refusal = policy.get_refusal(foreign.service, view, settings)
    if refusal is not None:
        return refusal
    return provenance.why_not_ours(
        key,
        op_id=foreign.op_id,
        service=foreign.service,
        old_unit=foreign.old_unit.name,
        new_unit=foreign.new_unit.name,
        old_annotations=view.get_unit_annotations(foreign.old_unit.name),
        new_annotations=view.get_unit_annotations(foreign.new_unit.name),
    )


def find_foreign(
    view: model_view.ModelView, known_ops: Collection[str], busy_apps: Collection[str]
) -> list[policy.ForeignOperation]:
    """Operations in the model unknown to the journal, at most one per application."""
    found: list[policy.ForeignOperation] = []
    for application in sorted(view.applications):
        if application in busy_apps:
            continue
        found += policy.find_foreign_operations(view, application, known_ops)[:1]
    return found


@dataclasses.dataclass(frozen=True)
class Adoption:
    """How to journal an adopted operation: its step, deadline and the facts it needs."""

    op_id: str
    service: str
    old_unit: str
    new_unit: str
    step: str
    started: datetime.datetime
    deadline: datetime.datetime
    born: datetime.datetime | None
    max_unit_number: int
    healthy_at_start: int
    old_machine: str | None
    old_machine_dedicated: bool
    new_machine: str | None
    reason: str


def plan_adoption(
    foreign: policy.ForeignOperation,
    view: model_view.ModelView,
    settings: settings_mod.AgentSettings,
    now: datetime.datetime,
) -> Adoption:
    """Where an adopted operation resumes: REMOVE, ROLLBACK or SETTLE with its old deadline."""
    old, new = foreign.old_unit, foreign.new_unit
    born = model_view.parse_since(view.get_unit_annotations(new.name).get(policy.BORN_ANNOTATION))
    if old.life != model_view.ALIVE:
        step, reason = journal_mod.REMOVE, ""
        deadline = now + datetime.timedelta(seconds=settings.remove_timeout)
    elif new.life != model_view.ALIVE:
        step, reason = journal_mod.ROLLBACK, f"adopted while new unit {new.name} was being removed"
        deadline = now + datetime.timedelta(seconds=settings.remove_timeout)
    else:
        # The ADD started when the new unit was born: the original settle deadline.
        step, reason = journal_mod.SETTLE, ""
        timeout = settings.policy_for(foreign.service).settle_timeout
        deadline = (born or now) + datetime.timedelta(seconds=timeout)
    machine = old.machine_id
    return Adoption(
        op_id=foreign.op_id,
        service=foreign.service,
        old_unit=old.name,
        new_unit=new.name,
        step=step,
        started=born or now,
        deadline=deadline,
        born=born,
        max_unit_number=new.number - 1,
        healthy_at_start=policy.healthy_after_removal(view, foreign.service, new.name),
        old_machine=machine,
        old_machine_dedicated=(
            machine is not None and policy.is_dedicated_machine(view, machine, old.name)
        ),
        new_machine=new.machine_id,
        reason=reason,
    )
