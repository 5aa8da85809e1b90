"""Logging for the agent: stderr (the journal), optionally a size-rotated file; no secrets."""

from __future__ import annotations

import logging
import logging.handlers
import pathlib
import sys
import time

logger = logging.getLogger(__name__)

# At DEBUG these log every frame sent, the Login password included: libjuju's client
# (connection, connector) and websockets (frames, with WEBSOCKETS_MAX_LOG_SIZE as long as
# one likes). Their records below INFO never reach a handler, whatever levels are set.
SECRET_LOGGERS = ("juju.client", "websockets")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The log file: the journal's line format, with the time in UTC (ISO 8601), as a file has no
# journal metadata. Rotated by size: at most (FILE_BACKUPS + 1) * FILE_MAX_BYTES on disk.
FILE_MAX_BYTES = 10 * 1024 * 1024
FILE_BACKUPS = 3


class _NoSecretDebug(logging.Filter):
    """Drop records below INFO from loggers that would print credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        return not any(
            record.name == name or record.name.startswith(name + ".") for name in SECRET_LOGGERS
        )


class FileFormatter(logging.Formatter):
    """FORMAT with `2026-11-29T12:55:48.123Z` times: UTC, milliseconds, no locale."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__(FORMAT)


_handler: logging.Handler | None = None
_file_handler: logging.handlers.RotatingFileHandler | None = None
_file_path: pathlib.Path | None = None


def setup_logging(level: str, log_file: pathlib.Path | None = None) -> None:
    """Log to stderr at `level`, and to `log_file` too when given.

    Idempotent: a second call changes the level, and opens the file again only if it is
    another one (or was not open). A file that cannot be opened is logged as a warning
    (to stderr) and the agent goes on with stderr alone.
    """
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
    _set_log_file(root, log_file)


def _set_log_file(root: logging.Logger, path: pathlib.Path | None) -> None:
    """Keep, replace or drop the file handler so that it writes to `path` (None: none)."""
    global _file_handler, _file_path
    if _file_handler is not None and path == _file_path:
        return
    _close_file_handler(root)
    if path is None:
        return
    try:
        # Opens the file now (append): a missing folder or a read-only file system raises here.
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=FILE_MAX_BYTES, backupCount=FILE_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        logger.warning(
            "cannot write the log to %s, logging to stderr only: %s", path, exc.strerror or exc
        )
        return
    handler.setFormatter(FileFormatter())
    handler.addFilter(_NoSecretDebug())
    root.addHandler(handler)
    _file_handler, _file_path = handler, path


def _close_file_handler(root: logging.Logger) -> None:
    global _file_handler, _file_path
    if _file_handler is not None:
        root.removeHandler(_file_handler)
        _file_handler.close()
    _file_handler, _file_path = None, None


def teardown_logging() -> None:
    """Remove (and close) the handlers setup_logging added (tests, and a clean exit)."""
    global _handler
    root = logging.getLogger()
    _close_file_handler(root)
    if _handler is not None:
        root.removeHandler(_handler)
        _handler = None
