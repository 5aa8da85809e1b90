"""Fixtures for the charm's unit tests: a fake workload, a fake control client, a Context."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest
from ops import testing

import charm
import workload
from tests import certs
from whirlwind import control, settings

CA_CERT = certs.CA_CERT
OTHER_CA_CERT = certs.OTHER_CA_CERT
PASSWORD = "s3cret-Pa55word-never-shown"
MODEL_UUID = "4f0c8a52-1c9e-4f6b-8a2e-0d5c7e9b1a23"


@dataclasses.dataclass
class FakeWorkload:
    """Records what the charm asks of the machine; nothing touches the real system."""

    running: bool = False
    installed: bool = False
    agent_info: workload.AgentControllerInfo | None = dataclasses.field(
        default_factory=lambda: workload.AgentControllerInfo(("10.0.0.1:17070",), CA_CERT)
    )
    changed: workload.Changed = dataclasses.field(
        default_factory=lambda: workload.Changed(unit_file=True, settings=True)
    )
    start_error: str | None = None
    settings: settings.AgentSettings | None = None
    credentials_present: bool = False
    calls: list[str] = dataclasses.field(default_factory=list)
    restarts: list[bool] = dataclasses.field(default_factory=list)

    def configure(self, agent_settings: settings.AgentSettings) -> workload.Changed:
        self.calls.append("configure")
        self.installed = True
        self.settings = agent_settings
        self.credentials_present = True
        return self.changed

    def ensure_running(
        self, changed: workload.Changed, restart: bool = False
    ) -> workload.StartResult:
        self.calls.append("ensure_running")
        self.restarts.append(restart)
        if self.start_error is not None:
            raise workload.WorkloadError(self.start_error)
        if not self.running:
            self.running = True
            return workload.StartResult.STARTED
        if restart or changed.unit_file:
            return workload.StartResult.RESTARTED
        if changed.settings:
            return workload.StartResult.RELOADED
        return workload.StartResult.UNCHANGED

    def is_running(self) -> bool:
        return self.running

    def stop_and_disable(self) -> bool:
        self.calls.append("stop_and_disable")
        was_running, self.running = self.running, False
        return was_running

    def remove_credentials(self) -> bool:
        self.calls.append("remove_credentials")
        was_present, self.credentials_present = self.credentials_present, False
        self.settings = None
        return was_present

    def remove(self) -> None:
        self.calls.append("remove")
        self.running = False
        self.installed = False
        self.settings = None
        self.credentials_present = False

    def read_agent_controller_info(self) -> workload.AgentControllerInfo | None:
        return self.agent_info


@dataclasses.dataclass
class FakeControlClient:
    """Answers like the agent's control socket; an exception in `errors` is raised instead."""

    status_reply: dict[str, Any] = dataclasses.field(default_factory=dict)
    replace_reply: dict[str, Any] = dataclasses.field(default_factory=dict)
    history_reply: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    plan_reply: dict[str, Any] = dataclasses.field(default_factory=dict)
    paused: bool = False
    errors: dict[str, Exception] = dataclasses.field(default_factory=dict)
    calls: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    timeouts: list[float | None] = dataclasses.field(default_factory=list)

    def _maybe_raise(self, command: str) -> None:
        if command in self.errors:
            raise self.errors[command]

    def status(self) -> dict[str, Any]:
        self.calls.append(("status", None))
        self._maybe_raise("status")
        return self.status_reply

    def plan(self) -> dict[str, Any]:
        self.calls.append(("plan", None))
        self._maybe_raise("plan")
        return self.plan_reply

    def pause(self, duration: int | None = None, reason: str = "") -> dict[str, Any]:
        self.calls.append(("pause", (duration, reason) if duration or reason else None))
        self._maybe_raise("pause")
        changed, self.paused = not self.paused, True
        return {"paused": True, "changed": changed, "paused-since": "2026-11-22T10:00:00+00:00"}

    def resume(self) -> dict[str, Any]:
        self.calls.append(("resume", None))
        self._maybe_raise("resume")
        changed, self.paused = self.paused, False
        return {"paused": False, "changed": changed, "paused-since": None}

    armed: bool = False

    def arm_chaos(
        self, duration: int, confirm: str, dry_run: bool = False, by: str = ""
    ) -> dict[str, Any]:
        self.calls.append(("arm-chaos", (duration, confirm, dry_run, by)))
        self._maybe_raise("arm-chaos")
        self.armed = True
        return {"chaos-armed": True, "changed": True}

    def disarm_chaos(self) -> dict[str, Any]:
        self.calls.append(("disarm-chaos", None))
        self._maybe_raise("disarm-chaos")
        changed, self.armed = self.armed, False
        return {"chaos-armed": False, "changed": changed}

    def replace_now(
        self, request: control.ReplaceNowRequest, timeout: float | None = None
    ) -> dict[str, Any]:
        self.calls.append(("replace-now", request))
        self.timeouts.append(timeout)
        self._maybe_raise("replace-now")
        return self.replace_reply

    def history(
        self, limit: int = 20, *, service: str | None = None, op_id: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("history", {"limit": limit, "service": service, "id": op_id}))
        self._maybe_raise("history")
        return self.history_reply


def agent_status(**overrides: Any) -> dict[str, Any]:
    """A healthy agent status reply, with overrides (kebab-case keys)."""
    reply: dict[str, Any] = {
        "version": "0.1.0",
        "connected": True,
        "paused": False,
        "paused-since": None,
        "dry-run": False,
        "services": ["wsgi-example"],
        "unknown-services": [],
        "blocked-services": {},
        "interval": 600,
        "next-due": None,
        "next-service": None,
        "in-flight": None,
        "last": None,
    }
    reply.update(overrides)
    return reply


@pytest.fixture
def fake_workload(monkeypatch: pytest.MonkeyPatch) -> FakeWorkload:
    fake = FakeWorkload()
    monkeypatch.setattr(charm.WhirlwindCharm, "_get_workload", lambda self: fake)
    return fake


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> FakeControlClient:
    fake = FakeControlClient(status_reply=agent_status())

    def factory(self: charm.WhirlwindCharm, timeout: float) -> FakeControlClient:
        fake.timeouts.append(timeout)
        return fake

    monkeypatch.setattr(charm.WhirlwindCharm, "_get_control_client", factory)
    return fake


@pytest.fixture
def ctx(fake_workload: FakeWorkload, fake_client: FakeControlClient) -> testing.Context:
    return testing.Context(charm.WhirlwindCharm)


@pytest.fixture
def no_real_systemctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything reaches the real systemctl."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"real systemctl called: {args}")

    monkeypatch.setattr("charmlibs.systemd._systemd._systemctl", refuse)


def credentials_secret(**content: str) -> testing.Secret:
    """A user secret as the operator would create it (owned by the model, granted to us)."""
    fields = {"username": "whirlwind", "password": PASSWORD}
    fields.update(content)
    return testing.Secret(tracked_content={k: v for k, v in fields.items() if v is not None})


def provider_relation(secret: testing.Secret | None = None, **fields: str) -> testing.Relation:
    """The `controller` relation with a provider's app databag (secret-id from `secret`)."""
    data = {"username": "whirlwind", "endpoints": "10.1.1.1:17070", "ca-cert": OTHER_CA_CERT}
    if secret is not None:
        data["secret-id"] = secret.id
    data.update(fields)
    return testing.Relation(
        "controller",
        remote_app_name="credentials-provider",
        remote_app_data={k: v for k, v in data.items() if v},
    )


def peer_relation(**app_data: str) -> testing.PeerRelation:
    """The peer relation with the given app databag."""
    return testing.PeerRelation("whirlwind-peers", local_app_data=app_data)


def leader_state(**kwargs: Any) -> testing.State:
    """A leader with the config secret set and a peer relation, unless overridden."""
    secret = kwargs.pop("secret", None) or credentials_secret()
    config = {"services": "wsgi-example", "credentials": secret.id}
    config.update(kwargs.pop("config", {}))
    relations = kwargs.pop("relations", [peer_relation()])
    return testing.State(
        leader=kwargs.pop("leader", True),
        config={k: v for k, v in config.items() if v is not None},
        secrets=[secret, *kwargs.pop("secrets", [])],
        relations=relations,
        model=testing.Model(uuid=MODEL_UUID),
        **kwargs,
    )


def tmp_paths(tmp_path: pathlib.Path) -> workload.WorkloadPaths:
    """Workload paths inside a temporary folder."""
    return workload.WorkloadPaths(
        etc_dir=tmp_path / "etc" / "whirlwind",
        lib_dir=tmp_path / "var" / "lib" / "whirlwind",
        unit_dir=tmp_path / "etc" / "systemd" / "system",
        agents_dir=tmp_path / "var" / "lib" / "juju" / "agents",
        control_socket=tmp_path / "run" / "whirlwind" / "control.sock",
    )
