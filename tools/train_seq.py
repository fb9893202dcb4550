"""Runs ``seqdeca-train`` (:mod:`seqdeca.commands.train`) from a checkout, same options.

python tools/train_seq.py --help
accelerate launch ... tools/train_seq.py ...   (or ... -m seqdeca.commands.train ...)
"""

from __future__ import annotations

import sys

from seqdeca.commands.train import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
