"""The real agent process writes its log file (settings `log-file`) as well as stderr."""

from __future__ import annotations

import dataclasses
import pathlib
import signal

from tests.fakejuju import fixtures as fake_fixtures
from tests.functional import agent_harness as harness
from tests.functional import conftest


def _messages(text: str, *, timestamp_words: int) -> list[str]:
    """The lines without their time (stderr: date and time; the file: one ISO word)."""
    return [line.split(" ", timestamp_words)[timestamp_words] for line in text.splitlines()]


async def test_the_agent_logs_to_its_file_and_follows_it_on_reload(
    fake_juju_factory: fake_fixtures.ControllerFactory,
    agent_process_factory: conftest.AgentProcessFactory,
    agent_dir: pathlib.Path,
):
    fake = await fake_juju_factory({"wsgi-example": 2, harness.OWN_APP: 1})
    (agent_dir / "log").mkdir()
    first, second = agent_dir / "log" / "agent.log", agent_dir / "log" / "other.log"
    agent = agent_process_factory(fake, ("wsgi-example",), log_level="DEBUG", log_file=first)
    await agent.start()

    # The charm rewrites the settings and reloads (SIGHUP): the log moves to the new file.
    harness.write_settings(dataclasses.replace(agent.settings, log_file=second), agent_dir)
    assert agent.process is not None
    agent.process.send_signal(signal.SIGHUP)
    await harness.wait_for(second.exists, what="the new log file opened")
    await agent.signal(signal.SIGTERM, timeout=30.0)

    stderr = _messages(agent.log_text(), timestamp_words=2)
    in_first = _messages(first.read_text(), timestamp_words=1)
    in_second = _messages(second.read_text(), timestamp_words=1)
    assert any(m.startswith("INFO whirlwind.cli: whirlwind ") for m in in_first)
    assert any(m.startswith("DEBUG whirlwind.") for m in in_first)  # at the settings' level
    assert in_second[-1] == "INFO whirlwind.cli: whirlwind stopped"
    assert in_first + in_second == stderr  # the same lines as the journal, none lost
    assert fake.password not in first.read_text() + second.read_text()
