"""Whirlwind on a real Juju 3.6 controller: deploy, relate, replace, pause, resume, block."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
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
    assert "credentials" in unit.workload_status_message

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
    unit = await _leader(ops_test)
    assert unit.workload_status_message.startswith(f"watching {TARGET}; every 1h")


@pytest.mark.abort_on_fail
async def test_replace_now_is_make_before_break(ops_test: OpsTest) -> None:
    before = _target_units(ops_test)

    results = await _run_action(ops_test, "replace-now", service=TARGET)

    assert results["result"] == "ok"
    assert results["old-unit"] in before
    assert results["new-unit"] not in before
    after = _target_units(ops_test)
    assert results["old-unit"] not in after
    assert results["new-unit"] in after
    assert len(after) == len(before)


async def test_pause_stops_replacements_for_two_intervals(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    results = await _run_action(ops_test, "pause")
    assert results["paused"] == "True" or results["paused"] is True
    await ops_test.model.applications[WHIRLWIND].set_config({"interval": "60"})
    before = _target_units(ops_test)

    await asyncio.sleep(150)

    assert _target_units(ops_test) == before
    unit = await _leader(ops_test)
    assert unit.workload_status_message.startswith("Paused")
    await _run_action(ops_test, "resume")
    await ops_test.model.applications[WHIRLWIND].set_config({"interval": "3600"})


async def test_invalid_config_blocks(ops_test: OpsTest) -> None:
    assert ops_test.model is not None
    app = ops_test.model.applications[WHIRLWIND]
    await app.set_config({"interval": "0"})
    await ops_test.model.wait_for_idle(apps=[WHIRLWIND], status="blocked", timeout=600)
    unit = await _leader(ops_test)
    assert "interval" in unit.workload_status_message
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
