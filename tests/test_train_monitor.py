"""Validation, image grids, exports (on request and from a checkpoint) and init_from in training.

Tiny backbones on 2 synthetic clips of 8 frames, windows of 3 frames (temporal figures need 3),
batch 1, 2 validation windows: each run takes a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close

from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.train.images import PREVIEW_ROWS
from seqdeca.train.loop import TrainSummary, train
from seqdeca.train.monitor import EXPORT_REQUEST
from seqdeca.train.validate import spread_indices
from seqdeca.vis.training_grid import (
    COARSE_COLUMNS,
    DETAIL_COLUMNS,
    MIN_TILE,
    GridFrames,
    displacement_image,
    grid_size,
    training_grid,
)
from tools import train_seq

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"
DETAIL = ROOT / "configs" / "detail.yaml"
FRAME_METRICS = {
    "nme_68",
    "nme_mp",
    "l1",
    "psnr",
    "ssim",
    "accel_landmarks",
    "accel_landmarks_input",
    "accel_vertices",
}
SYNTHETIC_METRICS = {"expression_error", "jaw_error", "vertex_error"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_synthetic_dataset(root, load_config(TINY), clips=2, frames=8, seed=5, progress=False)
    return root


def _config(data_root: Path, run_dir: Path, *files: Path, **train_keys) -> Config:
    keys = {"max_steps": 2, "checkpoint_every": 0, "log_every": 1} | train_keys
    overrides = [
        "data.window=3",
        "data.batch_size=1",
        f"run.output_dir={run_dir}",
        *(f"train.{k}={v}" for k, v in keys.items()),
    ]
    cfg = load_config([TINY, *files], overrides)
    cfg.data.sources = [DataSourceConfig(root=str(data_root))]
    cfg.data.val_sources = [DataSourceConfig(root=str(data_root))]
    return cfg


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def monitored_run(data_root, tmp_path_factory) -> tuple[Path, TrainSummary]:
    """2 temporal steps, validation and images every step, an export requested before step 1."""
    run_dir = tmp_path_factory.mktemp("monitored") / "run"
    run_dir.mkdir()
    (run_dir / EXPORT_REQUEST).write_text("")
    cfg = _config(data_root, run_dir, validate_every=1, val_windows=2, images_every=2)
    return run_dir, train(cfg)


def test_validation_writes_metrics_to_jsonl_tensorboard_and_summary(monitored_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, summary = monitored_run
    records = _jsonl(run_dir / "val.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert FRAME_METRICS | SYNTHETIC_METRICS <= set(records[0])
    assert all(np.isfinite(v) for r in records for v in r.values())
    assert records[0]["frames"] == 6  # 2 windows of 3 valid frames
    assert 0 < records[-1]["nme_68"] < 200 and 0 <= records[-1]["ssim"] <= 1
    assert records[-1]["accel_landmarks_input"] > 0  # the synthetic faces move
    assert summary.last_val == {k: v for k, v in records[-1].items() if k != "step"}
    events = EventAccumulator(glob.glob(str(run_dir / "tb" / "*tfevents*"))[0])
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/nme_68", "val/expression_error", "throughput/frames_per_s"} <= tags
    assert [e.step for e in events.Scalars("val/nme_68")] == [1, 2]
    assert "images" in events.Tags()["images"]


def test_validation_and_images_leave_the_training_losses_alone(
    monitored_run, data_root, tmp_path
) -> None:
    run_dir, _ = monitored_run
    train(_config(data_root, tmp_path / "plain"))
    assert _jsonl(tmp_path / "plain" / "losses.jsonl") == _jsonl(run_dir / "losses.jsonl")
    assert not (tmp_path / "plain" / "val.jsonl").exists()
    assert not (tmp_path / "plain" / "images").exists()


def test_image_grid_png_has_the_temporal_layout(monitored_run) -> None:
    run_dir, _ = monitored_run
    assert sorted(p.name for p in (run_dir / "images").iterdir()) == ["step_000002.png"]
    with Image.open(run_dir / "images" / "step_000002.png") as im:
        size = (im.height, im.width)
    assert size == grid_size(PREVIEW_ROWS, len(COARSE_COLUMNS), MIN_TILE)


def test_export_request_writes_the_weights_of_that_step(monitored_run, data_root) -> None:
    run_dir, _ = monitored_run
    assert not (run_dir / EXPORT_REQUEST).exists()
    exported = torch.load(run_dir / "exports" / "model_step_000001.pt", weights_only=False)
    final = torch.load(run_dir / "model.pt", weights_only=False)
    assert exported["step"] == 1 and final["step"] == 2
    assert set(exported) == set(final) and exported["config_yaml"] == final["config_yaml"]
    moved = [k for k in final["model"] if not torch.equal(final["model"][k], exported["model"][k])]
    assert moved and all(k.startswith(("temporal_fusion.", "au_head.")) for k in moved)


def test_export_from_a_checkpoint_without_training(monitored_run, tmp_path, capsys) -> None:
    run_dir, _ = monitored_run
    out = tmp_path / "exported.pt"
    assert train_seq.main(["--export", str(run_dir), str(out)]) == 0
    exported = torch.load(out, weights_only=False)
    final = torch.load(run_dir / "model.pt", weights_only=False)
    assert exported["step"] == 2 and exported["stage"] == "temporal"
    assert exported["face_model"] == final["face_model"]
    assert set(exported["model"]) == set(final["model"])
    for key, value in final["model"].items():
        assert_close(exported["model"][key], value, rtol=0, atol=0, msg=key)
    capsys.readouterr()
    assert train_seq.main(["--export", str(tmp_path), str(tmp_path / "x.pt")]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "neither a checkpoint folder" in errors[0]


def test_detail_stage_from_the_temporal_model_validates_and_draws(
    monitored_run, data_root, tmp_path
) -> None:
    temporal_dir, _ = monitored_run
    run_dir = tmp_path / "detail"
    cfg = _config(
        data_root,
        run_dir,
        DETAIL,
        max_steps=1,
        n_critic=1,
        validate_every=1,
        val_windows=1,
        images_every=1,
        init_from=temporal_dir / "model.pt",
    )
    summary = train(cfg)
    assert {"detail_l1", "detail_psnr", "expression_error"} <= set(summary.last_val)
    with Image.open(run_dir / "images" / "step_000001.png") as im:
        assert (im.height, im.width) == grid_size(PREVIEW_ROWS, len(DETAIL_COLUMNS), MIN_TILE)
    start = torch.load(temporal_dir / "model.pt", weights_only=False)["model"]
    detail = torch.load(run_dir / "model.pt", weights_only=False)["model"]
    fused = [k for k in start if k.startswith(("temporal_fusion.", "au_head."))]
    assert fused
    for key in fused:  # frozen in the detail stage: still the temporal stage's weights
        assert_close(detail[key], start[key], rtol=0, atol=0, msg=key)


def test_validation_without_val_sources_is_a_one_line_error(data_root, tmp_path) -> None:
    cfg = _config(data_root, tmp_path / "r", validate_every=1)
    cfg.data.val_sources = []
    with pytest.raises(UserError, match="data.val_sources"):
        train(cfg)


def test_spread_indices_are_fixed_distinct_and_cover_the_ends() -> None:
    assert spread_indices(12, 4).tolist() == [0, 4, 7, 11]
    assert spread_indices(3, 10).tolist() == [0, 1, 2]
    assert spread_indices(5, 0).tolist() == [0, 1, 2, 3, 4]
    assert len(set(spread_indices(1000, 64).tolist())) == 64


def test_training_grid_layout_and_displacement_range() -> None:
    r, s, h = 3, 32, 16
    frames = GridFrames(
        images=torch.rand(r, 3, s, s),
        render=torch.rand(r, 3, h, h),
        shape=torch.rand(r, 3, h, h),
        landmarks=torch.zeros(r, 68, 2),
        target_landmarks=torch.full((r, 68, 2), float("nan")),
    )
    grid, labels = training_grid(frames, tile=24)
    assert grid.shape == (*grid_size(r, 4, 24), 3) and labels == list(COARSE_COLUMNS)
    frames.detail_shape = torch.rand(r, 3, h, h)
    ramp = torch.linspace(-0.002, 0.001, 64).reshape(1, 1, 8, 8)
    frames.displacement = ramp.expand(r, -1, -1, -1)
    grid, labels = training_grid(frames)
    assert grid.shape == (*grid_size(r, 6, MIN_TILE), 3) and labels == list(DETAIL_COLUMNS)
    grey, (lo, hi) = displacement_image(frames.displacement[0])
    assert_close((lo, hi), (-2.0, 1.0))
    assert float(grey.min()) == 0.0 and float(grey.max()) == 1.0


def test_throughput_after_warmup() -> None:
    summary = TrainSummary(
        run_dir=Path("."), steps=3, skipped_steps=0, step_marks=[(5.0, 4), (6.0, 8), (7.0, 12)]
    )
    assert summary.windows_per_s_after(1) == pytest.approx(4.0)
    assert summary.windows_per_s_after(0) == pytest.approx(12 / 7)
    assert np.isnan(summary.windows_per_s_after(3))


def test_bench_tool_prints_a_throughput_table(capsys) -> None:
    from benchmarks import bench_train

    code = bench_train.main(
        [
            "--configs",
            "tiny",
            "--stages",
            "temporal",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--clips",
            "1",
            "--frames",
            "4",
            "data.window=1",
            "data.batch_size=1",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[2].startswith("| tiny | temporal | cpu | 1 x 1 | 1 |")
    windows_per_s = float(lines[2].split("|")[-3])
    assert windows_per_s > 0
