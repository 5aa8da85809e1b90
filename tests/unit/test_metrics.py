"""The exporter: gauges from a plan at scrape time, counters from journal commits, the server."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import pathlib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import parser

import whirlwind
from tests.unit import inmemory_backend as imb
from whirlwind import journal as journal_mod
from whirlwind import metrics, planner, policies
from whirlwind import settings as settings_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.planner import core, gates

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@dataclasses.dataclass
class _Engine:
    """What the collector reads of an engine (metrics.EngineView), set by each test."""

    settings: settings_mod.AgentSettings
    plan: planner.Plan | None = None
    paused: bool = False
    arming: arming_mod.Arming = dataclasses.field(default_factory=arming_mod.Arming)


@dataclasses.dataclass
class _Backend:
    """A backend's connection state and counters (libjuju_backend.LibjujuBackend's names)."""

    connected: bool = True
    sessions: int = 1
    watcher_deltas: int = 0
    status_polls: int = 0


def _samples(agent_metrics: metrics.AgentMetrics) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every sample of a scrape as parsed back from the text: (name, labels) -> value."""
    text = agent_metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def _settings(**overrides: Any) -> settings_mod.AgentSettings:
    values: dict[str, Any] = {"services": ("web", "db")}
    values.update(overrides)
    return imb.make_settings(pathlib.Path("/nonexistent"), **values)


def _plan() -> planner.Plan:
    web = core.TargetPlan(
        service="web",
        counts=core.Counts(live=5000, healthy=4990, settling=4, broken=6, wanted=5000),
        gates=(
            core.Gate(gates.BREAKER, True, "3 consecutive failures; last: boom"),
            core.Gate(gates.WINDOW, True, "closed"),
            core.Gate(gates.MASS_FAILURE, False),
            core.Gate(gates.ALERTS, True, "alert HighErrorRate firing"),
        ),
    )
    db = core.TargetPlan(
        service="db",
        counts=core.Counts(live=3, healthy=1, broken=2),
        gates=(
            core.Gate(gates.BREAKER, False),
            core.Gate(gates.WINDOW, False),
            core.Gate(gates.MASS_FAILURE, True),
        ),
    )
    return planner.Plan(now=T0, targets=(web, db))


def test_gauges_come_from_the_plan_and_the_engine() -> None:
    clock = [_at(100)]
    agent_metrics = metrics.AgentMetrics(now=lambda: clock[0])
    overrides = {"db": {"interval": "1h", "settle-timeout": "20m"}}
    settings = _settings(policies=tuple(policies.parse_policies(overrides, ("web", "db")).items()))
    armed = arming_mod.Arming(True, _at(3600), "ctl as root", T0)
    engine = _Engine(settings, _plan(), paused=True, arming=armed)
    backend = _Backend(connected=True, sessions=3, watcher_deltas=120, status_polls=7)
    agent_metrics._in_flight = {"web": _at(40)}
    agent_metrics._last_success = {"db": _at(-50)}

    agent_metrics.attach(engine, backend)
    got = _samples(agent_metrics)

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    per_service = {
        name: (value(name, service="web"), value(name, service="db"))
        for name in (
            "whirlwind_units", "whirlwind_units_healthy", "whirlwind_units_broken",
            "whirlwind_units_wanted", "whirlwind_breaker_open", "whirlwind_in_window",
            "whirlwind_mass_failure", "whirlwind_operation_in_flight_seconds",
            "whirlwind_operation_deadline_seconds", "whirlwind_interval_seconds",
            "whirlwind_last_success_timestamp_seconds",
        )
    }  # fmt: skip
    assert per_service == {
        "whirlwind_units": (5000, 3),
        "whirlwind_units_healthy": (4990, 1),
        "whirlwind_units_broken": (6, 2),
        "whirlwind_units_wanted": (5000, None),  # absent when the policy sets none
        "whirlwind_breaker_open": (1, 0),
        "whirlwind_in_window": (0, 1),
        "whirlwind_mass_failure": (0, 1),
        "whirlwind_operation_in_flight_seconds": (60, 0),
        "whirlwind_operation_deadline_seconds": (600 + 120, 1200 + 120),
        "whirlwind_interval_seconds": (600, 3600),
        "whirlwind_last_success_timestamp_seconds": (None, _at(-50).timestamp()),
    }
    assert value("whirlwind_paused") == 1
    assert value("whirlwind_chaos_armed") == 1
    assert value("whirlwind_alerts_gate_holding") == 1
    assert value("whirlwind_controller_connected") == 1
    assert value("whirlwind_controller_reconnects_total") == 2
    assert value("whirlwind_watcher_deltas_total") == 120
    assert value("whirlwind_full_status_polls_total") == 7
    assert value("whirlwind_build_info", version=whirlwind.__version__) == 1


def test_before_the_first_plan_and_without_an_engine() -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)

    alone = _samples(agent_metrics)
    agent_metrics.attach(_Engine(_settings(windows="Sat 02:00-04:00")), _Backend(False, 0))
    unplanned = _samples(agent_metrics)

    assert alone[("whirlwind_controller_connected", ())] == 0
    assert alone[("whirlwind_controller_reconnects_total", ())] == 0
    assert not any(name == "whirlwind_paused" for name, _ in alone)
    assert not any(name == "whirlwind_units" for name, _ in unplanned)
    # 2026-01-01 is a Thursday: the Saturday window is closed.
    assert unplanned[("whirlwind_in_window", (("service", "web"),))] == 0
    assert unplanned[("whirlwind_alerts_gate_holding", ())] == 0
    assert unplanned[("whirlwind_paused", ())] == 0


def test_backend_counters_never_go_back_when_the_backend_is_replaced() -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)
    engine = _Engine(_settings())
    first = _Backend(sessions=2, watcher_deltas=10, status_polls=3)
    second = _Backend(sessions=1, watcher_deltas=4, status_polls=1)

    agent_metrics.attach(engine, first)
    agent_metrics.detach()
    stopped = _samples(agent_metrics)
    agent_metrics.attach(engine, second)
    again = _samples(agent_metrics)

    assert stopped[("whirlwind_controller_connected", ())] == 0
    assert stopped[("whirlwind_watcher_deltas_total", ())] == 10
    assert again[("whirlwind_controller_reconnects_total", ())] == 2  # 3 sessions in all
    assert again[("whirlwind_watcher_deltas_total", ())] == 14
    assert again[("whirlwind_full_status_polls_total", ())] == 4


# -- counters from the journal --------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: pathlib.Path) -> Iterator[journal_mod.Journal]:
    found = journal_mod.Journal(tmp_path / journal_mod.JOURNAL_FILE, durable=False)
    yield found
    found.close()


def _create(
    journal: journal_mod.Journal, service: str, trigger: str, at: float, token: str = "t"
) -> journal_mod.Operation:
    return journal.create_operation(
        token=token, trigger=trigger, service=service, old_unit=f"{service}/0", at=_at(at),
        dry_run=False, max_unit_number=0, healthy_at_start=1, old_machine="0",
        old_machine_dedicated=True,
    )  # fmt: skip


def test_counters_and_histograms_move_on_journal_commits(journal: journal_mod.Journal) -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: _at(1000))
    agent_metrics.attach_journal(journal)
    agent_metrics.attach(_Engine(_settings()), _Backend())
    get = agent_metrics.registry.get_sample_value

    op = _create(journal, "web", "interval", 0)
    in_flight = _samples(agent_metrics)
    op = journal.update(op, _at(2), step=journal_mod.ADD, new_unit="web/1")
    op = journal.update(op, _at(50), step=journal_mod.SETTLE)
    op = journal.update(op, _at(170), step=journal_mod.REMOVE)
    journal.finish(op, _at(200), journal_mod.OK)
    failed = _create(journal, "db", "replace-now", 300, token="u")
    journal.finish(failed, _at(330), journal_mod.FAILED, "boom")
    done = _samples(agent_metrics)

    assert in_flight[("whirlwind_operation_in_flight_seconds", (("service", "web"),))] == 1000
    assert get("whirlwind_operations_started_total", {"service": "web", "trigger": "rotate"}) == 1
    assert get("whirlwind_operations_started_total", {"service": "db", "trigger": "heal"}) == 0
    assert get(
        "whirlwind_operations_finished_total",
        {"service": "web", "trigger": "rotate", "result": "ok"},
    ) == 1  # fmt: skip
    assert get(
        "whirlwind_operations_finished_total",
        {"service": "db", "trigger": "replace-now", "result": "failed"},
    ) == 1  # fmt: skip
    ok = {"service": "web", "result": "ok"}
    assert get("whirlwind_operation_duration_seconds_sum", ok) == 200
    assert get("whirlwind_operation_duration_seconds_bucket", {**ok, "le": "120.0"}) == 0
    assert get("whirlwind_operation_duration_seconds_bucket", {**ok, "le": "300.0"}) == 1
    steps = {
        step: get("whirlwind_step_duration_seconds_sum", {"step": step})
        for step in ("plan", "add", "settle", "remove")
    }
    assert steps == {"plan": 2 + 30, "add": 48, "settle": 120, "remove": 30}
    assert get("whirlwind_step_duration_seconds_count", {"step": "plan"}) == 2
    assert done[("whirlwind_operation_in_flight_seconds", (("service", "web"),))] == 0
    assert done[("whirlwind_last_success_timestamp_seconds", (("service", "web"),))] == (
        _at(200).timestamp()
    )
    assert ("whirlwind_last_success_timestamp_seconds", (("service", "db"),)) not in done


def test_recovery_adoption_and_injections_are_counted(journal: journal_mod.Journal) -> None:
    left = _create(journal, "web", "heal", 0)
    journal.update(left, _at(5), step=journal_mod.ADD)
    journal.finish(_create(journal, "db", "count", 6, token="v"), _at(9), journal_mod.OK)
    agent_metrics = metrics.AgentMetrics(now=lambda: _at(100))
    get = agent_metrics.registry.get_sample_value

    agent_metrics.attach_journal(journal)  # a restart: in flight and last ok from the journal
    agent_metrics.attach(_Engine(_settings()), _Backend())
    restarted = _samples(agent_metrics)
    op = journal.get_operation(left.id)
    assert op is not None
    op = journal.update(op, _at(60), log="recover", trigger="recovery")
    op = journal.update(op, _at(70), step=journal_mod.SETTLE)
    journal.finish(op, _at(80), journal_mod.ROLLED_BACK, "settle timeout")
    journal.adopt_operation(
        op_id="9-x", service="db", old_unit="db/0", new_unit="db/4", step=journal_mod.SETTLE,
        at=_at(90), started=_at(85), deadline=_at(900), born=None, max_unit_number=3,
        healthy_at_start=1, old_machine="0", old_machine_dedicated=True, new_machine="4",
    )  # fmt: skip
    shot = journal.create_injection(
        op_id="c1", kind="kill-unit", service="web", unit="web/2", machine="2", draw={},
        params={}, dry_run=False, at=_at(95), revert_due=None,
    )  # fmt: skip
    journal.finish_injection(shot, _at(96), journal_mod.OK)
    journal.create_injection(
        op_id="c2", kind="stop-agent", service="web", unit="web/3", machine="3", draw={},
        params={}, dry_run=True, at=_at(97), revert_due=None,
    )  # fmt: skip

    assert restarted[("whirlwind_operation_in_flight_seconds", (("service", "web"),))] == 100
    assert restarted[("whirlwind_last_success_timestamp_seconds", (("service", "db"),))] == (
        _at(9).timestamp()
    )
    assert get("whirlwind_operations_started_total", {"service": "web", "trigger": "heal"}) == 0
    started = {"service": "web", "trigger": "recovery"}
    assert get("whirlwind_operations_started_total", started) == 1
    finished = {**started, "result": "rolled-back"}
    assert get("whirlwind_operations_finished_total", finished) == 1
    assert get("whirlwind_operations_started_total", {"service": "db", "trigger": "adopt"}) == 1
    # The step from `recover` to settle spans a restart: not a step's duration.
    assert get("whirlwind_step_duration_seconds_count", {"step": "add"}) == 0
    assert get("whirlwind_step_duration_seconds_sum", {"step": "settle"}) == 10
    injections = "whirlwind_chaos_injections_total"
    assert get(injections, {"service": "web", "kind": "kill-unit", "result": "ok"}) == 1
    assert get(injections, {"service": "web", "kind": "stop-agent", "result": "dry-run"}) == 1


def test_no_label_names_a_unit_or_machine(journal: journal_mod.Journal) -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: _at(1000))
    agent_metrics.attach_journal(journal)
    agent_metrics.attach(_Engine(_settings(), _plan()), _Backend())
    op = _create(journal, "web", "interval", 0)
    op = journal.update(op, _at(2), step=journal_mod.ADD, new_unit="web/1", new_machine="7")
    journal.finish(op, _at(20), journal_mod.OK)
    shot = journal.create_injection(
        op_id="c1", kind="kill-machine", service="web", unit="web/2", machine="2", draw={},
        params={}, dry_run=False, at=_at(30), revert_due=None,
    )  # fmt: skip
    journal.finish_injection(shot, _at(31), journal_mod.FAILED)

    labels = {pair for _, pairs in _samples(agent_metrics) for pair in pairs}

    assert {name for name, _ in labels} <= {
        "service", "trigger", "result", "step", "kind", "version", "le",
    }  # fmt: skip
    assert not [value for _, value in labels if "/" in str(value)]
    assert {value for name, value in labels if name == "service"} == {"web", "db"}


def test_detached_metrics_follow_the_journal_no_more(journal: journal_mod.Journal) -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)
    agent_metrics.attach_journal(journal)
    agent_metrics.attach(_Engine(_settings()), _Backend())

    agent_metrics.detach_journal()
    _create(journal, "web", "interval", 0)

    started = {"service": "web", "trigger": "rotate"}
    assert (
        agent_metrics.registry.get_sample_value("whirlwind_operations_started_total", started) == 0
    )


@pytest.mark.parametrize(
    ("trigger", "label"),
    [("interval", "rotate"), ("heal", "heal"), ("replace-now", "replace-now"),
     ("recovery", "recovery"), ("something-new", "other")],
)  # fmt: skip
def test_trigger_labels_are_bounded(trigger: str, label: str) -> None:
    assert metrics.get_trigger_label(trigger) == label


def test_a_scrape_does_no_per_unit_work() -> None:
    # A plan is per target: a scrape of a 5,000-unit model reads counts, not units.
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)
    agent_metrics.attach(_Engine(_settings(), _plan()), _Backend())

    started = time.perf_counter()
    for _ in range(20):
        agent_metrics.render()
    each = (time.perf_counter() - started) / 20

    assert each < 0.05  # generous on a shared machine; the issue asks for under 10 ms


# -- the server -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_serves_on_loopback_and_survives_a_port_in_use(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)
    server = metrics.MetricsServer(agent_metrics.registry)
    other = metrics.MetricsServer(agent_metrics.registry)
    port = _free_port()
    try:
        started = server.start(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            body = answer.read().decode()
        with caplog.at_level(logging.ERROR, logger="whirlwind.metrics"):
            taken = other.start(port)
        off = other.start(0)
    finally:
        server.stop()
        other.stop()

    assert (started, taken, off) == (True, False, False)
    assert "whirlwind_build_info" in body
    assert server.serving is False
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"cannot serve metrics on 127.0.0.1:{port}" in record.getMessage()
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # stopped
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_server_moves_to_a_new_port() -> None:
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)
    server = metrics.MetricsServer(agent_metrics.registry)
    first = second = _free_port()
    while second == first:
        second = _free_port()
    try:
        server.start(first)
        moved = server.start(second)  # a reload with another metrics-port
        with urllib.request.urlopen(f"http://127.0.0.1:{second}/metrics", timeout=5) as answer:
            status = answer.status
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            urllib.request.urlopen(f"http://127.0.0.1:{first}/metrics", timeout=2)
    finally:
        server.stop()

    assert (moved, status, server.port) == (True, 200, 0)


@pytest.mark.parametrize(
    ("max_age", "overrides", "exported"),
    [
        (0, {}, {"web": 600, "db": 600}),
        (0, {"db": {"max-age": "7d"}}, {"web": 600}),
        (0, {"db": {"max-age": "7d", "interval": "1h"}}, {"web": 600}),
        (7 * 86400, {}, {}),
        (7 * 86400, {"web": {"max-age": "0"}}, {"web": 600}),
    ],
    ids=["interval-paced", "one-max-age-override", "override-with-interval", "max-age-wide",
         "max-age-off-for-one"],
)  # fmt: skip
def test_the_interval_is_not_exported_for_a_target_paced_by_max_age(
    max_age: int, overrides: dict[str, Any], exported: dict[str, float]
) -> None:
    # The "no replacement for 3 intervals" alerts compare with this gauge: they must not see
    # an interval for a target that max-age paces.
    parsed = tuple(policies.parse_policies(overrides, ("web", "db")).items())
    settings = _settings(max_age=max_age, policies=parsed)
    agent_metrics = metrics.AgentMetrics(now=lambda: T0)
    agent_metrics.attach(_Engine(settings, _plan()), _Backend())

    got = _samples(agent_metrics)

    intervals = {
        dict(labels)["service"]: value
        for (name, labels), value in got.items()
        if name == "whirlwind_interval_seconds"
    }
    assert intervals == exported
    deadline = "whirlwind_operation_deadline_seconds"
    assert {dict(labels)["service"] for name, labels in got if name == deadline} == {"web", "db"}
