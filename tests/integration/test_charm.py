"""Whirlwind on a real Juju 3.6 controller: deploy, relate, replace, pause, resume, block."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pytest_operator.plugin import OpsTest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROVIDER_DIR = pathlib.Path(__file__).parent / "charms" / "credentials-provider"
LIB = pathlib.Path("lib/charms/whirlwind/v0/controller_credentials.py")
WHIRLWIND = "whirlwind"
PROVIDER = "credentials-provider"
TARGET = "ubuntu"
# The charm's own texts (src/charm.py), so a mismatch shows here and not on a live model.
MISSING_CREDENTIALS = "Missing controller credentials: integrate with a credentials provider"


async def _leader(ops_test: OpsTest) -> Any:
    assert ops_test.model is not None
    for unit in ops_test.model.applications[WHIRLWIND].units:
        if await unit.is_leader_from_status():
            return unit
    raise AssertionError("no whirlwind leader")


async def _run_action(ops_test: OpsTest, name: str, **params: Any) -> dict[str, Any]:
    unit = await _leader(ops_test)
    action = await unit.run_action(name, **params)
    action = await action.wait()
    assert action.status == "completed", action.results
    return action.results


async def _status_message(ops_test: OpsTest) -> str:
    return (await _leader(ops_test)).workload_status_message


def _whirlwind_says(ops_test: OpsTest, check: Callable[[str], bool]) -> bool:
    """Whether a Whirlwind unit's status message passes `check` (for block_until)."""
    assert ops_test.model is not None
    units = ops_test.model.applications[WHIRLWIND].units
    return any(check(unit.workload_status_message) for unit in units)


def _target_units(ops_test: OpsTest) -> set[str]:
    assert ops_test.model is not None
    return {unit.name for unit in ops_test.model.applications[TARGET].units}


async def _controller_credentials(ops_test: OpsTest) -> dict[str, str]:
    """The test controller's own admin credentials (a throwaway test controller)."""
    rc, out, err = await ops_test.juju("show-controller", "--show-password", "--format", "json")
    assert rc == 0, err
    details = next(iter(json.loads(out).values()))
    return {
        "endpoints": ",".join(details["details"]["api-endpoints"]),
        "ca-cert": details["details"]["ca-cert"],
        "username": details["account"]["user"],
        "password": details["account"]["password"],
    }


@pytest.mark.abort_on_fail
async def test_build_deploy_and_relate(ops_test: OpsTest, tmp_path: pathlib.Path) -> None:
    assert ops_test.model is not None
    # Status is collected in hooks: update-status every minute keeps it (and the status log)
    # close to what the agent does.
    await ops_test.model.set_config({"update-status-hook-interval": "1m"})
    provider_src = tmp_path / "credentials-provider"
    shutil.copytree(PROVIDER_DIR, provider_src)
    (provider_src / LIB).parent.mkdir(parents=True)
    shutil.copy(ROOT / LIB, provider_src / LIB)
    whirlwind_charm = await ops_test.build_charm(ROOT)
    provider_charm = await ops_test.build_charm(provider_src)

    await ops_test.model.deploy("ubuntu", application_name=TARGET, num_units=3)
    await ops_test.model.deploy(whirlwind_charm, application_name=WHIRLWIND)
    await ops_test.model.deploy(provider_charm, application_name=PROVIDER)
    await ops_test.model.wait_for_idle(apps=[TARGET], status="active", timeout=1800)
    await ops_test.model.wait_for_idle(apps=[WHIRLWIND], status="blocked", timeout=1200)
    unit = ops_test.model.applications[WHIRLWIND].units[0]
    assert unit.workload_status_message.startswith(MISSING_CREDENTIALS)

    creds = await _controller_credentials(ops_test)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(creds.pop("ca-cert"))
    args = [f"{key}={value}" for key, value in creds.items()] + [f"ca-cert#file={ca_file}"]
    rc, out, err = await ops_test.juju("add-secret", "provider-credentials", *args)
    assert rc == 0, err
    secret_id = out.strip()
    rc, _, err = await ops_test.juju("grant-secret", "provider-credentials", PROVIDER)
    assert rc == 0, err
    await ops_test.model.applications[PROVIDER].set_config({"credentials": secret_id})
    await ops_test.model.applications[WHIRLWIND].set_config(
        {"services": TARGET, "interval": "3600", "settle-period": "30"}
    )
    await ops_test.model.integrate(f"{WHIRLWIND}:controller", f"{PROVIDER}:controller")
    await ops_test.model.wait_for_idle(apps=[WHIRLWIND, PROVIDER], status="active", timeout=1200)


async def test_status_says_what_it_will_do(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    # "Watching ubuntu; every 1h; next ubuntu at 10:04 UTC" once the agent has answered.
    expected = f"Watching {TARGET}; every 1h; next {TARGET} at "
    await ops_test.model.block_until(
        lambda: _whirlwind_says(ops_test, lambda m: m.startswith(expected)), timeout=300
    )


@pytest.mark.abort_on_fail
async def test_replace_now_is_make_before_break(ops_test: OpsTest) -> None:
    before = _target_units(ops_test)

    assert ops_test.model is not None
    results = await _run_action(ops_test, "replace-now", service=TARGET)
    old, new = results["old-unit"], results["new-unit"]
    # The model's view follows the controller's deltas a moment after the action ends.
    await ops_test.model.block_until(lambda: old not in _target_units(ops_test), timeout=300)

    assert results["result"] == "ok"
    assert results["service"] == TARGET
    assert results["trigger"] == "replace-now"
    assert float(results["duration"]) > 0
    assert old in before
    assert new not in before
    after = _target_units(ops_test)
    assert new in after
    assert len(after) == len(before)
    await ops_test.model.block_until(
        lambda: _whirlwind_says(ops_test, lambda m: m.endswith(f"; last {old} -> {new} ok")),
        timeout=300,
    )


async def test_pause_stops_replacements_for_two_intervals(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    app = ops_test.model.applications[WHIRLWIND]
    paused = await _run_action(ops_test, "pause")
    await app.set_config({"interval": "60"})
    before = _target_units(ops_test)
    leader = await _leader(ops_test)
    rc, out, err = await ops_test.juju(
        "run", leader.name, "replace-now", f"service={TARGET}", "--format", "json"
    )
    refused = json.loads(out or "{}").get(leader.name, {})

    await asyncio.sleep(150)  # two intervals on a real controller

    assert (paused["paused"], paused["changed"]) == ("true", "true")
    assert paused["message"].startswith("paused since ")
    assert rc != 0
    assert refused.get("status") == "failed", err
    assert refused.get("message") == "Whirlwind is paused: run the resume action first"
    assert _target_units(ops_test) == before
    assert (await _status_message(ops_test)).startswith("Paused since ")
    await app.set_config({"interval": "3600"})
    resumed = await _run_action(ops_test, "resume")
    assert (resumed["paused"], resumed["changed"], resumed["message"]) == (
        "false",
        "true",
        "resumed",
    )


async def test_invalid_config_blocks(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    app = ops_test.model.applications[WHIRLWIND]
    await app.set_config({"interval": "0"})
    await ops_test.model.wait_for_idle(apps=[WHIRLWIND], status="blocked", timeout=600)
    assert await _status_message(ops_test) == (
        "Invalid config: interval must be greater than 0, got 0"
    )
    await app.set_config({"interval": "3600"})
    await ops_test.model.wait_for_idle(apps=[WHIRLWIND], status="active", timeout=600)


def test_provider_charm_ships_metadata() -> None:
    """The provider test charm's metadata names the same interface as Whirlwind's."""
    ours = yaml.safe_load((ROOT / "metadata.yaml").read_text())
    theirs = yaml.safe_load((PROVIDER_DIR / "metadata.yaml").read_text())
    assert (
        theirs["provides"]["controller"]["interface"]
        == (ours["requires"]["controller"]["interface"])
    )
