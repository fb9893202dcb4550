"""Runs ``seqdeca-video2mesh`` (:mod:`seqdeca.commands.video2mesh`) from a checkout, same options.

python tools/video2mesh.py --help
"""

from __future__ import annotations

import sys

from seqdeca.commands.video2mesh import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
