"""block-on-alerts: the option's syntax, Alertmanager's answer, the cache, and the plan's gate."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import pathlib
import urllib.parse
from typing import Any

import pytest
from ops import testing

from tests.unit import conftest
from tests.unit import inmemory_backend as imb
from whirlwind import alerts, planner
from whirlwind import model as model_view
from whirlwind import settings as settings_mod
from whirlwind.planner import core, gates, health

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

# -- the option -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url", "matchers"),
    [
        ("http://10.0.0.5:9093 severity=critical", "http://10.0.0.5:9093",
         [("severity", "=", "critical")]),
        ("  https://am.example/am/  team!=db  severity=~\"critical|page\" ",
         "https://am.example/am", [("team", "!=", "db"), ("severity", "=~", "critical|page")]),
        ("http://[::1]:9093 alertname!~Watchdog|Info x=", "http://[::1]:9093",
         [("alertname", "!~", "Watchdog|Info"), ("x", "=", "")]),
        ('http://am:9093 msg="a=b"', "http://am:9093", [("msg", "=", "a=b")]),
    ],
)  # fmt: skip
def test_parse_config_accepts(text: str, url: str, matchers: list[tuple[str, str, str]]) -> None:
    config = alerts.parse_config(text)

    assert config is not None
    assert config.url == url
    assert [(m.name, m.op, m.value) for m in config.matchers] == matchers


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_parse_config_empty_is_off(text: str) -> None:
    assert alerts.parse_config(text) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("http://am:9093", "no label matcher after the URL"),
        ("severity=critical", "the first word must be Alertmanager's http:// or https:// URL"),
        ("ftp://am:9093 a=b", "the first word must be Alertmanager's"),
        ("http://:9093 a=b", "the first word must be Alertmanager's"),
        ("http://am:99999 a=b", "is not a URL"),
        ("http://admin:secret@am:9093 a=b", "must not carry a user name or password"),
        ("http://am:9093/?x=1 a=b", "must not have a query or fragment"),
        ("http://am:9093 severity", "is not a label matcher such as severity=critical"),
        ("http://am:9093 1abc=x", "'1abc' in '1abc=x' is not a label name"),
        ('http://am:9093 a="b', "unbalanced double quote"),
        ("http://am:9093 a=~(", "bad regular expression"),
        ("http://am:9093 " + "a=b " * 600, "longer than 2048 characters"),
    ],
)
def test_parse_config_refuses(text: str, problem: str) -> None:
    with pytest.raises(alerts.AlertsConfigError, match=None) as caught:
        alerts.parse_config(text)

    assert problem in str(caught.value)
    assert "secret" not in str(caught.value)


def test_query_url_asks_for_active_unsilenced_uninhibited_matching_alerts() -> None:
    config = alerts.parse_config('http://am:9093/prefix severity=critical job=~"a\\"b"')
    assert config is not None

    url = config.get_query_url()

    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "am:9093", "/prefix/api/v2/alerts")
    assert urllib.parse.parse_qsl(parts.query) == [
        ("active", "true"), ("silenced", "false"), ("inhibited", "false"),
        ("filter", 'severity="critical"'), ("filter", 'job=~"a\\\\\\"b"'),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://am:9093", "block-on-alerts: no label matcher after the URL"),
        ("nonsense", "block-on-alerts: the first word must be"),
    ],
)
def test_settings_name_the_option(value: str, problem: str) -> None:
    with pytest.raises(settings_mod.SettingsError) as caught:
        imb.make_settings(pathlib.Path("/nonexistent"), block_on_alerts=value)

    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("port", "ok"), [(0, True), (1, True), (9587, True), (65535, True), (65536, False),
                     (-1, False), (True, False)],
)  # fmt: skip
def test_settings_bound_the_metrics_port(port: Any, ok: bool) -> None:
    def make() -> settings_mod.AgentSettings:
        return imb.make_settings(pathlib.Path("/nonexistent"), metrics_port=port)

    if ok:
        assert make().metrics_port == port
    else:
        with pytest.raises(settings_mod.SettingsError, match="metrics-port must be a port"):
            make()


def test_settings_round_trip_both_keys() -> None:
    settings = imb.make_settings(
        pathlib.Path("/nonexistent"), metrics_port=9100, block_on_alerts="http://am:9093 a=b"
    )

    data = settings.to_dict()
    again = settings_mod.parse_settings(data)

    assert (data["metrics-port"], data["block-on-alerts"]) == (9100, "http://am:9093 a=b")
    assert (again.metrics_port, again.block_on_alerts) == (9100, "http://am:9093 a=b")


# -- the answer -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ([], ()),
        ([{"labels": {"alertname": "B"}}, {"labels": {"alertname": "A"}},
          {"labels": {"alertname": "B", "x": "y"}}], ("A", "B")),
        ([{"labels": {}}], ("(unnamed)",)),
    ],
)  # fmt: skip
def test_parse_answer(data: Any, names: tuple[str, ...]) -> None:
    assert alerts.parse_answer(data) == names


@pytest.mark.parametrize("data", [{}, None, [1], [{"labels": []}], "x"])
def test_parse_answer_refuses_what_is_not_an_alert_list(data: Any) -> None:
    with pytest.raises(ValueError, match=r"expected a list|without labels"):
        alerts.parse_answer(data)


@pytest.mark.parametrize(
    ("state", "text", "holds"),
    [
        (alerts.AlertState(), "no alert firing", False),
        (alerts.AlertState(("HighErrorRate",)), "alert HighErrorRate firing", True),
        (alerts.AlertState(("A", "B")), "alerts A, B firing", True),
        (alerts.AlertState(("A", "B", "C", "D", "E")), "alerts A, B, C and 2 more firing", True),
        (alerts.AlertState(error="connection refused"),
         "Alertmanager unreachable: connection refused", True),
    ],
)  # fmt: skip
def test_state_describes_itself(state: alerts.AlertState, text: str, holds: bool) -> None:
    assert (state.describe(), state.holds) == (text, holds)


# -- the cache ------------------------------------------------------------------------------------


class _Answers:
    """Alertmanager's answers in turn (a value, or an exception to raise), and the URLs asked."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, url: str) -> Any:
        self.asked.append(url)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _refresh_at(gate: alerts.AlertGate, clock: list[datetime.datetime], seconds: float) -> Any:
    clock[0] = T0 + datetime.timedelta(seconds=seconds)
    return asyncio.run(gate.refresh())


def test_gate_asks_once_per_cache_period_and_fails_closed() -> None:
    option = ["http://am:9093 severity=critical"]
    clock = [T0]
    answers = _Answers(
        [{"labels": {"alertname": "Disk"}}],
        ConnectionRefusedError(111, "Connection refused"),
        asyncio.TimeoutError(),
        ValueError("HTTP 500 Internal Server Error"),
        [],
    )
    gate = alerts.AlertGate(lambda: option[0], lambda: clock[0], answers)

    seen = [
        _refresh_at(gate, clock, 0),
        _refresh_at(gate, clock, 29),  # cached
        _refresh_at(gate, clock, 30),
        _refresh_at(gate, clock, 60),
        _refresh_at(gate, clock, 90),
        _refresh_at(gate, clock, 120),
    ]
    option[0] = ""
    off = _refresh_at(gate, clock, 121)

    assert [s.describe() for s in seen] == [
        "alert Disk firing",
        "alert Disk firing",
        "Alertmanager unreachable: [Errno 111] Connection refused",
        "Alertmanager unreachable: no answer within 5s",
        "Alertmanager unreachable: HTTP 500 Internal Server Error",
        "no alert firing",
    ]
    assert len(answers.asked) == 5
    assert all(url.startswith("http://am:9093/api/v2/alerts?active=true") for url in answers.asked)
    assert (off, gate.state) == (None, None)


def test_a_changed_option_is_asked_at_once() -> None:
    option = ["http://am:9093 a=b"]
    clock = [T0]
    answers = _Answers([], [{"labels": {"alertname": "X"}}])
    gate = alerts.AlertGate(lambda: option[0], lambda: clock[0], answers)

    first = _refresh_at(gate, clock, 0)
    option[0] = "http://am:9093 a=c"
    second = _refresh_at(gate, clock, 1)

    assert (first.holds, second.describe()) == (False, "alert X firing")
    assert len(answers.asked) == 2


# -- the plan's gate ------------------------------------------------------------------------------


def _unit(name: str, number: int) -> model_view.UnitState:
    return model_view.UnitState(
        name=name, application="app", machine_id=str(number),
        workload_status="active", agent_status="idle",
    )  # fmt: skip


def _plan(rotation_due: bool, broken: bool = False, **facts: Any) -> planner.Plan:
    view = model_view.ModelView()
    view.model_seen = True
    view.applications["app"] = model_view.ApplicationState(name="app")
    for n in range(3):
        unit = _unit(f"app/{n}", n)
        view.units[unit.name] = unit
        view.machines[str(n)] = model_view.MachineState(id=str(n))
    if broken:
        view.units["app/2"] = dataclasses.replace(view.units["app/2"], workload_status="error")
    settings = imb.make_settings(
        pathlib.Path("/nonexistent"), services=("app",), interval=600, heal_after=0
    )
    started = T0 - datetime.timedelta(seconds=600 if rotation_due else 0)
    return planner.make_plan(view, settings, core.Facts(now=T0, agent_started=started, **facts))


@pytest.mark.parametrize(
    ("facts", "gate", "rotates"),
    [
        ({}, None, True),
        ({"alerts": ()}, core.Gate(gates.ALERTS, False, "no alert firing"), True),
        ({"alerts": ("HighErrorRate",)},
         core.Gate(gates.ALERTS, True, "alert HighErrorRate firing"), False),
        ({"alerts": (), "alerts_error": "connection refused"},
         core.Gate(gates.ALERTS, True, "Alertmanager unreachable: connection refused"), False),
    ],
)  # fmt: skip
def test_alerts_gate_holds_rotation(
    facts: dict[str, Any], gate: core.Gate | None, rotates: bool
) -> None:
    plan = _plan(rotation_due=True, **facts)

    target = plan.get("app")
    assert target is not None
    found = [g for g in target.gates if g.name == gates.ALERTS]
    assert found == ([gate] if gate is not None else [])
    assert [p.trigger for p in plan.due()] == ([planner.ROTATE] if rotates else [])
    assert (gate is not None and gate.holds) == (gate is not None and gate.detail in target.notes)


def test_alerts_gate_never_holds_healing() -> None:
    watches = {"app/2": health.Watch(broken_since=T0, reason="error")}
    plan = _plan(rotation_due=True, broken=True, alerts=("HighErrorRate",), watches=watches)

    assert [(p.trigger, p.victim) for p in plan.due()] == [(planner.HEAL, "app/2")]


# -- the charm's option ---------------------------------------------------------------------------


def test_the_charm_passes_block_on_alerts_to_the_agent(
    ctx: testing.Context, fake_workload: conftest.FakeWorkload
) -> None:
    config = {"services": "app", "block-on-alerts": "http://10.0.0.5:9093 severity=critical"}

    ctx.run(ctx.on.config_changed(), conftest.leader_state(config=config))

    rendered = fake_workload.settings
    assert rendered is not None
    assert rendered.block_on_alerts == "http://10.0.0.5:9093 severity=critical"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://10.0.0.5:9093",
         "Invalid config: block-on-alerts: no label matcher after the URL"),
        ("10.0.0.5:9093 severity=critical",
         "Invalid config: block-on-alerts: the first word must be Alertmanager's http://"),
        ("http://u:pw@am:9093 severity=critical",
         "Invalid config: block-on-alerts: the URL must not carry a user name or password"),
    ],
)  # fmt: skip
def test_the_charm_blocks_on_a_bad_block_on_alerts(
    ctx: testing.Context, fake_workload: conftest.FakeWorkload, value: str, message: str
) -> None:
    config = {"services": "app", "block-on-alerts": value}

    out = ctx.run(ctx.on.config_changed(), conftest.leader_state(config=config))

    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(message)
    assert "pw" not in out.unit_status.message
    assert fake_workload.settings is None or fake_workload.settings.block_on_alerts == ""
