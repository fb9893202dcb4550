"""Inference core: centred windows, windowed prediction, checkpoint loading and clip fitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils import _pytree as pytree

from seqdeca.config import config_to_yaml, load_config
from seqdeca.errors import UserError
from seqdeca.inference.checkpoint import load_model
from seqdeca.inference.fit import fit_clip, fit_landmark_set, refine_steps
from seqdeca.inference.windows import centred_windows, predict_frames
from seqdeca.models.from_config import build_model
from seqdeca.train.state import export_inference_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"


@pytest.fixture
def one_thread():
    """Fitting runs many small operations: one intra-op thread is fastest (as video2mesh uses)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    cfg = load_config(TINY)
    model = build_model(cfg, load_checkpoints=False)
    with torch.no_grad():  # a non-zero fusion residual, so that neighbours change the centre
        head = model.temporal_fusion.residual_head
        head.weight.normal_(0, 0.02)
        head.bias.normal_(0, 0.02)
    return cfg, model.eval()


def _export(tmp_path: Path, cfg, model) -> Path:
    return export_inference_checkpoint(
        tmp_path / "model.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=3,
    )


def test_centred_windows_edges_replicate():
    w = centred_windows(5, 3)
    assert w.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    assert centred_windows(1, 5).tolist() == [[0, 0, 0, 0, 0]]
    assert centred_windows(4, 4).tolist()[0] == [0, 0, 1, 2]  # even: one more frame after
    assert centred_windows(3, 1).tolist() == [[0], [1], [2]]
    with pytest.raises(ValueError):
        centred_windows(0, 3)


def test_predict_frames_matches_forward_on_each_window():
    _, model = _tiny_model()
    gen = torch.Generator().manual_seed(1)
    crops = torch.rand(6, 3, 64, 64, generator=gen)
    valid = torch.tensor([True, True, False, True, True, True])
    out = predict_frames(model, crops, valid, window=3, batch_size=4, render_shape=True)
    assert out.decoded.vertices.shape[0] == 6 and out.decoded.shape_image.shape[0] == 6
    idx = torch.from_numpy(centred_windows(6, 3))
    with torch.no_grad():
        ref = model(crops[idx], valid[idx], render_shape=True).map_tensors(lambda v: v[:, 1])
    # every tensor of the forward pass's centre frames, nested parts included
    got, want = pytree.tree_flatten(out), pytree.tree_flatten(ref)
    assert got[1] == want[1]  # the same fields, the same ones None
    for a, b in zip(got[0], want[0], strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    # The window matters: frame 3 predicted alone differs from frame 3 in its window.
    alone = predict_frames(model, crops, valid, window=1)
    assert not torch.allclose(alone.expression[3], out.expression[3])
    # centres= predicts a subset with the same windows over the whole input.
    sub = predict_frames(model, crops, valid, window=3, centres=[2, 5])
    torch.testing.assert_close(
        sub.decoded.vertices, out.decoded.vertices[[2, 5]], atol=2e-5, rtol=1e-4
    )


def test_predict_frames_detail_stage():
    _, model = _tiny_model()
    crops = torch.rand(2, 3, 48, 48)
    out = predict_frames(model, crops, torch.ones(2, dtype=torch.bool), stage="detail")
    assert out.detail.displacement.shape[:2] == (2, 1)
    assert out.decoded.render.shape[-1] == 64


def test_load_model_round_trip(tmp_path):
    cfg, model = _tiny_model()
    path = _export(tmp_path, cfg, model)
    loaded = load_model(path)
    assert loaded.kind == "seqdeca" and loaded.path == path
    assert loaded.config.model.backbone == "tiny" and not loaded.model.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_load_model_errors_are_one_line(tmp_path):
    cfg, model = _tiny_model()
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable"):
        load_model(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(UserError, match="neither a seqdeca model.pt nor a DECA"):
        load_model(other)
    wrong = export_inference_checkpoint(
        tmp_path / "wrong.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model="flame2020",
        stage="temporal",
        step=0,
    )
    with pytest.raises(UserError, match="trained with face model 'flame2020'") as info:
        load_model(wrong)
    assert "\n" not in str(info.value)
    state = dict(model.state_dict())
    state.pop(next(iter(state)))
    short = export_inference_checkpoint(
        tmp_path / "short.pt",
        state_dict=state,
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=0,
    )
    with pytest.raises(UserError, match="missing"):
        load_model(short)


def _synthetic_targets(model, frames: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lm = fit_landmark_set(model)
    shape = 0.8 * torch.randn(model.num_shape, generator=gen)
    expression = 0.8 * torch.randn(frames, model.num_expression, generator=gen)
    pose = torch.zeros(frames, 3)
    pose[:, 1] = torch.linspace(-0.3, 0.3, frames)
    out = model(shape=shape.expand(frames, -1), expression=expression, global_pose=pose)
    pts = model.landmarks(out.vertices, lm.name)
    from seqdeca.geometry.camera import project_weak_perspective

    cam = torch.tensor([[7.0, 0.0, 0.01]]).expand(frames, 3)
    return lm, shape, project_weak_perspective(pts, cam)[..., :2]


def test_fit_clip_recovers_codes_and_keeps_a_given_shape(one_thread):
    cfg = load_config(TINY, ["inference.fit.iterations=20", "inference.fit.smoothness=0"])
    from seqdeca.face_model.from_config import face_model_from_config

    model = face_model_from_config(cfg.face_model)
    lm, shape, target = _synthetic_targets(model)
    assert lm.name == "mediapipe478" and len(lm.mediapipe_ids) == 478
    valid = torch.ones(len(target), dtype=torch.bool)
    res = fit_clip(model, target, valid, cfg.inference.fit, landmark_name=lm.name)
    assert float(res.residual.max()) < 2e-3
    fixed = fit_clip(model, target, valid, cfg.inference.fit, landmark_name=lm.name, shape=shape)
    torch.testing.assert_close(fixed.shape, shape)
    assert float(fixed.residual.max()) < 2e-3


def test_refine_steps_auto():
    cfg = load_config(None, ["inference.fit.refine_steps=-1", "inference.fit.smoothness=0.1"])
    assert refine_steps(cfg.inference.fit) == 1
    cfg.inference.fit.smoothness = 0.0
    assert refine_steps(cfg.inference.fit) == 0
    cfg.inference.fit.refine_steps = 3
    assert refine_steps(cfg.inference.fit) == 3


def test_reduced_fitting_model_is_exact_and_windows_are_independent(one_thread):
    from seqdeca.face_model.from_config import (
        face_model_assets_from_config,
        face_model_from_config,
    )
    from seqdeca.inference.fit import FIT_SET, ClipFitter

    cfg = load_config(None, ["inference.fit.smoothness=0.05", "inference.fit.iterations=8"])
    model = face_model_from_config(cfg.face_model)
    fitter = ClipFitter(
        model, face_model_assets_from_config(cfg.face_model), cfg.inference.fit, window=3
    )
    assert fitter.model.num_vertices < model.num_vertices
    lm, shape, target = _synthetic_targets(model, frames=8)
    gen = torch.Generator().manual_seed(3)
    pose = 0.2 * torch.randn(8, 3, generator=gen)
    full = model(shape=shape.expand(8, -1), global_pose=pose, jaw_pose=pose.abs() * 0.3)
    red = fitter.model(shape=shape.expand(8, -1), global_pose=pose, jaw_pose=pose.abs() * 0.3)
    torch.testing.assert_close(
        model.landmarks(full.vertices, lm.name)[:, fitter.mediapipe_ids],
        fitter.model.landmarks(red.vertices, FIT_SET),
    )
    sub = target[:, fitter.mediapipe_ids]
    valid = np.ones(8, dtype=bool)
    fitter.shape = shape
    whole = fitter.fit_chunk(sub, valid, slice(0, 8))
    part = fitter.fit_chunk(sub[2:7], valid[2:7], slice(1, 4))  # frames 3-5 with their context
    # float rounding (batch sizes differ) moves weakly determined expression directions a bit
    torch.testing.assert_close(part.expression, whole.expression[3:6], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(part.cam, whole.cam[3:6], atol=1e-4, rtol=1e-4)
    assert float(whole.residual.max()) < 0.02
