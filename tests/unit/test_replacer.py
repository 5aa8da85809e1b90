"""The replacement state machine against the in-memory backend, on virtual time."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import backend as backend_mod
from whirlwind import journal as journal_mod
from whirlwind import policy, provenance, replacer


async def _replace(
    backend: imb.InMemoryBackend,
    tmp_path: pathlib.Path,
    victim: str = "app/0",
    *,
    dry_run: bool = False,
    **overrides: Any,
) -> journal_mod.Operation:
    settings = imb.make_settings(tmp_path, **overrides)
    journal = journal_mod.Journal(tmp_path / "journal.db", durable=False)
    view = backend.model
    unit = view.get_unit(victim)
    assert unit is not None
    op = replacer.create_plan(
        journal,
        view,
        service=unit.application,
        victim=unit,
        trigger="interval",
        dry_run=dry_run,
        token="t",
        now=imb.virtual_now(),
    )
    result = await replacer.Replacer(
        backend, journal, lambda: settings, imb.virtual_now, lambda: b"test-op-key"
    ).run(op)
    # What the journal says is what run() returned.
    assert journal.get_operation(op.id) == result
    journal.close()
    return result


def _steps(op: journal_mod.Operation) -> list[str]:
    return [s.step for s in op.steps]


def test_happy_path_adds_settles_removes_and_cleans_up(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 3)

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert (op.result, op.old_unit, op.new_unit) == (journal_mod.OK, "app/0", "app/3")
    assert _steps(op) == ["plan", "add", "settle", "remove", "cleanup", "done"]
    assert backend.get_live_units("app") == ["app/1", "app/2", "app/3"]
    assert backend.model.count_healthy("app") == 3
    assert "0" not in backend.get_machine_ids()  # Juju removed the dedicated machine itself
    assert backend.get_calls("destroy_machine") == []
    # Born stays; the operation's signed marks come off once it has finished.
    assert backend.get_annotations("app/3") == {
        policy.BORN_ANNOTATION: journal_mod.to_iso(op.born),
    }
    signed = next(
        c.args[1] for c in backend.get_calls("set_unit_annotations") if c.args[0] == "app/3"
    )
    assert signed[policy.OP_ANNOTATION] == op.id
    assert signed["whirlwind/sig"] == provenance.sign(
        b"test-op-key",
        op_id=op.id,
        service="app",
        old_unit="app/0",
        new_unit="app/3",
        born=journal_mod.to_iso(op.born) or "",
    )
    assert [(d.unit, d.healthy_left, d.force) for d in backend.destroyed] == [("app/0", 3, False)]
    # Settled for the whole settle period after becoming healthy (5s provision + 20s install).
    assert op.finished is not None
    assert (op.finished - op.started).total_seconds() >= 5 + 20 + 60


@pytest.mark.parametrize(
    ("fault", "reason", "forced"),
    [
        # A unit whose hook failed or whose agent is lost never runs its stop hooks:
        # removed with force and no max-wait at once.
        (imb.HOOK_ERROR, 'new unit app/2 failed: hook failed: "install"', True),
        (imb.PROVISIONING_ERROR, "machine 2 of new unit app/2 failed to provision", False),
        (imb.NEVER_SETTLE, "new unit app/2 did not settle within 600s", False),
        (imb.LOST, "new unit app/2 is lost", True),
    ],
)
def test_failing_new_unit_is_rolled_back_and_old_unit_kept(
    tmp_path: pathlib.Path, fault: str, reason: str, forced: bool
) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    backend.next_unit_faults = [fault]

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.ROLLED_BACK
    assert op.reason.startswith(reason)
    assert _steps(op)[-2:] == ["rollback", "done"]
    assert backend.get_live_units("app") == ["app/0", "app/1"]
    assert [(d.unit, d.force) for d in backend.destroyed] == [("app/2", forced)]
    if forced:
        assert backend.get_calls("destroy_unit")[0].kwargs == {"force": True, "max_wait": 0.0}
    assert backend.get_machine_ids() == ["0", "1"]


def test_rollback_never_removes_a_machine_itself(tmp_path: pathlib.Path) -> None:
    # The new unit may have landed on a clean machine that was there before (AssignCleanEmpty):
    # its machine is Juju's to remove, and one that stays is reported, not destroyed.
    backend = imb.InMemoryBackend()
    backend.add_application("app", 1)
    backend.next_unit_faults = [imb.PROVISIONING_ERROR]
    backend.machines_stay = True

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.ROLLED_BACK
    assert op.reason.endswith("; machine 1 is still there (left to Juju)")
    assert backend.get_calls("destroy_machine") == []
    assert backend.get_machine_ids() == ["0", "1"]


def test_cleanup_removes_a_dedicated_machine_left_behind(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 1)
    backend.machines_stay = True

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.OK
    assert [c.args for c in backend.get_calls("destroy_machine")] == [("0",)]
    assert backend.get_machine_ids() == ["1"]


def test_cleanup_never_removes_a_controller_machine(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 1)
    backend.set_controller_machine("0")

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.OK
    assert backend.get_calls("destroy_machine") == []
    assert backend.get_machine_ids() == ["0", "1"]


def test_cleanup_keeps_a_machine_hosting_a_subordinate_of_another_unit(
    tmp_path: pathlib.Path,
) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 1)
    backend.add_application("other", 1)
    backend.machines_stay = True
    # A subordinate of other/0 placed next to app/0 makes machine 0 not dedicated to app/0.
    backend.add_subordinate_unit("sub", "other/0")
    backend.model.units["sub/0"] = dataclasses.replace(
        backend.model.units["sub/0"], machine_id="0"
    )

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.OK
    assert not op.old_machine_dedicated
    assert backend.get_calls("destroy_machine") == []


def test_stuck_old_unit_is_removed_with_force_after_remove_timeout(
    tmp_path: pathlib.Path,
) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    backend.stuck_dying.add("app/0")

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.OK
    assert "remove-force" in _steps(op)
    assert [(d.unit, d.force) for d in backend.destroyed] == [("app/0", False), ("app/0", True)]
    force_call = backend.get_calls("destroy_unit")[-1]
    assert force_call.kwargs == {"force": True, "max_wait": replacer.FORCE_MAX_WAIT}
    # Force only after remove-timeout (120s).
    first, second = backend.get_calls("destroy_unit")
    assert second.at - first.at == pytest.approx(120, abs=1)
    assert backend.get_live_units("app") == ["app/1", "app/2"]


def test_unit_that_cannot_be_removed_even_with_force_fails_with_a_reason(
    tmp_path: pathlib.Path,
) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    backend.stuck_dying.add("app/0")

    def refuse_force(method: str, args: tuple[Any, ...]) -> None:
        if method == "destroy_unit" and backend.get_calls("destroy_unit")[-1].kwargs["force"]:
            raise backend_mod.BackendError("permission denied")

    backend.before_call = refuse_force

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.FAILED
    assert op.reason == "old unit app/0 is still there after forced removal"
    assert backend.get_live_units("app") == ["app/0", "app/1", "app/2"]


def test_dry_run_plans_only(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    caplog.set_level("INFO")

    op = imb.run_virtual(_replace(backend, tmp_path, dry_run=True))

    assert (op.result, op.new_unit) == (journal_mod.DRY_RUN, None)
    assert _steps(op) == ["plan", "done"]
    assert "DRY-RUN: would replace app/0 with a new unit" in caplog.messages
    assert [c.method for c in backend.calls] == []


def test_transient_error_before_add_is_retried(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    backend.fail_calls["add_unit"] = [backend_mod.NotConnectedError(), backend_mod.BackendError(
        "timeout", transient=True
    )]  # fmt: skip

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.OK
    assert len(backend.get_calls("add_unit")) == 3
    assert backend.added == ["app/2"]


def test_add_that_reached_juju_but_failed_is_adopted_not_repeated(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    backend.fail_after_apply["add_unit"] = [backend_mod.BackendError("EOF", transient=True)]

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert (op.result, op.new_unit) == (journal_mod.OK, "app/2")
    assert backend.added == ["app/2"]
    assert backend.get_live_units("app") == ["app/1", "app/2"]


def test_non_transient_add_failure_rolls_back_without_changes(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)
    backend.fail_calls["add_unit"] = [backend_mod.BackendError("quota exceeded")]

    op = imb.run_virtual(_replace(backend, tmp_path))

    assert op.result == journal_mod.ROLLED_BACK
    assert op.reason == "add-unit failed: quota exceeded; no unit was added"
    assert backend.get_live_units("app") == ["app/0", "app/1"]


def test_disconnect_during_settle_is_survived(tmp_path: pathlib.Path) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 2)

    async def scenario() -> journal_mod.Operation:
        task = asyncio.ensure_future(_replace(backend, tmp_path))
        await asyncio.sleep(30)
        backend.disconnect(seconds=45)
        return await task

    op = imb.run_virtual(scenario())

    assert op.result == journal_mod.OK
    assert backend.get_live_units("app") == ["app/1", "app/2"]


def test_old_unit_is_kept_when_removing_it_would_lower_the_healthy_count(
    tmp_path: pathlib.Path,
) -> None:
    backend = imb.InMemoryBackend()
    backend.add_application("app", 3)

    async def scenario() -> journal_mod.Operation:
        task = asyncio.ensure_future(_replace(backend, tmp_path))
        await asyncio.sleep(10)
        backend.set_unit_status("app/1", "blocked", message="disk full")
        return await task

    op = imb.run_virtual(scenario())

    assert op.result == journal_mod.FAILED
    assert op.reason == (
        "kept app/0 and app/3: removing app/0 would leave fewer than 3 healthy units of app"
    )
    assert backend.destroyed == []
    assert backend.get_live_units("app") == ["app/0", "app/1", "app/2", "app/3"]
