"""Protocol-level fake Juju 3.6 controller for tests (see README.md)."""
