"""Shared pytest configuration for every suite: the fake controller's fixtures."""

from tests.fakejuju.fixtures import (  # noqa: F401
    fake_juju,
    fake_juju_factory,
    libjuju_model_closes_transports,
)

# The integration suite has its own environment (pytest-operator): `python3 dev.py integration`.
collect_ignore = ["integration"]
