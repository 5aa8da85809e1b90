"""The command-line entry point, run as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import subprocess
import sys
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


@pytest.mark.parametrize(
    "argv",
    [
        ["--app", "x"],
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
