"""End-to-end frame-window evaluation on a tiny synthetic set (tiny random network, fit mode)
and the tools/evaluate.py command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from seqdeca.config import load_config
from seqdeca.config.loader import config_to_yaml
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.evaluation.runner import EvalOptions, describe_config, evaluate, method_name
from seqdeca.inference.checkpoint import LoadedModel
from seqdeca.models.from_config import build_model
from seqdeca.train.state import export_inference_checkpoint
from tests.prepared_factory import make_prepared_clip
from tools import evaluate as evaluate_tool

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"
FRAMES = 8
# Few LM iterations keep fit mode quick; the synthetic faces are still fitted closely.
FAST_FIT = ["inference.fit.iterations=3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two synthetic clips (64 px, with gt.npz), one tracked-style clip with AU labels and a
    gap, and a tiny random temporal checkpoint."""
    root = tmp_path_factory.mktemp("eval")
    cfg = load_config(TINY, ["crop.size=64"])
    make_synthetic_dataset(root / "data", cfg, clips=2, frames=FRAMES, seed=2, progress=False)
    valid = [True] * 3 + [False] + [True] * (FRAMES - 4)
    make_prepared_clip(root / "data", "labelled", valid, dataset="videos", with_au=True, seed=5)
    torch.manual_seed(0)
    model = build_model(cfg, load_checkpoints=False)
    checkpoint = export_inference_checkpoint(
        root / "run_a" / "model.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=0,
    )
    return {"root": root, "data": root / "data", "checkpoint": checkpoint}


def test_evaluate_network_per_frame_and_fit_writes_every_output(setup: dict) -> None:
    out = setup["root"] / "out_all"
    opts = EvalOptions(
        data=setup["data"],
        out=out,
        config=load_config(TINY, FAST_FIT),
        checkpoints=[setup["checkpoint"]],
        mode="fit",
        per_frame=True,
        tensorboard=True,
        progress=False,
    )
    evaluate(opts)
    payload = json.loads((out / "metrics.json").read_text())
    methods = payload["methods"]
    assert list(methods) == ["run_a", "run_a+per-frame", "fit", "input", "mean-face"]
    # the neutral-face floor exists for the synthetic clips only (they have ground truth)
    assert "videos/labelled" not in methods["mean-face"]["per_clip"]
    assert methods["mean-face"]["overall"]["expression_error"] > 0
    assert payload["settings"]["window"] == 0 and payload["settings"]["clips"] == 3
    assert methods["run_a"]["description"].endswith("; window 3")  # the checkpoint's window
    net, fit, ref = (
        methods["run_a"]["overall"],
        methods["fit"]["overall"],
        methods["input"]["overall"],
    )
    assert net["frames"] == 2 * FRAMES + FRAMES - 1 and net["clips"] == 3
    for key in (
        "nme_68",
        "nme_mp",
        "l1",
        "psnr",
        "ssim",
        "accel_vertices",
        "jerk_landmarks",
        "expression_error",
        "vertex_error",
        "au_f1_mean",
        "au_std",
        "ms_per_frame",
    ):
        assert net[key] is not None, key
    assert net["parameters"] > 0 and set(net["au_f1"]) >= {"AU1", "AU12", "AU26"}
    assert 0 <= net["ssim"] <= 1 and net["l1"] > 0
    # Fit mode: no AUs, a mean-albedo render, landmarks fitted closely on the synthetic clips.
    assert fit.get("au_f1_mean") is None and fit["l1"] > 0 and fit["ms_per_frame"] > 0
    synthetic = [c for c in methods["fit"]["per_clip"] if c.startswith("synthetic/")]
    assert len(synthetic) == 2
    for clip in synthetic:
        per_clip = methods["fit"]["per_clip"][clip]
        assert per_clip["nme_mp"] < 3 and per_clip["vertex_error"] < 5
    # The reference row: input landmark smoothness; the synthetic ground truth's mesh.
    assert ref["accel_landmarks"] is not None and ref["accel_vertices"] is not None
    assert "nme_mp" not in ref and ref["ms_per_frame"] is None
    labelled = methods["run_a"]["per_clip"]["videos/labelled"]
    assert labelled["frames"] == FRAMES - 1 and labelled.get("vertex_error") is None
    markdown = (out / "metrics.md").read_text()
    for text in ("| run_a+per-frame |", "| fit |", "## AU F1 per AU", "NME-MP (%)", "vertex err"):
        assert text in markdown
    for name in ("run_a", "run_a+per-frame", "fit", "input"):
        with (out / "per_clip" / f"{name}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert [r["clip"] for r in rows] == list(methods["run_a"]["per_clip"])
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "au_f1.png" in plots and "nme_synthetic_synth_00000.png" in plots
    assert "accel_videos_labelled.png" in plots
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_describe_config_and_method_names(tmp_path: Path) -> None:
    cfg = load_config(
        TINY,
        [
            "model.use_temporal=false",
            "model.freeze_coarse=false",
            "loss.temporal=0.5",
            "loss.photometric=0",
        ],
    )
    loaded = LoadedModel(model=None, config=cfg, kind="seqdeca", path=tmp_path / "m.pt")
    text = describe_config(loaded)
    assert "temporal off" in text and "coarse encoder trained" in text
    assert "temporal=0.5" in text and "photometric" not in text
    taken: set[str] = set()
    first = method_name(tmp_path / "ablation_no_au" / "model.pt", taken)
    taken.add(first)
    assert first == "ablation_no_au"
    assert method_name(tmp_path / "ablation_no_au" / "model.pt", taken) == "ablation_no_au-2"
    assert method_name(tmp_path / "checkpoints" / "step_10.pt", set()) == "step_10"


def test_cli_network_mode_reads_window_override(setup: dict) -> None:
    tool = evaluate_tool
    out = setup["root"] / "out_cli"
    code = tool.main(
        [
            "--checkpoint",
            str(setup["checkpoint"]),
            "--data",
            str(setup["data"]),
            "--out",
            str(out),
            "--window",
            "1",
            "--no-progress",
            "--config",
            str(TINY),
            "inference.batch_size=4",
        ]
    )
    assert code == 0
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["settings"]["window"] == 1 and payload["settings"]["batch_size"] == 4
    assert payload["methods"]["run_a"]["description"].endswith("; window 1")
    assert list(payload["methods"]) == ["run_a", "input", "mean-face"]


def test_cli_bad_input_is_one_line_exit_2(setup: dict, tmp_path: Path, capsys) -> None:
    tool = evaluate_tool
    corrupt = tmp_path / "broken" / "model.pt"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    cases = [
        ["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--mode", "fit"],
        ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--mode", "fit"],
        ["--data", str(setup["data"]), "--out", str(tmp_path / "o")],  # nothing to evaluate
        [
            "--data",
            str(setup["data"]),
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tmp_path / "nope.pt"),
        ],
        ["--data", str(setup["data"]), "--out", str(tmp_path / "o"), "--checkpoint", str(corrupt)],
    ]
    for argv in cases:
        assert tool.main([*argv, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
