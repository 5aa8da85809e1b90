"""The command-line entry point, run as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.fakejuju import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI_ARGS = (
    "--app", "x=2", "--app", "y=1", "--step-delay", "0.01", "--delta-lag", "0.05:0.1",
    "--seed", "7", "--unset-status", "y", "--spare-machines", "1",
)  # fmt: skip


def _http(url: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def _login_and_close(info: dict) -> None:
    conn = await asyncio.wait_for(
        helpers.Connection.connect(
            info["endpoint"], info["model-uuid"], info["username"], info["password"],
            info["ca-cert"], retries=0,
        ),
        10,
    )  # fmt: skip
    try:
        # libjuju's pinger sends its first Ping from a task it starts after login: wait
        # (bounded) until the fake has recorded it, or closing now could cancel it unsent.
        await asyncio.wait_for(_until_pinged(info["admin-url"]), 10)
    finally:
        await asyncio.wait_for(conn.close(), 5)


async def _until_pinged(admin: str) -> None:
    while True:
        _, calls = await asyncio.to_thread(_http, admin + "/calls")
        if isinstance(calls, list) and any(
            (c["facade"], c["method"]) == ("Pinger", "Ping") for c in calls
        ):
            return
        await asyncio.sleep(0.05)


def test_cli_serves_state_faults_and_calls_then_exits_cleanly_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakejuju", *CLI_ARGS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        admin = info["admin-url"]

        status, state = _http(admin + "/state")
        bad_status, bad = _http(admin + "/fault", {"fault": "lose-unit"})
        fault_status, _ = _http(admin + "/fault", {"fault": "lose-unit", "unit": "x/1"})
        lag_status, _ = _http(admin + "/fault", {"fault": "delta-lag", "min": 0, "max": 0.5})
        bad_lag_status, bad_lag = _http(
            admin + "/fault", {"fault": "delta-lag", "min": 2, "max": 1}
        )
        _, after = _http(admin + "/state")
        asyncio.run(_login_and_close(info))
        calls_status, calls = _http(admin + "/calls")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)

    assert set(info) == {
        "endpoint", "model-uuid", "username", "password", "ca-cert", "admin-url", "seed"
    }  # fmt: skip
    assert info["seed"] == "7"
    assert info["ca-cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert status == 200
    assert isinstance(state, dict)
    assert sorted(state["units"]) == ["x/0", "x/1", "y/0"]
    assert state["seed"] == 7
    assert state["faults"]["delta-lag"] == {"min": 0.05, "max": 0.1}
    assert state["faults"]["unset-status"] == ["y"]
    # The charm of y never sets a status; the spare machine hosts nothing.
    assert state["units"]["y/0"]["workload-status"]["current"] == "unknown"
    assert [m for m, info in state["machines"].items() if not info["units"]] == ["3"]
    assert bad_status == 400
    assert isinstance(bad, dict)
    assert "unit" in bad["error"]
    assert fault_status == 200
    assert isinstance(after, dict)
    assert after["units"]["x/1"]["agent-lost"] is True
    assert lag_status == 200
    assert after["faults"]["delta-lag"] == {"min": 0, "max": 0.5}
    assert bad_lag_status == 400
    assert isinstance(bad_lag, dict)
    assert "delta lag" in bad_lag["error"]
    assert calls_status == 200
    assert isinstance(calls, list)
    assert [(c["facade"], c["version"], c["method"]) for c in calls[:2]] == [
        ("Admin", 3, "Login"),
        ("Pinger", 1, "Ping"),
    ]
    assert proc.returncode == 0
    assert "Traceback" not in stderr


def _wait_for_state(admin: str, predicate, timeout: float = 10.0) -> dict:
    """Poll GET /state (real time, bounded) until predicate(state) holds; return that state."""
    deadline = time.monotonic() + timeout
    while True:
        _, state = _http(admin + "/state")
        assert isinstance(state, dict)
        if predicate(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def test_cli_seeds_storage_and_serves_unit_error_resolve_leader_and_remove_faults():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakejuju", "--app", "db=2:storage", "--app", "web=3",
         "--step-delay", "0.01", "--delta-lag", "0", "--seed", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        admin = json.loads(proc.stdout.readline())["admin-url"]
        _, seeded = _http(admin + "/state")

        error = _http(admin + "/fault", {"fault": "error-unit", "unit": "web/1"})
        _, failed = _http(admin + "/state")
        resolve = _http(admin + "/fault", {"fault": "resolve-unit", "unit": "web/1"})
        resolved = _wait_for_state(
            admin, lambda s: s["units"]["web/1"]["workload-status"]["current"] == "active"
        )
        not_in_error = _http(admin + "/fault", {"fault": "resolve-unit", "unit": "web/1"})
        other_hook = _http(
            admin + "/fault", {"fault": "error-unit", "unit": "web/2", "hook": "config-changed"}
        )
        leader = _http(admin + "/fault", {"fault": "leader", "unit": "web/2"})
        _, led = _http(admin + "/state")
        remove = _http(admin + "/fault", {"fault": "remove-unit", "unit": "db/1"})
        removed = _wait_for_state(admin, lambda s: "db/1" not in s["units"])
        missing = _http(admin + "/fault", {"fault": "remove-unit", "unit": "db/9"})
        no_unit = _http(admin + "/fault", {"fault": "leader"})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)

    assert isinstance(seeded, dict)
    assert seeded["applications"]["db"]["storage"] == "data"
    assert seeded["applications"]["web"]["storage"] == ""
    assert {k: (v["owner"], v["status"]["current"]) for k, v in seeded["storage"].items()} == {
        "data/0": ("db/0", "attached"), "data/1": ("db/1", "attached")
    }  # fmt: skip
    assert (seeded["applications"]["db"]["leader"], seeded["applications"]["web"]["leader"]) == (
        "db/0", "web/0"
    )  # fmt: skip
    assert error == (200, {"ok": True})
    assert isinstance(failed, dict)
    assert failed["units"]["web/1"]["workload-status"]["message"] == 'hook failed: "update-status"'
    assert failed["units"]["web/1"]["agent-status"]["current"] == "idle"
    assert resolve == (200, {"ok": True})
    assert resolved["units"]["web/1"]["agent-status"]["current"] == "idle"
    assert not_in_error[0] == 400
    assert other_hook == (200, {"ok": True})
    assert leader == (200, {"ok": True})
    assert isinstance(led, dict)
    assert led["applications"]["web"]["leader"] == "web/2"
    assert remove == (200, {"ok": True})
    assert removed["storage"]["data/1"]["owner"] == ""  # detached, kept
    assert missing[0] == 400
    assert no_unit[0] == 400
    assert proc.returncode == 0
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--app", "x"],
        ["--app", "x=1:disk"],
        ["--step-delay", "-1"],
        ["--bogus"],
        ["--delta-lag", "0.3:0.1"],
        ["--delta-lag", "soon"],
        ["--seed", "-4"],
        ["--app", "x=1", "--unset-status", "y"],
    ],
)
def test_cli_rejects_bad_arguments_with_one_line(argv: list[str]):
    result = subprocess.run(
        [sys.executable, "-m", "tests.fakejuju", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
