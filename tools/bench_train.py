"""Runs ``benchmarks/bench_train.py`` under its earlier name, with the same options."""

from __future__ import annotations

import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"

if __name__ == "__main__":
    runpy.run_path(str(SCRIPT), run_name="__main__")
