"""The Juju wrench points Whirlwind offers, with where Juju checks them and what they do (pure).

`wrench.IsActive(category, feature)` (juju/wrench/wrench.go) reads
`/var/lib/juju/wrench/<category>` on the machine where the checking agent runs, one feature
per line (compared trimmed), and ignores the directory or the file unless it is owned by the
agent's user (root) and the file is not writable by group or others. A wrench file only
acts on the agents of the machine it is written on, so Whirlwind offers only points checked
by the unit's own machine agent (in Juju 3.x unit agents run inside it), and only points
verified in Juju's 3.6 source: every `wrench.IsActive(` call outside tests was listed with
`git grep -n "wrench.IsActive(" 3.6 -- ':!*_test.go'` in a mirror of the 3.6 branch
(3.6-beta2, wallyworld/juju 87e38e5); /tmp/juju's partial 3.6 tree has the same uniter
resolver, charmrevision and txnwatcher calls and lacks the other directories.

Not offered (see NOT_OFFERED for each point and why):

- `hooks` / `<charm>-<hook>-error` (worker/uniter/resolver.go, `uniterResolver.NextOp`, at
  the commit step of a hook that ran) is only checked when the uniter's logger
  (`juju.worker.uniter`, the logger the deployer gives the uniter: worker/deployer/
  unit_manifolds.go) logs at TRACE. The level comes from the model's `logging-config`
  (model config: a model-wide change, every agent of the model logs that module at TRACE
  and ships it to the controller, and undoing it would overwrite any change the operator
  made meanwhile) or from `LOGGING_OVERRIDE` in the unit agent's agent.conf
  (cmd/jujud/agent/agentconf/agentconf.go `SetupAgentLogging`, read when the agent
  starts, so it needs an agent restart both ways). Neither can be set for a duration and
  undone safely, so the point is left out.
- `provisioner` / `stop-instances` (worker/provisioner/provisioner_task.go,
  `provisionerTask.stopInstances`): checked by the environ provisioner, which runs in the
  controller's model workers for top-level machines, and by a host's container provisioner
  for its containers only: a file on the unit's machine never acts on that machine.
- Controller-only points (`charmrevision`, `txnwatcher`, `state-worker`, `migrationmaster`,
  `upgrade-database`, `environupgrader`), upgrade-only points (worker/upgradesteps,
  category `<kind>-agent`: they break upgrades), points without a failure
  (`metricscollector` / `short-interval`, `instance-mutater` / `disable-apply-lxdprofile`)
  and points for Kubernetes (`remote-init`, `exec`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Point:
    """A wrench point: its category (file) and feature (line), where Juju checks it, its effect."""

    category: str
    feature: str
    where: str
    effect: str

    @property
    def text(self) -> str:
        """`category/feature`, the form the `chaos` policy's `wrench` key takes."""
        return f"{self.category}/{self.feature}"


_STORAGE = (
    "Only for storage the machine agent's own storage provisioner handles (machine-scoped, "
    "such as loop, rootfs and tmpfs; cmd/jujud/agent/machine/manifolds.go "
    "storageprovisioner.MachineManifold); model-scoped storage such as cloud volumes is the "
    "controller's. The operation is rescheduled and retried, so it completes once the file "
    "is gone: while it is there, removing a unit with such storage can stay stuck "
    "(Whirlwind's remove-timeout is what it tests)."
)

POINTS: tuple[Point, ...] = (
    Point(
        "hostkeyreporter",
        "delay",
        "worker/hostkeyreporter/worker.go, hostkeyreporter.run (machine agent)",
        "When the machine agent starts, it waits a minute (time.Sleep) before reporting the "
        "machine's SSH host keys to the controller. Only acts if the machine "
        "agent (re)starts while the file is there; the worker uninstalls itself once the "
        "keys are reported.",
    ),
    Point(
        "storageprovisioner",
        "DetachFilesystem",
        "worker/storageprovisioner/filesystem_ops.go, detachFilesystems (machine agent)",
        "Detaching a filesystem from the machine fails ('wrench active'; status detaching). "
        + _STORAGE,
    ),
    Point(
        "storageprovisioner",
        "RemoveFilesystem",
        "worker/storageprovisioner/filesystem_ops.go, removeFilesystems (machine agent)",
        "Destroying or releasing a filesystem fails ('wrench active'). " + _STORAGE,
    ),
    Point(
        "storageprovisioner",
        "DetachVolume",
        "worker/storageprovisioner/volume_ops.go, detachVolumes, and volume_events.go, "
        "processDyingVolumePlans (machine agent)",
        "Detaching a volume (or removing its attachment plan) fails ('wrench active'). "
        + _STORAGE,
    ),
    Point(
        "storageprovisioner",
        "RemoveVolume",
        "worker/storageprovisioner/volume_ops.go, removeVolumes (machine agent)",
        "Destroying or releasing a volume fails ('wrench active'). " + _STORAGE,
    ),
)

# Points that exist in Juju 3.6 but are not offered, and why (the module docstring explains).
NOT_OFFERED: dict[str, str] = {
    "hooks/<charm>-<hook>-error": "needs TRACE logging for juju.worker.uniter: model-wide "
    "logging-config or an agent restart, neither undone safely",
    "provisioner/stop-instances": "checked on the controller (and by a host for its "
    "containers), never on the unit's machine",
    "charmrevision/shortinterval": "controller (cmd/jujud/agent/machine.go)",
    "txnwatcher/sync-error": "controller (state/watcher/txnwatcher.go)",
    "state-worker/io-timeout": "controller (worker/state/worker.go)",
    "migrationmaster/die-in-export": "controller (worker/migrationmaster/worker.go)",
    "upgrade-database/watch-upgrade": "controller (worker/upgradedatabase/worker.go)",
    "environupgrader/fail-all": "controller (worker/environupgrader/worker.go)",
    "machine-agent/fail-upgrade": "upgradesteps: only during upgrades, which it breaks",
    "metricscollector/short-interval": "no failure (a shorter metrics interval)",
    "instance-mutater/disable-apply-lxdprofile": "no failure of the unit (LXD profiles)",
    "remote-init/fatal-error": "Kubernetes (worker/caasoperator)",
    "exec/retryable-error": "Kubernetes (worker/caasoperator)",
}


def get_point(text: str) -> Point | None:
    """The offered point written `category/feature` (None: not offered)."""
    return next((p for p in POINTS if p.text == text.strip()), None)


def describe_points() -> str:
    """The offered points as `a/b, c/d` (for error messages)."""
    return ", ".join(p.text for p in POINTS)
