"""`python -m whirlwind`: run the agent or talk to it."""

from __future__ import annotations

import sys

from whirlwind import cli

if __name__ == "__main__":
    sys.exit(cli.main())
