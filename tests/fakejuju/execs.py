"""Exec through the Action facade (`juju exec`): queued juju-exec actions run by unit agents.

Juju 3.6 (commit 6761e481): apiserver/facades/client/action/run.go Run enqueues one
`juju-exec` action per unit in a new operation (operation.go enqueue, state/action.go
EnqueueAction); the unit's uniter picks it up (worker/uniter/actions/resolver.go), shows
`executing` "running action juju-exec" (worker/uniter/operation/runaction.go Execute), runs
the command with bash (worker/uniter/runner/runner.go runJujuExecAction) and finishes the
action with its results (runner/context/context.go finalizeAction).

What the commands do on the machine is recognised by a marker line (the chaos contract):
    # whirlwind-chaos <kind> <phase> op=<id> [key=value ...]
and recorded per machine; stop-agent really stops the machine agent (units lost by Juju's
rules) for its duration.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from tests.fakejuju import clock as clock_mod
from tests.fakejuju import lifecycle as lifecycle_mod
from tests.fakejuju import model as model_mod

log = logging.getLogger(__name__)

# core/actions/actions.go JujuExecActionName.
JUJU_EXEC = "juju-exec"
# core/actions/actions.go HasJujuExecAction: a command naming either is refused.
_RESERVED_WORDS = ("juju-exec", "juju-run")
# Exec fault modes (POST /fault {"fault": "exec", ...}); "ok" removes the fault.
EXEC_MODES = ("ok", "fail", "hang", "timeout")
FAIL_STDERR = "fake juju: exec fault: exit status 1\n"
# The stop-agent script stops the machine agent this long after it runs (chaos contract).
STOP_AGENT_DELAY = 2.0
MARKER_PREFIX = "# whirlwind-chaos "
_MARKER_RE = re.compile(
    r"^# whirlwind-chaos (?P<kind>[a-z-]+) (?P<phase>inject|revert)"
    r"(?P<keys>(?: [a-z-]+=\S*)*)\s*$"
)
CHAOS_KINDS = ("stop-agent", "slow-network", "wrench")


class ExecError(Exception):
    """A Run the controller refuses as a whole (Juju's error message and code)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclasses.dataclass(frozen=True)
class Marker:
    """The first line of a chaos script: what it does to the machine."""

    kind: str
    phase: str
    op: str
    keys: Mapping[str, str]

    def seconds(self, key: str) -> float | None:
        """Return a non-negative number key, or None when absent or not a number."""
        try:
            value = float(self.keys[key])
        except (KeyError, ValueError):
            return None
        return value if value >= 0 else None


def parse_marker(command: str) -> Marker | None:
    """Return the chaos marker of a script's first line, or None (a plain command)."""
    first = command.split("\n", 1)[0]
    match = _MARKER_RE.match(first)
    if match is None or match.group("kind") not in CHAOS_KINDS:
        return None
    keys = dict(item.split("=", 1) for item in match.group("keys").split())
    op = keys.pop("op", "")
    if not op:
        return None
    return Marker(match.group("kind"), match.group("phase"), op, keys)


@dataclasses.dataclass
class MachineChaos:
    """What chaos scripts left on one machine (GET /state "chaos")."""

    agent_stopped_until: float | None = None
    stop_op: str = ""
    slow_network: dict[str, Any] | None = None
    wrench: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the /state form."""
        return {
            "agent-stopped-until": self.agent_stopped_until,
            "slow-network": None if self.slow_network is None else dict(self.slow_network),
            "wrench": [dict(w) for w in self.wrench],
        }

    @property
    def empty(self) -> bool:
        """Whether nothing is recorded."""
        return self.agent_stopped_until is None and self.slow_network is None and not self.wrench


@dataclasses.dataclass(frozen=True)
class ExecLogEntry:
    """One unit an exec was asked for (refused ones too)."""

    unit: str
    command: str
    allowed: bool
    at: float

    def to_json(self) -> dict[str, Any]:
        """Return the /state "exec-log" form."""
        return {"unit": self.unit, "command": self.command, "allowed": self.allowed, "at": self.at}


class ExecEngine:
    """Enqueues juju-exec actions and plays the unit agents that run them."""

    def __init__(
        self,
        state: model_mod.ModelState,
        lifecycle: lifecycle_mod.Lifecycle,
        clock: clock_mod.Clock,
        step_delay: float,
        *,
        allow_exec: bool = False,
    ) -> None:
        self.state = state
        self.lifecycle = lifecycle
        self.clock = clock
        self.step_delay = step_delay
        # Without it every Run is refused: no test can inject by accident.
        self.allow_exec = allow_exec
        self.log: list[ExecLogEntry] = []
        self.modes: dict[str, str] = {}
        self.chaos: dict[str, MachineChaos] = {}
        self._timers: list[clock_mod._Timer] = []
        # Actions whose unit agent went away while they ran: failed when it is back.
        self._interrupted: dict[str, set[str]] = {}
        # The agent status each running action's unit had before it (restored after it).
        self._before: dict[str, model_mod.Status] = {}
        # Pending actions whose unit's uniter could not take them yet (not started, agent
        # gone): picked up when the unit's agent leaves `allocating` or comes back.
        self._waiting_ids: set[str] = set()
        lifecycle.agent_back_listeners.append(self._agent_back)
        state.observers["fakejuju-exec"] = self._observe

    # -- faults ---------------------------------------------------------------

    def set_mode(self, unit: str, mode: str) -> None:
        """Make execs on a unit fail (exit 1), hang (never complete) or overrun their timeout."""
        if mode not in EXEC_MODES:
            raise ValueError(f"unknown exec mode {mode!r}; expected one of {EXEC_MODES}")
        if mode == "ok":
            self.modes.pop(unit, None)
        else:
            self.modes[unit] = mode

    def clear(self) -> None:
        """Forget exec faults, cancel chaos timers and their records (allow_exec stays)."""
        self.modes.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.chaos.clear()

    def to_json(self) -> list[dict[str, Any]]:
        """Return the exec log as GET /state shows it."""
        return [entry.to_json() for entry in self.log]

    def chaos_of(self, machine_id: str) -> dict[str, Any]:
        """Return one machine's chaos record (all empty when there is none)."""
        return self.chaos.get(machine_id, MachineChaos()).to_json()

    # -- Action.Run -------------------------------------------------------------

    def run(
        self,
        units: list[str],
        applications: list[str],
        machines: list[str],
        commands: str,
        timeout_ns: int,
    ) -> tuple[str, list[dict[str, Any]]]:
        """apiserver/facades/client/action/run.go Run: return (operation tag, ActionResults)."""
        first_line = commands.split("\n", 1)[0]
        now = self.clock.now()
        for unit in units or [f"application-{a}" for a in applications] or machines:
            self.log.append(ExecLogEntry(unit, first_line, self.allow_exec, now))
        if not self.allow_exec:
            # checkCanAdmin: authorizer.HasPermission -> apiserver/errors ErrPerm, whose code
            # is "unauthorized access" (errors.go singletonErrorCodes).
            log.warning("fake juju: exec refused (no --allow-exec): %s", first_line)
            raise ExecError("permission denied", "unauthorized access")
        receivers = self._unit_names(units, applications)
        for machine_id in machines:
            if not re.match(r"^(0|[1-9][0-9]*)(/[a-z]+/(0|[1-9][0-9]*))*$", machine_id):
                raise ExecError(f'invalid machine id "{machine_id}"', "")
        if machines:
            # Machine receivers are run by the machine agent (worker/machineactions): not
            # modelled, so refused rather than answered more kindly than Juju would.
            raise ExecError("the fake runs exec on units only", "not supported")
        if any(word in commands for word in _RESERVED_WORDS):
            # run.go createRunActionsParams: errors.NewNotSupported.
            raise ExecError(f'cannot use "{commands}" as an action command', "not supported")
        parameters = {"command": commands, "timeout": timeout_ns, "workload-context": False}
        # operation.go enqueue -> state/operation.go EnqueueOperation: the operation's id
        # comes first from the "task" sequence, then one id per action.
        operation = self.state.allocate_task_id()
        results = [self._enqueue(name, operation, parameters) for name in receivers]
        return f"operation-{operation}", results

    def _unit_names(self, units: list[str], applications: list[str]) -> list[str]:
        """run.go getAllUnitNames: leaders resolved, applications expanded, sorted, checked."""
        names: set[str] = set()
        for unit in units:
            if unit.endswith("leader"):
                app = unit.split("/")[0]
                leader = self.state.leaders.get(app)
                if not leader:
                    raise ExecError(f'could not determine leader for "{app}"', "")
                names.add(leader)
            else:
                names.add(unit)
        for app in applications:
            if app not in self.state.applications:
                raise ExecError(f'application "{app}" not found', "not found")
            names.update(u.name for u in self.state.units.values() if u.application == app)
        for name in sorted(names):
            if not re.match(r"^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*/(0|[1-9][0-9]*)$", name):
                raise ExecError(f'invalid unit name "{name}"', "")
        return sorted(names)

    def _enqueue(self, name: str, operation: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """One receiver of operation.go enqueue: the ActionResult (or its error)."""
        unit = self.state.units.get(name)
        zero = {
            "enqueued": model_mod.GO_ZERO_TIME,
            "started": model_mod.GO_ZERO_TIME,
            "completed": model_mod.GO_ZERO_TIME,
        }
        tag = "unit-" + name.replace("/", "-")
        if unit is None:
            # common/action.go TagToActionReceiverFn: errors.NotFoundf("%q", receiverTag).
            return {**zero, "error": {"message": f'"{tag}" not found', "code": "not found"}}
        # state/action.go newActionDoc takes its id before EnqueueAction's transaction,
        # which asserts the unit is not dead (stateerrors.ErrDead, code "dead").
        action_id = self.state.allocate_task_id()
        if unit.life == "dead":
            return {**zero, "error": {"message": "not found or dead", "code": "dead"}}
        action = model_mod.ActionRecord(
            id=action_id,
            operation=operation,
            receiver=name,
            name=JUJU_EXEC,
            parameters=dict(parameters),
            enqueued=float(int(self.clock.now())),
        )
        self.state.put_action(action)
        log.info("fake juju: exec action %s queued on %s", action_id, name)
        self._pick_up_later(action_id)
        return self.action_result(action)

    def action_result(self, action: model_mod.ActionRecord) -> dict[str, Any]:
        """common/action.go MakeActionResult: what Run and Actions answer for an action."""
        result: dict[str, Any] = {
            "action": {
                "tag": action.tag,
                "receiver": "unit-" + action.receiver.replace("/", "-"),
                "name": action.name,
                "parameters": dict(action.parameters),
                # The juju-exec spec is parallel, in no execution group (core/actions).
                "parallel": True,
                "execution-group": "",
            },
            "enqueued": model_mod.format_second(action.enqueued),
            "started": model_mod.format_second(action.started),
            "completed": model_mod.format_second(action.completed),
            "status": action.status,
        }
        if action.message:
            result["message"] = action.message
        if action.results:
            result["output"] = dict(action.results)
        return result

    # -- Action.Cancel ------------------------------------------------------------

    def cancel(self, action_id: str) -> model_mod.ActionRecord:
        """state/action.go Cancel: a pending action is cancelled, a running one aborting.

        Raise KeyError for an unknown id. An aborting action's uniter kills the command
        (worker/uniter/operation/runaction.go Execute closes the cancel channel): it ends
        `aborted` "command cancelled" a step later (runner/context/context.go
        finalizeAction), unless the unit's agent is gone or wedged.
        """
        action = self.state.actions[action_id]
        now = float(int(self.clock.now()))
        if action.status == "pending":
            self._waiting_ids.discard(action_id)
            action = dataclasses.replace(
                action, status="cancelled", message="action cancelled via the API",
                completed=now,
            )  # fmt: skip
            self.state.put_action(action)
        elif action.status == "running":
            action = dataclasses.replace(action, status="aborting")
            self.state.put_action(action)
            if self.modes.get(action.receiver) != "hang":
                self.clock.call_later(self.step_delay, lambda: self._aborted(action_id))
        return action

    def _aborted(self, action_id: str) -> None:
        action = self.state.actions.get(action_id)
        unit = self.state.units.get(action.receiver) if action is not None else None
        if action is None or unit is None or action.status != "aborting":
            return
        if not self._can_run(unit):
            self._interrupted.setdefault(unit.name, set()).add(action_id)
            return
        self._finish(action_id, "aborted", {"return-code": 0}, "command cancelled")

    # -- the unit agent side ------------------------------------------------------

    def _can_run(self, unit: model_mod.Unit) -> bool:
        """Whether the unit's uniter runs and can take an action now."""
        machine = self.state.machines.get(unit.machine_id)
        return (
            unit.life != "dead"
            and bool(unit.machine_id)
            and unit.agent.current != "allocating"
            and not unit.agent_lost
            and not (machine is not None and machine.agent_down)
        )

    def _schedule(self, delay: float, callback: lifecycle_mod.Action) -> None:
        """A chaos timer on the machine (systemd-run): `clear` cancels it."""
        timer = self.clock.call_later(delay, callback)
        self._timers.append(timer)
        self._timers = [t for t in self._timers if not t.cancelled]

    def _pick_up_later(self, action_id: str) -> None:
        # The uniter's action watcher sees the notification and runs it: a step later.
        self.clock.call_later(self.step_delay, lambda: self._pick_up(action_id))

    def _pending_on(self, name: str) -> list[model_mod.ActionRecord]:
        return [
            a for a in self.state.actions.values() if a.receiver == name and a.status == "pending"
        ]

    def _observe(self, kind: str, key: str, change: str, info: dict[str, Any]) -> None:
        # A unit whose uniter just started (its agent left `allocating`) runs what waits.
        if kind != "unit" or change != "change" or info["agent-status"]["current"] == "allocating":
            return
        for action in self._pending_on(key):
            if action.id not in self._waiting_ids:
                continue
            self._waiting_ids.discard(action.id)
            self._pick_up_later(action.id)

    def _agent_back(self, name: str) -> None:
        # worker/uniter/actions/resolver.go: an action that was running when the agent went
        # away is failed ("action terminated", operation/failaction.go); pending ones run.
        for action_id in sorted(self._interrupted.pop(name, set()), key=int):
            action = self.state.actions.get(action_id)
            if action is not None and action.status in ("running", "aborting"):
                self._finish(action_id, "failed", {}, "action terminated")
        for action in self._pending_on(name):
            self._waiting_ids.discard(action.id)
            self._pick_up_later(action.id)

    def _pick_up(self, action_id: str) -> None:
        action = self.state.actions.get(action_id)
        if action is None or action.status != "pending":
            return
        unit = self.state.units.get(action.receiver)
        if unit is None or unit.life == "dead":
            return  # nobody will ever run it (Juju leaves it pending)
        if not self._can_run(unit):
            self._waiting_ids.add(action_id)
            return
        now = self.clock.now()
        running = dataclasses.replace(action, status="running", started=float(int(now)))
        self.state.put_action(running)
        self._before[action_id] = unit.agent
        self.state.put_unit(
            dataclasses.replace(
                unit,
                agent=model_mod.Status(
                    "executing", f"running action {JUJU_EXEC}", now, unit.agent.version
                ),
            )
        )
        command = str(action.parameters.get("command", ""))
        timeout = float(action.parameters.get("timeout") or 0) / 1e9
        mode = self.modes.get(action.receiver, "ok")
        log.info("fake juju: exec action %s running on %s (%s)", action_id, unit.name, mode)
        if mode == "hang":
            return  # a wedged unit agent: not even Juju's own timeout ends it
        if mode == "timeout":
            if timeout > 0:
                # runner.go runCommandsWithTimeout kills the command at the timeout;
                # utils/exec WaitWithCancel returns ErrCancelled: failed, code 0.
                self.clock.call_later(
                    timeout,
                    lambda: self._complete(action_id, "failed", {"return-code": 0},
                                           "command cancelled"),
                )  # fmt: skip
            return
        if mode == "fail":
            results: dict[str, Any] = {"return-code": 1, "stderr": FAIL_STDERR}
        else:
            results = {"return-code": 0}
            self._apply_marker(unit, command, now)
        # utils/exec Wait: a non-zero exit is no error, so the action is completed.
        self.clock.call_later(
            self.step_delay, lambda: self._complete(action_id, "completed", results, "")
        )

    def _complete(
        self, action_id: str, status: str, results: dict[str, Any], message: str
    ) -> None:
        action = self.state.actions.get(action_id)
        if action is None or action.status != "running":
            return
        unit = self.state.units.get(action.receiver)
        if unit is None:
            return
        if not self._can_run(unit):
            # The agent went away while the command ran: it never reports back.
            self._interrupted.setdefault(unit.name, set()).add(action_id)
            return
        self._finish(action_id, status, results, message)

    def _finish(self, action_id: str, status: str, results: dict[str, Any], message: str) -> None:
        action = self.state.actions[action_id]
        now = self.clock.now()
        self.state.put_action(
            dataclasses.replace(
                action, status=status, results=results, message=message,
                completed=float(int(now)),
            )
        )  # fmt: skip
        before = self._before.pop(action_id, None)
        unit = self.state.units.get(action.receiver)
        if unit is not None and before is not None and unit.agent.current == "executing":
            # The uniter is idle again (or back in the state it was in before the action).
            self.state.put_unit(
                dataclasses.replace(
                    unit,
                    agent=model_mod.Status(before.current, before.message, now, before.version),
                )
            )
        log.info("fake juju: exec action %s %s", action_id, status)

    # -- what the scripts do to the machine ---------------------------------------------

    def _apply_marker(self, unit: model_mod.Unit, command: str, now: float) -> None:
        marker = parse_marker(command)
        if marker is None or not unit.machine_id:
            return
        machine_id = unit.machine_id
        chaos = self.chaos.setdefault(machine_id, MachineChaos())
        duration = marker.seconds("duration")
        if marker.kind == "stop-agent":
            if marker.phase == "revert":
                return  # the agent that runs exec is the one stopped: nothing to revert
            target = marker.keys.get("machine", machine_id)
            if target != machine_id or duration is None:
                return  # `systemctl stop jujud-machine-<other>` stops nothing here
            until = now + STOP_AGENT_DELAY + duration
            chaos.agent_stopped_until = until
            chaos.stop_op = marker.op
            self._schedule(STOP_AGENT_DELAY, lambda: self._agent_down(machine_id, True))
            self._schedule(
                STOP_AGENT_DELAY + duration, lambda: self._agent_up(machine_id, marker.op)
            )
        elif marker.kind == "slow-network":
            if marker.phase == "revert":
                if chaos.slow_network is not None and chaos.slow_network["op"] == marker.op:
                    chaos.slow_network = None
                return
            delay_ms = marker.keys.get("delay-ms", "")
            if duration is None or not delay_ms.isdigit():
                return
            chaos.slow_network = {"op": marker.op, "delay-ms": int(delay_ms),
                                  "until": now + duration}  # fmt: skip
            self._schedule(duration, lambda: self._slow_network_over(machine_id, marker.op))
        elif marker.kind == "wrench":
            chaos.wrench = [w for w in chaos.wrench if w["op"] != marker.op]
            if marker.phase == "revert" or duration is None:
                return
            chaos.wrench.append({
                "op": marker.op,
                "category": marker.keys.get("category", ""),
                "feature": marker.keys.get("feature", ""),
                "until": now + duration,
            })  # fmt: skip
            self._schedule(duration, lambda: self._wrench_over(machine_id, marker.op))

    def _agent_down(self, machine_id: str, down: bool) -> None:
        if machine_id in self.state.machines:
            log.info("fake juju: chaos: machine %s agent %s", machine_id,
                     "stopped" if down else "started")  # fmt: skip
            self.lifecycle.set_machine_down(machine_id, down)

    def _agent_up(self, machine_id: str, op: str) -> None:
        chaos = self.chaos.get(machine_id)
        if chaos is None or chaos.stop_op != op:
            return
        chaos.agent_stopped_until = None
        chaos.stop_op = ""
        self._agent_down(machine_id, False)

    def _slow_network_over(self, machine_id: str, op: str) -> None:
        chaos = self.chaos.get(machine_id)
        network = chaos.slow_network if chaos is not None else None
        if chaos is not None and network is not None and network["op"] == op:
            chaos.slow_network = None

    def _wrench_over(self, machine_id: str, op: str) -> None:
        chaos = self.chaos.get(machine_id)
        if chaos is not None:
            chaos.wrench = [w for w in chaos.wrench if w["op"] != op]
