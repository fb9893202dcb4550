"""Synthetic clips like real video: corruptions, AU ground truth, cropping, tracked landmarks."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from script_loader import load_script

from seqdeca.au_names import AFFWILD2_MAIN_INDICES, MAIN_AU_NAMES
from seqdeca.config import load_config
from seqdeca.config.schema import SyntheticConfig, SyntheticCorruptionConfig
from seqdeca.data.synthetic import make_synthetic_dataset, sample_clip_codes
from seqdeca.data.synthetic_au import au_expression_map, au_trajectories
from seqdeca.data.synthetic_corrupt import (
    REALISTIC_MIX,
    apply_corruptions,
    draw_corruptions,
    occluder_mask,
)
from seqdeca.data.synthetic_track import cam_to_crop
from seqdeca.face_model.from_config import face_model_from_config
from seqdeca.face_model.layer import FlameParams
from seqdeca.geometry.camera import ndc_to_pixels, project_weak_perspective

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "configs" / "experiments" / "temporal.yaml"
SMALL = ["crop.size=96", "synthetic.frame_size=0"]  # fast renders
HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


def _cfg(*overrides: str):
    return load_config(None, [*SMALL, *overrides])


def _frames(clip: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f), np.int16) for f in sorted(clip.glob("frames/*"))])


@pytest.fixture(scope="module")
def model():
    return face_model_from_config(load_config().face_model)


def test_corruption_rates_from_draws():
    rng = np.random.default_rng(0)
    rates = SyntheticCorruptionConfig(**REALISTIC_MIX)
    draws = [draw_corruptions(rng, 100, rates, photos=3) for _ in range(400)]
    for kind, rate in REALISTIC_MIX.items():
        share = np.concatenate([d.active()[kind] for d in draws]).mean()
        assert abs(share - rate) < 0.02, (kind, share, rate)
    any_share = np.concatenate([d.corrupted() for d in draws]).mean()
    assert 0.21 < any_share < 0.30  # "about one frame in four"
    # Occluders last several frames (events), flicker is short.
    occ = np.concatenate([d.occluder > 0 for d in draws]).astype(int)
    assert occ.sum() / max(1, (np.diff(occ) == 1).sum()) > 4
    assert not draw_corruptions(rng, 500, SyntheticCorruptionConfig()).corrupted().any()


def test_occluder_changes_only_its_pixels():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(40, 64, 80, 3), dtype=np.uint8)
    base = np.array([[20.0 + 40 * (i % 9) / 8, 15.0 + 35 * (i // 9) / 7] for i in range(68)])
    landmarks = base[None] + rng.uniform(-2, 2, size=(40, 1, 2))
    draws = draw_corruptions(rng, 40, SyntheticCorruptionConfig(occluder=0.6), photos=1)
    photo = rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8)
    out, boxes = apply_corruptions(frames, draws, landmarks, (photo,))
    assert (draws.occluder > 0).sum() > 5 and (draws.occluder == 0).sum() > 0
    for t in range(40):
        changed = (out[t] != frames[t]).any(-1)
        mask = occluder_mask(int(draws.occluder[t]), boxes[t], 64, 80)
        assert not changed[~mask].any()
        if draws.occluder[t]:
            assert np.isfinite(boxes[t]).all() and mask.sum() > 10
            assert changed[mask].mean() > 0.5
        else:
            assert np.isnan(boxes[t]).all()


def test_corruption_records_match_frames_and_keep_clean_draws(tmp_path):
    rates = [
        *(f"synthetic.corruption.{k}=0.3" for k in REALISTIC_MIX),
        "synthetic.corruption.occluder=0.7",
    ]
    clean = make_synthetic_dataset(
        tmp_path / "a", _cfg(), clips=2, frames=30, seed=5, progress=False
    )
    dirty = make_synthetic_dataset(
        tmp_path / "b", _cfg(*rates), clips=2, frames=30, seed=5, progress=False
    )
    seen, clean_frames = set(), 0
    for a, b in zip(clean, dirty):
        gt_a, gt_b = np.load(a / "gt.npz"), np.load(b / "gt.npz")
        for key in gt_a:  # the same faces, motion, light and landmarks
            np.testing.assert_array_equal(gt_a[key], gt_b[key])
        differs = (_frames(a) != _frames(b)).any(axis=(1, 2, 3))
        np.testing.assert_array_equal(differs, gt_b["corrupted"])
        clean_frames += int((~differs).sum())
        seen |= {k for k in ("occluder", "blur", "noise", "jpeg") if gt_b[f"corrupt_{k}"].any()}
        box = gt_b["corrupt_occluder_box"]
        assert (np.isfinite(box).all(1) == (gt_b["corrupt_occluder"] > 0)).all()
    assert seen == {"occluder", "blur", "noise", "jpeg"} and clean_frames > 0


def test_au_trajectories_sparse_smooth_in_range():
    gen = torch.Generator().manual_seed(0)
    curves = torch.stack([au_trajectories(gen, 100) for _ in range(100)])  # (clips, T, 27)
    assert curves.shape == (100, 100, 27) and curves.min() >= 0 and curves.max() <= 1
    active = (curves > 0.05).sum(-1).float().mean()
    assert 0.5 < active < 6  # a few AUs at a time
    assert (curves > 0.5).any(1).float().mean() > 0.05  # some reach the label threshold
    assert curves.diff(dim=1).abs().max() < 0.5  # smooth at 25 fps (speech beats the most)


def test_au_map_moves_landmarks_the_right_way(model):
    au_map = au_expression_map(model)
    assert au_map.expression.shape == (27, model.num_expression) and au_map.jaw.shape == (27,)
    for name in ("AU12", "AU25", "AU26"):
        assert au_map.explained[MAIN_AU_NAMES.index(name)] > 0.6
    intensity = torch.zeros(4, 27)
    for row, name in enumerate(("AU1", "AU12", "AU26"), start=1):
        intensity[row, MAIN_AU_NAMES.index(name)] = 1.0
    expression, jaw = au_map.codes(intensity)
    jaw_pose = torch.stack([jaw, torch.zeros(4), torch.zeros(4)], -1)
    params = FlameParams(
        shape=torch.zeros(4, model.num_shape),
        expression=expression,
        global_pose=torch.zeros(4, 3),
        jaw_pose=jaw_pose,
    )
    y = model(params).landmarks68[..., 1].detach()  # model y points up
    assert (y[1, [21, 22]] - y[0, [21, 22]]).min() > 0  # AU1 raises the inner brows
    assert (y[2, [48, 54]] - y[0, [48, 54]]).min() > 0  # AU12 raises the mouth corners
    assert y[3, 8] < y[0, 8] and y[3, 66] < y[0, 66]  # AU26 drops the chin and lower lip


def test_au_expression_residual_is_about_a_quarter(model):
    settings = replace(SyntheticConfig(), expression="au", frames=100)
    au_map = au_expression_map(model)
    gen = torch.Generator().manual_seed(3)
    au_energy = residual_energy = 0.0
    for _ in range(40):
        codes = sample_clip_codes(model, gen, settings, au_map=au_map)
        from_au = au_map.codes(codes["au_intensity"])[0]
        au_energy += float((from_au**2).sum())
        residual_energy += float(((codes["expression"] - from_au) ** 2).sum())
    assert 0.15 < residual_energy / (au_energy + residual_energy) < 0.35


def test_au_scale_multiplies_the_au_driven_part_only(model):
    au_map = au_expression_map(model)
    codes = {}
    for scale in (1.0, 2.0):
        settings = replace(
            SyntheticConfig(), expression="au", frames=60, au_events=3.0, au_scale=scale
        )
        codes[scale] = sample_clip_codes(
            model, torch.Generator().manual_seed(5), settings, au_map=au_map
        )
    torch.testing.assert_close(codes[2.0]["au_intensity"], codes[1.0]["au_intensity"])
    from_au = au_map.codes(codes[1.0]["au_intensity"])[0]
    torch.testing.assert_close(codes[2.0]["expression"] - codes[1.0]["expression"], from_au)
    assert float(codes[2.0]["jaw_pose"][:, 0].max()) > float(codes[1.0]["jaw_pose"][:, 0].max())


def test_au_ground_truth_files(tmp_path):
    (clip,) = make_synthetic_dataset(
        tmp_path,
        _cfg("synthetic.expression=au", "synthetic.background=photo", "synthetic.fast_turns=0.5"),
        clips=1,
        frames=30,
        seed=2,
        progress=False,
    )
    gt = np.load(clip / "gt.npz")
    intensity = gt["au_intensity"]
    assert intensity.shape == (30, 27) and intensity.min() >= 0 and intensity.max() <= 1
    expected = (intensity[:, list(AFFWILD2_MAIN_INDICES)] >= 0.5).astype(np.float32)
    np.testing.assert_array_equal(np.load(clip / "au.npy"), expected)
    assert json.loads((clip / "meta.json").read_text())["has_au_labels"] is True


def test_same_seed_same_bytes(tmp_path):
    overrides = (
        "synthetic.expression=au",
        "synthetic.background=photo",
        "synthetic.min_frames=5",
        *(f"synthetic.corruption.{k}=0.3" for k in REALISTIC_MIX),
    )
    a, b = (
        make_synthetic_dataset(
            tmp_path / n, _cfg(*overrides), clips=2, frames=10, seed=9, progress=False
        )
        for n in "ab"
    )
    assert len(list(a[0].glob("frames/*"))) != len(list(a[1].glob("frames/*")))  # 5-10 frames
    for x, y in zip(a, b):
        files = sorted(p.relative_to(x) for p in x.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(y) for p in y.rglob("*") if p.is_file())
        for f in files:
            assert (x / f).read_bytes() == (y / f).read_bytes(), f


def test_cam_to_crop_matches_cropped_projection():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(5, 30, 3, generator=gen) * 0.05
    cam = torch.cat(
        [torch.rand(5, 1, generator=gen) * 5 + 8, torch.randn(5, 2, generator=gen) * 0.01], -1
    )
    frame, crop = 320, 96
    k = np.random.default_rng(0).uniform(0.3, 1.5, 5)
    crops = np.zeros((5, 3, 3))
    crops[:, 0, 0] = crops[:, 1, 1] = k
    crops[:, :2, 2] = np.random.default_rng(1).uniform(-80, 20, (5, 2))
    crops[:, 2, 2] = 1
    in_frame = ndc_to_pixels(project_weak_perspective(points, cam)[..., :2], frame).numpy()
    expected = np.einsum("tij,tpj->tpi", crops[:, :2, :2], in_frame) + crops[:, None, :2, 2]
    new_cam = torch.from_numpy(cam_to_crop(cam.numpy(), crops, frame, crop)).double()
    got = ndc_to_pixels(project_weak_perspective(points.double(), new_cam)[..., :2], crop)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-3)


def _projected(model, gt, size: int) -> torch.Tensor:
    g = {k: torch.from_numpy(gt[k]) for k in ("shape", "expression", "global_pose", "jaw_pose")}
    out = model(FlameParams(**g))
    return ndc_to_pixels(
        project_weak_perspective(out.landmarks68, torch.from_numpy(gt["cam"]))[..., :2], size
    )


def test_cropped_exact_clip_ground_truth_is_consistent(model, tmp_path):
    (clip,) = make_synthetic_dataset(
        tmp_path,
        _cfg("synthetic.frame_size=160", "synthetic.fill=0.5"),
        clips=1,
        frames=8,
        seed=1,
        progress=False,
    )
    gt = np.load(clip / "gt.npz")
    transforms = np.load(clip / "transforms.npy")
    assert not np.allclose(transforms, np.eye(3))  # really cropped
    assert _frames(clip).shape == (8, 96, 96, 3)
    projected = _projected(model, gt, 96).detach().numpy()
    np.testing.assert_allclose(projected, gt["landmarks68"], atol=1e-2)
    np.testing.assert_allclose(np.load(clip / "landmarks68.npy"), gt["landmarks68"], atol=1e-3)
    assert np.load(clip / "au_proxy.npy").shape == (8, 11)


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe is not installed: no tracking")
def test_tracked_landmarks_close_to_exact(model, tmp_path):
    cfg = load_config(
        EXPERIMENT,
        ["synthetic.min_frames=0", "synthetic.fast_turns=0"]
        + [f"synthetic.corruption.{k}=0" for k in REALISTIC_MIX],
    )
    (clip,) = make_synthetic_dataset(tmp_path, cfg, clips=1, frames=12, seed=0, progress=False)
    (again,) = make_synthetic_dataset(
        tmp_path / "again", cfg, clips=1, frames=12, seed=0, progress=False
    )
    for name in ("landmarks.npy", "transforms.npy", "gt.npz", "frames/000011.jpg"):
        assert (clip / name).read_bytes() == (again / name).read_bytes(), name
    valid = np.load(clip / "valid.npy")
    assert valid.mean() >= 0.9, "MediaPipe lost the clean synthetic face"
    gt = np.load(clip / "gt.npz")
    tracked = np.load(clip / "landmarks68.npy")[valid]
    exact = gt["landmarks68"][valid]
    iod = np.linalg.norm(exact[:, 36] - exact[:, 45], axis=-1)
    nme = (np.linalg.norm(tracked - exact, axis=-1).mean(1) / iod).mean() * 100
    assert nme < 6.0, f"tracked vs exact NME {nme:.2f} %"
    np.testing.assert_allclose(
        _projected(model, gt, 224).detach().numpy(), gt["landmarks68"], atol=1e-2
    )


def _tool_main():
    return load_script("tools/make_synthetic_data.py").main


def test_experiment_config_and_tool(tmp_path):
    main = _tool_main()
    cfg = load_config(EXPERIMENT)
    assert cfg.synthetic.landmarks == "tracked" and cfg.synthetic.expression == "au"
    assert {k: getattr(cfg.synthetic.corruption, k) for k in REALISTIC_MIX} == REALISTIC_MIX
    fast = [*SMALL, "synthetic.landmarks=exact", "synthetic.frame_size=128"]
    assert (
        main([str(tmp_path), "--config", str(EXPERIMENT), "--clips", "1", "--frames", "6", *fast])
        == 0
    )
    gt = np.load(tmp_path / "synthetic" / "synth_00000" / "gt.npz")
    assert "au_intensity" in gt and "corrupt_occluder" in gt
    assert main([str(tmp_path / "c"), "--corrupt", "--clips", "1", "--frames", "4", *SMALL]) == 0
    assert "corrupted" in np.load(tmp_path / "c" / "synthetic" / "synth_00000" / "gt.npz")
    assert main([str(tmp_path / "d"), "--clips", "1", "synthetic.landmarks=magic"]) == 2


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe is not installed: no tracking")
def test_frames_without_a_face_are_invalid_or_filled(model):
    from seqdeca.data.synthetic import random_background, render_clip
    from seqdeca.data.synthetic_track import crop_clip
    from seqdeca.render.renderer import Renderer

    cfg = load_config(EXPERIMENT)  # track.max_gap = 5
    settings = replace(SyntheticConfig(), fill=0.6, expression="smooth")
    gen = torch.Generator().manual_seed(0)
    codes = sample_clip_codes(model, gen, settings, frames=16)
    renderer = Renderer(
        faces=model.faces,
        verts_uvs=model.verts_uvs,
        faces_uvs=model.faces_uvs,
        image_size=320,
        uv_size=64,
    )
    rendered = render_clip(model, renderer, codes, random_background(gen, 320))
    rendered["images"][[3, 4]] = 0  # a short gap: interpolated
    rendered["images"][7:14] = 0  # longer than max_gap: invalid
    arrays = crop_clip(rendered, cfg, tracked=True)
    expected = np.ones(16, bool)
    expected[7:14] = False
    np.testing.assert_array_equal(arrays.valid, expected)
    np.testing.assert_array_equal(arrays.interpolated, np.isin(np.arange(16), [3, 4]))
    assert not arrays.found[[3, 4]].any() and arrays.found[expected & ~arrays.interpolated].all()
    assert np.isnan(arrays.landmarks[~expected]).all() and (arrays.masks[~expected] == 0).all()
    assert np.isfinite(arrays.landmarks[expected]).all()
