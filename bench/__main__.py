"""`python -m bench`: the agent side by side with the naive baseline; prints the table."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import pathlib
import shutil
import sys
import tempfile
import time

from bench import harness, report

QUICK = harness.Options(
    replacements=2,
    settle_period=1,
    step_delay=0.05,
    pause=0.3,
    idle_window=4.0,
    idle_poll_interval=1,
    big_units=500,
    deltas=5000,
    batch=250,
    warmup=0.5,
    heals=2,
    heal_after=2,
    heal_poll_interval=2,
    plans=5,
    plan_commands=1,
    scrapes=20,
)


def _parse_args(argv: list[str]) -> tuple[harness.Options, argparse.Namespace]:
    defaults = harness.Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small numbers, for a check that it all works"
    )
    parser.add_argument("--replacements", type=int, help=f"default {defaults.replacements}")
    parser.add_argument("--settle-period", type=int, help=f"default {defaults.settle_period}")
    parser.add_argument("--step-delay", type=float, help=f"default {defaults.step_delay}")
    parser.add_argument("--idle-window", type=float, help=f"default {defaults.idle_window}")
    parser.add_argument(
        "--idle-poll-interval", type=int, help=f"default {defaults.idle_poll_interval}"
    )
    parser.add_argument("--units", type=int, help=f"big model size, default {defaults.big_units}")
    parser.add_argument("--deltas", type=int, help=f"default {defaults.deltas}")
    parser.add_argument("--batch", type=int, help=f"deltas per batch, default {defaults.batch}")
    parser.add_argument("--warmup", type=float, help=f"default {defaults.warmup}")
    parser.add_argument(
        "--heals", type=int, help=f"heals per kind (error, lost), default {defaults.heals}"
    )
    parser.add_argument("--heal-after", type=int, help=f"default {defaults.heal_after}")
    parser.add_argument(
        "--heal-poll-interval",
        type=int,
        help="the agent's status-poll-interval in the lost-agent heals,"
        f" default {defaults.heal_poll_interval}",
    )
    parser.add_argument(
        "--plans", type=int, help=f"plan requests per side, default {defaults.plans}"
    )
    parser.add_argument(
        "--plan-commands",
        type=int,
        help=f"`ctl plan` commands (agent), default {defaults.plan_commands}",
    )
    parser.add_argument(
        "--scrapes", type=int, help=f"scrapes of /metrics per side, default {defaults.scrapes}"
    )
    parser.add_argument(
        "--phases",
        default=",".join(harness.PHASES),
        help=f"comma-separated subset of {','.join(harness.PHASES)} (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    options = QUICK if args.quick else defaults
    overrides = {
        "replacements": args.replacements,
        "settle_period": args.settle_period,
        "step_delay": args.step_delay,
        "idle_window": args.idle_window,
        "idle_poll_interval": args.idle_poll_interval,
        "big_units": args.units,
        "deltas": args.deltas,
        "batch": args.batch,
        "warmup": args.warmup,
        "heals": args.heals,
        "heal_after": args.heal_after,
        "heal_poll_interval": args.heal_poll_interval,
        "plans": args.plans,
        "plan_commands": args.plan_commands,
        "scrapes": args.scrapes,
    }
    options = dataclasses.replace(options, **{k: v for k, v in overrides.items() if v is not None})
    counts = (options.replacements, options.deltas, options.batch, options.big_units)
    if (
        min(*counts, options.heals, options.plans, options.scrapes) < 1
        or options.plan_commands < 0
    ):
        parser.error("counts must be 1 or more (--plan-commands 0 or more)")
    if options.heal_after < 0 or options.heal_poll_interval < 1:
        parser.error("--heal-after must be 0 or more, --heal-poll-interval 1 or more")
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = sorted(set(phases) - set(harness.PHASES))
    if unknown or not phases:
        parser.error(f"--phases: choose from {', '.join(harness.PHASES)}")
    args.phases = phases
    if options.batch > options.big_units:
        parser.error("--batch must not exceed --units (each batch changes distinct units)")
    return options, args


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _main(options: harness.Options, phases: tuple[str, ...], workdir: pathlib.Path) -> str:
    baseline = await harness.measure("baseline", options, phases, workdir / "baseline", _say)
    agent = await harness.measure("agent", options, phases, workdir / "agent", _say)
    return report.render(baseline, agent)


def main(argv: list[str] | None = None) -> int:
    """Run both sides and print the report on stdout (progress on stderr)."""
    options, args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="whirlwind-bench-"))
    _say(f"bench: {options}, phases {','.join(args.phases)}")
    _say(f"bench: work folder {workdir}")
    began = time.monotonic()
    try:
        text = asyncio.run(_main(options, args.phases, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    print(f"\n(run took {time.monotonic() - began:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
