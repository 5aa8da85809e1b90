"""What crosses the wire and the logs: the controller's certificate name, no password logged.

Before the fixes: with a CA given, libjuju turned hostname checking off, so a certificate for
any host signed by the configured CA was accepted; and at log level debug, websockets' frame
logging (with a larger WEBSOCKETS_MAX_LOG_SIZE) showed the Login frame with the password.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest
from whirlwind import backend, libjuju_backend


@pytest.mark.parametrize(
    ("names", "accepted"),
    [(("localhost", "juju-apiserver"), True), (("localhost", "evil.example"), False)],
    ids=["juju-apiserver", "other-host"],
)
async def test_the_certificate_must_be_issued_for_juju_apiserver(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_dir: object,
    names: tuple[str, ...],
    accepted: bool,
):
    # Both certificates chain to the configured CA and carry the controller's IP address.
    fake = await fake_juju_factory({"wsgi-example": 1}, cert_names=names)
    juju = libjuju_backend.LibjujuBackend(
        conftest.backend_settings(fake), timings=conftest.FAST_TIMINGS
    )
    await juju.start()
    try:
        synced = await juju.wait_synced(3.0)
        error = juju.last_error
    finally:
        await juju.stop()

    assert synced is accepted
    if not accepted:
        assert isinstance(error, backend.BackendError)
        assert "TLS verification failed" in str(error)
        assert "juju-apiserver" in str(error) or "hostname" in str(error)
        assert not error.transient  # retrying soon cannot fix a wrong certificate
        assert fake.calls == []  # not even Login was sent


async def test_a_debug_log_of_a_whole_run_never_shows_the_password(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
    monkeypatch: pytest.MonkeyPatch,
):
    # Frames logged in full if any frame logger were on: the password would be in there.
    monkeypatch.setenv("WEBSOCKETS_MAX_LOG_SIZE", "1000000")
    fake = await fake_juju_factory({"wsgi-example": 2, harness.OWN_APP: 1})
    agent = agent_process_factory(fake, ("wsgi-example",), log_level="DEBUG")
    await agent.start()
    pump = harness.ClockPump(fake)
    async with pump.running():
        code, replaced, _ = await agent.ctl("replace-now", "wsgi-example")
        await fake.drop_connections("abrupt")  # a second Login frame
        await harness.wait_for(
            lambda: len(fake.calls_to("Admin", "Login")) >= 2, what="logged in again"
        )
    # Right after an abrupt drop, stopping may take a while on a busy machine (closing the
    # dropped connection is bounded by close_timeout, the backend by stop_timeout).
    await agent.signal(15, timeout=30.0)
    await asyncio.sleep(0)
    log = agent.log_text()

    assert code == 0
    assert replaced["result"] == "ok"
    assert " DEBUG whirlwind." in log  # debug logging really was on
    assert fake.password not in log
