"""Runs ``seqdeca-evaluate`` (:mod:`seqdeca.commands.evaluate`) from a checkout, same options.

python tools/evaluate.py --help
"""

from __future__ import annotations

import sys

from seqdeca.commands.evaluate import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
