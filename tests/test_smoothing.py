"""Temporal filters of per-frame codes (the per-frame+filter baseline)."""

from __future__ import annotations

import numpy as np
import pytest

from seqdeca.inference.smoothing import one_euro_smooth, savgol_smooth, valid_runs


def test_valid_runs():
    assert valid_runs(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], bool)) == [(0, 2), (3, 4), (6, 9)]
    assert valid_runs(np.zeros(3, bool)) == []


def test_savgol_keeps_quadratics_and_removes_noise():
    t = np.arange(40.0)
    quad = np.stack([0.01 * t**2 - t, 3 + 0 * t], -1)
    np.testing.assert_allclose(savgol_smooth(quad, window=9, order=2), quad, atol=1e-9)
    noise = np.random.default_rng(0).normal(0, 1, (400, 2))
    assert savgol_smooth(noise, window=9, order=2).std() < 0.7 * noise.std()


def test_filters_restart_at_gaps_and_leave_invalid_frames():
    x = np.concatenate([np.zeros(6), np.full(6, 10.0)])[:, None]
    valid = np.ones(12, bool)
    valid[6] = False
    for out in (
        savgol_smooth(x, valid, window=5, order=1),
        one_euro_smooth(x, valid, min_cutoff=0.5),
    ):
        np.testing.assert_allclose(out[:6], 0.0, atol=1e-9)  # nothing leaks across the gap
        np.testing.assert_allclose(out[7:], 10.0, atol=1e-9)
        assert out[6, 0] == 10.0


def test_one_euro_at_rest_is_an_exponential_smoother():
    x = np.random.default_rng(1).normal(0, 1, (50, 3))
    out = one_euro_smooth(x, fps=25.0, min_cutoff=1.0, beta=0.0)
    tau = 1 / (2 * np.pi * 1.0)
    a = 1 / (1 + tau * 25.0)
    expected = x.copy()
    for t in range(1, 50):
        expected[t] = a * x[t] + (1 - a) * expected[t - 1]
    np.testing.assert_allclose(out, expected)


def test_one_euro_speed_term_reduces_lag():
    t = np.arange(100.0)
    ramp = (t * 0.5)[:, None]
    slow = one_euro_smooth(ramp, min_cutoff=0.3, beta=0.0)
    quick = one_euro_smooth(ramp, min_cutoff=0.3, beta=1.0)
    assert abs(quick[-1, 0] - ramp[-1, 0]) < 0.5 * abs(slow[-1, 0] - ramp[-1, 0])


def test_bad_savgol_settings():
    with pytest.raises(ValueError):
        savgol_smooth(np.zeros((5, 1)), window=4)


def test_parse_filter_and_its_errors():
    from seqdeca.errors import UserError
    from seqdeca.inference.smoothing import parse_filter

    x = np.random.default_rng(2).normal(0, 1, (20, 2))
    valid = np.ones(20, bool)
    np.testing.assert_allclose(
        parse_filter("savgol:5:1")(x, valid), savgol_smooth(x, valid, window=5, order=1)
    )
    np.testing.assert_allclose(
        parse_filter("one_euro:2.0:0.1", fps=30)(x, valid),
        one_euro_smooth(x, valid, fps=30, min_cutoff=2.0, beta=0.1),
    )
    for bad in ("savgol:4:2", "median:3", "one_euro:0:1", "savgol:x:1"):
        with pytest.raises(UserError):
            parse_filter(bad)


def test_evaluation_adds_filtered_per_frame_rows(tmp_path):
    import json
    from pathlib import Path

    import torch

    from seqdeca.config import config_to_yaml, load_config
    from seqdeca.data.synthetic import make_synthetic_dataset
    from seqdeca.evaluation.runner import EvalOptions, evaluate
    from seqdeca.models.from_config import build_model
    from seqdeca.train.state import export_inference_checkpoint

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"
    cfg = load_config(tiny, ["crop.size=64"])
    make_synthetic_dataset(tmp_path / "data", cfg, clips=1, frames=12, seed=5, progress=False)
    torch.manual_seed(0)
    model = build_model(cfg, load_checkpoints=False)
    with torch.no_grad():  # a random per-frame answer that moves from frame to frame
        model.coarse_encoder.layers[-1].weight.normal_(0, 0.05)
    ckpt = export_inference_checkpoint(
        tmp_path / "net" / "model.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=0,
    )
    evaluate(
        EvalOptions(
            data=tmp_path / "data",
            out=tmp_path / "out",
            config=cfg,
            checkpoints=[ckpt],
            per_frame=True,
            filters=["savgol:1:0", "savgol:7:1"],
            plots=False,
            progress=False,
        )
    )
    methods = json.loads((tmp_path / "out" / "metrics.json").read_text())["methods"]
    plain, same, smooth = (
        methods[f"net+per-frame{s}"]["overall"] for s in ("", "+savgol:1:0", "+savgol:7:1")
    )
    assert same["accel_vertices"] == pytest.approx(plain["accel_vertices"], rel=1e-5)
    assert same["nme_68"] == pytest.approx(plain["nme_68"], rel=1e-5)
    assert smooth["accel_vertices"] < 0.8 * plain["accel_vertices"]
