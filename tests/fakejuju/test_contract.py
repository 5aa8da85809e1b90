"""The contract checker itself: it must catch what would break libjuju."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys

import pytest

from tests.fakejuju import contract, helpers, server


def test_method_spec_reads_generated_client():
    spec = contract.method_spec("Application", 20, "AddUnits")

    assert spec is not None
    assert spec.result == "AddApplicationUnitsResults"
    assert set(spec.params) == {
        "application", "attach-storage", "num-units", "placement", "policy",
    }  # fmt: skip


def test_valid_response_passes():
    assert contract.check_response("Application", 20, "AddUnits", {"units": ["a/1"]}) == []


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ({"units": ["a/1"], "extra": 1}, "unknown field 'extra'"),
        ({}, "missing field 'units'"),
        ({"units": "a/1"}, "expected a list"),
        ({"units": [1]}, "expected str"),
    ],
)
def test_bad_response_is_caught(response: dict, problem: str):
    errors = contract.check_response("Application", 20, "AddUnits", response)

    assert any(problem in e for e in errors), errors


def test_nested_types_are_checked():
    status = {"results": [{"history": {"statuses": [{"status": "active", "bogus": 1}]}}]}

    errors = contract.check_response("Client", 8, "StatusHistory", status)

    assert any("unknown field 'bogus' for DetailedStatus" in e for e in errors), errors


def test_bad_request_is_caught():
    errors = contract.check_request("Application", 20, "DestroyUnit", {"units": [{"tag": "x"}]})

    assert any("unknown field 'tag' for DestroyUnitParams" in e for e in errors), errors


def test_bad_delta_is_caught():
    errors: list[str] = []

    contract.check_delta(["unit", "change", {"name": "a/1"}], "delta", errors)
    contract.check_delta(["gadget", "change", {}], "delta", errors)

    assert any("missing unit delta field 'agent-status'" in e for e in errors), errors
    assert any("unexpected delta kind 'gadget'" in e for e in errors), errors


def test_error_envelope_needs_response_key_and_no_empty_code():
    errors = contract.check_error_envelope({"request-id": 1, "error": "x", "error-code": ""})

    assert errors == [
        "error envelope: missing 'response'",
        "error envelope: 'error-code' is left out when there is no code",
    ]
    assert contract.check_error_envelope({"request-id": 1, "error": "x", "response": {}}) == []


async def test_fixture_records_violations_and_raises(fake_juju: server.FakeJujuController):
    conn = await helpers.connect(fake_juju)
    await conn.rpc({"type": "Application", "request": "AddUnits", "version": 20,
                    "params": {"application": "wsgi-example", "num-units": 1,
                               "surprise": True}})  # fmt: skip
    await asyncio.wait_for(conn.close(), 5)

    assert any("surprise" in v for v in fake_juju.contract_violations)
    with pytest.raises(contract.ContractViolationError):
        fake_juju.raise_contract_violations()
    fake_juju.contract_violations.clear()  # this test made the violation on purpose


def test_checker_uses_libjujus_patched_types_even_in_a_fresh_process():
    # The CLI fake imports nothing else of libjuju: the checker itself must apply libjuju's
    # overrides, or a real watcher delta (with booleans in it) fails the generated Delta type.
    code = (
        "from tests.fakejuju import contract\n"
        "delta = ['unit', 'change', {'name': 'a/1', 'subordinate': False}]\n"
        "print(contract.check_response('AllWatcher', 3, 'Next', {'deltas': [delta]}))\n"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}

    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip

    assert "missing unit delta field 'agent-status'" in result.stdout
    assert "from_json failed" not in result.stdout
