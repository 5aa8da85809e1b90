"""Nothing acts without authority: adoption and recovery obey targets, pause, dry-run, proof.

The attack from the review: anyone with write access to the model sets a `whirlwind/op`
annotation on two units. Before the fix the agent adopted that "operation" on every start,
in any application, even with dry-run on, paused, or `services` empty, and destroyed a unit.
Now it adopts only on target applications, only operations signed with Whirlwind's own key
(and whose new unit carries `whirlwind/born`), and never while paused or in dry-run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.fakejuju import server as fake_server
from tests.functional import agent_harness as harness
from tests.functional import conftest
from whirlwind import control, provenance

KEY = "the-charms-operation-key"
BORN = "2026-11-29T09:00:00+00:00"
MUTATING = {
    ("Application", "AddUnits"),
    ("Application", "DestroyUnit"),
    ("MachineManager", "DestroyMachineWithParams"),
    ("Annotations", "Set"),
}


def _mutating_calls(fake: fake_server.FakeJujuController) -> list[str]:
    return [f"{c.facade}.{c.method}" for c in fake.calls if (c.facade, c.method) in MUTATING]


def _mark(fake: fake_server.FakeJujuController, app: str, *, sig: str | None, born: bool) -> None:
    """Annotate app/0 (old) and app/1 (new) as an operation in flight, as an attacker would."""
    op_id = "9-abcdef"
    signature = provenance.sign(
        KEY.encode(), op_id=op_id, service=app, old_unit=f"{app}/0", new_unit=f"{app}/1", born=BORN
    )
    marks = {provenance.OP_ANNOTATION: op_id}
    if sig is not None:
        marks[provenance.SIG_ANNOTATION] = signature if sig == "valid" else sig
    fake.model.set_annotations(f"unit-{app}-0", marks)
    fake.model.set_annotations(
        f"unit-{app}-1", {**marks, **({provenance.BORN_ANNOTATION: BORN} if born else {})}
    )
    fake.model.feed.flush()  # already there when the agent takes its snapshot


@pytest.mark.parametrize(
    ("app", "sig", "born", "overrides", "log"),
    [
        # The reproduced attack: another application, dry-run on.
        ("postgresql", "forged", True, {"dry_run": True}, "postgresql is not a target"),
        # Even a correct signature does not make an untargeted application ours.
        ("postgresql", "valid", True, {}, "postgresql is not a target"),
        ("wsgi-example", None, True, {}, "has no whirlwind/sig annotation"),
        ("wsgi-example", "forged", True, {}, "annotation of wsgi-example/0 does not match"),
        ("wsgi-example", "valid", False, {}, "has no whirlwind/born annotation"),
        ("wsgi-example", "valid", True, {"dry_run": True}, "DRY-RUN: would take up"),
        ("wsgi-example", "valid", True, {"services": ()}, "wsgi-example is not a target"),
    ],
    ids=[
        "other-app-dry-run",
        "other-app-signed",
        "unsigned",
        "bad-signature",
        "no-born",
        "dry-run",
        "no-services",
    ],
)
async def test_forged_or_held_operation_is_never_adopted(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    caplog: pytest.LogCaptureFixture,
    app: str,
    sig: str | None,
    born: bool,
    overrides: dict[str, Any],
    log: str,
):
    fake = await fake_juju_factory({"wsgi-example": 3, "postgresql": 2, harness.OWN_APP: 1})
    _mark(fake, app, sig=sig, born=born)
    services = overrides.pop("services", ("wsgi-example",))

    agent = await agent_factory(fake, services, op_key=KEY, **overrides)
    await harness.ClockPump(fake).run_for(1.0)

    assert _mutating_calls(fake) == []
    assert agent.unfinished() == []
    assert any(log in message for message in caplog.messages), caplog.messages
    assert harness.units_of(fake, app) == {f"{app}/0", f"{app}/1", *(
        {f"{app}/2"} if app == "wsgi-example" else set()
    )}  # fmt: skip


async def test_a_signed_operation_waits_while_paused_and_is_adopted_on_resume(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    fake = await fake_juju_factory({"wsgi-example": 3, harness.OWN_APP: 1})
    _mark(fake, "wsgi-example", sig="valid", born=True)
    agent = await agent_factory(fake, ("wsgi-example",), op_key=KEY, paused=True)
    pump = harness.ClockPump(fake)
    await pump.run_for(1.0)
    while_paused = _mutating_calls(fake)

    agent.engine.reload(dataclasses.replace(agent.engine.settings, paused=False))
    await pump.until(lambda: bool(agent.history()) and not agent.unfinished(), 20, "adopted")

    assert while_paused == []
    (op,) = agent.history()
    assert (op["id"], op["trigger"], op["old-unit"], op["new-unit"]) == (
        "9-abcdef", "recovery", "wsgi-example/0", "wsgi-example/1",
    )  # fmt: skip
    assert op["result"] == "ok"


async def test_nothing_acts_on_the_controller_model(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
):
    # Before the fix ModelView.is_controller_model was never set from the model delta.
    fake = await fake_juju_factory({"wsgi-example": 3, harness.OWN_APP: 1}, controller_model=True)
    _mark(fake, "wsgi-example", sig="valid", born=True)
    agent = await agent_factory(fake, ("wsgi-example",), op_key=KEY, interval=1)
    await harness.ClockPump(fake).run_for(2.5)

    with pytest.raises(control.ControlError, match="controller model is never touched"):
        await agent.replace_now("wsgi-example")
    assert agent.backend.model.is_controller_model is True
    assert _mutating_calls(fake) == []
    assert agent.history() == []
    await asyncio.sleep(0)
