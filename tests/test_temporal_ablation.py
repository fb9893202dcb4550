"""The temporal ablation experiment end to end at a toy size (a subprocess, as users run it)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "temporal_ablation.py"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None,
    reason="the experiment's clips are tracked with MediaPipe, which is not installed",
)
def test_toy_run_writes_every_row_on_every_set(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(out),
        "--quick",
        "--rows",
        "per-frame",
        "per-frame+filter",
        "bivit-w3",
        "spectre-conv",
        "--train-clips",
        "3",
        "--heldout-clips",
        "2",
        "--max-frames",
        "10",
        "--pretrain-clips",
        "4",
        "--pretrain-steps",
        "3",
        "--steps",
        "3",
        "--seeds",
        "2",
        "--no-progress",
        "data.batch_size=2",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("command: python experiments/temporal_ablation.py")
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"heldout_corrupted", "heldout_clean"}
    for rows in results.values():
        assert list(rows) == [
            "per-frame",
            "per-frame+filter",
            "bivit-w3",
            "spectre-conv",
            "mean-face",
        ]
        assert rows["mean-face"]["expression_vertex_error"] > 0  # the floor, from the truth
        for metrics in rows.values():
            for key in ("expression_jaw_vertex_error", "expression_vertex_error", "accel_error"):
                assert metrics[key] >= 0, key
        assert rows["bivit-w3"]["seeds"] == 2 and "expression_vertex_error_std" in rows["bivit-w3"]
        assert rows["per-frame"]["seeds"] == 1 and rows["per-frame+filter"]["seeds"] == 1
    # bivit-w3 is the 2nd checkpoint of seed 0's evaluation and the 1st of seed 1's (per-frame
    # has one seed); its table value is the mean over the two
    evals = [out / "eval" / "heldout_clean" / f"seed_{k}" / "metrics.json" for k in (0, 1)]
    methods = [json.loads(e.read_text())["methods"] for e in evals]
    seeds = [methods[0]["seed_0-2"]["overall"], methods[1]["seed_1"]["overall"]]
    mean = results["heldout_clean"]["bivit-w3"]["accel_error"]
    assert mean == pytest.approx(sum(m["accel_error"] for m in seeds) / 2)
    for row in ("per-frame", "bivit-w3", "spectre-conv"):
        assert (out / row / "model.pt").is_file()
    assert (out / "results.png").stat().st_size > 0
    report = (out / "results.md").read_text()
    assert "| bivit-w3 |" in report and "Pretrained per-frame encoders / mean face" in report
    assert len(list((out / "data" / "pretrain" / "synthetic").iterdir())) == 4
    assert "[train bivit-w3 seed 0] 3 steps" in proc.stdout
    again = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[train " not in again.stdout and "[pretrain]" not in again.stdout  # kept stages
    assert "[eval]" not in again.stdout  # same checkpoints: the evaluations are kept too
    fewer = [c for c in cmd if c not in ("per-frame+filter", "spectre-conv")]
    third = subprocess.run(
        fewer, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[train " not in third.stdout and "[eval]" in third.stdout  # other rows: evaluated again
    rows = json.loads((out / "results.json").read_text())["heldout_clean"]
    assert list(rows) == ["per-frame", "bivit-w3", "mean-face"]


def test_overrides_after_heldout_folders_stay_overrides():
    """``--heldout DIR x.y=v`` (nargs="+") must not take the override for a folder."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location("temporal_ablation_cli", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        args = module.parse(
            [
                "OUT",
                "--heldout",
                "a",
                "b/c",
                "loss.temporal=5.0",
                "--seeds",
                "1",
                "model.fusion_code_mixing=false",
            ]
        )
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    assert args.heldout == ["a", "b/c"]
    assert args.overrides == ["loss.temporal=5.0", "model.fusion_code_mixing=false"]
