"""The main job without Juju: the real agent replacing units of a simulated model.

Starts tests/fakejuju with a sample model, renders agent settings for it exactly as the
charm would (settings file plus a 0600 password file), runs `python -m whirlwind run`
against it, shows the model changing in the terminal, then prints the history.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import IO, Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from whirlwind import control, settings  # noqa: E402 - after the path set-up above


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the agent against a simulated model.")
    parser.add_argument("--app", default="wsgi-example", help="target application")
    parser.add_argument("--units", type=int, default=3, help="units of the target at start")
    parser.add_argument("--replacements", type=int, default=3, help="stop after this many")
    parser.add_argument("--interval", type=int, default=5, help="agent interval in seconds")
    parser.add_argument("--settle-period", type=int, default=2, help="seconds healthy to settle")
    parser.add_argument("--step-delay", type=float, default=0.3, help="fake lifecycle step delay")
    parser.add_argument("--timeout", type=float, default=180, help="give up after this long")
    options = parser.parse_args()
    if options.units < 1 or options.replacements < 1 or options.interval < 1:
        parser.error("--units, --replacements and --interval must be 1 or more")
    return options


def _pump(stream: IO[str], prefix: str) -> None:
    for line in stream:
        sys.stdout.write(f"{prefix} {line}")
        sys.stdout.flush()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _describe_units(state: dict[str, Any], app: str) -> str:
    parts = []
    for name, unit in state.get("units", {}).items():
        if unit.get("application") != app:
            continue
        workload = unit["workload-status"]["current"]
        agent = "lost" if unit.get("agent-lost") else unit["agent-status"]["current"]
        life = "" if unit.get("life") == "alive" else f" {unit.get('life')}"
        parts.append(f"{name}[{workload}/{agent}{life}]")
    return " ".join(parts) or "(no units)"


def _pause_and_drain(client: control.ControlClient, deadline: float) -> list[dict[str, Any]]:
    """Pause the agent (no new work) and let a replacement in flight finish; return history."""
    with contextlib.suppress(control.AgentUnavailableError, control.ControlError):
        client.pause()
        print("  demo  | paused the agent; letting the replacement in flight finish", flush=True)
        while time.monotonic() < deadline and client.status().get("in-flight"):
            time.sleep(0.5)
    try:
        return client.history(limit=100)
    except (control.AgentUnavailableError, control.ControlError) as exc:
        print(f"cannot read the history: {exc}", flush=True)
        return []


def main() -> int:
    """Run the demo; return the process exit code."""
    options = _parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="whirlwind-demo-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    fake = subprocess.Popen(
        [
            sys.executable, "-m", "tests.fakejuju",
            "--app", f"{options.app}={options.units}",
            "--app", "whirlwind=1",
            "--step-delay", str(options.step_delay),
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    agent: subprocess.Popen[str] | None = None
    try:
        assert fake.stdout is not None
        info = json.loads(fake.stdout.readline())
        print(f"fake controller at {info['endpoint']}, model {info['model-uuid']}")
        password_file = workdir / "credentials"
        settings.write_file_atomically(password_file, info["password"] + "\n", mode=0o600)
        agent_settings = settings.AgentSettings(
            controller=settings.ControllerSettings(
                endpoints=(info["endpoint"],),
                ca_cert=info["ca-cert"],
                username=info["username"],
                password=info["password"],
            ),
            model_uuid=info["model-uuid"],
            services=(options.app,),
            interval=options.interval,
            settle_period=options.settle_period,
            settle_timeout=120,
            remove_timeout=60,
            state_dir=workdir / "state",
            control_socket=workdir / "control.sock",
            status_poll_interval=5,
            own_application="whirlwind",
        )
        config_file = workdir / "settings.yaml"
        settings.write_file_atomically(
            config_file, settings.dump_settings(agent_settings, password_file)
        )
        print(f"agent settings: {config_file} (password in {password_file}, mode 0600)")
        agent = subprocess.Popen(
            [sys.executable, "-m", "whirlwind", "run", "--config", str(config_file)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert agent.stdout is not None
        threading.Thread(target=_pump, args=(agent.stdout, "  agent |"), daemon=True).start()
        client = control.ControlClient(workdir / "control.sock")
        return _watch(options, info["admin-url"], client, agent)
    finally:
        for process in (agent, fake):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=15)
                if process.poll() is None:
                    process.kill()


def _watch(
    options: argparse.Namespace,
    admin_url: str,
    client: control.ControlClient,
    agent: subprocess.Popen[str],
) -> int:
    deadline = time.monotonic() + options.timeout
    last_line = ""
    history: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            print(f"the agent exited with code {agent.returncode}", flush=True)
            return 1
        line = "  model |", _describe_units(_get_json(f"{admin_url}/state"), options.app)
        text = " ".join(line)
        if text != last_line:
            print(text, flush=True)
            last_line = text
        with contextlib.suppress(control.AgentUnavailableError, control.ControlError):
            history = client.history(limit=100)
        finished = [op for op in history if op.get("result") not in (None, "running")]
        if len(finished) >= options.replacements:
            break
        time.sleep(0.5)
    else:
        print(f"timed out after {options.timeout:g}s", flush=True)
    history = _pause_and_drain(client, deadline + 60)
    final = _describe_units(_get_json(f"{admin_url}/state"), options.app)
    print(f"  model | {final}  (at the end)", flush=True)
    print("\nhistory (newest first):")
    for op in history:
        print(
            f"  #{op.get('id')} {op.get('trigger')}: {op.get('old-unit')} -> {op.get('new-unit')}"
            f"  {op.get('result')}  {op.get('duration') or 0:.1f}s  {op.get('reason') or ''}"
        )
    ok = sum(1 for op in history if op.get("result") == "ok")
    print(f"\n{ok} of {len(history)} replacements ok")
    return 0 if ok >= options.replacements else 1


if __name__ == "__main__":
    sys.exit(main())
