"""Fixtures of the fake's own tests."""

from tests.fakejuju.fixtures import fake_juju, fake_juju_factory

__all__ = ["fake_juju", "fake_juju_factory"]
