"""The side-by-side table: baseline, agent, ratio (baseline / agent), target and verdict."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable

from bench import fakes, harness

# The agent's production status poll interval (AgentSettings default), for the idle estimate.
DEFAULT_POLL_INTERVAL = 60.0
LATENCY_TARGET = 0.100
CALLS_TARGET = 10
# "Flat": the second 50k deltas may add at most this much resident memory (MiB).
FLAT_MIB = 2.0
# A hook error arrives as a watcher delta: AddUnits at most this long after heal-after (s).
HEAL_ERROR_TARGET = 1.0
# `plan` answers in under a second on a 5,000-unit model (s).
PLAN_TARGET = 1.0
# "A scrape of a 5,000-unit model costs under 10 ms" (issue 13), in seconds.
SCRAPE_TARGET = 0.010


@dataclasses.dataclass(frozen=True)
class Row:
    """One metric of the table."""

    metric: str
    baseline: float
    agent: float
    unit: str
    target: str = ""
    met: bool | None = None
    digits: int = 1


def _ratio(baseline: float, agent: float) -> str:
    if math.isnan(baseline) or math.isnan(agent) or agent <= 0 or baseline < 0:
        return "-"
    return f"{baseline / agent:.1f}x"


def _format(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def idle_at_default(idle: harness.Idle, default_interval: float) -> float:
    """Calls/hour if FullStatus were polled every `default_interval` s, the rest as measured."""
    others = sum(n for name, n in idle.calls.items() if name != fakes.FULL_STATUS)
    return others * 3600.0 / idle.window + 3600.0 / default_interval


def build_rows(baseline: harness.SideResult, agent: harness.SideResult) -> list[Row]:
    """Every metric both sides measured, with targets where the issue sets one."""
    rows: list[Row] = []
    if baseline.replacements and agent.replacements:
        rows += _replacement_rows(baseline, agent)
    if baseline.idle is not None and agent.idle is not None:
        rows += _idle_rows(baseline.idle, agent.idle)
    if baseline.memory is not None and agent.memory is not None:
        rows += _memory_rows(baseline.memory, agent.memory)
    if baseline.heal is not None and agent.heal is not None:
        rows += _heal_rows(baseline.heal, agent.heal)
    if baseline.plan is not None and agent.plan is not None:
        rows += _plan_rows(baseline.plan, agent.plan)
    if baseline.scrape is not None and agent.scrape is not None:
        rows += _scrape_rows(baseline.scrape, agent.scrape)
    return rows


def _scrape_rows(baseline: harness.ScrapePhase, agent: harness.ScrapePhase) -> list[Row]:
    target = f"< {SCRAPE_TARGET * 1000:.0f} ms"
    title = f"scrape of {agent.units:,} units (baseline: the same on {baseline.units:,})"
    rows = [
        Row(
            f"{title}, {word}",
            get(baseline) * 1000,
            get(agent) * 1000,
            "ms",
            target,
            get(agent) < SCRAPE_TARGET,
            1,
        )
        for word, get in (
            ("median", lambda p: p.median),
            ("worst", lambda p: p.worst),
        )
    ]
    rows.append(
        Row(
            "  agent CPU per scrape (utime + stime)",
            baseline.cpu_per_scrape * 1000,
            agent.cpu_per_scrape * 1000,
            "ms",
            digits=2,
        )
    )
    return rows


def _plan_rows(baseline: harness.PlanPhase, agent: harness.PlanPhase) -> list[Row]:
    target = f"< {PLAN_TARGET * 1000:,.0f} ms"
    rows = [
        Row(
            f"plan of {agent.units:,} units (baseline: one full status), {word}",
            get(baseline) * 1000,
            get(agent) * 1000,
            "ms",
            target,
            get(agent) < PLAN_TARGET,
            0,
        )
        for word, get in (
            ("median", lambda p: p.median),
            ("worst", lambda p: p.worst),
        )
    ]
    rows.append(
        Row(
            "  controller calls per plan (pings, AllWatcher.Next aside)",
            baseline.calls_per_request,
            agent.calls_per_request,
            "calls",
        )
    )
    if agent.command_seconds:
        worst = max(agent.command_seconds)
        rows.append(
            Row(
                "`ctl plan` command, interpreter start included, worst",
                math.nan,
                worst * 1000,
                "ms",
                target,
                worst < PLAN_TARGET,
                0,
            )
        )
    return rows


def _replacement_rows(baseline: harness.SideResult, agent: harness.SideResult) -> list[Row]:
    worst = max(r.latency for r in agent.replacements)
    target = f"< {LATENCY_TARGET * 1000:.0f} ms"
    return [
        Row(
            "latency beyond settle-period, median",
            baseline.median_latency * 1000,
            agent.median_latency * 1000,
            "ms",
            target,
            agent.median_latency < LATENCY_TARGET,
            0,
        ),
        Row(
            "latency beyond settle-period, worst",
            max(r.latency for r in baseline.replacements) * 1000,
            worst * 1000,
            "ms",
            target,
            worst < LATENCY_TARGET,
            0,
        ),
        Row(
            "calls per replacement, median (pings aside)",
            baseline.median_calls,
            agent.median_calls,
            "calls",
            f"<= {CALLS_TARGET}",
            agent.median_calls <= CALLS_TARGET,
            0,
        ),
        Row(
            "  of which not AllWatcher.Next",
            baseline.median_calls_without_next,
            agent.median_calls_without_next,
            "calls",
            f"<= {CALLS_TARGET}",
            agent.median_calls_without_next <= CALLS_TARGET,
            0,
        ),
    ]


def _idle_rows(baseline: harness.Idle, agent: harness.Idle) -> list[Row]:
    only_status = set(agent.calls) <= {fakes.FULL_STATUS}
    return [
        Row(
            f"idle calls/hour, polling every {baseline.poll_interval:g}s"
            f" / {agent.poll_interval:g}s",
            baseline.per_hour(),
            agent.per_hour(),
            "calls/h",
            "status polls only",
            only_status,
            0,
        ),
        Row(
            f"idle calls/hour at the default poll ({baseline.poll_interval:g}s"
            f" / {DEFAULT_POLL_INTERVAL:g}s)",
            idle_at_default(baseline, baseline.poll_interval),
            idle_at_default(agent, DEFAULT_POLL_INTERVAL),
            "calls/h",
            "status polls only",
            only_status,
            0,
        ),
    ]


def _memory_rows(baseline: harness.Memory, agent: harness.Memory) -> list[Row]:
    half, total = agent.deltas // 2, agent.deltas
    growth = agent.full.rss_mib - agent.half.rss_mib
    return [
        Row(
            f"RSS after the snapshot of {agent.units:,} units",
            baseline.snapshot.rss_mib,
            agent.snapshot.rss_mib,
            "MiB",
        ),
        Row(f"RSS after {half:,} deltas", baseline.half.rss_mib, agent.half.rss_mib, "MiB"),
        Row(f"RSS after {total:,} deltas", baseline.full.rss_mib, agent.full.rss_mib, "MiB"),
        Row(
            f"RSS growth, deltas {half:,} -> {total:,}",
            baseline.full.rss_mib - baseline.half.rss_mib,
            growth,
            "MiB",
            f"flat (< {FLAT_MIB:g} MiB)",
            growth < FLAT_MIB,
        ),
        Row(
            f"RSS growth, snapshot -> {total:,} deltas",
            baseline.full.rss_mib - baseline.snapshot.rss_mib,
            agent.full.rss_mib - agent.snapshot.rss_mib,
            "MiB",
        ),
        Row("peak RSS (VmHWM)", baseline.full.hwm_mib, agent.full.hwm_mib, "MiB"),
        Row(
            "CPU: start, connect, snapshot",
            baseline.snapshot.cpu_seconds,
            agent.snapshot.cpu_seconds,
            "s",
            digits=2,
        ),
        Row(
            f"CPU: {total:,} deltas (and status polls meanwhile)",
            baseline.full.cpu_seconds - baseline.snapshot.cpu_seconds,
            agent.full.cpu_seconds - agent.snapshot.cpu_seconds,
            "s",
            digits=2,
        ),
    ]


def _stat(
    heals: tuple[harness.Heal, ...],
    get: Callable[[harness.Heal], float | None],
    how: Callable[[list[float]], float],
) -> float:
    """`how` (median, max) of a per-heal value, in ms; NaN when no heal has it."""
    values = [v for v in (get(h) for h in heals) if v is not None]
    return how(values) * 1000 if values else math.nan


def _below(value: float, limit: float) -> bool:
    """Whether `value` (ms) is below `limit` (s); a missing value (NaN) is not."""
    return not math.isnan(value) and value < limit * 1000


def _heal_rows(baseline: harness.HealPhase, agent: harness.HealPhase) -> list[Row]:
    rows: list[Row] = []
    error_target = f"< {HEAL_ERROR_TARGET * 1000:.0f} ms"
    measures: list[tuple[str, Callable[[harness.Heal], float | None]]] = [
        ("from the fault", lambda h: h.reaction),
        ("from the delta's delivery", lambda h: h.reaction_from_delivery),
    ]
    for label, get in measures:
        for word, how in (("median", statistics.median), ("worst", max)):
            value = _stat(agent.error, get, how)
            rows.append(
                Row(
                    f"hook error: AddUnits beyond heal-after, {label}, {word}",
                    _stat(baseline.error, get, how),
                    value,
                    "ms",
                    error_target,
                    _below(value, HEAL_ERROR_TARGET),
                    0,
                )
            )
    poll = agent.poll_interval
    lost_target = f"<= {poll * 1000:,.0f} ms (one status poll)"
    for word, how in (("median", statistics.median), ("worst", max)):
        value = _stat(agent.lost, lambda h: h.reaction, how)
        rows.append(
            Row(
                f"lost agent: AddUnits beyond heal-after, from the fault, {word}",
                _stat(baseline.lost, lambda h: h.reaction, how),
                value,
                "ms",
                lost_target,
                not math.isnan(value) and value <= poll * 1000,
                0,
            )
        )
    for kind, title in ((harness.ERROR, "hook error"), (harness.LOST, "lost agent")):
        rows.append(
            Row(
                f"calls per heal ({title}), median (pings aside)",
                _median_calls(baseline.of(kind), lambda h: h.total_calls),
                _median_calls(agent.of(kind), lambda h: h.total_calls),
                "calls",
                digits=0,
            )
        )
        rows.append(
            Row(
                "  of which not AllWatcher.Next",
                _median_calls(baseline.of(kind), lambda h: h.calls_without_next),
                _median_calls(agent.of(kind), lambda h: h.calls_without_next),
                "calls",
                digits=0,
            )
        )
    return rows


def _median_calls(heals: tuple[harness.Heal, ...], get: Callable[[harness.Heal], int]) -> float:
    return statistics.median(get(h) for h in heals) if heals else math.nan


def render_table(rows: list[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = [
        "| metric | unit | baseline | agent | baseline / agent | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            f"| {row.metric} | {row.unit} | {_format(row.baseline, row.digits)} | "
            f"{_format(row.agent, row.digits)} | {_ratio(row.baseline, row.agent)} | "
            f"{row.target} | {met} |"
        )
    return "\n".join(lines)


def render_breakdowns(baseline: harness.SideResult, agent: harness.SideResult) -> str:
    """Calls per replacement and idle calls by Facade.Method, per side."""
    out: list[str] = []
    for side in (baseline, agent):
        if side.replacements:
            out += _replacement_details(side.name, side.replacements)
        if side.idle is not None:
            out += _idle_details(side.name, side.idle)
        memory = side.memory
        if memory is not None:
            calls = ", ".join(f"{n} {name}" for name, n in sorted(memory.churn_calls.items()))
            out.append(
                f"{side.name}: {memory.units:,} units; {memory.deltas:,} deltas took"
                f" {memory.churn_seconds:.1f}s; calls meanwhile: {calls or 'none'}"
            )
        if side.heal is not None:
            out += _heal_details(side.name, side.heal)
        if side.plan is not None:
            out += _plan_details(side.name, side.plan)
        if side.scrape is not None:
            out.append(_scrape_details(side.name, side.scrape))
    return "\n".join(out)


def _scrape_details(name: str, phase: harness.ScrapePhase) -> str:
    count = len(phase.seconds)
    ordered = sorted(phase.seconds)
    p90 = ordered[min(count - 1, math.ceil(0.9 * count) - 1)]
    over = sum(1 for s in phase.seconds if s >= SCRAPE_TARGET)
    slowest = ", ".join(f"{s * 1000:.1f}" for s in ordered[-3:][::-1])
    calls = ", ".join(f"{n} {call}" for call, n in sorted(phase.calls.items()))
    return (
        f"{name}: {count} scrapes of /metrics on {phase.units:,} units, one after the other:"
        f" median {phase.median * 1000:.2f} ms, 90th percentile {p90 * 1000:.2f} ms,"
        f" best {ordered[0] * 1000:.2f} ms, slowest {slowest} ms;"
        f" {over} of {count} at {SCRAPE_TARGET * 1000:.0f} ms or more;"
        f" agent CPU {phase.cpu_seconds * 1000:.0f} ms in all; exposition"
        f" {phase.wire_bytes:,} bytes gzipped ({phase.text_bytes:,} bytes), {phase.samples}"
        f" samples; controller calls meanwhile (pings and AllWatcher.Next aside):"
        f" {calls or 'none'}"
    )


def _plan_details(name: str, phase: harness.PlanPhase) -> list[str]:
    calls = ", ".join(f"{n} {call}" for call, n in sorted(phase.calls.items()))
    out = [
        f"{name}: {len(phase.seconds)} x {phase.what} on {phase.units:,} units, one after the"
        f" other: median {phase.median * 1000:.1f} ms, worst {phase.worst * 1000:.1f} ms,"
        f" best {min(phase.seconds) * 1000:.1f} ms; controller calls meanwhile (pings and"
        f" AllWatcher.Next aside): {calls or 'none'}"
    ]
    if phase.command_seconds:
        each = ", ".join(f"{s * 1000:.0f}" for s in phase.command_seconds)
        out.append(f"{name}: `ctl plan` end to end, interpreter start included: {each} ms")
    return out


def _replacement_details(name: str, replacements: tuple[harness.Replacement, ...]) -> list[str]:
    count = len(replacements)
    totals = harness.summarize_calls(replacements)
    out = [f"{name}: calls per replacement by Facade.Method (mean of {count}):"]
    out += [f"  {call:<42} {n / count:6.1f}" for call, n in totals.most_common()]
    out.append(
        f"{name}: each replacement (latency beyond settle-period, calls, duration; delta lag:"
        " delivered minus the fake's own last change to active/idle, negative when a later"
        " break never reached the watcher; times the new unit became active/idle, as"
        " delivered / in the fake):"
    )
    out += [
        f"  {r.old_unit} -> {r.new_unit}: {r.latency * 1000:7.1f} ms, {r.total_calls} calls"
        f" ({r.calls_without_next} without Next), {r.duration:.2f}s;"
        f" delta lag {_ms(r.delivery_lag)}; active/idle {r.became_healthy}x"
        f" / {r.became_healthy_fake}x"
        for r in replacements
    ]
    return out


def _heal_details(name: str, phase: harness.HealPhase) -> list[str]:
    out: list[str] = []
    for kind, heals in ((harness.ERROR, phase.error), (harness.LOST, phase.lost)):
        if not heals:
            continue
        count = len(heals)
        totals = harness.summarize_calls(heals)
        out.append(f"{name}: calls per {kind} heal by Facade.Method (mean of {count}):")
        out += [f"  {call:<42} {n / count:6.1f}" for call, n in totals.most_common()]
        if kind == harness.ERROR:
            out.append(
                f"{name}: each error heal (heal-after {phase.heal_after:g}s; AddUnits beyond"
                " heal-after from the fault, from the error delta's delivery to the side's"
                " watcher; the delta's lag; calls; fault to heal done):"
            )
            out += [
                f"  {h.broken_unit} -> {h.new_unit}: {h.reaction * 1000:7.1f} ms,"
                f" {_ms(h.reaction_from_delivery)} from the delta; delta lag"
                f" {_ms(None if h.delivered is None else h.delivered - h.applied)};"
                f" {h.total_calls} calls ({h.calls_without_next} without Next), {h.duration:.2f}s"
                for h in heals
            ]
        else:
            out.append(
                f"{name}: each lost-agent heal (heal-after {phase.heal_after:g}s, status poll"
                f" every {phase.poll_interval:g}s; AddUnits beyond heal-after from the fault;"
                " the first FullStatus after the fault; AddUnits beyond heal-after from that"
                " FullStatus; calls; fault to heal done):"
            )
            out += [
                f"  {h.broken_unit} -> {h.new_unit}: {h.reaction * 1000:7.1f} ms; first"
                f" FullStatus {_ms(_since(h.first_status, h.applied))} after the fault;"
                f" {_ms(h.reaction_from_status)} from it; {h.total_calls} calls"
                f" ({h.calls_without_next} without Next), {h.duration:.2f}s"
                for h in heals
            ]
    return out


def _since(at: float | None, start: float) -> float | None:
    return None if at is None else at - start


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _idle_details(name: str, idle: harness.Idle) -> list[str]:
    out = [
        f"{name}: idle window {idle.window:g}s, polling every {idle.poll_interval:g}s"
        f" (Pinger.Ping left out: {idle.pings}):"
    ]
    out += [
        f"  {call:<42} {n:6d}  -> {n * 3600.0 / idle.window:8.0f}/h"
        for call, n in sorted(idle.calls.items())
    ]
    if not idle.calls:
        out.append("  (no calls)")
    return out


def render(baseline: harness.SideResult, agent: harness.SideResult) -> str:
    """The whole report: table, then the details behind it."""
    return render_table(build_rows(baseline, agent)) + "\n\n" + render_breakdowns(baseline, agent)
