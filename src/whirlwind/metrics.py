"""Prometheus metrics of the agent (issue 13), served on 127.0.0.1:<metrics-port>/metrics.

Counters and histograms move with the journal: every operation and injection written is
passed to `AgentMetrics.on_record` (journal.Journal.add_record_listener). Gauges are computed
when Prometheus scrapes, from the engine's latest plan (planner.Plan: counts and gates per
target), its pause and arming, and the backend's connection and counters: no per-unit work
and no journal read at scrape, so a scrape costs the same for 5 or 5,000 units.

The metric names and labels are a contract with the charm's alert rules and dashboard; labels
are bounded (application, trigger, result, step, chaos kind): never a unit or machine name.
The server runs in a thread of its own (prometheus_client's WSGI server); it only reads
immutable snapshots that the event loop replaces, never the journal.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import prometheus_client
from prometheus_client import core as prom_core
from prometheus_client import registry as prom_registry

import whirlwind
from whirlwind import journal as journal_mod
from whirlwind import planner
from whirlwind import settings as settings_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.planner import gates

logger = logging.getLogger(__name__)

# No `<counter>_created` series: the text format shows them as gauges of their own, noise on
# every dashboard (this process has no other registry that could want them).
prometheus_client.disable_created_metrics()

ADDRESS = "127.0.0.1"
# Operations take minutes (settle-timeout 30 min by default), steps seconds to minutes.
OPERATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
                     7200.0)  # fmt: skip
STEP_BUCKETS = (1.0, 5.0, *OPERATION_BUCKETS)
# Trigger labels: the journal's names, rotation as `rotate` (the journal says `interval`).
TRIGGERS = ("heal", "count", "age", "rotate", "replace-now", "recovery", "adopt")
_TRIGGER_LABEL = {"interval": "rotate"}
OTHER = "other"
STEPS = (journal_mod.PLAN, journal_mod.ADD, journal_mod.SETTLE, journal_mod.REMOVE,
         journal_mod.CLEANUP, journal_mod.ROLLBACK, journal_mod.DONE)  # fmt: skip
RESULTS = (journal_mod.OK, journal_mod.ROLLED_BACK, journal_mod.FAILED, journal_mod.DRY_RUN)
# Series created at 0 for every target, so rates and alerts see them before the first event.
_READY_RESULTS = (journal_mod.OK, journal_mod.ROLLED_BACK, journal_mod.FAILED)
# How long stop() waits for the server thread (seconds).
STOP_TIMEOUT = 5.0


def utc_now() -> datetime.datetime:
    """The wall clock, timezone-aware (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc)


def get_trigger_label(trigger: str) -> str:
    """The bounded `trigger` label of a journaled trigger (`interval` -> `rotate`)."""
    label = _TRIGGER_LABEL.get(trigger, trigger)
    return label if label in TRIGGERS else OTHER


class EngineView(Protocol):
    """What the collector reads of the engine (engine.Engine)."""

    @property
    def settings(self) -> settings_mod.AgentSettings:
        """The settings in effect."""
        ...

    @property
    def plan(self) -> planner.Plan | None:
        """The latest plan."""
        ...

    @property
    def paused(self) -> bool:
        """Whether new work is paused."""
        ...

    @property
    def arming(self) -> arming_mod.Arming:
        """The chaos arming in effect."""
        ...


@dataclasses.dataclass(frozen=True)
class BackendCounts:
    """The backend's counters: sessions opened, watcher deltas, FullStatus polls."""

    sessions: int = 0
    watcher_deltas: int = 0
    status_polls: int = 0

    @classmethod
    def of(cls, backend: Any) -> BackendCounts:
        """Read them from a backend (0 for a backend that does not count, e.g. a test's)."""
        return cls(
            int(getattr(backend, "sessions", 0)),
            int(getattr(backend, "watcher_deltas", 0)),
            int(getattr(backend, "status_polls", 0)),
        )

    def __add__(self, other: BackendCounts) -> BackendCounts:
        return BackendCounts(
            self.sessions + other.sessions,
            self.watcher_deltas + other.watcher_deltas,
            self.status_polls + other.status_polls,
        )


class AgentMetrics:
    """The agent's metrics, in a registry of their own (never prometheus_client's global one)."""

    def __init__(self, *, now: Callable[[], datetime.datetime] = utc_now) -> None:
        self._now = now
        self.registry = prom_registry.CollectorRegistry(auto_describe=False)
        self.started = prometheus_client.Counter(
            "whirlwind_operations_started", "Operations started.", ["service", "trigger"],
            registry=self.registry,
        )  # fmt: skip
        self.finished = prometheus_client.Counter(
            "whirlwind_operations_finished", "Operations finished, by result.",
            ["service", "trigger", "result"], registry=self.registry,
        )  # fmt: skip
        self.duration = prometheus_client.Histogram(
            "whirlwind_operation_duration_seconds", "Operations from start to finish.",
            ["service", "result"], buckets=OPERATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.step_duration = prometheus_client.Histogram(
            "whirlwind_step_duration_seconds", "Time spent in each step of an operation.",
            ["step"], buckets=STEP_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.injections = prometheus_client.Counter(
            "whirlwind_chaos_injections", "Failure injections made (ok, failed or dry-run).",
            ["service", "kind", "result"], registry=self.registry,
        )  # fmt: skip
        for step in STEPS[:-1]:
            self.step_duration.labels(step)
        # Replaced, never changed in place: the scrape thread reads them while the loop writes.
        self._in_flight: dict[str, datetime.datetime] = {}
        self._last_success: dict[str, datetime.datetime] = {}
        self._engine: EngineView | None = None
        self._backend: Any = None
        # Counts of backends used before the current one (a reconnect to a new controller
        # makes a new backend): the exported counters never go back.
        self._backend_base = BackendCounts()
        self._ready_services: set[str] = set()
        self._journal: journal_mod.Journal | None = None
        self.registry.register(_StateCollector(self))

    # -- wiring ------------------------------------------------------------------------------

    def attach_journal(self, journal: journal_mod.Journal) -> None:
        """Follow `journal`'s writes; start from what it holds (work in flight, last ok)."""
        self._in_flight = {op.service: op.started for op in journal.get_unfinished()}
        self._last_success = journal.get_last_successes()
        journal.add_record_listener(self.on_record)
        self._journal = journal

    def detach_journal(self) -> None:
        """Stop following the journal."""
        if self._journal is not None:
            self._journal.remove_record_listener(self.on_record)
            self._journal = None

    def attach(self, engine: EngineView, backend: Any) -> None:
        """Read gauges from `engine` and `backend` from now on (the agent's current ones)."""
        if self._backend is not None and backend is not self._backend:
            self._backend_base += BackendCounts.of(self._backend)
        self._engine, self._backend = engine, backend
        self.prepare(engine.settings.services)

    def detach(self) -> None:
        """The engine stopped: keep the backend's counts, drop the references."""
        if self._backend is not None:
            self._backend_base += BackendCounts.of(self._backend)
        self._engine = self._backend = None

    def prepare(self, services: tuple[str, ...]) -> None:
        """Create the counters of `services` at 0 (a series that is absent has no rate)."""
        for service in services:
            if service in self._ready_services:
                continue
            self._ready_services.add(service)
            for trigger in TRIGGERS:
                self.started.labels(service, trigger)
                if trigger != "adopt":  # an adopted operation finishes as `recovery`
                    for result in _READY_RESULTS:
                        self.finished.labels(service, trigger, result)
            self.duration.labels(service, journal_mod.OK)

    # -- events ------------------------------------------------------------------------------

    def on_record(
        self, label: str, record: journal_mod.Operation | journal_mod.ChaosInjection
    ) -> None:
        """Journal record listener: count operations, steps, results and injections."""
        try:
            self._count(label, record)
        except Exception:  # a metric must never fail the caller of a journal write
            logger.warning("metrics not updated for %s", label, exc_info=True)

    def _count(
        self, label: str, record: journal_mod.Operation | journal_mod.ChaosInjection
    ) -> None:
        if isinstance(record, journal_mod.ChaosInjection):
            self._on_injection(label, record)
            return
        op = record
        if label == "create":
            self._start(op, get_trigger_label(op.trigger))
        elif label == "adopt":
            self._start(op, "adopt")
        elif label == "step:recover":
            self._start(op, "recovery")
        elif label.startswith("step:"):
            self._observe_step(op)
        if label == "step:done" and op.is_finished:
            self._finish(op)

    def _start(self, op: journal_mod.Operation, trigger: str) -> None:
        self.started.labels(op.service, trigger).inc()
        self._in_flight = {**self._in_flight, op.service: op.started}

    def _observe_step(self, op: journal_mod.Operation) -> None:
        """The step just left: from its entry to the new one (entries across a restart: not)."""
        if len(op.steps) < 2:
            return
        before, entry = op.steps[-2], op.steps[-1]
        if before.step not in STEPS or entry.step not in STEPS:
            return
        seconds = (entry.at - before.at).total_seconds()
        if seconds >= 0:
            self.step_duration.labels(before.step).observe(seconds)

    def _finish(self, op: journal_mod.Operation) -> None:
        service, result = op.service, op.result
        self.finished.labels(service, get_trigger_label(op.trigger), result).inc()
        if op.finished is not None:
            seconds = (op.finished - op.started).total_seconds()
            self.duration.labels(service, result).observe(max(0.0, seconds))
            if result == journal_mod.OK:
                self._last_success = {**self._last_success, service: op.finished}
        self._in_flight = {s: t for s, t in self._in_flight.items() if s != service}

    def _on_injection(self, label: str, injection: journal_mod.ChaosInjection) -> None:
        if label == "chaos:create" and injection.result == journal_mod.DRY_RUN:
            self.injections.labels(injection.service, injection.kind, journal_mod.DRY_RUN).inc()
        elif label in (f"chaos:{journal_mod.OK}", f"chaos:{journal_mod.FAILED}"):
            self.injections.labels(injection.service, injection.kind, injection.result).inc()

    # -- scrape ------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition of every metric (what /metrics serves)."""
        return prometheus_client.generate_latest(self.registry)


def _family(kind: str, name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
    cls = prom_core.GaugeMetricFamily if kind == "gauge" else prom_core.CounterMetricFamily
    return cls(name, doc, labels=list(labels))


class _StateCollector(prom_registry.Collector):
    """Gauges (and the backend's counters) computed at scrape time from the latest plan."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        """Every family, with samples where known (per target, from the plan; no unit work)."""
        m = self._metrics
        engine, backend = m._engine, m._backend
        now = m._now()
        fam = {
            "units": _family("gauge", "whirlwind_units", "Live principal units of the target.",
                             ("service",)),
            "healthy": _family("gauge", "whirlwind_units_healthy", "Healthy units.",
                               ("service",)),
            "broken": _family("gauge", "whirlwind_units_broken",
                              "Broken units (candidates for healing).", ("service",)),
            "wanted": _family("gauge", "whirlwind_units_wanted",
                              "The units policy of the target (absent when not set).",
                              ("service",)),
            "breaker": _family("gauge", "whirlwind_breaker_open",
                               "1 when the circuit breaker of the target is open.", ("service",)),
            "paused": _family("gauge", "whirlwind_paused", "1 while the agent is paused."),
            "window": _family("gauge", "whirlwind_in_window",
                              "1 when voluntary work may start (no change windows: 1).",
                              ("service",)),
            "mass": _family("gauge", "whirlwind_mass_failure",
                            "1 while healing is held by a mass failure.", ("service",)),
            "age": _family("gauge", "whirlwind_operation_in_flight_seconds",
                           "Age of the operation in flight (0: none).", ("service",)),
            "deadline": _family("gauge", "whirlwind_operation_deadline_seconds",
                                "settle-timeout plus remove-timeout of the target.",
                                ("service",)),
            "interval": _family("gauge", "whirlwind_interval_seconds",
                                "The rotation interval of the target (absent: paced by max-age).",
                                ("service",)),
            "success": _family("gauge", "whirlwind_last_success_timestamp_seconds",
                               "Unix time of the last successful operation on the target.",
                               ("service",)),
            "connected": _family("gauge", "whirlwind_controller_connected",
                                 "1 when connected to the controller and in sync."),
            "reconnects": _family("counter", "whirlwind_controller_reconnects",
                                  "Connections to the controller made after the first."),
            "deltas": _family("counter", "whirlwind_watcher_deltas",
                              "Deltas received from the AllWatcher."),
            "polls": _family("counter", "whirlwind_full_status_polls",
                             "FullStatus polls made."),
            "alerts": _family("gauge", "whirlwind_alerts_gate_holding",
                              "1 while block-on-alerts holds voluntary work."),
            "armed": _family("gauge", "whirlwind_chaos_armed",
                             "1 while failure injection is armed."),
            "build": _family("gauge", "whirlwind_build_info", "The agent's version (always 1).",
                             ("version",)),
        }  # fmt: skip
        fam["build"].add_metric([whirlwind.__version__], 1)
        current = BackendCounts.of(backend) if backend is not None else BackendCounts()
        counts = m._backend_base + current
        fam["reconnects"].add_metric([], max(0, counts.sessions - 1))
        fam["deltas"].add_metric([], counts.watcher_deltas)
        fam["polls"].add_metric([], counts.status_polls)
        fam["connected"].add_metric([], int(bool(backend is not None and backend.connected)))
        if engine is not None:
            self._add_engine(fam, engine, now)
        yield from fam.values()

    def _add_engine(self, fam: dict[str, Any], engine: EngineView, now: datetime.datetime) -> None:
        m = self._metrics
        settings = engine.settings
        plan = engine.plan
        in_flight, successes = m._in_flight, m._last_success
        fam["paused"].add_metric([], int(engine.paused))
        fam["armed"].add_metric([], int(engine.arming.armed))
        holding = False
        for service in settings.services:
            policy = settings.policy_for(service)
            fam["deadline"].add_metric([service], policy.settle_timeout + policy.remove_timeout)
            # A target paced by max-age is replaced when its units get old, not every
            # interval: with the interval exported, the "no replacement for 3 intervals"
            # alerts (src/prometheus_alert_rules) would fire on it falsely.
            if policy.max_age <= 0:
                fam["interval"].add_metric([service], policy.interval)
            started = in_flight.get(service)
            age = max(0.0, (now - started).total_seconds()) if started is not None else 0.0
            fam["age"].add_metric([service], age)
            success = successes.get(service)
            if success is not None:
                fam["success"].add_metric([service], success.timestamp())
            target = plan.get(service) if plan is not None else None
            window = policy.windows.always or policy.windows.is_open(now)
            if target is None:
                fam["window"].add_metric([service], int(window))
                continue
            by_name = {gate.name: gate for gate in target.gates}
            holds = {name: gate.holds for name, gate in by_name.items()}
            counts = target.counts
            fam["units"].add_metric([service], counts.live)
            fam["healthy"].add_metric([service], counts.healthy)
            fam["broken"].add_metric([service], counts.broken)
            if counts.wanted is not None:
                fam["wanted"].add_metric([service], counts.wanted)
            fam["breaker"].add_metric([service], int(holds.get(gates.BREAKER, False)))
            in_window = not holds[gates.WINDOW] if gates.WINDOW in holds else window
            fam["window"].add_metric([service], int(in_window))
            fam["mass"].add_metric([service], int(holds.get(gates.MASS_FAILURE, False)))
            holding = holding or holds.get(gates.ALERTS, False)
        fam["alerts"].add_metric([], int(holding))


class MetricsServer:
    """prometheus_client's HTTP server on 127.0.0.1:<port>, in a daemon thread."""

    def __init__(self, registry: prom_registry.CollectorRegistry) -> None:
        self._registry = registry
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def serving(self) -> bool:
        """Whether the server is up."""
        return self._server is not None

    def start(self, port: int) -> bool:
        """Serve on `port` (0: off); a port in use is logged, and the agent goes on without."""
        self.stop()
        if port == 0:
            logger.info("metrics off (metrics-port 0)")
            return False
        try:
            self._server, self._thread = prometheus_client.start_http_server(
                port, addr=ADDRESS, registry=self._registry
            )
        except OSError as exc:
            logger.error(
                "cannot serve metrics on %s:%s: %s (the agent runs on without them)",
                ADDRESS, port, exc.strerror or exc,
            )  # fmt: skip
            return False
        self.port = port
        logger.info("serving metrics on http://%s:%s/metrics", ADDRESS, port)
        return True

    def stop(self) -> None:
        """Stop serving (blocks up to half a second: the server's poll interval)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.port = 0
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(STOP_TIMEOUT)
