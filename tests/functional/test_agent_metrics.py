"""The agent process serves its metrics: they move with a replacement, and keep the contract.

`python -m whirlwind run` against the fake controller, scraped over HTTP on 127.0.0.1 as the
collector on the machine does. CONTRACT is the metrics contract of issue 13, which the charm's
alert rules and dashboard are written against: every name in it must be exported.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import socket
import urllib.request
from typing import Any

import yaml
from prometheus_client import parser

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest
from whirlwind import policies

APP = "wsgi-example"

# name: (type, label names); from the metrics contract (issue 13), never to be renamed.
CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    "whirlwind_operations_started_total": ("counter", ("service", "trigger")),
    "whirlwind_operations_finished_total": ("counter", ("service", "trigger", "result")),
    "whirlwind_operation_duration_seconds": ("histogram", ("service", "result")),
    "whirlwind_step_duration_seconds": ("histogram", ("step",)),
    "whirlwind_units": ("gauge", ("service",)),
    "whirlwind_units_healthy": ("gauge", ("service",)),
    "whirlwind_units_broken": ("gauge", ("service",)),
    "whirlwind_units_wanted": ("gauge", ("service",)),
    "whirlwind_breaker_open": ("gauge", ("service",)),
    "whirlwind_paused": ("gauge", ()),
    "whirlwind_in_window": ("gauge", ("service",)),
    "whirlwind_mass_failure": ("gauge", ("service",)),
    "whirlwind_operation_in_flight_seconds": ("gauge", ("service",)),
    "whirlwind_operation_deadline_seconds": ("gauge", ("service",)),
    "whirlwind_interval_seconds": ("gauge", ("service",)),
    "whirlwind_last_success_timestamp_seconds": ("gauge", ("service",)),
    "whirlwind_controller_connected": ("gauge", ()),
    "whirlwind_controller_reconnects_total": ("counter", ()),
    "whirlwind_watcher_deltas_total": ("counter", ()),
    "whirlwind_full_status_polls_total": ("counter", ()),
    "whirlwind_alerts_gate_holding": ("gauge", ()),
    "whirlwind_chaos_armed": ("gauge", ()),
    "whirlwind_chaos_injections_total": ("counter", ("service", "kind", "result")),
    "whirlwind_build_info": ("gauge", ("version",)),
}
_SUFFIXES = ("_bucket", "_sum", "_count")
ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "src" / "prometheus_alert_rules" / "whirlwind.rules"
DASHBOARD = ROOT / "src" / "grafana_dashboards" / "whirlwind.json"
_METRIC_NAME = re.compile(r"whirlwind_[a-z_]+")
# Series that appear only after an event: a successful operation, a chaos injection.
_AFTER_AN_EVENT = {"whirlwind_last_success_timestamp_seconds", "whirlwind_chaos_injections"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


async def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, labels) -> value, as Prometheus reads the agent's text."""
    text = await asyncio.to_thread(_get, port)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The one sample of `name` with exactly `labels` (KeyError: not exported)."""
    return samples[(name, tuple(sorted(labels.items())))]


def _total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum over the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs))


async def test_metrics_move_with_a_replacement(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    port = _free_port()
    agent = await agent_process_factory(fake, (APP,), metrics_port=port).start()
    pump = harness.ClockPump(fake)
    before = await _scrape(port)

    code, started, _ = await agent.ctl("replace-now", APP, "--no-wait")
    await pump.until(agent.in_step("settle"), what="the replacement settling")
    await asyncio.sleep(1.1)
    during = await _scrape(port)
    await pump.until(agent.idle, timeout=30, what="the replacement finished")
    await pump.until(lambda: harness.lifecycle_idle(fake), what="Juju settled")
    after = await _scrape(port)
    history = await agent.history()

    service = {"service": APP}
    ok = {"service": APP, "result": "ok"}
    assert (code, started["result"], history[0]["result"]) == (0, "started", "ok")
    assert _total(before, "whirlwind_operations_started_total", **service) == 0
    assert _value(before, "whirlwind_units", **service) == 2
    assert _value(before, "whirlwind_controller_connected") == 1
    assert _value(during, "whirlwind_operations_started_total", service=APP,
                  trigger="replace-now") == 1  # fmt: skip
    assert _total(during, "whirlwind_operations_finished_total", **service) == 0
    assert _value(during, "whirlwind_operation_in_flight_seconds", **service) >= 1.0
    assert _value(after, "whirlwind_operations_finished_total", service=APP,
                  trigger="replace-now", result="ok") == 1  # fmt: skip
    assert _value(after, "whirlwind_operation_duration_seconds_count", **ok) == 1
    assert _value(after, "whirlwind_operation_duration_seconds_sum", **ok) >= 1.0
    for step in ("plan", "add", "settle", "remove"):
        assert _value(after, "whirlwind_step_duration_seconds_count", step=step) == 1, step
    assert _value(after, "whirlwind_operation_in_flight_seconds", **service) == 0
    assert _value(after, "whirlwind_last_success_timestamp_seconds", **service) > 0
    assert _value(after, "whirlwind_watcher_deltas_total") > _value(
        before, "whirlwind_watcher_deltas_total"
    )
    assert _value(after, "whirlwind_full_status_polls_total") > _value(
        before, "whirlwind_full_status_polls_total"
    )
    assert _value(after, "whirlwind_controller_reconnects_total") == 0


async def test_a_running_agent_exports_every_metric_of_the_contract(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    port = _free_port()
    overrides = tuple(policies.parse_policies({APP: {"units": 2}}, (APP,)).items())
    await agent_process_factory(fake, (APP,), metrics_port=port, policies=overrides).start()

    text = await asyncio.to_thread(_get, port)
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}

    declared = {}
    for family in families.values():
        name = family.name + ("_total" if family.type == "counter" else "")
        declared[name] = family
    missing = sorted(set(CONTRACT) - set(declared))
    assert missing == []
    for name, (kind, labels) in CONTRACT.items():
        family = declared[name]
        assert family.type == kind, name
        for sample in family.samples:
            names = set(sample.labels) - {"le"}
            assert names == set(labels), (name, sample)
            assert sample.name in {name, *(family.name + s for s in _SUFFIXES)}, sample
    # With the agent connected and a units policy, the per-target gauges carry samples.
    for name in (
        "whirlwind_units",
        "whirlwind_units_wanted",
        "whirlwind_in_window",
        "whirlwind_interval_seconds",
        "whirlwind_operation_deadline_seconds",
    ):
        assert [s.labels for s in declared[name].samples] == [{"service": APP}], name
    assert declared["whirlwind_units_wanted"].samples[0].value == 2
    unknown = sorted(n for n in declared if n.startswith("whirlwind_") and n not in CONTRACT)
    assert unknown == []


def _queries(node: Any) -> list[str]:
    """Every PromQL string of a dashboard: `expr` and `query` values at any depth."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str)]
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


def _used_metrics() -> set[str]:
    """The metric names in the alert rules' and the dashboard's expressions."""
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += _queries(json.loads(DASHBOARD.read_text()))
    return {name for expr in exprs for name in _METRIC_NAME.findall(expr)}


def _family_of(name: str, families: dict[str, Any]) -> Any:
    """The exported family a series name belongs to (None: not exported).

    A counter's series is its family's name + `_total`; a histogram's three series are its
    name + `_bucket`, `_sum` and `_count`.
    """
    family = families.get(name.removesuffix("_total"))
    if family is not None and family.type != "histogram":
        return family if (family.type == "counter") == name.endswith("_total") else None
    for suffix in _SUFFIXES:
        family = families.get(name.removesuffix(suffix))
        if name.endswith(suffix) and family is not None and family.type == "histogram":
            return family
    return None


async def test_every_metric_the_rules_and_dashboard_use_is_exported(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
):
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    port = _free_port()
    overrides = tuple(policies.parse_policies({APP: {"units": 2}}, (APP,)).items())
    await agent_process_factory(fake, (APP,), metrics_port=port, policies=overrides).start()
    used = _used_metrics()

    text = await asyncio.to_thread(_get, port)

    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    # The parse found what it must: the rules' gauges, a counter, a histogram's buckets.
    assert {
        "whirlwind_breaker_open",
        "whirlwind_interval_seconds",
        "whirlwind_operations_finished_total",
        "whirlwind_operation_duration_seconds_bucket",
    } <= used
    missing = sorted(name for name in used if _family_of(name, families) is None)
    assert missing == []
    # And a connected agent with a target has series for them, but for event-driven ones.
    empty = sorted(
        name
        for name in used
        if not _family_of(name, families).samples
        and _family_of(name, families).name not in _AFTER_AN_EVENT
    )
    assert empty == []
