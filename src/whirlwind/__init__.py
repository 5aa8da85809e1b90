"""Whirlwind: a proactive change agent for Juju that keeps replacing units, make-before-break."""

__version__ = "0.1.0"
