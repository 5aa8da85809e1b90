"""The naive baseline: what the original tool did, on libjuju's high-level API, unmodified.

Run as a subprocess by the benchmark (`python -m bench.baseline --connect FILE MODE ...`);
it prints one JSON line per event on stdout (`{"event": ..., "t": epoch seconds, ...}`).

- `replace`: `Model.connect()`, then for each replacement: pick the lowest-numbered unit of
  the application as the oldest, `Application.add_unit()`, then poll `Model.get_status()`
  (`Client.FullStatus`) every 0.5 s, as `wait_for_idle` does for one application, until the
  unit count went up and the new unit has been active/idle in every poll for the settle
  period (measured from the first poll that saw it so); then `Unit.destroy()` on the old unit
  and poll full status every 0.5 s until it is gone.
- `idle`: `Model.connect()`, then poll full status every 0.5 s until SIGTERM, as the original
  tool did between its runs.
- `heal`: `Model.connect()`, then poll full status every 0.5 s until SIGTERM; a unit of the
  application seen broken (workload `error`, agent `error` or `lost`; a down machine's units
  show as lost) is remembered from the first poll that saw it so, and forgotten when a poll
  sees it otherwise; at the first poll where one has been broken for `--heal-after`
  seconds, the one broken longest is replaced as in `replace` (`add_unit()`, full status
  every 0.5 s until the new unit settled), then removed with `Unit.destroy(force=True,
  max_wait=0)` (`juju remove-unit --force --no-wait`: a unit in error or with a lost agent
  never runs its stop hooks, so a removal without force never ends) and full status every
  0.5 s until it is gone; then it polls on.
- `status`: `Model.connect()`, then after `--pause` seconds `--count` full statuses one after
  the other, each timed (`status` events: start, seconds, units in it): what a plan made
  without an agent's model view would have to read first, on every request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import signal
import sys
import time
from typing import Any

from juju import model as juju_model

POLL = 0.5


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def _unit_number(name: str) -> int:
    return int(name.rsplit("/", 1)[1])


def _units_in_status(status: Any, application: str) -> dict[str, Any]:
    app = status.applications.get(application)
    return dict(app.units or {}) if app is not None else {}


async def _wait_settled(
    model: juju_model.Model, application: str, new: str, before: int, settle: float
) -> None:
    first_healthy: float | None = None
    while True:
        units = _units_in_status(await model.get_status(), application)
        unit = units.get(new)
        healthy = (
            len(units) > before
            and unit is not None
            and unit.workload_status.status == "active"
            and unit.agent_status.status == "idle"
        )
        now = time.monotonic()
        if not healthy:
            first_healthy = None
        elif first_healthy is None:
            first_healthy = now
        if first_healthy is not None and now - first_healthy >= settle:
            return
        await asyncio.sleep(POLL)


async def _wait_gone(model: juju_model.Model, application: str, unit: str) -> None:
    while True:
        if unit not in _units_in_status(await model.get_status(), application):
            return
        await asyncio.sleep(POLL)


async def _replace(model: juju_model.Model, application: str, settle: float) -> None:
    app = model.applications[application]
    units = sorted(app.units, key=lambda u: _unit_number(u.name))
    old = units[0]
    _emit("start", old=old.name)
    added = await app.add_unit()
    if not added:
        raise RuntimeError(f"add_unit() on {application} returned no unit")
    new = added[0].name
    _emit("added", new=new)
    await _wait_settled(model, application, new, len(units), settle)
    _emit("settled", new=new)
    await old.destroy()
    await _wait_gone(model, application, old.name)
    _emit("done", old=old.name, new=new)


def _is_broken(unit: Any) -> bool:
    """A unit in full status whose hook failed or whose agent is lost (or machine down)."""
    return unit.workload_status.status == "error" or unit.agent_status.status in (
        "error",
        "lost",
    )


async def _heal_unit(
    model: juju_model.Model, application: str, old: str, before: int, settle: float
) -> None:
    _emit("start", old=old)
    added = await model.applications[application].add_unit()
    if not added:
        raise RuntimeError(f"add_unit() on {application} returned no unit")
    new = added[0].name
    _emit("added", new=new)
    await _wait_settled(model, application, new, before, settle)
    _emit("settled", new=new)
    unit = model.units.get(old)
    if unit is None:
        raise RuntimeError(f"{old} is not in the model")
    await unit.destroy(force=True, max_wait=0)
    await _wait_gone(model, application, old)
    _emit("done", old=old, new=new)


async def _heal(
    model: juju_model.Model, application: str, heal_after: float, settle: float
) -> None:
    stopping = _stop_on_sigterm()
    broken_since: dict[str, float] = {}
    while not stopping.is_set():
        units = _units_in_status(await model.get_status(), application)
        now = time.monotonic()
        broken = {name for name, unit in units.items() if _is_broken(unit)}
        for name in sorted(broken - broken_since.keys()):
            _emit("broken", unit=name)
        broken_since = {name: broken_since.get(name, now) for name in broken}
        due = [name for name in broken if now - broken_since[name] >= heal_after]
        if due:
            old = min(due, key=lambda name: broken_since[name])
            await _heal_unit(model, application, old, len(units), settle)
            broken_since.pop(old, None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), POLL)


async def time_status(model: juju_model.Model, count: int, pause: float) -> None:
    """`count` full statuses one after the other, each timed (one `status` event each)."""
    await asyncio.sleep(pause)
    for _ in range(count):
        start = time.time()
        began = time.perf_counter()
        status = await model.get_status()
        seconds = time.perf_counter() - began
        units = sum(
            len(app.units or {}) for app in status.applications.values() if app is not None
        )
        _emit("status", start=start, seconds=seconds, units=units)


def _stop_on_sigterm() -> asyncio.Event:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    return stopping


async def _run(options: argparse.Namespace, info: dict[str, Any]) -> None:
    model = juju_model.Model()
    await model.connect(
        endpoint=info["endpoint"],
        uuid=info["model-uuid"],
        username=info["username"],
        password=info["password"],
        cacert=info["ca-cert"],
    )
    try:
        await model.get_status()
        _emit("connected")
        if options.mode == "replace":
            for _ in range(options.count):
                await _replace(model, options.application, options.settle_period)
                await asyncio.sleep(options.pause)
            return
        if options.mode == "status":
            await time_status(model, options.count, options.pause)
            return
        if options.mode == "heal":
            await _heal(model, options.application, options.heal_after, options.settle_period)
            return
        stopping = _stop_on_sigterm()
        while not stopping.is_set():
            await model.get_status()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL)
    finally:
        await model.disconnect()
        _emit("disconnected")


def main() -> None:
    """Parse the command line and run the baseline."""
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--connect", required=True, help="JSON file with the fake's details")
    parser.add_argument("mode", choices=["replace", "idle", "heal", "status"])
    parser.add_argument("--application", default="wsgi-example")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--settle-period", type=float, default=2.0)
    parser.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds between replacements (status: before the first)",
    )
    parser.add_argument(
        "--heal-after", type=float, default=600.0, help="seconds a unit stays broken before a heal"
    )
    options = parser.parse_args()
    info = json.loads(pathlib.Path(options.connect).read_text(encoding="utf-8"))
    asyncio.run(_run(options, info))


if __name__ == "__main__":
    main()
