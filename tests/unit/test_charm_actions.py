"""The pause, resume and replace-now actions with ops.testing and a fake control client."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any, ClassVar

import ops
import pytest
from ops import testing

import charm
from tests.unit.conftest import (
    PASSWORD,
    FakeControlClient,
    FakeWorkload,
    agent_status,
    leader_state,
    peer_relation,
)
from whirlwind import control
from whirlwind.chaos import arming

SINCE = "2026-11-22T10:00:00+00:00"
FINISHED = {
    "id": "op-7",
    "trigger": "replace-now",
    "service": "wsgi-example",
    "old-unit": "wsgi-example/3",
    "new-unit": "wsgi-example/7",
    "result": "ok",
    "reason": None,
    "started": "2026-11-22T10:00:00+00:00",
    "finished": "2026-11-22T10:05:00+00:00",
    "duration": 300.5,
}


def peer_data(state: testing.State) -> dict[str, str]:
    return dict(state.get_relations("whirlwind-peers")[0].local_app_data)


class TestPause:
    def test_pause_persists_rerenders_and_tells_the_agent(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        fake_workload.running = True

        out = ctx.run(ctx.on.action("pause"), leader_state())

        data = peer_data(out)
        assert data["paused"] == "true"
        assert data["paused-since"].endswith("+00:00")
        assert fake_workload.settings is not None
        assert fake_workload.settings.paused is True
        assert ("pause", None) in fake_client.calls
        since = datetime.datetime.fromisoformat(data["paused-since"])
        assert ctx.action_results == {
            "paused": "true",
            "changed": "true",
            "paused-since": data["paused-since"],
            "paused-until": "",
            "reason": "",
            "message": f"paused since {since:%Y-%m-%d %H:%M} UTC",
        }
        assert "paused in the charm state" in ctx.action_logs
        assert "agent paused" in ctx.action_logs

    def test_pause_twice_changes_nothing(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        fake_client.paused = True
        peer = peer_relation(paused="true", **{"paused-since": SINCE})

        out = ctx.run(ctx.on.action("pause"), leader_state(relations=[peer]))

        assert peer_data(out)["paused-since"] == SINCE
        assert ctx.action_results is not None
        assert ctx.action_results["changed"] == "false"
        assert ctx.action_results["message"] == "already paused since 2026-11-22 10:00 UTC"
        assert "already paused" in ctx.action_logs

    def test_pause_reports_a_change_the_agent_made(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        # The databag said paused, but the agent was not (for example, it had just started).
        peer = peer_relation(paused="true", **{"paused-since": SINCE})

        ctx.run(ctx.on.action("pause"), leader_state(relations=[peer]))

        assert ctx.action_results is not None
        assert ctx.action_results["changed"] == "true"

    def test_pause_without_a_running_agent_still_persists(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.errors["pause"] = control.AgentUnavailableError("the agent is not running")

        out = ctx.run(ctx.on.action("pause"), leader_state())

        assert peer_data(out)["paused"] == "true"
        assert ctx.action_results is not None
        assert ctx.action_results["paused"] == "true"
        assert any("agent not reached" in line for line in ctx.action_logs)

    def test_pause_when_the_agent_refuses_still_persists(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.errors["pause"] = control.ControlError(control.NOT_READY, "starting up")

        out = ctx.run(ctx.on.action("pause"), leader_state())

        assert peer_data(out)["paused"] == "true"
        assert "agent did not confirm (not-ready): starting up" in ctx.action_logs

    def test_resume(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        fake_client.paused = True
        peer = peer_relation(paused="true", **{"paused-since": SINCE})

        out = ctx.run(ctx.on.action("resume"), leader_state(relations=[peer]))

        data = peer_data(out)
        assert data["paused"] == "false"
        assert "paused-since" not in data
        assert fake_workload.settings is not None
        assert fake_workload.settings.paused is False
        assert ("resume", None) in fake_client.calls
        assert ctx.action_results == {
            "paused": "false",
            "changed": "true",
            "paused-since": "",
            "paused-until": "",
            "reason": "",
            "message": "resumed",
        }

    def test_resume_when_not_paused(self, ctx: testing.Context):
        ctx.run(ctx.on.action("resume"), leader_state())

        assert ctx.action_results is not None
        assert ctx.action_results["changed"] == "false"
        assert ctx.action_results["message"] == "already running (not paused)"

    @pytest.mark.parametrize("action", ["pause", "resume"])
    def test_non_leader_is_told_where_the_leader_is(
        self, ctx: testing.Context, fake_client: FakeControlClient, action: str
    ):
        state = leader_state(leader=False, relations=[peer_relation(leader="whirlwind/2")])

        with pytest.raises(testing.ActionFailed) as failure:
            ctx.run(ctx.on.action(action), state)

        assert failure.value.message == "Not the leader: run it on the leader unit (whirlwind/2)"
        assert isinstance(failure.value.state, testing.State)
        assert peer_data(failure.value.state) == {"leader": "whirlwind/2"}
        assert fake_client.calls == []

    def test_non_leader_without_a_known_leader(self, ctx: testing.Context):
        with pytest.raises(testing.ActionFailed, match=r"run it on the leader unit$"):
            ctx.run(ctx.on.action("pause"), leader_state(leader=False))

    def test_pause_before_the_peer_relation_exists(self, ctx: testing.Context):
        with pytest.raises(testing.ActionFailed, match="peer relation is not set up yet"):
            ctx.run(ctx.on.action("pause"), leader_state(relations=[]))

    def test_pause_survives_a_leader_change(
        self, ctx: testing.Context, fake_workload: FakeWorkload
    ):
        first = ctx.run(ctx.on.action("pause"), leader_state())
        peer = first.get_relations("whirlwind-peers")[0]
        op_key = [s for s in first.secrets if s.label == charm.OP_KEY_LABEL]
        key = op_key[0].tracked_content[charm.OP_KEY_CONTENT_KEY]
        # Another unit becomes leader with the same app databag and the app's own secrets.
        new_leader = leader_state(relations=[peer], secrets=op_key)

        ctx.run(ctx.on.leader_elected(), new_leader)

        assert fake_workload.settings is not None
        assert fake_workload.settings.paused is True
        assert fake_workload.settings.op_key == key  # the same key: it can adopt


def replace_now(
    ctx: testing.Context, params: dict[str, Any], state: testing.State | None = None
) -> testing.State:
    return ctx.run(ctx.on.action("replace-now", params=params), state or leader_state())


class TestTimedPause:
    def test_pause_with_duration_and_reason(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

        out = ctx.run(
            ctx.on.action("pause", params={"duration": "2h", "reason": "release freeze"}),
            leader_state(),
        )

        data = peer_data(out)
        until = datetime.datetime.fromisoformat(data["paused-until"])
        assert before + datetime.timedelta(hours=2) <= until
        assert until <= before + datetime.timedelta(hours=2, seconds=5)
        assert data["pause-reason"] == "release freeze"
        assert ("pause", (7200, "release freeze")) in fake_client.calls
        settings = fake_workload.settings
        assert settings is not None
        assert (settings.paused, settings.paused_until) == (True, until)
        assert settings.pause_reason == "release freeze"
        assert ctx.action_results is not None
        assert ctx.action_results["paused-until"] == data["paused-until"]
        assert ctx.action_results["reason"] == "release freeze"
        assert ctx.action_results["message"].startswith("paused until ")
        assert ctx.action_results["message"].endswith(" UTC (release freeze)")

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"duration": "soon"}, "duration: 'soon' is not a duration (use seconds or 90s, "
             "10m, 12h, 7d)"),
            ({"duration": "0"}, "duration must be greater than 0, got 0"),
            ({"duration": "31d"}, "duration must be at most 30 days, got 2678400s"),
            ({"reason": "x" * 201}, "reason must be at most 200 characters, got 201"),
        ],
    )  # fmt: skip
    def test_bad_pause_parameters_fail_naming_them(
        self, ctx: testing.Context, fake_client: FakeControlClient, params: dict[str, str],
        message: str,
    ):  # fmt: skip
        with pytest.raises(testing.ActionFailed) as failed:
            ctx.run(ctx.on.action("pause", params=params), leader_state())

        assert message in failed.value.message
        assert fake_client.calls == []

    def test_an_ended_timed_pause_is_no_pause(
        self, ctx: testing.Context, fake_workload: FakeWorkload
    ):
        peer = peer_relation(
            paused="true",
            **{"paused-since": SINCE, "paused-until": "2026-11-22T12:00:00+00:00"},
        )

        ctx.run(ctx.on.config_changed(), leader_state(relations=[peer]))

        assert fake_workload.settings is not None
        assert fake_workload.settings.paused is False

    def test_pausing_again_with_a_duration_is_a_change(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.paused = True
        peer = peer_relation(paused="true", **{"paused-since": SINCE})

        out = ctx.run(ctx.on.action("pause", params={"duration": "30m"}), leader_state(
            relations=[peer]))  # fmt: skip

        data = peer_data(out)
        assert data["paused-since"] == SINCE  # still paused since then
        assert data["paused-until"]
        assert ctx.action_results is not None
        assert ctx.action_results["changed"] == "true"


class TestPlan:
    PLAN: ClassVar[dict[str, Any]] = {
        "now": "2026-11-30T08:00:00+00:00",
        "targets": [
            {
                "service": "wsgi-example",
                "next": {
                    "trigger": "age",
                    "at": "2026-11-30T09:00:00+00:00",
                    "due": False,
                    "what": "window opens",
                },
                "victim": None,
                "why": "window opens",
                "gates": {
                    "breaker": {"holds": False, "detail": "closed"},
                    "window": {"holds": True, "detail": "closed; opens 09:00 UTC (mon-fri "
                               "09:00-17:00 Europe/London)"},
                },
                "units": {"live": 3, "healthy": 3, "wanted": None},
                "notes": ["age: skipped wsgi-example/0 is the leader (last)"],
                "summary": "wsgi-example: age at 09:00 UTC (window opens); window: closed",
            }
        ],
        "message": "wsgi-example: age at 09:00 UTC (window opens); window: closed",
    }  # fmt: skip

    def test_plan_shows_every_target_with_its_gates(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.plan_reply = self.PLAN

        ctx.run(ctx.on.action("plan"), leader_state())

        assert ctx.action_results == {
            "targets": {
                "wsgi-example": {
                    "next": "age at 2026-11-30T09:00:00+00:00: window opens",
                    "victim": "",
                    "why": "window opens",
                    "gates": {
                        "breaker": "open: closed",
                        "window": "holds: closed; opens 09:00 UTC (mon-fri 09:00-17:00 "
                        "Europe/London)",
                    },
                    "units": {"live": "3", "healthy": "3", "wanted": ""},
                    "notes": "age: skipped wsgi-example/0 is the leader (last)",
                }
            },
            "message": "wsgi-example: age at 09:00 UTC (window opens); window: closed",
        }

    def test_plan_shows_the_chaos_guard_of_an_application_that_opted_in(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        target = {
            **self.PLAN["targets"][0],
            "chaos": {
                "gates": {
                    "armed": {"holds": True, "detail": "chaos not armed (run arm-chaos)"},
                    "health": {"holds": False, "detail": "3 of 3 units healthy"},
                },
                "holding": ["armed: chaos not armed (run arm-chaos)"],
                "next-tick": None,
                "injection": None,
            },
        }
        fake_client.plan_reply = {**self.PLAN, "targets": [target]}

        ctx.run(ctx.on.action("plan"), leader_state())

        assert ctx.action_results is not None
        assert ctx.action_results["targets"]["wsgi-example"]["chaos"] == {
            "gates": {
                "armed": "holds: chaos not armed (run arm-chaos)",
                "health": "open: 3 of 3 units healthy",
            },
            "next-tick": "none",
            "injection": "none",
        }

    def test_plan_only_on_the_leader(self, ctx: testing.Context):
        with pytest.raises(testing.ActionFailed) as failed:
            ctx.run(ctx.on.action("plan"), leader_state(leader=False))

        assert failed.value.message.startswith("Not the leader")

    def test_plan_without_an_agent(self, ctx: testing.Context, fake_client: FakeControlClient):
        fake_client.errors["plan"] = control.AgentUnavailableError("the agent is not running")

        with pytest.raises(testing.ActionFailed) as failed:
            ctx.run(ctx.on.action("plan"), leader_state())

        assert failed.value.message == "Agent not running: the agent is not running"


class TestReplaceNow:
    def test_waits_with_a_long_timeout_and_reports_the_result(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.replace_reply = dict(FINISHED)
        config = {"settle-timeout": 100, "remove-timeout": 50, "settle-period": 10}

        replace_now(ctx, {"service": "wsgi-example"}, leader_state(config=config))

        assert fake_client.calls == [
            ("replace-now", control.ReplaceNowRequest("wsgi-example", None, True, None)),
        ]
        assert fake_client.timeouts[1] == 100 + 50 + charm.REPLACE_MARGIN
        assert ctx.action_results == {
            "operation-id": "op-7",
            "trigger": "replace-now",
            "service": "wsgi-example",
            "old-unit": "wsgi-example/3",
            "new-unit": "wsgi-example/7",
            "result": "ok",
            "started": "2026-11-22T10:00:00+00:00",
            "finished": "2026-11-22T10:05:00+00:00",
            "duration": "300.5",
        }
        assert ctx.action_logs == [
            "asking the agent to replace a unit of wsgi-example and waiting",
            "wsgi-example/3: ok",
        ]

    def test_without_wait_returns_the_started_operation(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.replace_reply = {
            "id": "op-8",
            "service": "wsgi-example",
            "old-unit": "wsgi-example/4",
            "result": "started",
        }

        replace_now(
            ctx,
            {"service": "wsgi-example", "unit": "wsgi-example/4", "wait": False, "dry-run": True},
        )

        request = fake_client.calls[0][1]
        assert request == control.ReplaceNowRequest("wsgi-example", "wsgi-example/4", False, True)
        assert fake_client.timeouts[1] == charm.ACTION_TIMEOUT
        assert ctx.action_results == {
            "operation-id": "op-8",
            "service": "wsgi-example",
            "old-unit": "wsgi-example/4",
            "result": "started",
        }

    @pytest.mark.parametrize("result", ["rolled-back", "failed"])
    def test_a_failed_replacement_fails_the_action_with_results(
        self, ctx: testing.Context, fake_client: FakeControlClient, result: str
    ):
        fake_client.replace_reply = FINISHED | {"result": result, "reason": "settle timeout"}

        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, {"service": "wsgi-example"})

        assert failure.value.message == f"Replacement of wsgi-example/3 {result}: settle timeout"
        assert ctx.action_results is not None
        assert ctx.action_results["result"] == result
        assert ctx.action_results["reason"] == "settle timeout"

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"service": "Not_An_App"}, "service: 'Not_An_App' is not one application name"),
            ({"service": "a b"}, "service: 'a b' is not one application name"),
            (
                {"service": "wsgi-example", "unit": "other/1"},
                "unit: 'other/1' is not a unit of wsgi-example (like wsgi-example/3)",
            ),
            (
                {"service": "wsgi-example", "unit": "wsgi-example"},
                "unit: 'wsgi-example' is not a unit of wsgi-example (like wsgi-example/3)",
            ),
        ],
    )
    def test_invalid_params_fail_clearly(
        self,
        ctx: testing.Context,
        fake_client: FakeControlClient,
        params: dict[str, Any],
        message: str,
    ):
        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, params)

        assert message in failure.value.message
        assert fake_client.calls == []

    def test_non_leader(self, ctx: testing.Context, fake_client: FakeControlClient):
        state = leader_state(leader=False, relations=[peer_relation(leader="whirlwind/1")])

        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, {"service": "wsgi-example"}, state)

        assert failure.value.message == "Not the leader: run it on the leader unit (whirlwind/1)"
        assert fake_client.calls == []

    def test_paused(self, ctx: testing.Context, fake_client: FakeControlClient):
        state = leader_state(relations=[peer_relation(paused="true")])

        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, {"service": "wsgi-example"}, state)

        assert failure.value.message == "Whirlwind is paused: run the resume action first"
        assert [c for c, _ in fake_client.calls if c == "replace-now"] == []

    def test_invalid_config(self, ctx: testing.Context, fake_client: FakeControlClient):
        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, {"service": "x"}, leader_state(config={"interval": 0}))

        assert failure.value.message == "Invalid config: interval must be greater than 0, got 0"

    def test_agent_not_running(self, ctx: testing.Context, fake_client: FakeControlClient):
        fake_client.errors["replace-now"] = control.AgentUnavailableError(
            "the agent is not running (no socket at /run/whirlwind/control.sock)"
        )

        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, {"service": "wsgi-example"})

        assert failure.value.message == (
            "Agent not running: the agent is not running (no socket at "
            "/run/whirlwind/control.sock)"
        )

    @pytest.mark.parametrize(
        ("code", "message"),
        [
            (control.UNKNOWN_SERVICE, "Unknown service 'wsgi-example': no such application"),
            (control.UNKNOWN_UNIT, "Unknown unit: no such application"),
            (control.PAUSED, "Whirlwind is paused: run the resume action first"),
            (control.BUSY, "Busy: no such application"),
            (control.NOT_READY, "Agent not ready: no such application"),
            (control.REFUSED, "Refused: no such application"),
            (control.NOT_IMPLEMENTED, "Not supported by the agent: no such application"),
            (control.INTERNAL, "Agent error (internal): no such application"),
        ],
    )
    def test_agent_refusals_are_explained(
        self, ctx: testing.Context, fake_client: FakeControlClient, code: str, message: str
    ):
        fake_client.errors["replace-now"] = control.ControlError(code, "no such application")

        with pytest.raises(testing.ActionFailed) as failure:
            replace_now(ctx, {"service": "wsgi-example"})

        assert failure.value.message == message

    def test_no_secret_in_action_output_or_logs(
        self,
        ctx: testing.Context,
        fake_client: FakeControlClient,
        caplog: pytest.LogCaptureFixture,
    ):
        caplog.set_level(logging.DEBUG)
        fake_client.replace_reply = dict(FINISHED)

        replace_now(ctx, {"service": "wsgi-example"})
        ctx.run(ctx.on.action("pause"), leader_state())

        assert PASSWORD not in str(ctx.action_results)
        assert all(PASSWORD not in line for line in ctx.action_logs)
        assert PASSWORD not in caplog.text
        assert all(PASSWORD not in line.message for line in ctx.juju_log)


NEWER = {
    "id": "12-a1b2c3",
    "trigger": "interval",
    "service": "wsgi-example",
    "old-unit": "wsgi-example/4",
    "new-unit": None,
    "result": "running",
    "reason": "",
    "started": "2026-11-22T11:00:00.250000+00:00",
    "finished": None,
    "duration": None,
    "steps": [{"step": "plan", "at": "2026-11-22T11:00:00.250000+00:00"}],
}
WITH_STEPS = FINISHED | {
    "steps": [
        {"step": step, "at": f"2026-11-22T10:0{n}:00+00:00"}
        for n, step in enumerate(["plan", "add", "settle", "remove", "cleanup", "done"])
    ]
}


def history(
    ctx: testing.Context, params: dict[str, Any] | None = None, state: testing.State | None = None
) -> dict[str, Any]:
    ctx.run(ctx.on.action("history", params=params or {}), state or leader_state())
    assert ctx.action_results is not None
    return ctx.action_results


class TestHistory:
    def test_default_lists_the_newest_ten_newest_first(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.history_reply = [NEWER, FINISHED]

        results = history(ctx)

        assert fake_client.calls == [
            ("history", {"limit": 10, "service": None, "id": None}),
        ]
        assert fake_client.timeouts == [charm.ACTION_TIMEOUT]
        assert results == {
            "count": "2",
            "operations": {
                "1": {
                    "operation-id": "12-a1b2c3",
                    "trigger": "interval",
                    "service": "wsgi-example",
                    "old-unit": "wsgi-example/4",
                    "result": "running",
                    "reason": "",
                    "started": "2026-11-22T11:00:00.250000+00:00",
                },
                "2": {
                    "operation-id": "op-7",
                    "trigger": "replace-now",
                    "service": "wsgi-example",
                    "old-unit": "wsgi-example/3",
                    "new-unit": "wsgi-example/7",
                    "result": "ok",
                    "started": "2026-11-22T10:00:00+00:00",
                    "finished": "2026-11-22T10:05:00+00:00",
                    "duration": "300.5",
                },
            },
            "message": (
                "2026-11-22T11:00:00Z 12-a1b2c3 interval wsgi-example/4 -> - running\n"
                "2026-11-22T10:00:00Z op-7 replace-now wsgi-example/3 -> wsgi-example/7 ok"
                " (300.5s)"
            ),
        }

    def test_limit_and_keys_that_sort_as_text(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.history_reply = [FINISHED | {"id": f"{n}-abc"} for n in range(12, 0, -1)]

        results = history(ctx, {"limit": 12})

        assert fake_client.calls == [("history", {"limit": 12, "service": None, "id": None})]
        operations = results["operations"]
        assert list(operations) == [f"{n:02d}" for n in range(1, 13)]
        assert sorted(operations) == list(operations)
        assert operations["01"]["operation-id"] == "12-abc"
        assert len(results["message"].splitlines()) == 12

    def test_service_filter_is_asked_of_the_agent(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.history_reply = [FINISHED]

        results = history(ctx, {"service": " wsgi-example ", "limit": 5})

        assert fake_client.calls == [
            ("history", {"limit": 5, "service": "wsgi-example", "id": None}),
        ]
        assert results["count"] == "1"

    def test_a_service_without_operations(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        assert history(ctx, {"service": "postgresql"}) == {
            "count": "0",
            "message": "no operations of postgresql",
        }
        assert history(ctx) == {"count": "0", "message": "no operations"}

    def test_one_operation_with_its_steps(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.history_reply = [WITH_STEPS]

        results = history(ctx, {"id": "op-7"})

        assert fake_client.calls == [("history", {"limit": 10, "service": None, "id": "op-7"})]
        assert results == {
            "operation-id": "op-7",
            "trigger": "replace-now",
            "service": "wsgi-example",
            "old-unit": "wsgi-example/3",
            "new-unit": "wsgi-example/7",
            "result": "ok",
            "started": "2026-11-22T10:00:00+00:00",
            "finished": "2026-11-22T10:05:00+00:00",
            "duration": "300.5",
            "steps": {
                "1-plan": "2026-11-22T10:00:00+00:00",
                "2-add": "2026-11-22T10:01:00+00:00",
                "3-settle": "2026-11-22T10:02:00+00:00",
                "4-remove": "2026-11-22T10:03:00+00:00",
                "5-cleanup": "2026-11-22T10:04:00+00:00",
                "6-done": "2026-11-22T10:05:00+00:00",
            },
            "message": (
                "2026-11-22T10:00:00Z op-7 replace-now wsgi-example/3 -> wsgi-example/7 ok"
                " (300.5s)"
            ),
        }

    def test_step_names_become_valid_keys(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        steps = [{"step": s, "at": "t"} for s in ["adopt", "remove-force", "Odd step!", ""]] * 3
        fake_client.history_reply = [FINISHED | {"steps": steps}]

        results = history(ctx, {"id": "op-7", "service": "wsgi-example"})

        assert list(results["steps"])[:4] == [
            "01-adopt",
            "02-remove-force",
            "03-odd-step",
            "04-step",
        ]
        assert fake_client.calls[0][1]["service"] == "wsgi-example"

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"limit": 0}, "limit: must be a whole number from 1 to 100, got 0"),
            ({"limit": 101}, "limit: must be a whole number from 1 to 100, got 101"),
            ({"limit": -5}, "limit: must be a whole number from 1 to 100, got -5"),
            ({"service": "Not_An_App"}, "service: 'Not_An_App' is not one application name"),
            ({"service": "a b"}, "service: 'a b' is not one application name"),
            ({"service": "app/1"}, "service: 'app/1' is not one application name"),
        ],
    )
    def test_invalid_params_fail_naming_the_parameter(
        self,
        ctx: testing.Context,
        fake_client: FakeControlClient,
        params: dict[str, Any],
        message: str,
    ):
        with pytest.raises(testing.ActionFailed) as failure:
            history(ctx, params)

        assert failure.value.message == f"Error in action parameters: {message}"
        assert fake_client.calls == []

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"id": "nope"}, "operation 'nope' not found"),
            (
                {"id": "op-7", "service": "other"},
                "operation 'op-7' not found for service 'other'",
            ),
        ],
    )
    def test_unknown_operation(
        self,
        ctx: testing.Context,
        fake_client: FakeControlClient,
        params: dict[str, Any],
        message: str,
    ):
        fake_client.errors["history"] = control.ControlError(
            control.UNKNOWN_OPERATION, "whatever the agent says"
        )

        with pytest.raises(testing.ActionFailed) as failure:
            history(ctx, params)

        assert failure.value.message == message

    def test_an_empty_answer_for_an_id_is_not_found(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        with pytest.raises(testing.ActionFailed) as failure:
            history(ctx, {"id": "12-a1b2c3"})

        assert failure.value.message == "operation '12-a1b2c3' not found"

    def test_non_leader(self, ctx: testing.Context, fake_client: FakeControlClient):
        state = leader_state(leader=False, relations=[peer_relation(leader="whirlwind/1")])

        with pytest.raises(testing.ActionFailed) as failure:
            history(ctx, {}, state)

        assert failure.value.message == "Not the leader: run it on the leader unit (whirlwind/1)"
        assert fake_client.calls == []

    def test_agent_not_running(self, ctx: testing.Context, fake_client: FakeControlClient):
        fake_client.errors["history"] = control.AgentUnavailableError(
            "the agent is not running (no socket at /run/whirlwind/control.sock)"
        )

        with pytest.raises(testing.ActionFailed) as failure:
            history(ctx)

        assert failure.value.message == (
            "Agent not running: the agent is not running (no socket at "
            "/run/whirlwind/control.sock)"
        )

    def test_agent_refusal_is_explained(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.errors["history"] = control.ControlError(control.NOT_READY, "starting")

        with pytest.raises(testing.ActionFailed) as failure:
            history(ctx)

        assert failure.value.message == "Agent not ready: starting"

    def test_works_while_paused(self, ctx: testing.Context, fake_client: FakeControlClient):
        fake_client.history_reply = [FINISHED]
        state = leader_state(relations=[peer_relation(paused="true")])

        assert history(ctx, {}, state)["count"] == "1"


MODEL_NAME = "prod-web"
CHAOS_POLICY = "wsgi-example: {chaos: {kinds: [kill-unit], chance: 0.5}}"


def chaos_state(**kwargs: Any) -> testing.State:
    """A leader in the model prod-web whose wsgi-example opted in to chaos."""
    state = leader_state(config={"policies": CHAOS_POLICY, **kwargs.pop("config", {})}, **kwargs)
    return dataclasses.replace(state, model=testing.Model(MODEL_NAME, uuid=state.model.uuid))


def armed_peer(hours: float = 2, **extra: str) -> testing.PeerRelation:
    """The peer relation with chaos armed (from now) for `hours`."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return peer_relation(
        **{
            "chaos-armed": "true",
            "chaos-armed-until": (now + datetime.timedelta(hours=hours)).isoformat(),
            "chaos-armed-by": "arm-chaos action 3 on whirlwind/1",
            "chaos-armed-at": now.isoformat(),
            "chaos-dry-run": "false",
            **extra,
        }
    )


class TestChaosArming:
    def test_arm_persists_rerenders_and_tells_the_agent(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

        out = ctx.run(
            ctx.on.action("arm-chaos", params={"confirm": MODEL_NAME, "duration": "2h"}, id="42"),
            chaos_state(),
        )

        data = peer_data(out)
        by = "arm-chaos action 42 on whirlwind/0"
        until = datetime.datetime.fromisoformat(data["chaos-armed-until"])
        at = datetime.datetime.fromisoformat(data["chaos-armed-at"])
        assert before <= at <= before + datetime.timedelta(seconds=5)
        assert until == at + datetime.timedelta(hours=2)
        assert (data["chaos-armed"], data["chaos-armed-by"], data["chaos-dry-run"]) == (
            "true", by, "false"
        )  # fmt: skip
        settings = fake_workload.settings
        assert settings is not None
        assert (settings.chaos_armed, settings.chaos_armed_until) == (True, until)
        assert (settings.chaos_armed_by, settings.chaos_armed_at) == (by, at)
        assert ("arm-chaos", (7200, MODEL_NAME, False, by)) in fake_client.calls
        assert ctx.action_results == {
            "chaos-armed": "true",
            "changed": "true",
            "armed-until": data["chaos-armed-until"],
            "armed-by": by,
            "armed-at": data["chaos-armed-at"],
            "dry-run": "false",
            "applications": "wsgi-example",
            "message": f"CHAOS ARMED until {until:%H:%M} UTC: wsgi-example",
        }
        assert any("Juju does not tell the charm which user" in line for line in ctx.action_logs)
        assert "agent armed" in ctx.action_logs

    def test_arm_as_a_dry_run(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        params = {"confirm": MODEL_NAME, "duration": "30m", "dry-run": True}

        out = ctx.run(ctx.on.action("arm-chaos", params=params), chaos_state())

        assert peer_data(out)["chaos-dry-run"] == "true"
        assert fake_workload.settings is not None
        assert fake_workload.settings.chaos_dry_run is True
        (call,) = [args for name, args in fake_client.calls if name == "arm-chaos"]
        assert call[:3] == (1800, MODEL_NAME, True)
        assert ctx.action_results is not None
        assert ctx.action_results["message"].startswith("Chaos armed (dry-run) until ")

    @pytest.mark.parametrize(
        ("params", "model", "message"),
        [
            ({"confirm": "prod", "duration": "2h"}, MODEL_NAME,
             "Refused: confirm must be the model's name exactly: got 'prod', "
             "the model is 'prod-web'"),
            ({"confirm": "PROD-WEB", "duration": "2h"}, MODEL_NAME, "got 'PROD-WEB'"),
            ({"duration": "2h"}, MODEL_NAME, "got '', the model is 'prod-web'"),
            ({"confirm": MODEL_NAME}, MODEL_NAME, "duration is required"),
            ({"confirm": MODEL_NAME, "duration": ""}, MODEL_NAME,
             "duration is required (for example 2h; at most 24h)"),
            ({"confirm": MODEL_NAME, "duration": "25h"}, MODEL_NAME,
             "duration must be at most 24h, got '25h'"),
            ({"confirm": MODEL_NAME, "duration": "0"}, MODEL_NAME,
             "duration must be greater than 0, got '0'"),
            ({"confirm": MODEL_NAME, "duration": "soon"}, MODEL_NAME,
             "duration: 'soon' is not a duration"),
            ({"confirm": "controller", "duration": "1h"}, "controller",
             "Refused: this is the controller model: chaos is never armed there"),
        ],
    )  # fmt: skip
    def test_arming_is_refused_and_nothing_changes(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient,
        params: dict[str, str], model: str, message: str,
    ):  # fmt: skip
        state = chaos_state()
        state = dataclasses.replace(state, model=testing.Model(model, uuid=state.model.uuid))

        with pytest.raises(testing.ActionFailed) as failed:
            ctx.run(ctx.on.action("arm-chaos", params=params), state)

        assert message in failed.value.message
        assert isinstance(failed.value.state, testing.State)
        assert "chaos-armed" not in peer_data(failed.value.state)
        assert fake_workload.settings is None
        assert fake_client.calls == []

    @pytest.mark.parametrize("action", ["arm-chaos", "disarm-chaos"])
    def test_only_the_leader_arms_or_disarms(
        self, ctx: testing.Context, fake_client: FakeControlClient, action: str
    ):
        state = chaos_state(leader=False, relations=[peer_relation(leader="whirlwind/2")])
        params = {"confirm": MODEL_NAME, "duration": "1h"} if action == "arm-chaos" else None

        with pytest.raises(testing.ActionFailed) as failed:
            ctx.run(ctx.on.action(action, params=params), state)

        assert failed.value.message == "Not the leader: run it on the leader unit (whirlwind/2)"
        assert fake_client.calls == []

    def test_arming_needs_the_peer_relation(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        params = {"confirm": MODEL_NAME, "duration": "1h"}

        with pytest.raises(testing.ActionFailed, match="peer relation is not set up yet"):
            ctx.run(ctx.on.action("arm-chaos", params=params), chaos_state(relations=[]))

        assert fake_client.calls == []

    def test_arming_without_a_running_agent_still_persists(
        self, ctx: testing.Context, fake_client: FakeControlClient
    ):
        fake_client.errors["arm-chaos"] = control.AgentUnavailableError("the agent is not running")
        params = {"confirm": MODEL_NAME, "duration": "1h"}

        out = ctx.run(ctx.on.action("arm-chaos", params=params), chaos_state())

        assert peer_data(out)["chaos-armed"] == "true"
        assert any("agent not reached" in line for line in ctx.action_logs)

    def test_disarm(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        fake_client.armed = True

        out = ctx.run(ctx.on.action("disarm-chaos"), chaos_state(relations=[armed_peer()]))

        data = peer_data(out)
        assert data["chaos-armed"] == "false"
        assert not {k for k in data if k.startswith("chaos-") and k != "chaos-armed"}
        assert fake_workload.settings is not None
        assert fake_workload.settings.chaos_armed is False
        assert ("disarm-chaos", None) in fake_client.calls
        assert ctx.action_results is not None
        assert ctx.action_results["chaos-armed"] == "false"
        assert ctx.action_results["changed"] == "true"
        assert ctx.action_results["message"] == "Chaos disarmed"
        assert "agent disarmed" in ctx.action_logs

    def test_disarm_when_not_armed(self, ctx: testing.Context):
        ctx.run(ctx.on.action("disarm-chaos"), chaos_state())

        assert ctx.action_results is not None
        assert ctx.action_results["changed"] == "false"
        assert ctx.action_results["message"] == "Already disarmed (chaos not armed)"

    def test_the_arming_survives_a_leader_change(
        self, ctx: testing.Context, fake_workload: FakeWorkload
    ):
        first = ctx.run(
            ctx.on.action("arm-chaos", params={"confirm": MODEL_NAME, "duration": "3h"}),
            chaos_state(),
        )
        peer = first.get_relations("whirlwind-peers")[0]
        op_key = [s for s in first.secrets if s.label == charm.OP_KEY_LABEL]
        fake_workload.settings = None

        ctx.run(ctx.on.leader_elected(), chaos_state(relations=[peer], secrets=op_key))

        settings = fake_workload.settings
        assert settings is not None
        assert settings.chaos_armed is True
        assert settings.chaos_armed_until is not None
        assert settings.chaos_armed_until.isoformat() == peer_data(first)["chaos-armed-until"]

    def test_an_expired_arming_is_not_rendered(
        self, ctx: testing.Context, fake_workload: FakeWorkload
    ):
        ctx.run(ctx.on.config_changed(), chaos_state(relations=[armed_peer(hours=-1)]))

        assert fake_workload.settings is not None
        assert fake_workload.settings.chaos_armed is False
        assert fake_workload.settings.chaos_armed_until is None

    def test_the_status_line_shows_armed_chaos_first(
        self, ctx: testing.Context, fake_workload: FakeWorkload
    ):
        fake_workload.running = True
        peer = armed_peer(hours=2)
        until = datetime.datetime.fromisoformat(peer.local_app_data["chaos-armed-until"])

        out = ctx.run(ctx.on.update_status(), chaos_state(relations=[peer]))

        assert out.unit_status == testing.ActiveStatus(
            f"CHAOS ARMED until {until:%H:%M} UTC: wsgi-example; watching wsgi-example; every 10m"
        )

    def test_the_status_follows_the_agents_arming(
        self, ctx: testing.Context, fake_workload: FakeWorkload, fake_client: FakeControlClient
    ):
        fake_workload.running = True
        until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        fake_client.status_reply = agent_status(
            **{"chaos-armed": True, "chaos-armed-until": until.isoformat(), "chaos-dry-run": True}
        )

        out = ctx.run(ctx.on.update_status(), chaos_state())

        assert out.unit_status.message.startswith(
            f"Chaos armed (dry-run) until {until:%H:%M} UTC: wsgi-example; watching"
        )


NOW = datetime.datetime(2026, 11, 30, 13, 0, tzinfo=datetime.timezone.utc)
ARMED = arming.Arming(True, NOW + datetime.timedelta(hours=2), "x", NOW)


@pytest.mark.parametrize(
    ("chaos", "agent", "policies", "expected"),
    [
        pytest.param(ARMED, agent_status(), CHAOS_POLICY,
                     ops.ActiveStatus("CHAOS ARMED until 15:00 UTC: wsgi-example; "
                                      "watching wsgi-example; every 10m"), id="armed"),
        pytest.param(ARMED, agent_status(), "",
                     ops.ActiveStatus("CHAOS ARMED until 15:00 UTC: no application opted in; "
                                      "watching wsgi-example; every 10m"), id="none-opted-in"),
        pytest.param(ARMED, agent_status(connected=False), CHAOS_POLICY,
                     ops.WaitingStatus("CHAOS ARMED until 15:00 UTC: wsgi-example; "
                                       "agent connecting to the controller"), id="connecting"),
        pytest.param(ARMED, agent_status(**{"blocked-services": {"wsgi-example": "3 failures"}}),
                     CHAOS_POLICY,
                     ops.BlockedStatus("CHAOS ARMED until 15:00 UTC: wsgi-example; blocked on "
                                       "repeated failures of wsgi-example: run resume or "
                                       "replace-now"), id="blocked"),
        pytest.param(ARMED, None, CHAOS_POLICY,
                     ops.ActiveStatus("CHAOS ARMED until 15:00 UTC: wsgi-example; watching "
                                      "wsgi-example; every 10m; agent not answering"),
                     id="agent-not-answering"),
        pytest.param(ARMED, agent_status(**{"chaos-armed": False}), CHAOS_POLICY,
                     ops.ActiveStatus("Watching wsgi-example; every 10m"),
                     id="the-agent-disarmed-it"),
        pytest.param(arming.Arming(True, NOW, "x", NOW - datetime.timedelta(hours=1)),
                     agent_status(), CHAOS_POLICY,
                     ops.ActiveStatus("Watching wsgi-example; every 10m"), id="expired"),
    ],
)  # fmt: skip
def test_describe_status_with_chaos(
    chaos: arming.Arming, agent: dict[str, Any] | None, policies: str, expected: ops.StatusBase
):
    config = charm.WhirlwindConfig(services="wsgi-example", policies=policies)

    assert charm.describe_status(config, charm.PauseState(), agent, NOW, chaos=chaos) == expected
