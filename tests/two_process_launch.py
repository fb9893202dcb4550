"""The ``accelerate launch`` command line of the tests that run two CPU processes."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["LAUNCHER", "TWO_CPU_PROCESSES"]

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
