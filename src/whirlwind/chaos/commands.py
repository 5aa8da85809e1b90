"""Scripts that inject a failure on a unit's machine, and undo it, through `juju exec`.

Every script is bash run as root by the unit's uniter (`juju exec`), starts with one marker
line that names its effect (the fake controller recognises scripts by it), and `set -eu`.
An injection with a duration schedules its own revert on the machine with `systemd-run`
*before* it changes anything: if Whirlwind dies or loses the controller, the machine still
undoes the change when the duration ends. The agent may revert earlier (stop, disarm) with
the revert script, which undoes the change now and stops that timer.

Every value comes from a strict pattern or is an int in range, and is shell-quoted anyway.
"""

from __future__ import annotations

import re
import shlex

STOP_AGENT = "stop-agent"
SLOW_NETWORK = "slow-network"
WRENCH = "wrench"
EXEC_KINDS = (STOP_AGENT, SLOW_NETWORK, WRENCH)
INJECT = "inject"
REVERT = "revert"
PHASES = (INJECT, REVERT)

MARKER_PREFIX = "# whirlwind-chaos"
# Juju's data dir on Linux machines; wrench.IsActive reads <data dir>/wrench/<category>.
WRENCH_DIR = "/var/lib/juju/wrench"
# The machine agent stops this long after the exec started, so the exec's reply (sent by the
# agent being stopped) still reaches the controller first.
STOP_AGENT_DELAY = 2
MAX_DURATION = 24 * 3600
MAX_DELAY_MS = 60_000

# Operation ids go into systemd unit names (`whirlwind-chaos-<op>.timer`).
_OP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
# Juju machine ids: "3", or a container "3/lxd/1" (names.IsValidMachine, simplified).
_MACHINE_ID = re.compile(r"(0|[1-9][0-9]{0,8})(/(lxd|kvm)/(0|[1-9][0-9]{0,8}))*")
# Wrench categories are file names; features one line of that file (wrench.IsActive compares
# the trimmed line).
_CATEGORY = re.compile(r"[a-z][a-z0-9-]{0,39}")
_FEATURE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_MARKER_KEY = re.compile(r"[a-z][a-z-]*")
# Systemd's timers fire up to a minute late by default (AccuracySec=1min): a 2 s stop would
# not be 2 s.
_TIMER = "--timer-property=AccuracySec=1s"
# Transient units go away once run, even when they failed.
_COLLECT = "--collect"
# The default-route interface: the `dev` word of `ip route show default`.
_DEFAULT_IFACE = (
    "iface=\"$(ip route show default | awk '{for (i = 1; i < NF; i++) "
    'if ($i == "dev") {print $(i + 1); exit}}\')"'
)


class InvalidChaosValueError(ValueError):
    """A value for a chaos script is not one Whirlwind accepts (the message names it)."""


def _check(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidChaosValueError(f"invalid {name} {value!r}: must match {pattern.pattern}")
    return value


def _check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidChaosValueError(f"invalid {name} {value!r}: must be an integer {low}..{high}")
    return value


def _q(value: str | int) -> str:
    return shlex.quote(str(value))


def revert_unit(op_id: str) -> str:
    """Name of the transient systemd unit (timer + service) that reverts `op_id` on the unit."""
    return f"whirlwind-chaos-{_check('op id', op_id, _OP_ID)}-revert"


def agent_service(machine_id: str) -> str:
    """The machine agent's systemd service: jujud-machine-<tag suffix>.service."""
    tag_suffix = _check("machine id", machine_id, _MACHINE_ID).replace("/", "-")
    return f"jujud-machine-{tag_suffix}.service"


def marker(kind: str, phase: str, op_id: str, **keys: str | int) -> str:
    """The first line of every chaos script: `# whirlwind-chaos <kind> <phase> op=<id> ...`.

    Keyword names use `_` for `-` (delay_ms= gives delay-ms=).
    """
    if kind not in EXEC_KINDS:
        raise InvalidChaosValueError(f"invalid chaos kind {kind!r}: one of {EXEC_KINDS}")
    if phase not in PHASES:
        raise InvalidChaosValueError(f"invalid chaos phase {phase!r}: one of {PHASES}")
    words = [MARKER_PREFIX, kind, phase, f"op={_check('op id', op_id, _OP_ID)}"]
    for key, value in keys.items():
        text = str(value)
        if re.fullmatch(r"[A-Za-z0-9._/-]+", text) is None:
            raise InvalidChaosValueError(f"invalid marker value {key}={text!r}")
        words.append(f"{key.replace('_', '-')}={text}")
    return " ".join(words)


def parse_marker(script: str) -> tuple[str, str, dict[str, str]] | None:
    """(kind, phase, keys with op) of a chaos script's first line, or None if it has none."""
    first = script.split("\n", 1)[0].split()
    if len(first) < 4 or " ".join(first[:2]) != MARKER_PREFIX:
        return None
    kind, phase = first[2], first[3]
    if kind not in EXEC_KINDS or phase not in PHASES:
        return None
    keys: dict[str, str] = {}
    for word in first[4:]:
        key, sep, value = word.partition("=")
        if not sep or _MARKER_KEY.fullmatch(key) is None:
            return None
        keys[key] = value
    return (kind, phase, keys) if "op" in keys else None


def _script(head: str, *lines: str) -> str:
    return "\n".join((head, "set -eu", *lines)) + "\n"


def _schedule(op_id: str, seconds: int, *command: str) -> str:
    """systemd-run line that runs `command` once, `seconds` from now, as unit <op>-revert."""
    return " ".join(
        (
            "systemd-run",
            _q(f"--unit={revert_unit(op_id)}"),
            _q(f"--on-active={seconds}s"),
            _TIMER,
            _COLLECT,
            "--",
            *command,
        )
    )


def _stop_timer(op_id: str) -> str:
    # Absent when it has fired already (or after a reboot): nothing to stop then.
    return f"systemctl stop {_q(revert_unit(op_id) + '.timer')} 2>/dev/null || true"


def stop_agent_inject(op_id: str, machine_id: str, duration: int) -> str:
    """Stop the machine agent STOP_AGENT_DELAY s from now until duration + that from now.

    The restart is scheduled first and needs nothing from Whirlwind: the agent that runs
    exec is the one stopped, so no early revert through exec is possible. Both run as
    transient systemd units, outside the agent's own cgroup, which stopping it would kill.
    """
    _check_int("duration", duration, 1, MAX_DURATION)
    service = agent_service(machine_id)
    stop_unit = f"whirlwind-chaos-{_check('op id', op_id, _OP_ID)}"
    return _script(
        marker(STOP_AGENT, INJECT, op_id, duration=duration, machine=machine_id),
        f"systemctl cat {_q(service)} >/dev/null",
        _schedule(op_id, duration + STOP_AGENT_DELAY, "/bin/systemctl", "start", _q(service)),
        " ".join(
            (
                "systemd-run",
                _q(f"--unit={stop_unit}"),
                _q(f"--on-active={STOP_AGENT_DELAY}s"),
                _TIMER,
                _COLLECT,
                "--",
                "/bin/systemctl",
                "stop",
                _q(service),
            )
        ),
        "echo "
        + _q(
            f"{service} stops in {STOP_AGENT_DELAY}s, starts again in "
            f"{duration + STOP_AGENT_DELAY}s"
        ),
    )


def slow_network_inject(op_id: str, duration: int, delay_ms: int) -> str:
    """Delay every packet leaving the default-route interface by `delay_ms` for `duration` s.

    Refused (exit 3) without a default route, and (exit 4) when that interface already has a
    netem root qdisc: that is another injection's or the operator's, not ours to replace.
    """
    _check_int("duration", duration, 1, MAX_DURATION)
    _check_int("delay", delay_ms, 1, MAX_DELAY_MS)
    return _script(
        marker(SLOW_NETWORK, INJECT, op_id, duration=duration, delay_ms=delay_ms),
        _DEFAULT_IFACE,
        'if [ -z "$iface" ]; then echo "no default route" >&2; exit 3; fi',
        'if tc qdisc show dev "$iface" root | grep -qw netem; then',
        '    echo "$iface already has a netem qdisc" >&2; exit 4',
        "fi",
        'tc_bin="$(command -v tc)"',
        _schedule(
            op_id, duration, '"$tc_bin"', "qdisc", "del", "dev", '"$iface"', "root", "netem"
        ),
        f'tc qdisc replace dev "$iface" root netem delay {_q(f"{delay_ms}ms")}',
        f'echo "$iface delayed by {delay_ms}ms for {duration}s"',
    )


def slow_network_revert(op_id: str) -> str:
    """Remove the netem delay now and the scheduled removal, if that is still to come.

    Only while the op's revert timer is waiting: that timer exists only if this op's
    injection got as far as scheduling it, so a netem qdisc that is not ours (another
    injection's, the operator's, or one that an injection refused to replace) stays.
    """
    timer = _q(revert_unit(op_id) + ".timer")
    return _script(
        marker(SLOW_NETWORK, REVERT, op_id),
        f"if ! systemctl is-active --quiet {timer}; then",
        '    echo "nothing to revert"; exit 0',
        "fi",
        f"systemctl stop {timer}",
        _DEFAULT_IFACE,
        'if [ -n "$iface" ] && tc qdisc show dev "$iface" root | grep -qw netem; then',
        '    tc qdisc del dev "$iface" root netem',
        '    echo "$iface no longer delayed"',
        "fi",
    )


def _wrench_file(category: str) -> str:
    return f"{WRENCH_DIR}/{_check('wrench category', category, _CATEGORY)}"


def _owner_line(op_id: str) -> str:
    return f"{MARKER_PREFIX} op={_check('op id', op_id, _OP_ID)}"


def wrench_inject(op_id: str, duration: int, category: str, feature: str) -> str:
    """Write `feature` into the wrench file of `category` for `duration` s.

    Juju's wrench.IsActive (wrench/wrench.go, juju/juju) ignores the directory unless it is
    owned by the agent's user (checkWrenchDir, isOwnedByJujuUser in wrench_nix.go: root on
    machines) and the file unless it is owned by that user and not writable by group or
    others (checkWrenchFile: mode & 0022 == 0): dir 0755 root, file 0644 root. Refused
    (exit 4) if the category's file exists: the operator's own wrench is not ours to remove.
    The file also holds an owner line (`# whirlwind-chaos op=<id>`) for the revert.
    """
    _check_int("duration", duration, 1, MAX_DURATION)
    _check("wrench feature", feature, _FEATURE)
    path = _wrench_file(category)
    return _script(
        marker(WRENCH, INJECT, op_id, duration=duration, category=category, feature=feature),
        f"if [ -e {_q(path)} ]; then echo {_q(path + ' exists already')} >&2; exit 4; fi",
        _schedule(op_id, duration, "/bin/rm", "-f", "--", _q(path)),
        f"install -d -o root -g root -m 0755 {_q(WRENCH_DIR)}",
        # install -d leaves an existing directory as it is.
        f"chown root:root {_q(WRENCH_DIR)}",
        f"chmod 0755 {_q(WRENCH_DIR)}",
        f'tmp="$(mktemp {_q(WRENCH_DIR + "/.whirlwind-XXXXXX")})"',
        # wrench.IsActive compares each trimmed line with the feature: the owner line is
        # never one, and tells the revert the file is ours.
        f'printf "%s\\n%s\\n" {_q(feature)} {_q(_owner_line(op_id))} >"$tmp"',
        'chown root:root "$tmp"',
        'chmod 0644 "$tmp"',
        # Renamed into place: the agent never reads a half-written file.
        f'mv -f "$tmp" {_q(path)}',
        f"echo {_q(f'wrench {category}/{feature} active for {duration}s')}",
    )


def wrench_revert(op_id: str, category: str) -> str:
    """Remove the wrench file of `category` now, if this op wrote it, and the scheduled removal.

    The file must hold this op's owner line: the operator's own wrench file (which an
    injection refuses to replace) or a later injection's stays. A file left after a reboot
    (systemd's transient timer is gone then) is still removed.
    """
    path = _wrench_file(category)
    return _script(
        marker(WRENCH, REVERT, op_id, category=category),
        _stop_timer(op_id),
        f"if [ -f {_q(path)} ] && grep -qxF {_q(_owner_line(op_id))} {_q(path)}; then",
        f"    rm -f -- {_q(path)}",
        f"    echo {_q(f'wrench {category} removed')}",
        "else",
        '    echo "nothing to revert"',
        "fi",
    )
