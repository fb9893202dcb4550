"""The ``accelerate launch`` command line of the tests that run two CPU processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

__all__ = ["TWO_CPU_PROCESSES", "launcher"]

LAUNCHER = Path(sys.executable).parent / "accelerate"
# after ``accelerate``: two processes on one machine, no mixed precision, no compiler
TWO_CPU_PROCESSES = [
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def launcher() -> str:
    """The ``accelerate`` script next to this interpreter (the test is skipped without it)."""
    if not LAUNCHER.is_file():
        pytest.skip(f"accelerate launcher not found next to {sys.executable}")
    return str(LAUNCHER)
