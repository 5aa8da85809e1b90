#!/usr/bin/env python3
"""Test charm: publishes controller credentials from its config secret over `controller`."""

from __future__ import annotations

import ops

from charms.whirlwind.v0 import controller_credentials


class CredentialsProviderCharm(ops.CharmBase):
    """Reads the `credentials` user secret and publishes it to every related Whirlwind."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self._provider = controller_credentials.ControllerCredentialsProvider(self, "controller")
        framework.observe(self.on.config_changed, self._on_change)
        framework.observe(self.on.leader_elected, self._on_change)
        framework.observe(self.on.secret_changed, self._on_change)
        framework.observe(self.on.controller_relation_joined, self._on_change)
        framework.observe(self.on.controller_relation_broken, self._on_broken)

    def _on_change(self, _: ops.EventBase) -> None:
        self._publish()

    def _on_broken(self, event: ops.RelationBrokenEvent) -> None:
        if self.unit.is_leader():
            self._provider.unpublish(event.relation)

    def _publish(self) -> None:
        if not self.unit.is_leader():
            self.unit.status = ops.ActiveStatus("standby")
            return
        secret_id = self.config.get("credentials")
        if not secret_id:
            self.unit.status = ops.BlockedStatus("set credentials=secret:...")
            return
        try:
            content = self.model.get_secret(id=str(secret_id)).get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError):
            self.unit.status = ops.BlockedStatus("credentials secret not found or not granted")
            return
        result = controller_credentials.credentials_from_secret_content(content)
        if not isinstance(result, controller_credentials.ControllerCredentials):
            self.unit.status = ops.BlockedStatus(f"credentials: {result.reason}")
            return
        for relation in self.model.relations["controller"]:
            self._provider.publish(
                relation, result.endpoints, result.ca_cert, result.username, result.password
            )
        self.unit.status = ops.ActiveStatus()


if __name__ == "__main__":
    ops.main(CredentialsProviderCharm)
