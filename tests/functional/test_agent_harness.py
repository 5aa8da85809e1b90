"""The invariant checker itself: it must notice what the agent's tests rely on it to notice."""

from __future__ import annotations

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness

APP = "wsgi-example"


async def test_checker_sees_a_healthy_unit_go_before_its_replacement(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    fake = await fake_juju_factory({APP: 3})
    checker = harness.InvariantChecker(fake, [APP])

    fake.lifecycle.destroy_unit(f"{APP}/1", force=False, max_wait=None)  # break before make
    (new,) = fake.lifecycle.add_units(APP, 1)
    await fake.run_until_settled()

    assert checker.lowest == {APP: 2}
    assert checker.violations[0].application == APP
    assert checker.violations[0].units[f"{APP}/1"].startswith("dying")
    with pytest.raises(AssertionError, match="healthy count dropped"):
        checker.assert_healthy_never_dropped()
    history = [{"service": APP, "old-unit": f"{APP}/1", "new-unit": new, "result": "ok"}]
    with pytest.raises(AssertionError):
        checker.assert_final(history)


async def test_checker_sees_a_lost_agent_without_a_delta(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    fake = await fake_juju_factory({APP: 2})
    checker = harness.InvariantChecker(fake, [APP])

    fake.lose_unit(f"{APP}/0")
    checker.sample()

    assert checker.lowest == {APP: 1}


async def test_final_check_finds_leaked_units_and_untold_history(
    fake_juju_factory: fake_fixtures.ControllerFactory,
):
    fake = await fake_juju_factory({APP: 2})
    checker = harness.InvariantChecker(fake, [APP])
    (leaked,) = fake.lifecycle.add_units(APP, 1)
    await fake.run_until_settled()

    checker.assert_healthy_never_dropped()  # more healthy units is fine...
    with pytest.raises(AssertionError):
        checker.assert_final([])  # ...but a unit nobody accounts for is a leak
    rolled_back = [{"service": APP, "old-unit": f"{APP}/0", "new-unit": leaked}]
    with pytest.raises(AssertionError):
        checker.assert_final([{**rolled_back[0], "result": "rolled-back"}])
