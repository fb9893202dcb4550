"""experiments/fit_appearance.py end to end on one short demo clip (a subprocess, as users run
it; leave-one-out needs several subjects and is left out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from seqdeca.inference.demo import make_demo_clip

ROOT = Path(__file__).resolve().parents[1]


def test_fit_appearance_table_on_a_demo_clip(tmp_path):
    make_demo_clip(tmp_path / "clips" / "astro.mp4", frames=8, size=256)
    out = tmp_path / "out"
    cmd = [sys.executable, "experiments/fit_appearance.py", str(out), "--clips",
           str(tmp_path / "clips"), "--no-leave-one-out", "inference.fit.iterations=3"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("command: python experiments/fit_appearance.py")
    rows = json.loads((out / "results.json").read_text())["in sample"]
    assert list(rows) == ["mean", "model", "extract, odd frames"]
    for name, metrics in rows.items():
        assert np.isfinite(metrics["psnr"]) and metrics["frames"] > 0, name
    assert rows["model"]["psnr"] > rows["mean"]["psnr"]  # estimated appearance beats the fixed
    assert "| `extract, odd frames`, in sample |" in (out / "results.md").read_text()
    # a second run reuses every evaluation
    again = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert (
        again.returncode == 0
        and json.loads((out / "results.json").read_text())["in sample"] == rows
    )
