"""Benchmarks: the Whirlwind agent side by side with a naive libjuju baseline (see README.md)."""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# `python -m bench` runs from the repository root: the agent's package lives in src/.
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
