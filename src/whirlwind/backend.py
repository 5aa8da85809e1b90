"""JujuBackend: the handful of verbs the engine needs from a Juju controller."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from whirlwind import model as model_view


class BackendError(Exception):
    """A controller call failed; `transient` says whether trying again later may work."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class NotConnectedError(BackendError):
    """No controller connection right now (the supervisor is reconnecting)."""

    def __init__(self, message: str = "not connected to the controller") -> None:
        super().__init__(message, transient=True)


class NotFoundError(BackendError):
    """The entity does not exist (any more)."""


class LoginError(BackendError):
    """The controller refused our credentials: not transient, the operator must fix them."""


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """What a command run on a unit's machine returned (`juju exec`): exit code and output."""

    code: int
    stdout: str
    stderr: str


class JujuBackend(Protocol):
    """A live connection to one model, kept current in `model`, with the verbs that change it.

    Implementations keep reconnecting on their own after `start()`; calls made while
    disconnected raise NotConnectedError. Every call has a deadline.
    """

    @property
    def model(self) -> model_view.ModelView:
        """The current view of the model (watcher deltas + status polls)."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the controller connection is up and the view is in sync."""
        ...

    async def start(self) -> None:
        """Start connecting, watching and polling in the background."""
        ...

    async def stop(self) -> None:
        """Stop everything and close the connection."""
        ...

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until connected with a fresh snapshot; return whether that happened in time."""
        ...

    async def add_unit(self, application: str) -> str:
        """Add one unit to `application`; return its name (it is only allocating then)."""
        ...

    async def destroy_unit(
        self, unit: str, *, force: bool = False, max_wait: float | None = None
    ) -> None:
        """Ask Juju to remove `unit`; returns at once, the removal shows in `model` later."""
        ...

    async def destroy_machine(self, machine_id: str, *, force: bool = False) -> None:
        """Ask Juju to remove machine `machine_id` (refused if it still hosts units)."""
        ...

    async def set_unit_annotations(self, unit: str, annotations: Mapping[str, str]) -> None:
        """Set annotations on `unit` (keys like whirlwind/born)."""
        ...

    async def refresh_status(self) -> None:
        """Poll full status now, so lost unit and down machine agents are current in `model`."""
        ...

    async def run_on_unit(self, unit: str, command: str, *, timeout: float) -> ExecResult:
        """Run `command` (bash, as root) on `unit`'s machine as `juju exec` does.

        Waits for the result at most `timeout` seconds: BackendError(transient=True) after
        that (the command may still run on the machine later).
        """
        ...
