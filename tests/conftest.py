"""Shared pytest configuration for every suite: the fake controller's fixtures."""

from __future__ import annotations

import sys

import pytest

from tests.fakejuju.fixtures import (  # noqa: F401
    fake_juju,
    fake_juju_factory,
    libjuju_model_closes_transports,
)

# The integration suite has its own environment (pytest-operator): `python3 dev.py integration`.
collect_ignore = ["integration"]


def pytest_configure(config: pytest.Config) -> None:
    """On Python 3.10, ignore the ResourceWarning of a TLS transport the peer closed.

    Python 3.10's asyncio sslproto leaves a TLS transport "unclosed" when the peer
    closed it after the handshake (`SSLProtocol.connection_lost` marks the app transport
    closed only during a handshake; the sslproto of 3.11 marks it at every shutdown), so the
    garbage collector warns about a connection that is in fact gone. Seen on the fake's
    connections under load; warnings are errors here, so that one is ignored on 3.10.
    """
    if sys.version_info < (3, 11):
        config.addinivalue_line(
            "filterwarnings",
            "ignore:unclosed transport <asyncio.sslproto._SSLProtocolTransport:ResourceWarning",
        )
