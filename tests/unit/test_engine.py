"""The engine on the in-memory backend and virtual time: triggers, control API, breaker, reload."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import pathlib
import random
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import control, planner
from whirlwind import engine as engine_mod
from whirlwind import journal as journal_mod


def _backend(*apps: tuple[str, int], controller_model: bool = False) -> imb.InMemoryBackend:
    backend = imb.InMemoryBackend(is_controller_model=controller_model)
    for name, units in apps:
        backend.add_application(name, units)
    return backend


def test_interval_replaces_round_robin_over_targets(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2), ("web", 2), ("other", 1))

    async def scenario() -> list[journal_mod.Operation]:
        agent = await imb.start_agent(backend, tmp_path, services=("app", "web"))
        await asyncio.sleep(599)
        assert backend.added == []  # nothing before the first interval
        await imb.wait_until(
            lambda: len(agent.history()) == 3 and not agent.journal.get_unfinished()
        )
        history = agent.history()
        await agent.stop()
        return history

    history = imb.run_virtual(scenario())

    assert [(op.service, op.trigger, op.result) for op in history] == [
        ("app", "interval", "ok"),
        ("web", "interval", "ok"),
        ("app", "interval", "ok"),
    ]
    # One interval apart, oldest first and the leader (unit 0) last of its generation.
    assert [op.old_unit for op in history] == ["app/1", "web/1", "app/0"]
    assert (history[1].started - history[0].started).total_seconds() == 600
    assert backend.get_live_units("app") == ["app/2", "app/3"]
    assert backend.get_live_units("other") == ["other/0"]
    assert not [c for c in backend.calls if c.args and str(c.args[0]).startswith("other")]


def test_circuit_breaker_stops_work_after_consecutive_failures(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))
    backend.next_unit_faults = [imb.HOOK_ERROR] * 3

    async def scenario() -> tuple[dict[str, object], dict[str, object], int, list[str]]:
        agent = await imb.start_agent(backend, tmp_path, max_consecutive_failures=3)
        await imb.wait_until(
            lambda: len(agent.history()) == 3 and not agent.journal.get_unfinished()
        )
        await asyncio.sleep(3 * 600)
        blocked = await agent.engine.get_status()
        added_while_blocked = len(backend.added)
        await agent.engine.resume()
        await imb.wait_until(
            lambda: len(agent.history()) == 4 and not agent.journal.get_unfinished()
        )
        after = await agent.engine.get_status()
        results = [op.result for op in agent.history()]
        await agent.stop()
        return blocked, after, added_while_blocked, results

    blocked, after, added_while_blocked, results = imb.run_virtual(scenario())

    assert blocked["blocked-services"] == {
        "app": '3 consecutive failures; last: new unit app/4 failed: hook failed: "install"'
    }
    assert blocked["next-service"] is None
    assert added_while_blocked == 3
    assert after["blocked-services"] == {}
    assert results == ["rolled-back", "rolled-back", "rolled-back", "ok"]
    assert backend.get_live_units("app") == ["app/0", "app/5"]


def test_successful_replace_now_resets_the_breaker(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))
    backend.next_unit_faults = [imb.HOOK_ERROR]

    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        agent = await imb.start_agent(backend, tmp_path, max_consecutive_failures=1)
        await imb.wait_until(imb.all_finished(agent.journal))
        blocked = await agent.engine.get_status()
        await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        after = await agent.engine.get_status()
        await agent.stop()
        return blocked, after

    blocked, after = imb.run_virtual(scenario())

    assert list(blocked["blocked-services"]) == ["app"]  # type: ignore[arg-type]
    assert after["blocked-services"] == {}


def test_replace_now_waits_and_returns_the_history_entry(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 3), ("untargeted", 2))

    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        agent = await imb.start_agent(backend, tmp_path)
        targeted = await agent.engine.replace_now(control.ReplaceNowRequest("app", unit="app/1"))
        untargeted = await agent.engine.replace_now(control.ReplaceNowRequest("untargeted"))
        await agent.stop()
        return targeted, untargeted

    targeted, untargeted = imb.run_virtual(scenario())

    assert targeted["trigger"] == "replace-now"
    assert (targeted["old-unit"], targeted["new-unit"], targeted["result"]) == (
        "app/1",
        "app/3",
        "ok",
    )
    assert [s["step"] for s in targeted["steps"]] == [  # type: ignore[union-attr]
        "plan",
        "add",
        "settle",
        "remove",
        "cleanup",
        "done",
    ]
    assert targeted["duration"] == pytest.approx(5 + 20 + 60 + 5 + 3, abs=1)
    assert (untargeted["service"], untargeted["result"]) == ("untargeted", "ok")
    assert backend.get_live_units("app") == ["app/0", "app/2", "app/3"]


def test_replace_now_without_wait_returns_at_once_then_busy(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))

    async def scenario() -> tuple[
        dict[str, object], str, dict[str, object], list[dict[str, object]]
    ]:
        agent = await imb.start_agent(backend, tmp_path)
        started = await agent.engine.replace_now(control.ReplaceNowRequest("app", wait=False))
        with pytest.raises(control.ControlError) as busy:
            await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        status = await agent.engine.get_status()
        await imb.wait_until(imb.all_finished(agent.journal))
        history = await agent.engine.get_history(10)
        await agent.stop()
        return started, busy.value.code, status, history

    started, busy_code, status, history = imb.run_virtual(scenario())

    assert started == {
        "id": history[0]["id"],
        "service": "app",
        "old-unit": "app/1",
        "result": "started",
    }
    assert busy_code == control.BUSY
    assert status["in-flight"] == {
        "id": started["id"],
        "service": "app",
        "old-unit": "app/1",
        "new-unit": None,
        "step": "plan",
        "started": imb.EPOCH.isoformat(),
    }
    assert history[0]["result"] == "ok"


def test_history_of_one_service_and_of_one_operation(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2), ("web", 2))

    async def scenario() -> tuple[Any, ...]:
        agent = await imb.start_agent(backend, tmp_path, services=("app", "web"))
        app_op = await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        await agent.engine.replace_now(control.ReplaceNowRequest("web", dry_run=True))
        of_app = await agent.engine.get_history(10, service="app")
        one = await agent.engine.get_history(10, op_id=app_op["id"])
        errors = []
        for service, op_id in ((None, "9-nothing"), ("web", app_op["id"])):
            with pytest.raises(control.ControlError) as error:
                await agent.engine.get_history(10, service=service, op_id=op_id)
            errors.append((error.value.code, error.value.message))
        await agent.stop()
        return app_op, of_app, one, errors

    app_op, of_app, one, errors = imb.run_virtual(scenario())

    assert [(op["id"], op["service"]) for op in of_app] == [(app_op["id"], "app")]
    assert one == of_app
    assert [s["step"] for s in one[0]["steps"]] == [
        "plan", "add", "settle", "remove", "cleanup", "done"
    ]  # fmt: skip
    assert errors == [
        (control.UNKNOWN_OPERATION, "operation '9-nothing' not found"),
        (control.UNKNOWN_OPERATION, f"operation {app_op['id']!r} not found for service 'web'"),
    ]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (control.ReplaceNowRequest("missing"), control.UNKNOWN_SERVICE),
        (control.ReplaceNowRequest("app", unit="app/9"), control.UNKNOWN_UNIT),
        (control.ReplaceNowRequest("app", unit="web/0"), control.UNKNOWN_UNIT),
        (control.ReplaceNowRequest("whirlwind"), control.REFUSED),
        (control.ReplaceNowRequest("sub"), control.REFUSED),
        (control.ReplaceNowRequest("broken"), control.NOT_READY),
    ],
)
def test_replace_now_refusals(
    tmp_path: pathlib.Path, request_: control.ReplaceNowRequest, code: str
) -> None:
    backend = _backend(("app", 2), ("web", 1), ("whirlwind", 1), ("broken", 1))
    backend.add_application("sub", 0, subordinate=True)
    backend.set_unit_status("broken/0", "blocked")

    async def scenario() -> str:
        agent = await imb.start_agent(backend, tmp_path, own_application="whirlwind")
        with pytest.raises(control.ControlError) as error:
            await agent.engine.replace_now(request_)
        await agent.stop()
        return error.value.code

    assert imb.run_virtual(scenario()) == code
    assert backend.added == []


def test_controller_model_is_never_touched(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2), controller_model=True)

    async def scenario() -> str:
        agent = await imb.start_agent(backend, tmp_path)
        await asyncio.sleep(3 * 600)
        with pytest.raises(control.ControlError) as error:
            await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        await agent.stop()
        return error.value.code

    assert imb.run_virtual(scenario()) == control.REFUSED
    assert backend.calls == []


def test_pause_stops_new_work_lets_in_flight_finish_and_persists(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))

    async def scenario() -> list[object]:
        agent = await imb.start_agent(backend, tmp_path)
        await agent.engine.replace_now(control.ReplaceNowRequest("app", wait=False))
        paused = await agent.engine.pause()
        again = await agent.engine.pause()
        with pytest.raises(control.ControlError) as refused:
            await agent.engine.replace_now(control.ReplaceNowRequest("app"))
        await asyncio.sleep(5 * 600)
        results = [op.result for op in agent.history()]
        await agent.stop()
        # A new agent on the same journal is still paused.
        agent = await imb.start_agent(backend, tmp_path)
        still = await agent.engine.get_status()
        resumed = await agent.engine.resume()
        await imb.wait_until(
            lambda: len(agent.history()) == 2 and not agent.journal.get_unfinished()
        )
        await agent.stop()
        return [paused, again, refused.value.code, results, still, resumed]

    paused, again, refused, results, still, resumed = imb.run_virtual(scenario())

    running = {"paused-until": None, "pause-reason": ""}
    since = imb.EPOCH.isoformat()
    assert paused == {"paused": True, "changed": True, "paused-since": since, **running}
    assert again == {"paused": True, "changed": False, "paused-since": since, **running}
    assert refused == control.PAUSED
    assert results == ["ok"]  # the in-flight replacement finished, nothing new started
    assert still["paused"] is True  # type: ignore[index]
    assert still["next-due"] is None  # type: ignore[index]
    assert resumed == {"paused": False, "changed": True, "paused-since": None, **running}


def test_settings_pause_is_authoritative_and_reapplied_on_reload(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))

    async def scenario() -> list[bool]:
        agent = await imb.start_agent(backend, tmp_path, paused=True)
        states = [agent.engine.paused]
        await agent.engine.resume()
        states.append(agent.engine.paused)
        agent.engine.reload(dataclasses.replace(agent.engine.settings, interval=300))
        states.append(agent.engine.paused)
        agent.engine.reload(dataclasses.replace(agent.engine.settings, paused=False))
        states.append(agent.engine.paused)
        await agent.stop()
        return states

    assert imb.run_virtual(scenario()) == [True, False, True, False]


def test_reload_mid_operation_keeps_in_flight_work(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2), ("web", 2))

    async def scenario() -> tuple[bool, bool, list[journal_mod.Operation]]:
        agent = await imb.start_agent(backend, tmp_path)
        await agent.engine.replace_now(control.ReplaceNowRequest("app", wait=False))
        await asyncio.sleep(30)  # in SETTLE
        settings = agent.engine.settings
        same_controller = agent.engine.reload(
            dataclasses.replace(settings, services=("web",), interval=60, dry_run=True)
        )
        new_password = dataclasses.replace(settings.controller, password="changed")
        credentials = agent.engine.reload(
            dataclasses.replace(
                agent.engine.settings, controller=new_password, services=("web",), dry_run=True
            )
        )
        await imb.wait_until(
            lambda: len(agent.history()) >= 2 and not agent.journal.get_unfinished()
        )
        history = agent.history()
        await agent.stop()
        return same_controller, credentials, history

    same_controller, credentials, history = imb.run_virtual(scenario())

    assert (same_controller, credentials) == (False, True)
    assert (history[0].service, history[0].result) == ("app", "ok")
    assert (history[1].service, history[1].result) == ("web", "dry-run")
    assert backend.get_live_units("app") == ["app/0", "app/2"]
    assert backend.get_live_units("web") == ["web/0", "web/1"]


def test_dry_run_setting_records_dry_run_without_changes(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))

    async def scenario() -> list[journal_mod.Operation]:
        agent = await imb.start_agent(backend, tmp_path, dry_run=True)
        await imb.wait_until(
            lambda: len(agent.history()) == 2 and not agent.journal.get_unfinished()
        )
        history = agent.history()
        await agent.stop()
        return history

    history = imb.run_virtual(scenario())

    assert [(op.result, op.old_unit) for op in history] == [("dry-run", "app/1")] * 2
    assert backend.calls == []


def test_a_bad_cycle_is_logged_and_the_loop_goes_on(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _backend(("app", 2))
    failures = [RuntimeError("boom")]
    make_plan = planner.make_plan

    def explode(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return make_plan(*args, **kwargs)

    monkeypatch.setattr(planner, "make_plan", explode)

    async def scenario() -> list[journal_mod.Operation]:
        agent = await imb.start_agent(backend, tmp_path)
        await imb.wait_until(imb.all_finished(agent.journal))
        history = agent.history()
        await agent.stop()
        return history

    history = imb.run_virtual(scenario())

    assert "replacement cycle failed; trying again later" in caplog.messages
    assert [op.result for op in history] == ["ok"]


def test_max_in_flight_limits_concurrent_replacements(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2), ("web", 2), ("db", 2))

    async def scenario() -> tuple[str, list[journal_mod.Operation]]:
        agent = await imb.start_agent(backend, tmp_path, max_in_flight=2)
        for service in ("app", "web"):
            await agent.engine.replace_now(control.ReplaceNowRequest(service, wait=False))
        with pytest.raises(control.ControlError) as busy:
            await agent.engine.replace_now(control.ReplaceNowRequest("db", wait=False))
        await imb.wait_until(imb.all_finished(agent.journal))
        history = agent.history()
        await agent.stop()
        return busy.value.code, history

    code, history = imb.run_virtual(scenario())

    assert code == control.BUSY
    assert [(op.service, op.result) for op in history] == [("app", "ok"), ("web", "ok")]
    assert history[0].started == history[1].started


def test_status_reports_targets_unknown_services_and_schedule(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))

    async def scenario() -> dict[str, object]:
        agent = await imb.start_agent(backend, tmp_path, services=("app", "ghost"))
        await asyncio.sleep(1)
        handler: control.ControlHandler = agent.engine  # the engine is the control handler
        status = await handler.get_status()
        await agent.stop()
        return status

    status = imb.run_virtual(scenario())

    seed = status.pop("chaos-seed")  # chosen at random (no chaos-seed in the settings)
    assert isinstance(seed, int)
    assert 0 <= seed < 2**31
    assert status == {
        "version": "0.1.0",
        "connected": True,
        "ready": True,
        "paused": False,
        "paused-since": None,
        "paused-until": None,
        "pause-reason": "",
        "window": {"open": True, "windows": "", "detail": "no windows"},
        "dry-run": False,
        "chaos": "chaos not armed",
        "chaos-armed": False,
        "chaos-armed-until": None,
        "chaos-armed-by": "",
        "chaos-armed-at": None,
        "chaos-dry-run": False,
        "chaos-pending-reverts": [],
        "services": ["app", "ghost"],
        "unknown-services": ["ghost"],
        "blocked-services": {},
        "interval": 600,
        "next-due": (imb.EPOCH + datetime.timedelta(seconds=600)).isoformat(),
        "next-service": "app",
        "next-trigger": "interval",
        "notes": {"ghost": ["not in the model"]},
        "in-flight": None,
        "last": None,
    }


def test_oldest_unit_is_the_lowest_number_and_costs_no_call(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 4)
    backend.set_unit_status("app/0", "blocked")  # not a candidate for the count, still alive
    backend.set_leader("app/3")

    async def scenario() -> tuple[str | None, list[str]]:
        agent = await imb.start_agent(backend, tmp_path)
        await imb.wait_until(lambda: agent.engine.settings is not None)
        result = await agent.engine.replace_now(control.ReplaceNowRequest("app", dry_run=True))
        await agent.stop()
        return result["old-unit"], [c.method for c in backend.calls]

    old, calls = imb.run_virtual(scenario())

    assert old == "app/0"
    assert calls == []


def test_run_once_replaces_the_next_due_service_and_returns(tmp_path: pathlib.Path) -> None:
    backend = _backend(("app", 2))

    async def scenario() -> tuple[bool, list[journal_mod.Operation]]:
        settings = imb.make_settings(tmp_path)
        journal = journal_mod.Journal(tmp_path / "journal.db", durable=False)
        engine = engine_mod.Engine(
            settings, backend, journal, now=imb.virtual_now, rng=random.Random(1)
        )
        ok = await engine.run(once=True)
        history = list(journal.get_history(10))
        journal.close()
        return ok, history

    ok, history = imb.run_virtual(scenario())

    assert ok is True
    assert [(op.service, op.result) for op in history] == [("app", "ok")]


def test_a_journal_gone_corrupt_ends_the_agent(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not retried every cycle against a damaged file: the agent stops (systemd restarts it)
    # and the journal's open moves the damaged file aside.
    backend = _backend(("app", 2))

    async def scenario() -> BaseException | None:
        agent = await imb.start_agent(backend, tmp_path)
        await asyncio.sleep(1)

        def corrupt(*args: Any) -> Any:
            raise journal_mod.JournalCorruptError("database disk image is malformed")

        monkeypatch.setattr(agent.journal, "get_state", corrupt)
        await asyncio.wait([agent.task], timeout=700)
        if not agent.task.done():
            monkeypatch.undo()
            await agent.stop()
            return None
        agent.journal.close()
        return agent.task.exception()

    error = imb.run_virtual(scenario())

    assert isinstance(error, journal_mod.JournalCorruptError)
