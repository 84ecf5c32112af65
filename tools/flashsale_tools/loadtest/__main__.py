"""`python -m flashsale_tools.loadtest`: the same as `flashsale loadtest`."""

from __future__ import annotations

import sys

from flashsale_tools.loadtest import cli

if __name__ == "__main__":
    sys.exit(cli.main())
