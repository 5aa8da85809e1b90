"""Failure injection driven by the real engine on virtual time (in-memory backend).

The planner decides (guard, draws, victim), the runner records the draws and starts the
injector; heal and the unit count repair the damage. The in-memory backend refuses every exec
unless a test sets `allow_exec`, so nothing here injects by accident.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import control, policies
from whirlwind import journal as journal_mod
from whirlwind.chaos import draws as draws_mod
from whirlwind.chaos import runner as chaos_runner

HOUR = 3600
MODEL = "test"  # the in-memory model's name


def _policies(chaos: dict[str, Any], **more: Any) -> tuple[tuple[str, policies.Overrides], ...]:
    return tuple(policies.parse_policies({"app": {"chaos": chaos, **more}}, ("app",)).items())


def _backend(units: int = 3) -> imb.InMemoryBackend:
    backend = imb.InMemoryBackend()
    backend.add_application("app", units)
    backend.add_application("whirlwind", 1)
    return backend


def _chaos_calls(backend: imb.InMemoryBackend) -> list[tuple[str, tuple[Any, ...]]]:
    """Calls that inject: removals without a replacement operation, and every exec."""
    machines = [(c.method, c.args) for c in backend.get_calls("destroy_machine")]
    return machines + [("exec", (e.unit,)) for e in backend.execs]


def _draws(journal: journal_mod.Journal) -> list[draws_mod.Draw]:
    found = [draws_mod.Draw.from_state(d) for d in journal.get_state(chaos_runner.DRAWS_KEY)]
    return [d for d in found if d is not None]


async def _arm(agent: imb.Agent, duration: str = "6h", **kwargs: Any) -> dict[str, Any]:
    return await agent.engine.arm_chaos(duration, MODEL, **kwargs)


def test_armed_kill_unit_with_chance_1_removes_one_unit_and_the_count_restores_it(
    tmp_path: pathlib.Path,
) -> None:
    backend = _backend()
    chaos = {"kinds": ["kill-unit"], "chance": 1, "interval": "1h", "max-per-day": 1}

    async def scenario() -> tuple[list[Any], set[str], list[journal_mod.Operation]]:
        agent = await imb.start_agent(
            backend,
            tmp_path,
            interval=30 * 86400,
            policies=_policies(chaos, units=3),
            chaos_seed=7,
        )
        await asyncio.sleep(60)
        armed = await _arm(agent)
        assert armed["chaos-armed"] is True
        await asyncio.sleep(HOUR + 120)  # the first tick, an hour after arming
        injections = agent.journal.get_injections(10)
        await asyncio.sleep(2 * HOUR)  # the count brings the unit back; max-per-day holds
        units = {u.name for u in backend.model.get_units("app")}
        history = agent.history()
        await agent.stop()
        return injections, units, history

    injections, units, history = imb.run_virtual(scenario())

    (injection,) = injections
    assert (injection.kind, injection.result) == ("kill-unit", journal_mod.OK)
    assert injection.unit != "app/0"  # the leader goes last
    assert injection.unit not in units
    assert len(units) == 3  # restored to `units: 3`
    assert [op.trigger for op in history] == ["count"]
    assert [op.result for op in history] == [journal_mod.OK]


@pytest.mark.parametrize(
    "case",
    ["not-armed", "wrong-confirm", "paused", "dry-run", "not-opted-in", "unhealthy"],
)
def test_nothing_is_injected_without_every_part_of_the_guard(
    tmp_path: pathlib.Path, case: str
) -> None:
    backend = _backend()
    backend.allow_exec = True
    chaos = {"kinds": ["kill-unit", "slow-network"], "chance": 1, "interval": "1h"}
    overrides: dict[str, Any] = {"policies": _policies(chaos), "interval": 30 * 86400}
    if case == "not-opted-in":
        overrides["policies"] = ()
    if case == "dry-run":
        overrides["dry_run"] = True

    async def scenario() -> tuple[list[Any], list[journal_mod.ChaosInjection]]:
        agent = await imb.start_agent(backend, tmp_path, heal=False, **overrides)
        await asyncio.sleep(60)
        if case == "unhealthy":
            backend.set_unit_status("app/1", "error", message='hook failed: "update-status"')
        if case == "paused":
            await agent.engine.pause()
        if case == "wrong-confirm":
            with pytest.raises(control.ControlError, match="confirm"):
                await agent.engine.arm_chaos("6h", "production")
        elif case != "not-armed":
            await _arm(agent)
        await asyncio.sleep(5 * HOUR)
        calls = _chaos_calls(backend) + [
            (c.method, c.args) for c in backend.get_calls("destroy_unit")
        ]
        injections = agent.journal.get_injections(10)
        await agent.stop()
        return calls, injections

    calls, injections = imb.run_virtual(scenario())

    assert calls == []
    if case == "dry-run":  # journaled as what it would have done, and nothing made
        assert injections
        assert all(i.result == journal_mod.DRY_RUN for i in injections)
    else:
        assert injections == []


def test_slow_network_is_reverted_after_its_duration_and_early_when_the_agent_stops(
    tmp_path: pathlib.Path,
) -> None:
    backend = _backend()
    backend.allow_exec = True
    chaos = {
        "kinds": ["slow-network"],
        "chance": 1,
        "interval": "1h",
        "duration": "10m",
        "delay": "200ms",
    }

    async def scenario() -> tuple[list[str], list[str], list[journal_mod.ChaosInjection]]:
        agent = await imb.start_agent(
            backend, tmp_path, interval=30 * 86400, policies=_policies(chaos), chaos_seed=3
        )
        await asyncio.sleep(60)
        await _arm(agent)
        await asyncio.sleep(HOUR + 15 * 60)  # tick 1, then its 10 minutes and a cycle
        first = [e.command.splitlines()[0] for e in backend.execs]
        await asyncio.sleep(45 * 60 + 30)  # tick 2: injected, then the agent stops
        await agent.stop()
        every = [e.command.splitlines()[0] for e in backend.execs]
        reopened = journal_mod.Journal(tmp_path / journal_mod.JOURNAL_FILE, durable=False)
        injections = reopened.get_injections(10)
        reopened.close()
        return first, every, injections

    first, every, injections = imb.run_virtual(scenario())

    assert [line.split()[2:4] for line in first] == [
        ["slow-network", "inject"],
        ["slow-network", "revert"],  # at the end of its duration
    ]
    assert [line.split()[2:4] for line in every[2:]] == [
        ["slow-network", "inject"],
        ["slow-network", "revert"],  # early, on stop
    ]
    assert all(i.reverted is not None for i in injections)


def test_the_same_seed_gives_the_same_injections(tmp_path: pathlib.Path) -> None:
    chaos = {"kinds": ["kill-unit", "slow-network"], "chance": 0.5, "interval": "1h"}

    def run(folder: pathlib.Path) -> list[tuple[int, bool, str | None, str | None]]:
        backend = _backend(5)
        backend.allow_exec = True

        async def scenario() -> list[draws_mod.Draw]:
            agent = await imb.start_agent(
                backend,
                folder,
                interval=30 * 86400,
                policies=_policies(chaos, units=5),
                chaos_seed=42,
                heal=False,
            )
            await asyncio.sleep(60)
            await _arm(agent, "12h")
            await asyncio.sleep(12 * HOUR)
            draws = _draws(agent.journal)
            await agent.stop()
            return draws

        draws = imb.run_virtual(scenario())
        assert draws_mod.find_mismatches(42, draws) == []  # the journal replays
        return [(d.tick, d.inject, d.kind, d.victim) for d in draws]

    first = run(tmp_path / "a")
    second = run(tmp_path / "b")

    assert first == second
    assert len(first) >= 4
    assert any(inject for _, inject, _, _ in first)
