"""The side-by-side table: baseline, agent, ratio (baseline / agent), target and verdict."""

from __future__ import annotations

import dataclasses
import math

from bench import fakes, harness, procstat

# The agent's production status poll interval (AgentSettings default), for the idle estimate.
DEFAULT_POLL_INTERVAL = 60.0
LATENCY_TARGET = 0.100
CALLS_TARGET = 10
# "Flat": the second 50k deltas may add at most this much resident memory (MiB).
FLAT_MIB = 2.0


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
    if agent == 0:
        return "inf" if baseline else "-"
    return f"{baseline / agent:.1f}x"


def _format(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def idle_at_default(idle: harness.Idle, default_interval: float) -> float:
    """Calls/hour if FullStatus were polled every `default_interval` s, the rest as measured."""
    others = sum(n for name, n in idle.calls.items() if name != fakes.FULL_STATUS)
    return others * 3600.0 / idle.window + 3600.0 / default_interval


def build_rows(baseline: harness.SideResult, agent: harness.SideResult) -> list[Row]:
    """Every metric, both sides, with targets where the issue sets one."""
    rows: list[Row] = []
    latency_max = max(r.latency for r in agent.replacements)
    rows.append(
        Row(
            "latency beyond settle-period, median",
            baseline.median_latency * 1000,
            agent.median_latency * 1000,
            "ms",
            f"< {LATENCY_TARGET * 1000:.0f} ms",
            agent.median_latency < LATENCY_TARGET,
            0,
        )
    )
    rows.append(
        Row(
            "latency beyond settle-period, worst",
            max(r.latency for r in baseline.replacements) * 1000,
            latency_max * 1000,
            "ms",
            f"< {LATENCY_TARGET * 1000:.0f} ms",
            latency_max < LATENCY_TARGET,
            0,
        )
    )
    rows.append(
        Row(
            "calls per replacement, median (pings aside)",
            baseline.median_calls,
            agent.median_calls,
            "calls",
            f"<= {CALLS_TARGET}",
            agent.median_calls <= CALLS_TARGET,
            0,
        )
    )
    rows.append(
        Row(
            "  of which not AllWatcher.Next",
            baseline.median_calls_without_next,
            agent.median_calls_without_next,
            "calls",
            f"<= {CALLS_TARGET}",
            agent.median_calls_without_next <= CALLS_TARGET,
            0,
        )
    )
    agent_only_status = set(agent.idle.calls) <= {fakes.FULL_STATUS}
    rows.append(
        Row(
            f"idle calls/hour, polling every {baseline.idle.poll_interval:g}s"
            f" / {agent.idle.poll_interval:g}s",
            baseline.idle.per_hour(),
            agent.idle.per_hour(),
            "calls/h",
            "status polls only",
            agent_only_status,
            0,
        )
    )
    rows.append(
        Row(
            f"idle calls/hour at the default poll ({0.5:g}s / {DEFAULT_POLL_INTERVAL:g}s)",
            idle_at_default(baseline.idle, 0.5),
            idle_at_default(agent.idle, DEFAULT_POLL_INTERVAL),
            "calls/h",
            "status polls only",
            agent_only_status,
            0,
        )
    )
    base_mem, agent_mem = baseline.memory, agent.memory
    units = agent_mem.units
    rows.append(
        Row(
            f"RSS after the snapshot of {units:,} units",
            base_mem.snapshot.rss_mib,
            agent_mem.snapshot.rss_mib,
            "MiB",
        )
    )
    for label, pick in (
        (f"RSS after {agent_mem.deltas // 2:,} deltas", _half),
        (f"RSS after {agent_mem.deltas:,} deltas", _full),
    ):
        rows.append(Row(label, pick(base_mem).rss_mib, pick(agent_mem).rss_mib, "MiB"))
    growth = agent_mem.full.rss_mib - agent_mem.half.rss_mib
    rows.append(
        Row(
            f"RSS growth, deltas {agent_mem.deltas // 2:,} -> {agent_mem.deltas:,}",
            base_mem.full.rss_mib - base_mem.half.rss_mib,
            growth,
            "MiB",
            f"flat (< {FLAT_MIB:g} MiB)",
            growth < FLAT_MIB,
        )
    )
    rows.append(
        Row(
            f"RSS growth, snapshot -> {agent_mem.deltas:,} deltas",
            base_mem.full.rss_mib - base_mem.snapshot.rss_mib,
            agent_mem.full.rss_mib - agent_mem.snapshot.rss_mib,
            "MiB",
        )
    )
    rows.append(
        Row(
            "peak RSS (VmHWM)",
            base_mem.full.hwm_mib,
            agent_mem.full.hwm_mib,
            "MiB",
        )
    )
    rows.append(
        Row(
            "CPU: start, connect, snapshot",
            base_mem.snapshot.cpu_seconds,
            agent_mem.snapshot.cpu_seconds,
            "s",
            digits=2,
        )
    )
    rows.append(
        Row(
            f"CPU: {agent_mem.deltas:,} deltas",
            base_mem.full.cpu_seconds - base_mem.snapshot.cpu_seconds,
            agent_mem.full.cpu_seconds - agent_mem.snapshot.cpu_seconds,
            "s",
            digits=2,
        )
    )
    return rows


def _half(memory: harness.Memory) -> procstat.ProcSample:
    return memory.half


def _full(memory: harness.Memory) -> procstat.ProcSample:
    return memory.full


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
        count = len(side.replacements)
        totals = harness.summarize_calls(side.replacements)
        out.append(f"{side.name}: calls per replacement by Facade.Method (mean of {count}):")
        out.extend(f"  {name:<42} {n / count:6.1f}" for name, n in totals.most_common())
        out.append(
            f"{side.name}: each replacement (latency beyond settle-period, calls, duration):"
        )
        out.extend(
            f"  {r.old_unit} -> {r.new_unit}: {r.latency * 1000:7.1f} ms, {r.total_calls} calls"
            f" ({r.calls_without_next} without Next), {r.duration:.2f}s"
            for r in side.replacements
        )
        idle = side.idle
        out.append(
            f"{side.name}: idle window {idle.window:g}s, polling every {idle.poll_interval:g}s"
            f" (Pinger.Ping left out: {idle.pings}):"
        )
        out.extend(
            f"  {name:<42} {n:6d}  -> {n * 3600.0 / idle.window:8.0f}/h"
            for name, n in sorted(idle.calls.items())
        )
        if not idle.calls:
            out.append("  (no calls)")
        memory = side.memory
        out.append(
            f"{side.name}: churn of {memory.deltas:,} deltas took {memory.churn_seconds:.1f}s"
        )
    return "\n".join(out)


def render(baseline: harness.SideResult, agent: harness.SideResult) -> str:
    """The whole report: table, then the details behind it."""
    return render_table(build_rows(baseline, agent)) + "\n\n" + render_breakdowns(baseline, agent)
