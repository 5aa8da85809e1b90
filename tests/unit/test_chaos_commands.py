"""Chaos scripts: markers, validation, bash syntax, and the revert scheduled before the change."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Callable

import pytest

from whirlwind.chaos import commands

BASH = shutil.which("bash")

SCRIPTS: dict[str, Callable[[], str]] = {
    "stop-agent inject": lambda: commands.stop_agent_inject("12-ab34cd", "3", 600),
    "stop-agent inject container": lambda: commands.stop_agent_inject("1-x", "0/lxd/1", 1),
    "slow-network inject": lambda: commands.slow_network_inject("12-ab34cd", 600, 200),
    "slow-network revert": lambda: commands.slow_network_revert("12-ab34cd"),
    "wrench inject": lambda: commands.wrench_inject(
        "12-ab34cd", 300, "hooks", "wsgi-example-update-status-error"
    ),
    "wrench revert": lambda: commands.wrench_revert("12-ab34cd", "hooks"),
}


@pytest.mark.parametrize(
    ("name", "kind", "phase", "keys"),
    [
        (
            "stop-agent inject",
            "stop-agent",
            "inject",
            {"op": "12-ab34cd", "duration": "600", "machine": "3"},
        ),
        (
            "stop-agent inject container",
            "stop-agent",
            "inject",
            {"op": "1-x", "duration": "1", "machine": "0/lxd/1"},
        ),
        (
            "slow-network inject",
            "slow-network",
            "inject",
            {"op": "12-ab34cd", "duration": "600", "delay-ms": "200"},
        ),
        ("slow-network revert", "slow-network", "revert", {"op": "12-ab34cd"}),
        (
            "wrench inject",
            "wrench",
            "inject",
            {
                "op": "12-ab34cd",
                "duration": "300",
                "category": "hooks",
                "feature": "wsgi-example-update-status-error",
            },
        ),
        ("wrench revert", "wrench", "revert", {"op": "12-ab34cd", "category": "hooks"}),
    ],
)
def test_every_script_starts_with_its_marker_then_set_eu(
    name: str, kind: str, phase: str, keys: dict[str, str]
) -> None:
    script = SCRIPTS[name]()

    lines = script.splitlines()

    assert lines[0].startswith("# whirlwind-chaos ")
    assert commands.parse_marker(script) == (kind, phase, keys)
    assert lines[1] == "set -eu"


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_script_is_valid_bash(name: str) -> None:
    assert BASH is not None

    checked = subprocess.run(
        [BASH, "-n"], input=SCRIPTS[name](), capture_output=True, text=True, timeout=10
    )

    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("name", "scheduled", "change"),
    [
        ("stop-agent inject", "--on-active=602s", "--on-active=2s"),
        ("slow-network inject", "--on-active=600s", "tc qdisc replace"),
        ("wrench inject", "--on-active=300s", "mv -f"),
    ],
)
def test_the_unit_side_revert_is_scheduled_before_the_change(
    name: str, scheduled: str, change: str
) -> None:
    lines = SCRIPTS[name]().splitlines()

    revert_at = next(i for i, ln in enumerate(lines) if "-revert " in ln and scheduled in ln)
    change_at = next(i for i, ln in enumerate(lines) if change in ln and "-revert " not in ln)

    assert revert_at < change_at
    assert "--timer-property=AccuracySec=1s" in lines[revert_at]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "stop-agent inject",
            "systemd-run --unit=whirlwind-chaos-12-ab34cd-revert --on-active=602s"
            " --timer-property=AccuracySec=1s --collect --"
            " /bin/systemctl start jujud-machine-3.service",
        ),
        (
            "stop-agent inject",
            "systemd-run --unit=whirlwind-chaos-12-ab34cd --on-active=2s"
            " --timer-property=AccuracySec=1s --collect --"
            " /bin/systemctl stop jujud-machine-3.service",
        ),
        (
            "stop-agent inject container",
            "systemctl cat jujud-machine-0-lxd-1.service >/dev/null",
        ),
        ("slow-network inject", 'tc qdisc replace dev "$iface" root netem delay 200ms'),
        ("slow-network revert", "systemctl stop whirlwind-chaos-12-ab34cd-revert.timer"),
        (
            "wrench inject",
            'printf "%s\\n%s\\n" wsgi-example-update-status-error'
            """ '# whirlwind-chaos op=12-ab34cd' >"$tmp\"""",
        ),
        (
            "wrench revert",
            "grep -qxF '# whirlwind-chaos op=12-ab34cd' /var/lib/juju/wrench/hooks; then",
        ),
        ("wrench inject", "install -d -o root -g root -m 0755 /var/lib/juju/wrench"),
        ("wrench inject", 'chmod 0644 "$tmp"'),
        ("wrench inject", 'mv -f "$tmp" /var/lib/juju/wrench/hooks'),
        ("wrench revert", "rm -f -- /var/lib/juju/wrench/hooks"),
    ],
)
def test_scripts_contain_the_expected_commands(name: str, expected: str) -> None:
    assert expected in SCRIPTS[name]()


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: commands.stop_agent_inject("1; rm -rf /", "3", 60), "op id"),
        (lambda: commands.stop_agent_inject("", "3", 60), "op id"),
        (lambda: commands.stop_agent_inject("-x", "3", 60), "op id"),
        (lambda: commands.stop_agent_inject("a" * 49, "3", 60), "op id"),
        (lambda: commands.stop_agent_inject("1-a", "3 && reboot", 60), "machine id"),
        (lambda: commands.stop_agent_inject("1-a", "03", 60), "machine id"),
        (lambda: commands.stop_agent_inject("1-a", "0/docker/1", 60), "machine id"),
        (lambda: commands.stop_agent_inject("1-a", "3", 0), "duration"),
        (lambda: commands.stop_agent_inject("1-a", "3", 86401), "duration"),
        (lambda: commands.stop_agent_inject("1-a", "3", True), "duration"),
        (lambda: commands.slow_network_inject("1-a", 60, 0), "delay"),
        (lambda: commands.slow_network_inject("1-a", 60, 60001), "delay"),
        (lambda: commands.slow_network_inject("1-a", 60.5, 10), "duration"),  # type: ignore[arg-type]
        (lambda: commands.slow_network_revert("1 a"), "op id"),
        (lambda: commands.wrench_inject("1-a", 60, "../etc", "x"), "wrench category"),
        (lambda: commands.wrench_inject("1-a", 60, "Hooks", "x"), "wrench category"),
        (lambda: commands.wrench_inject("1-a", 60, "hooks", "a\nb"), "wrench feature"),
        (lambda: commands.wrench_inject("1-a", 60, "hooks", "a b"), "wrench feature"),
        (lambda: commands.wrench_inject("1-a", 60, "hooks", "$(id)"), "wrench feature"),
        (lambda: commands.wrench_revert("1-a", "hooks/x"), "wrench category"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(
    build: Callable[[], str], named: str
) -> None:
    with pytest.raises(commands.InvalidChaosValueError, match=f"^invalid {named} "):
        build()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo hi\n", None),
        ("", None),
        ("# whirlwind-chaos\n", None),
        ("# whirlwind-chaos stop-agent inject\n", None),
        ("# whirlwind-chaos reboot inject op=1\n", None),
        ("# whirlwind-chaos wrench undo op=1\n", None),
        ("# whirlwind-chaos wrench revert category=hooks\n", None),
        ("# whirlwind-chaos wrench revert op=1 junk\n", None),
        ("# whirlwind-chaos wrench revert op=1\nset -eu\n", ("wrench", "revert", {"op": "1"})),
    ],
)
def test_parse_marker(script: str, expected: object) -> None:
    assert commands.parse_marker(script) == expected


# -- running the scripts with the machine's tools replaced by recorders ----------------------

_RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >>"$WW_LOG"
"""


def _run_with_stubs(
    tmp_path: pathlib.Path, script: str, stubs: dict[str, str]
) -> tuple[int, list[str], str]:
    """Run `script` with each named tool a recorder (plus its own body); return code and log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(_RECORDER + body)
        path.chmod(0o755)
    log = tmp_path / "log"
    log.touch()
    assert BASH is not None
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "WW_LOG": str(log)}
    done = subprocess.run(
        [BASH, "-s"], input=script, capture_output=True, text=True, env=env, timeout=20
    )
    return done.returncode, log.read_text().splitlines(), done.stderr


_IP_DEFAULT = 'echo "default via 10.0.0.1 dev ens3 proto dhcp src 10.0.0.5 metric 100"\n'


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_slow_network_schedules_the_removal_then_slows_the_default_interface(
    tmp_path: pathlib.Path,
) -> None:
    script = commands.slow_network_inject("12-ab", 600, 250)

    code, log, stderr = _run_with_stubs(
        tmp_path, script, {"ip": _IP_DEFAULT, "tc": "", "systemd-run": ""}
    )

    assert code == 0, stderr
    bin_dir = tmp_path / "bin"
    assert log == [
        "ip route show default",
        "tc qdisc show dev ens3 root",
        "systemd-run --unit=whirlwind-chaos-12-ab-revert --on-active=600s"
        " --timer-property=AccuracySec=1s --collect --"
        f" {bin_dir}/tc qdisc del dev ens3 root netem",
        "tc qdisc replace dev ens3 root netem delay 250ms",
    ]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("stubs", "code", "message"),
    [
        ({"ip": "", "tc": "", "systemd-run": ""}, 3, "no default route"),
        (
            {"ip": _IP_DEFAULT, "tc": 'echo "qdisc netem 8001: root refcnt 2 limit 1000"\n'},
            4,
            "ens3 already has a netem qdisc",
        ),
        # systemd-run failing: the change is never made (set -e).
        ({"ip": _IP_DEFAULT, "tc": "", "systemd-run": "exit 1\n"}, 1, ""),
    ],
)
def test_slow_network_refuses_without_changing_anything(
    tmp_path: pathlib.Path, stubs: dict[str, str], code: int, message: str
) -> None:
    script = commands.slow_network_inject("12-ab", 600, 250)

    got, log, stderr = _run_with_stubs(tmp_path, script, {"systemd-run": "", **stubs})

    assert got == code
    assert message in stderr
    assert not any(line.startswith("tc qdisc replace") for line in log)


_NETEM = 'echo "qdisc netem 8001: root refcnt 2 limit 1000 delay 250ms"\n'
_TIMER_GONE = 'if [ "$1" = is-active ]; then exit 3; fi\n'


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("tc_show", "systemctl", "expected"),
    [
        (
            _NETEM,
            "",
            [
                "systemctl is-active --quiet whirlwind-chaos-12-ab-revert.timer",
                "systemctl stop whirlwind-chaos-12-ab-revert.timer",
                "ip route show default",
                "tc qdisc show dev ens3 root",
                "tc qdisc del dev ens3 root netem",
            ],
        ),
        (
            'echo "qdisc mq 0: root"\n',
            "",
            [
                "systemctl is-active --quiet whirlwind-chaos-12-ab-revert.timer",
                "systemctl stop whirlwind-chaos-12-ab-revert.timer",
                "ip route show default",
                "tc qdisc show dev ens3 root",
            ],
        ),
        # The timer has fired or was never scheduled: that netem is not ours.
        (_NETEM, _TIMER_GONE, ["systemctl is-active --quiet whirlwind-chaos-12-ab-revert.timer"]),
    ],
)
def test_slow_network_revert_removes_only_its_own_netem(
    tmp_path: pathlib.Path, tc_show: str, systemctl: str, expected: list[str]
) -> None:
    script = commands.slow_network_revert("12-ab")

    code, log, stderr = _run_with_stubs(
        tmp_path, script, {"ip": _IP_DEFAULT, "tc": tc_show, "systemctl": systemctl}
    )

    assert code == 0, stderr
    assert log == expected


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_stop_agent_schedules_the_start_before_the_stop(tmp_path: pathlib.Path) -> None:
    script = commands.stop_agent_inject("12-ab", "4", 300)

    code, log, stderr = _run_with_stubs(tmp_path, script, {"systemctl": "", "systemd-run": ""})

    assert code == 0, stderr
    assert [line.split(" -- ")[-1] for line in log] == [
        "systemctl cat jujud-machine-4.service",
        "/bin/systemctl start jujud-machine-4.service",
        "/bin/systemctl stop jujud-machine-4.service",
    ]
    assert "--on-active=302s" in log[1]
    assert "--on-active=2s" in log[2]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_stop_agent_on_a_machine_without_that_agent_changes_nothing(
    tmp_path: pathlib.Path,
) -> None:
    script = commands.stop_agent_inject("12-ab", "4", 300)

    code, log, _ = _run_with_stubs(tmp_path, script, {"systemctl": "exit 1\n", "systemd-run": ""})

    assert code == 1
    assert log == ["systemctl cat jujud-machine-4.service"]
