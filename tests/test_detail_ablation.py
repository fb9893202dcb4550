"""The detail ablation experiment end to end at a toy size (a subprocess, as users run it), and
the detail evaluation it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqdeca.config import load_config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.eval.clips import find_eval_clips, load_clip
from seqdeca.eval.detail_eval import detail_clip_series, has_detail_truth
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.from_config import build_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "detail_ablation.py"
TINY = ROOT / "configs" / "tiny_cpu.yaml"
DETAIL = ROOT / "configs" / "experiments" / "detail.yaml"


@pytest.fixture(scope="module")
def detail_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("detail")
    cfg = load_config(
        [DETAIL, TINY],
        ["synthetic.frames=4", "synthetic.min_frames=0", "synthetic.background=noise"],
    )
    make_synthetic_dataset(root, cfg, clips=1, seed=1, progress=False)
    return load_clip(find_eval_clips(root)[0]), cfg


def test_zero_map_scores_the_truth_and_a_prediction_differs(detail_clip):
    clip, cfg = detail_clip
    assert has_detail_truth(clip)
    model = build_model(cfg, load_checkpoints=False).eval()
    truth = DetailSources(coarse="ground_truth", condition="ground_truth")
    zero, kept = detail_clip_series(model, clip, sources=truth, device="cpu", zero=True, keep=2)
    assert torch.isfinite(zero["displacement_error"]).all()
    assert (zero["displacement_error"] > 0).all()  # the truth has wrinkles and static detail
    assert {"displacement_error/forehead", "detail_normal_error/chin"} <= set(zero)
    assert kept.latent.shape[0] == 2 and kept.true_shading.shape == kept.predicted_shading.shape
    predicted, _ = detail_clip_series(model, clip, sources=truth, device="cpu")
    assert not torch.equal(predicted["displacement_error"], zero["displacement_error"])


@pytest.mark.slow
def test_toy_run_writes_every_row(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(out),
        "--rows",
        "zero",
        "l1-only",
        "wgan-full-gtau",
        "--train-clips",
        "3",
        "--heldout-clips",
        "2",
        "--pretrain-clips",
        "4",
        "--pretrain-steps",
        "3",
        "--steps",
        "3",
        "--seeds",
        "2",
        "--no-progress",
        "--workers",
        "1",
        "data.batch_size=2",
        "synthetic.frames=5",
        "synthetic.min_frames=0",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("command: python experiments/detail_ablation.py")
    results = json.loads((out / "results.json").read_text())
    rows = results["heldout"]
    assert list(rows) == ["zero", "l1-only", "wgan-full-gtau"]
    for metrics in rows.values():
        assert metrics["displacement_error_regions"] > 0
    assert rows["wgan-full-gtau"]["seeds"] == 2 and "displacement_error_std" in rows["l1-only"]
    # the AU network learns on clips of its own: two frames each, none of the rows' faces
    assert len(find_eval_clips(out / "data" / "pretrain")) == 4
    assert rows["wgan-full-gtau"]["condition_correlation_mean"] == pytest.approx(1.0)
    assert "condition_correlation_mean" not in rows["l1-only"]  # unconditioned
    assert rows["l1-only"]["controllability_mean"] == 0.0  # unconditioned: the sweep is flat
    assert "controllability_shuffled_mean" in rows["wgan-full-gtau"]
    for name in ("results.png", "detail.png", "sweep.png"):
        assert (out / name).stat().st_size > 0, name
    assert "| wgan-full-gtau |" in (out / "results.md").read_text()
    for row in ("l1-only", "wgan-full-gtau"):
        assert (out / row / "model.pt").is_file()
    _check_controllability(cmd, out, env)
    logged = [
        json.loads(x)
        for x in (out / "l1-only" / "seed_0" / "losses.jsonl").read_text().splitlines()
    ]
    assert not any(k.startswith("D_") for k in logged[-1])  # no critic in DECA's detail training
    checks = [*cmd, "--photometric-check", "--signal-check", "--pooled", "--check-steps", "10"]
    _check_run(checks, env)  # a few Adam steps: these only check that the fits run and fit
    scores = json.loads((out / "photometric_check.json").read_text())
    maps = ("zero", "true", "2 x true", "-true")
    assert set(scores) == {*maps, *(f"contrast {name}" for name in maps)}
    assert scores["true"] != scores["zero"]  # the true wrinkles change the shading
    assert scores["contrast true"] != scores["contrast zero"]
    fitted = json.loads((out / "signal_check.json").read_text())
    assert fitted["zero error_mm"] > 0 and fitted["fitted error_mm"] != fitted["zero error_mm"]
    assert fitted["fitted contrast"] < fitted["zero contrast"]  # the fit lowers its own term
    # per clip a static map + one map per wrinkle AU weighted by the true AU intensities
    pairs = {"pooled": "zero", "pooled every frame": "pooled every frame zero"}
    for name, zero in pairs.items():
        assert fitted[f"{name} contrast"] < fitted[f"{zero} contrast"]
        assert fitted[f"{name} error_mm"] > 0
    # the contrast on the photo's own path
    _check_run([*cmd, "--signal-check", "--matched", "--check-steps", "10"], env)
    fitted = json.loads((out / "signal_check.json").read_text())
    for name in ("matched", "offset"):
        assert fitted[f"{name} fitted contrast"] < fitted[f"{name} zero contrast"]
        assert fitted[f"{name} fitted error_mm"] > 0
    # at the zero map both compare the photo's contrast with the detail-free render's
    assert fitted["matched zero contrast"] == pytest.approx(fitted["offset zero contrast"])


def _check_controllability(cmd: list[str], out: Path, env: dict) -> None:
    """What a toy run can afford: the generator conditioned on the true AUs, trained for 40 steps
    without a critic on the same toy data, adds more wrinkle energy in a pattern's region when
    that pattern's AUs are swept than when shuffled channels are (its AU maps follow the AUs
    seen in training)."""
    run = out.parent / "controllability"
    (run / "data").mkdir(parents=True)
    for name in ("pretrain", "train"):
        (run / "data" / name).symlink_to(out / "data" / name)
    (run / "data" / "heldout").symlink_to(out / "data" / "heldout")
    (run / "pretrain").symlink_to(out / "pretrain")
    steps = cmd.index("--steps") + 1
    toy = [*cmd[:2], str(run), *cmd[3:steps], "40", *cmd[steps + 1 :]]
    toy[toy.index("--rows") : toy.index("--train-clips")] = ["--rows", "wgan-full-gtau"]
    toy[toy.index("--seeds") + 1] = "1"
    _check_run([*toy, "loss.adversarial=0"], env)
    gtau = json.loads((run / "results.json").read_text())["heldout"]["wgan-full-gtau"]
    assert gtau["gain_mean"] > 2 * gtau["gain_shuffled_mean"], gtau


def _check_run(cmd: list[str], env: dict) -> None:
    """Run one of the experiment's checks as a subprocess; it must succeed."""
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
