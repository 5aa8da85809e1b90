"""Shared pytest configuration for every suite: the fake controller's fixtures."""

from tests.fakejuju.fixtures import fake_juju, fake_juju_factory  # noqa: F401
