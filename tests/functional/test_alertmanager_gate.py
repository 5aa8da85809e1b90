"""block-on-alerts against a real Alertmanager (Debian's prometheus-alertmanager package).

The test starts Alertmanager on loopback with a temporary configuration and storage, posts
alerts through its API v2, and runs the real agent against the fake controller: a matching
alert holds the rotation (the plan names it), a non-matching one does not count, healing is
not the gate's business, and once the alert's endsAt has passed the rotation goes ahead. A
stopped Alertmanager holds the work too (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import pathlib
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest
from whirlwind import alerts
from whirlwind import engine as engine_mod

APP = "wsgi-example"
BINARY = "prometheus-alertmanager"
INSTALL_HINT = (
    "prometheus-alertmanager is not installed: apt-get install -y prometheus-alertmanager "
    "(.ci/run installs it)"
)
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'
# How long the posted alert fires (seconds): long enough to see the rotation held.
FIRING = 6.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, body: Any = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status


@contextlib.asynccontextmanager
async def _alertmanager(
    folder: pathlib.Path,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A real Alertmanager on 127.0.0.1 (no cluster port), its URL; stopped at the end."""
    # Debian installs it in /usr/bin, which a test runner's PATH may lack.
    binary = shutil.which(BINARY) or shutil.which(BINARY, path="/usr/bin")
    if binary is None:
        pytest.fail(INSTALL_HINT)
    config = folder / "alertmanager.yml"
    config.write_text(CONFIG)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "alertmanager.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port on every interface
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        async def ready() -> bool:
            if process.returncode is not None:
                output = (folder / "alertmanager.log").read_text()
                raise AssertionError(f"alertmanager exited: {output}")
            try:
                return await asyncio.to_thread(_request, f"{url}/-/ready") == 200
            except OSError:
                return False

        await harness.wait_for(ready, timeout=20, what="alertmanager ready", interval=0.1)
        yield url, process
    finally:
        await _stop(process)
        log.close()


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 10 s; no-op once it has exited."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except asyncio.TimeoutError:
        process.kill()
        await asyncio.wait_for(process.wait(), 10)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


async def _post(url: str, name: str, severity: str, ends: datetime.datetime) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    alert = {
        "labels": {"alertname": name, "severity": severity},
        "annotations": {"summary": "posted by the test"},
        "startsAt": _iso(now),
        "endsAt": _iso(ends),
    }
    assert await asyncio.to_thread(_request, f"{url}/api/v2/alerts", [alert]) == 200


async def _alerts_gate(agent: harness.InProcessAgent) -> dict[str, Any]:
    plan = await agent.engine.get_plan()
    (target,) = plan["targets"]
    return target["gates"].get("alerts", {}) | {"notes": target["notes"]}


async def test_a_firing_alert_holds_the_rotation_until_it_ends(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_factory: conftest.InProcessAgentFactory,
    agent_dir: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # Ask Alertmanager and look at the plan again every half second, not every 30 s.
    monkeypatch.setattr(alerts, "CACHE_SECONDS", 0.5)
    monkeypatch.setattr(engine_mod, "RECHECK", 0.5)
    fake = await fake_juju_factory({APP: 2, harness.OWN_APP: 1})
    folder = agent_dir / "am"
    folder.mkdir()
    async with _alertmanager(folder) as (url, process):
        now = datetime.datetime.now(datetime.timezone.utc)
        ends = now + datetime.timedelta(seconds=FIRING)
        await _post(url, "HighErrorRate", "critical", ends)
        await _post(url, "DiskAlmostFull", "warning", now + datetime.timedelta(hours=1))
        agent = await agent_factory(
            fake, (APP,), interval=1, block_on_alerts=f"{url} severity=critical"
        )
        pump = harness.ClockPump(fake)

        await harness.wait_for(
            lambda: _holds(agent, "alert HighErrorRate firing"), what="the gate holding"
        )
        held = await _alerts_gate(agent)
        # Well past the interval: nothing started while the alert fired.
        left = ends - datetime.datetime.now(datetime.timezone.utc)
        await asyncio.sleep(max(0.0, left.total_seconds() - 1.0))
        during = agent.history()
        await pump.until(agent.idle, timeout=30, what="the rotation after the alert ended")
        released = await _alerts_gate(agent)
        history = agent.history()
        # Alertmanager gone: fail closed.
        await _stop(process)
        await harness.wait_for(
            lambda: _holds(agent, "Alertmanager unreachable"), what="the gate failing closed"
        )
        unreachable = await _alerts_gate(agent)

    assert held == {
        "holds": True,
        "detail": "alert HighErrorRate firing",
        "notes": ["alert HighErrorRate firing"],
    }
    assert during == []
    assert (released["holds"], released["detail"]) == (False, "no alert firing")
    first = history[-1]  # the oldest: later rotations may follow every second
    assert (first["trigger"], first["result"]) == ("interval", "ok")
    assert datetime.datetime.fromisoformat(first["started"]) >= ends
    assert unreachable["holds"] is True
    assert unreachable["detail"].startswith("Alertmanager unreachable: ")


async def _holds(agent: harness.InProcessAgent, detail: str) -> bool:
    gate = await _alerts_gate(agent)
    return bool(gate.get("holds")) and str(gate.get("detail", "")).startswith(detail)
