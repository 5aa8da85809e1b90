"""The chaos injector on the in-memory backend and virtual time: journal first, act, revert."""

from __future__ import annotations

import asyncio
import datetime
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import backend as backend_mod
from whirlwind import journal as journal_mod
from whirlwind.chaos import commands, injector

OP = "7-c0ffee"
TIMINGS = injector.InjectorTimings(exec_timeout=30.0, revert_timeout=20.0, revert_grace=300.0)


@pytest.fixture
def journal(tmp_path: pathlib.Path) -> Iterator[journal_mod.Journal]:
    opened = journal_mod.Journal(tmp_path / journal_mod.JOURNAL_FILE, durable=False)
    yield opened
    opened.close()


def _backend(*, allow_exec: bool = True) -> imb.InMemoryBackend:
    juju = imb.InMemoryBackend(status_poll_interval=None)
    juju.add_application("web", units=3)
    juju.allow_exec = allow_exec
    return juju


def _machine(juju: imb.InMemoryBackend, unit: str) -> str:
    found = juju.model.get_unit(unit)
    assert found is not None
    assert found.machine_id
    return found.machine_id


def _request(juju: imb.InMemoryBackend, kind: str, **overrides: Any) -> injector.InjectionRequest:
    values: dict[str, Any] = {
        "op_id": OP,
        "kind": kind,
        "service": "web",
        "unit": overrides.get("unit", "web/1"),
        "machine_id": _machine(juju, overrides.get("unit", "web/1")),
        "duration": 600.0,
        "delay": 0.2,
        "wrench_category": "provisioner",
        "wrench_feature": "stop-instances",
        "draw": {"chance": 0.1, "value": 0.0421},
    }
    values.update(overrides)
    return injector.InjectionRequest(**values)


def _injector(juju: imb.InMemoryBackend, journal: journal_mod.Journal) -> injector.ChaosInjector:
    return injector.ChaosInjector(juju, journal, now=imb.virtual_now, timings=TIMINGS)


def _at(seconds: float) -> datetime.datetime:
    return imb.EPOCH + datetime.timedelta(seconds=seconds)


def _markers(juju: imb.InMemoryBackend) -> list[tuple[str, str, dict[str, str]] | None]:
    return [commands.parse_marker(record.command) for record in juju.execs]


# -- injecting -------------------------------------------------------------------------------


def test_kill_unit_is_journaled_before_the_unit_is_removed(
    journal: journal_mod.Journal,
) -> None:
    juju = _backend()
    seen_at_call: list[str | None] = []

    def before_call(method: str, args: tuple[Any, ...]) -> None:
        found = journal.get_injection(OP)
        seen_at_call.append(found.result if found is not None else None)

    juju.before_call = before_call

    async def main() -> journal_mod.ChaosInjection:
        return await _injector(juju, journal).inject(_request(juju, injector.KILL_UNIT))

    done = imb.run_virtual(main())

    assert seen_at_call == [journal_mod.RUNNING]
    assert [(c.method, c.args, c.kwargs["force"]) for c in juju.calls] == [
        ("destroy_unit", ("web/1",), False)
    ]
    assert done.result == journal_mod.OK
    assert done.revert_due is None
    assert journal.get_injection(OP) == done
    assert journal.get_pending_reverts() == []
    assert done.draw == {"chance": 0.1, "value": 0.0421}


def test_kill_machine_force_removes_the_victims_machine(journal: journal_mod.Journal) -> None:
    juju = _backend()
    machine = _machine(juju, "web/1")

    async def main() -> journal_mod.ChaosInjection:
        return await _injector(juju, journal).inject(_request(juju, injector.KILL_MACHINE))

    done = imb.run_virtual(main())

    assert [(c.method, c.args, dict(c.kwargs)) for c in juju.calls] == [
        ("destroy_machine", (machine,), {"force": True})
    ]
    assert (done.result, done.machine) == (journal_mod.OK, machine)
    assert juju.execs == []


@pytest.mark.parametrize(
    ("kind", "keys", "params", "revert_after"),
    [
        (
            injector.STOP_AGENT,
            {"duration": "600", "machine": "1"},
            {"duration": 600},
            602.0,
        ),
        (
            injector.SLOW_NETWORK,
            {"duration": "600", "delay-ms": "200"},
            {"duration": 600, "delay-ms": 200},
            600.0,
        ),
        (
            injector.WRENCH,
            {"duration": "600", "category": "provisioner", "feature": "stop-instances"},
            {"duration": 600, "category": "provisioner", "feature": "stop-instances"},
            600.0,
        ),
    ],
)
def test_timed_kinds_run_their_script_and_stay_pending_until_due(
    journal: journal_mod.Journal,
    kind: str,
    keys: dict[str, str],
    params: dict[str, Any],
    revert_after: float,
) -> None:
    juju = _backend()
    assert _machine(juju, "web/1") == "1"

    async def main() -> tuple[journal_mod.ChaosInjection, injector.ChaosInjector]:
        chaos = _injector(juju, journal)
        await asyncio.sleep(10)
        return await chaos.inject(_request(juju, kind)), chaos

    done, chaos = imb.run_virtual(main())

    assert _markers(juju) == [(kind, "inject", {"op": OP, **keys})]
    assert [(c.method, c.args[0], c.kwargs["timeout"]) for c in juju.calls] == [
        ("run_on_unit", "web/1", TIMINGS.exec_timeout)
    ]
    assert (done.result, done.params, done.acted) == (journal_mod.OK, params, _at(10))
    assert done.revert_due == _at(10 + revert_after)
    assert [found.id for found in chaos.pending] == [OP]
    assert journal.get_pending_reverts() == [done]


def test_dry_run_journals_and_logs_but_makes_no_call(
    journal: journal_mod.Journal, caplog: pytest.LogCaptureFixture
) -> None:
    juju = _backend()
    caplog.set_level(logging.INFO, logger="whirlwind.chaos.injector")

    async def main() -> tuple[journal_mod.ChaosInjection, injector.ChaosInjector]:
        chaos = _injector(juju, journal)
        return await chaos.inject(_request(juju, injector.SLOW_NETWORK, dry_run=True)), chaos

    done, chaos = imb.run_virtual(main())

    assert juju.calls == []
    assert juju.execs == []
    assert (done.result, done.dry_run, done.revert_due) == (journal_mod.DRY_RUN, True, None)
    assert chaos.pending == ()
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("DRY-RUN:")] == [
        f"DRY-RUN: chaos {OP} would delay the network of web/1 by 200ms for 600s"
    ]


def test_the_chaos_switch_of_the_test_backend_is_off_by_default(
    journal: journal_mod.Journal,
) -> None:
    juju = imb.InMemoryBackend(status_poll_interval=None)
    juju.add_application("web", units=3)

    async def main() -> journal_mod.ChaosInjection:
        return await _injector(juju, journal).inject(_request(juju, injector.STOP_AGENT))

    done = imb.run_virtual(main())

    assert done.result == journal_mod.FAILED
    assert "allow_exec=False" in done.reason
    assert [(r.unit, r.allowed) for r in juju.execs] == [("web/1", False)]
    assert juju.calls == []
    assert not juju.model.is_lost("web/1")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            backend_mod.ExecResult(4, "", "ens3 already has a netem qdisc\n"),
            "exit code 4: ens3 already has a netem qdisc",
        ),
        (backend_mod.ExecResult(1, "partial\n", ""), "exit code 1: partial"),
        (backend_mod.ExecResult(2, "", ""), "exit code 2"),
        (backend_mod.NotConnectedError(), "not connected to the controller"),
    ],
)
def test_a_failed_script_is_journaled_failed_and_its_revert_stays_due(
    journal: journal_mod.Journal,
    reply: backend_mod.ExecResult | backend_mod.BackendError,
    reason: str,
) -> None:
    juju = _backend()
    juju.exec_replies.append(reply)

    async def main() -> journal_mod.ChaosInjection:
        return await _injector(juju, journal).inject(_request(juju, injector.SLOW_NETWORK))

    done = imb.run_virtual(main())

    assert (done.result, done.reason) == (journal_mod.FAILED, reason)
    # The script may have scheduled its unit-side revert before failing: undo it too.
    assert journal.get_pending_reverts() == [done]


def test_a_script_that_never_answers_fails_at_its_deadline(journal: journal_mod.Journal) -> None:
    juju = _backend()
    juju.exec_hang.add("web/1")

    async def main() -> tuple[journal_mod.ChaosInjection, float]:
        done = await _injector(juju, journal).inject(_request(juju, injector.WRENCH))
        return done, asyncio.get_running_loop().time()

    done, elapsed = imb.run_virtual(main())

    assert done.result == journal_mod.FAILED
    assert "no result within 30s" in done.reason
    assert elapsed == pytest.approx(TIMINGS.exec_timeout)


def test_an_injection_cut_short_by_the_agent_stopping_is_failed_and_its_revert_stays_due(
    journal: journal_mod.Journal,
) -> None:
    juju = _backend()
    juju.exec_hang.add("web/1")

    async def main() -> injector.ChaosInjector:
        chaos = _injector(juju, journal)
        task = asyncio.ensure_future(chaos.inject(_request(juju, injector.SLOW_NETWORK)))
        await asyncio.sleep(5)  # the script was sent; no answer yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return chaos

    chaos = imb.run_virtual(main())

    (found,) = journal.get_injections(10)
    assert found.result == journal_mod.FAILED  # not left "running" for good
    assert found.reason == "the agent stopped before the controller answered"
    assert found.revert_due is not None
    assert [i.id for i in chaos.pending] == [found.id]
    assert [i.id for i in journal.get_pending_reverts()] == [found.id]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "reboot"}, "invalid chaos kind 'reboot'"),
        ({"kind": injector.STOP_AGENT, "machine_id": None}, "invalid machine id None"),
        ({"kind": injector.KILL_MACHINE, "machine_id": ""}, "invalid machine id ''"),
        ({"kind": injector.SLOW_NETWORK, "duration": 0.0}, "invalid duration 0.0"),
        ({"kind": injector.SLOW_NETWORK, "duration": float("nan")}, "invalid duration nan"),
        ({"kind": injector.SLOW_NETWORK, "delay": 0.0}, "invalid delay 0"),
        ({"kind": injector.WRENCH, "wrench_category": None}, "invalid wrench category ''"),
        ({"kind": injector.WRENCH, "wrench_feature": "a b"}, "invalid wrench feature 'a b'"),
        ({"kind": injector.STOP_AGENT, "op_id": "7;reboot"}, "invalid op id '7;reboot'"),
    ],
)
def test_a_bad_request_is_refused_before_anything_is_journaled(
    journal: journal_mod.Journal, overrides: dict[str, Any], message: str
) -> None:
    juju = _backend()

    async def main() -> None:
        await _injector(juju, journal).inject(_request(juju, **overrides))

    with pytest.raises(commands.InvalidChaosValueError, match=f"^{message}"):
        imb.run_virtual(main())
    assert journal.get_injections(10) == []
    assert juju.calls == []


# -- reverting -------------------------------------------------------------------------------


def test_slow_network_is_reverted_through_exec_once_due(journal: journal_mod.Journal) -> None:
    juju = _backend()

    async def main() -> tuple[list[journal_mod.ChaosInjection], ...]:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.SLOW_NETWORK))
        early = await chaos.revert_due(_at(599))
        on_time = await chaos.revert_due(_at(600))
        again = await chaos.revert_due(_at(700))
        return early, on_time, again

    early, on_time, again = imb.run_virtual(main())

    assert early == []
    assert again == []
    assert [(r.id, r.revert_result) for r in on_time] == [(OP, injector.REVERT_OK)]
    assert _markers(juju)[1] == ("slow-network", "revert", {"op": OP})
    assert journal.get_pending_reverts() == []
    stored = journal.get_injection(OP)
    assert stored is not None
    assert stored.reverted is not None


def test_stop_agent_is_reverted_by_the_unit_only(journal: journal_mod.Journal) -> None:
    juju = _backend()

    async def main() -> tuple[bool, list[journal_mod.ChaosInjection], list[Any], bool]:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.STOP_AGENT, duration=60.0))
        await asyncio.sleep(5)
        lost_while_stopped = juju.model.is_lost("web/1")
        early = await chaos.revert_all()
        await asyncio.sleep(60)
        due = await chaos.revert_due(imb.virtual_now())
        return lost_while_stopped, early, due, juju.model.is_lost("web/1")

    lost_while_stopped, early, due, lost_after = imb.run_virtual(main())

    assert lost_while_stopped
    assert not lost_after
    assert early == []
    assert [(r.id, r.revert_result) for r in due] == [(OP, injector.REVERT_UNIT_SIDE)]
    # Only the injection went through exec: the stopped agent could never run a revert.
    assert [m[:2] if m else None for m in _markers(juju)] == [("stop-agent", "inject")]
    assert journal.get_pending_reverts() == []


def test_revert_all_undoes_everything_it_can_now(journal: journal_mod.Journal) -> None:
    juju = _backend()

    async def main() -> tuple[list[journal_mod.ChaosInjection], injector.ChaosInjector]:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.SLOW_NETWORK, op_id="1-a"))
        await chaos.inject(_request(juju, injector.WRENCH, op_id="2-b", unit="web/2"))
        await chaos.inject(_request(juju, injector.STOP_AGENT, op_id="3-c", unit="web/0"))
        return await chaos.revert_all(), chaos

    reverted, chaos = imb.run_virtual(main())

    assert sorted((r.id, r.revert_result) for r in reverted) == [
        ("1-a", injector.REVERT_OK),
        ("2-b", injector.REVERT_OK),
    ]
    assert sorted((*m[:2], m[2]["op"]) for m in _markers(juju)[3:] if m) == [
        ("slow-network", "revert", "1-a"),
        ("wrench", "revert", "2-b"),
    ]
    assert [found.id for found in chaos.pending] == ["3-c"]
    assert [found.id for found in journal.get_pending_reverts()] == ["3-c"]


def test_a_failed_revert_on_stop_stays_pending_for_the_next_start(
    journal: journal_mod.Journal,
) -> None:
    juju = _backend()

    async def main() -> list[journal_mod.ChaosInjection]:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.WRENCH))
        juju.exec_hang.add("web/1")
        return await chaos.revert_all()

    reverted = imb.run_virtual(main())

    assert [(r.id, r.reverted) for r in reverted] == [(OP, None)]
    assert reverted[0].revert_result == "failed: exec on web/1: no result within 20s"
    assert [found.id for found in journal.get_pending_reverts()] == [OP]


def test_a_restarted_agent_reads_pending_reverts_back_and_reverts_them(
    tmp_path: pathlib.Path,
) -> None:
    juju = _backend()
    path = tmp_path / journal_mod.JOURNAL_FILE

    async def first_run() -> None:
        journal = journal_mod.Journal(path, durable=False)
        await _injector(juju, journal).inject(_request(juju, injector.SLOW_NETWORK))
        journal.close()

    async def second_run() -> tuple[list[str], list[journal_mod.ChaosInjection]]:
        journal = journal_mod.Journal(path, durable=False)
        chaos = _injector(juju, journal)
        pending = [found.id for found in chaos.pending]
        reverted = await chaos.revert_due(_at(600))
        journal.close()
        return pending, reverted

    imb.run_virtual(first_run())
    pending, reverted = imb.run_virtual(second_run())

    assert pending == [OP]
    assert [(r.id, r.revert_result) for r in reverted] == [(OP, injector.REVERT_OK)]


def test_a_crash_during_the_call_leaves_a_revert_due(tmp_path: pathlib.Path) -> None:
    juju = _backend()
    path = tmp_path / journal_mod.JOURNAL_FILE

    def crash(method: str, args: tuple[Any, ...]) -> None:
        raise imb.SimulatedCrash(method)

    juju.before_call = crash

    async def first_run() -> None:
        journal = journal_mod.Journal(path, durable=False)
        try:
            await asyncio.sleep(3)
            await _injector(juju, journal).inject(_request(juju, injector.STOP_AGENT))
        finally:
            journal.close()

    with pytest.raises(imb.SimulatedCrash):
        imb.run_virtual(first_run())
    journal = journal_mod.Journal(path, durable=False)
    try:
        chaos = _injector(juju, journal)
        (left,) = chaos.pending
    finally:
        journal.close()

    assert (left.id, left.result, left.acted) == (OP, journal_mod.RUNNING, None)
    assert left.revert_due == _at(3 + 600 + commands.STOP_AGENT_DELAY)


@pytest.mark.parametrize(
    ("reply", "at", "revert_result", "done"),
    [
        (backend_mod.NotFoundError('unit "web/1" not found'), 600, "unit-gone", True),
        (backend_mod.ExecResult(1, "", "tc: oops"), 600, "failed: exit code 1: tc: oops", False),
        (
            backend_mod.ExecResult(1, "", "tc: oops"),
            900,
            "failed: exit code 1: tc: oops; left to the unit's timer",
            True,
        ),
        (
            backend_mod.BackendError("exec on web/1: no result within 20s", transient=True),
            601,
            "failed: exec on web/1: no result within 20s",
            False,
        ),
    ],
)
def test_revert_outcomes(
    journal: journal_mod.Journal,
    reply: backend_mod.ExecResult | backend_mod.BackendError,
    at: float,
    revert_result: str,
    done: bool,
) -> None:
    juju = _backend()

    async def main() -> list[journal_mod.ChaosInjection]:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.SLOW_NETWORK))
        juju.exec_replies.append(reply)
        return await chaos.revert_due(_at(at))

    (recorded,) = imb.run_virtual(main())

    assert recorded.revert_result == revert_result
    assert (recorded.reverted is not None) is done
    assert (journal.get_pending_reverts() == []) is done
    assert journal.get_injection(OP) == recorded


def test_the_test_backend_refuses_exec_unless_allowed() -> None:
    juju = imb.InMemoryBackend(status_poll_interval=None)
    juju.add_application("web", units=1)

    async def main() -> None:
        await juju.run_on_unit("web/0", "true", timeout=5)

    with pytest.raises(backend_mod.BackendError, match="allow_exec=False"):
        imb.run_virtual(main())
    assert [(r.unit, r.command, r.allowed) for r in juju.execs] == [("web/0", "true", False)]


# -- the journal's chaos records -------------------------------------------------------------


def test_injection_history_is_newest_first_per_service_with_the_control_api_shape(
    journal: journal_mod.Journal,
) -> None:
    juju = _backend()
    juju.add_application("db", units=2)

    async def main() -> None:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.KILL_UNIT, op_id="1-a"))
        await chaos.inject(
            _request(juju, injector.WRENCH, op_id="2-b", service="db", unit="db/0", dry_run=True)
        )
        await asyncio.sleep(5)
        await chaos.inject(_request(juju, injector.SLOW_NETWORK, op_id="3-c", unit="web/2"))

    imb.run_virtual(main())

    assert [found.id for found in journal.get_injections(10)] == ["3-c", "2-b", "1-a"]
    assert [found.id for found in journal.get_injections(1)] == ["3-c"]
    assert [found.id for found in journal.get_injections(10, service="db")] == ["2-b"]
    newest = journal.get_injections(1)[0]
    assert newest.to_dict() == {
        "id": "3-c",
        "kind": "slow-network",
        "service": "web",
        "unit": "web/2",
        "machine": "2",
        "draw": {"chance": 0.1, "value": 0.0421},
        "params": {"duration": 600, "delay-ms": 200},
        "dry-run": False,
        "planned": "2026-01-01T00:00:05+00:00",
        "acted": "2026-01-01T00:00:05+00:00",
        "result": "ok",
        "reason": "",
        "revert-due": "2026-01-01T00:10:05+00:00",
        "reverted": None,
        "revert-result": "",
    }


def test_an_injection_id_is_journaled_once(journal: journal_mod.Journal) -> None:
    juju = _backend()

    async def main() -> None:
        chaos = _injector(juju, journal)
        await chaos.inject(_request(juju, injector.KILL_UNIT))
        await chaos.inject(_request(juju, injector.KILL_UNIT, unit="web/2"))

    with pytest.raises(journal_mod.JournalError, match="UNIQUE"):
        imb.run_virtual(main())
    assert [c.args for c in juju.calls] == [("web/1",)]
