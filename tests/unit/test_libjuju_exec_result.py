"""How a finished `juju exec` action (Action.Actions result) becomes an ExecResult or an error."""

from __future__ import annotations

from typing import Any

import pytest

from whirlwind import backend, libjuju_backend


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            {"status": "completed", "output": {"return-code": 0, "stdout": "ok\n"}},
            backend.ExecResult(0, "ok\n", ""),
        ),
        # A non-zero exit still completes (utils/exec Wait returns no error for it).
        (
            {"status": "completed", "output": {"return-code": 4, "stderr": "exists\n"}},
            backend.ExecResult(4, "", "exists\n"),
        ),
        # No output at all: nothing printed and code 0 (runner.go sets only what is there).
        ({"status": "completed"}, backend.ExecResult(0, "", "")),
        # The uniter's flush failed: the code is the string "1" (context.go Flush).
        (
            {"status": "failed", "output": {"return-code": "1", "stderr": "flush\n"}},
            backend.ExecResult(1, "", "flush\n"),
        ),
        # Output that is not UTF-8 comes base64-encoded (runner.go encodeBytes).
        (
            {
                "status": "completed",
                "output": {"return-code": 0, "stdout": "aGk=", "stdout-encoding": "base64"},
            },
            backend.ExecResult(0, "hi", ""),
        ),
    ],
)
def test_finished_actions_give_results(
    action: dict[str, Any], expected: backend.ExecResult
) -> None:
    assert libjuju_backend.exec_result("app/1", action) == expected


@pytest.mark.parametrize(
    ("action", "message"),
    [
        # Juju's own timeout: cancelled, failed, code 0.
        (
            {"status": "failed", "message": "command cancelled", "output": {"return-code": 0}},
            "exec on app/1: action failed: command cancelled",
        ),
        ({"status": "aborted"}, "exec on app/1: action aborted: no message"),
        (
            {"status": "completed", "output": {"return-code": "x"}},
            "exec on app/1: unexpected return-code 'x'",
        ),
    ],
)
def test_actions_that_did_not_run_to_the_end_are_errors(
    action: dict[str, Any], message: str
) -> None:
    with pytest.raises(backend.BackendError, match=f"^{message}$") as failed:
        libjuju_backend.exec_result("app/1", action)

    assert not failed.value.transient
