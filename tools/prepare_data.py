"""Runs ``seqdeca-prepare`` (:mod:`seqdeca.commands.prepare`) from a checkout, same options.

python tools/prepare_data.py --help
"""

from __future__ import annotations

import sys

from seqdeca.commands.prepare import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
