"""Juju's error answers mapped to the agent's error types (libjuju_backend.classify_error)."""

from __future__ import annotations

import pytest

from whirlwind import backend, libjuju_backend

NOT_YET = "not yet available; try again later"


@pytest.mark.parametrize(
    ("message", "code", "kind", "transient"),
    [
        # Codes Juju really sends for "try again later" (rpc/params/apierror.go).
        ("state changing too quickly; try again soon", "excessive contention", "error", True),
        ("upgrade in progress", "upgrade in progress", "error", True),
        ("deadline exceeded", "deadline exceeded", "error", True),
        (NOT_YET, NOT_YET, "error", True),
        ("try again", "try again", "error", True),
        # rpc.ErrShutdown: a call that reaches a closing connection, no code at all.
        ("connection is shut down", None, "error", True),
        ("connection is shut down", "", "error", True),
        # Codes Juju never sends to clients are no reason for anything.
        ("retry", "retry", "error", False),
        ("lease error", "lease error", "error", False),
        ("boom", None, "error", False),
        # Not found, with a code or (DestroyUnit) as a plain error without one.
        ('unit "app/9" not found', "not found", "not-found", False),
        ('unit "app/9" does not exist', None, "not-found", False),
        ('unit "app/9" does not exist', "", "not-found", False),
        # Annotations.Set on a missing unit: permission denied, not "not found".
        (
            'while setting annotations to "unit-app-9": permission denied',
            "unauthorized access",
            "error",
            False,
        ),
    ],
)  # fmt: skip
def test_juju_errors_are_classified(
    message: str, code: str | None, kind: str, transient: bool
) -> None:
    error = libjuju_backend.classify_error("Facade.Call", message, code)

    assert isinstance(error, backend.NotFoundError) is (kind == "not-found")
    assert error.transient is transient
    assert str(error).startswith(f"Facade.Call: {message}")
