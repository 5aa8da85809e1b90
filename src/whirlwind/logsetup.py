"""Logging for the agent: one stderr handler; loggers that could print the password kept quiet."""

from __future__ import annotations

import logging
import sys

# At DEBUG these log every frame sent, the Login password included: libjuju's client
# (connection, connector) and websockets (frames, with WEBSOCKETS_MAX_LOG_SIZE as long as
# one likes). Their records below INFO never reach the handler, whatever levels are set.
SECRET_LOGGERS = ("juju.client", "websockets")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _NoSecretDebug(logging.Filter):
    """Drop records below INFO from loggers that would print credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        return not any(
            record.name == name or record.name.startswith(name + ".") for name in SECRET_LOGGERS
        )


_handler: logging.Handler | None = None


def setup_logging(level: str) -> None:
    """Log to stderr at `level` (idempotent: a second call only changes the level)."""
    global _handler
    root = logging.getLogger()
    if _handler is None:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter(FORMAT))
        _handler.addFilter(_NoSecretDebug())
        root.addHandler(_handler)
    root.setLevel(level)
    for name in SECRET_LOGGERS:
        secret = logging.getLogger(name)
        if secret.getEffectiveLevel() < logging.INFO:
            secret.setLevel(logging.INFO)


def teardown_logging() -> None:
    """Remove the handler setup_logging added (tests, and a clean exit)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
