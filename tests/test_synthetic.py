"""Synthetic clips: layout, ground truth that reproduces the landmarks, loading as windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from seqdeca.config import load_config
from seqdeca.data.dataset import SequenceDataset
from seqdeca.data.synthetic import make_synthetic_dataset, smooth_trajectory
from seqdeca.face_model.from_config import face_model_from_config
from seqdeca.face_model.layer import FlameParams
from seqdeca.geometry.camera import ndc_to_pixels, project_weak_perspective

FRAMES = 6


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    paths = make_synthetic_dataset(
        out, load_config(), clips=2, frames=FRAMES, seed=4, progress=False
    )
    return out, paths


def test_layout_complete(synth):
    out, paths = synth
    assert [p.name for p in paths] == ["synth_00000", "synth_00001"]
    assert not [p for p in (out / "synthetic").iterdir() if p.name.startswith(".")]
    for clip in paths:
        assert len(list((clip / "frames").glob("*.jpg"))) == FRAMES
        assert len(list((clip / "masks").glob("*.png"))) == FRAMES
        assert np.load(clip / "landmarks.npy").shape == (FRAMES, 478, 3)
        assert np.load(clip / "landmarks68.npy").shape == (FRAMES, 68, 2)
        assert np.load(clip / "valid.npy").all()
        transforms = np.load(clip / "transforms.npy")
        np.testing.assert_array_equal(transforms, np.broadcast_to(np.eye(3), (FRAMES, 3, 3)))
        assert (np.load(clip / "au.npy") == -1).all()
        assert np.load(clip / "au_proxy.npy").shape == (FRAMES, 0)
        meta = json.loads((clip / "meta.json").read_text())
        assert meta["dataset"] == "synthetic" and meta["num_frames"] == FRAMES
        with Image.open(clip / "frames" / "000000.jpg") as im:
            assert im.size == (224, 224) and im.mode == "RGB"
        mask = np.array(Image.open(clip / "masks" / "000000.png"))
        assert set(np.unique(mask)) == {0, 1, 2}


def test_images_not_blank_and_clips_differ(synth):
    _, paths = synth
    first = [np.asarray(Image.open(p / "frames" / "000003.jpg"), dtype=np.float32) for p in paths]
    for image in first:
        assert image.std() > 20
    assert np.abs(first[0] - first[1]).mean() > 10
    # The face (mask > 0) differs from the background and moves over the clip.
    clip = paths[0]
    masks = [np.array(Image.open(clip / "masks" / f"{t:06d}.png")) > 0 for t in (0, FRAMES - 1)]
    assert 0.15 < masks[0].mean() < 0.8 and (masks[0] != masks[1]).mean() > 0.002


def test_ground_truth_reproduces_landmarks(synth):
    _, paths = synth
    model = face_model_from_config(load_config().face_model)
    for clip in paths:
        gt = {k: torch.from_numpy(v) for k, v in np.load(clip / "gt.npz").items()}
        assert gt["shape"].shape == (FRAMES, model.num_shape)
        assert gt["light"].shape == (FRAMES, 9, 3) and gt["cam"].shape == (FRAMES, 3)
        out = model(
            FlameParams(
                shape=gt["shape"],
                expression=gt["expression"],
                global_pose=gt["global_pose"],
                jaw_pose=gt["jaw_pose"],
            )
        )
        mp = ndc_to_pixels(project_weak_perspective(out.landmarks_mp, gt["cam"])[..., :2], 224)
        lmk68 = ndc_to_pixels(project_weak_perspective(out.landmarks68, gt["cam"])[..., :2], 224)
        stored = torch.from_numpy(np.load(clip / "landmarks.npy"))
        torch.testing.assert_close(mp, stored[..., :2], atol=1e-3, rtol=0)
        torch.testing.assert_close(mp, gt["landmarks"], atol=1e-3, rtol=0)
        torch.testing.assert_close(
            lmk68, torch.from_numpy(np.load(clip / "landmarks68.npy")), atol=1e-3, rtol=0
        )
        # Pose stays within +-30 / 20 / 10 degrees (pitch, yaw, roll as x, y, z axis-angle).
        limits = torch.deg2rad(torch.tensor([20.0, 30.0, 10.0]))
        assert (gt["global_pose"].abs() <= limits + 1e-6).all()
        assert gt["global_pose"].std(0).sum() > 0  # it moves


def test_rewrite_is_deterministic_and_resumes(synth, tmp_path):
    _, paths = synth
    again = make_synthetic_dataset(
        tmp_path, load_config(), clips=1, frames=FRAMES, seed=4, progress=False
    )
    a = np.load(paths[0] / "gt.npz")
    b = np.load(again[0] / "gt.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    stamp = (again[0] / "valid.npy").stat().st_mtime_ns
    make_synthetic_dataset(tmp_path, load_config(), clips=1, frames=FRAMES, seed=4, progress=False)
    assert (again[0] / "valid.npy").stat().st_mtime_ns == stamp  # existing clip skipped


def test_worker_processes_write_the_same_clips(synth, tmp_path):
    _, paths = synth
    again = make_synthetic_dataset(
        tmp_path, load_config(), clips=2, frames=FRAMES, seed=4, progress=False, workers=2
    )
    assert [p.name for p in again] == [p.name for p in paths]
    for mine, theirs in zip(paths, again):
        a, b = np.load(mine / "gt.npz"), np.load(theirs / "gt.npz")
        assert sorted(a) == sorted(b)
        for key in a:  # codes are drawn, not computed: equal; projections to rounding
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-4)
        frames = sorted((mine / "frames").iterdir())
        assert len(frames) == len(list((theirs / "frames").iterdir())) == FRAMES
        x = np.asarray(Image.open(frames[0]), dtype=np.int16)
        y = np.asarray(Image.open(theirs / "frames" / frames[0].name), dtype=np.int16)
        assert np.abs(x - y).mean() < 0.5


def test_unknown_setting_is_a_one_line_error(tmp_path):
    from seqdeca.errors import UserError

    with pytest.raises(UserError, match="unknown synthetic setting.*max_yew"):
        make_synthetic_dataset(
            tmp_path,
            load_config(),
            clips=1,
            frames=2,
            seed=0,
            progress=False,
            ranges={"max_yew": 5.0},
        )
    assert not any(tmp_path.iterdir())


def test_dataset_loads_synthetic(synth):
    out, _ = synth
    ds = SequenceDataset(sources=[out / "synthetic"], window=3, train=False)
    assert len(ds) == 2 * (FRAMES - 2)
    item = ds[0]
    assert item["images"].shape == (3, 3, 224, 224)
    assert torch.isfinite(item["landmarks"]).all() and item["landmarks"].abs().max() < 1


def test_smooth_trajectory_range_and_smoothness():
    gen = torch.Generator().manual_seed(0)
    curve = smooth_trajectory(gen, 200, 4)
    assert curve.shape == (200, 4) and curve.abs().max() <= 1
    assert curve.diff(dim=0).abs().max() < 2 * torch.pi * 1.0 / 25 + 1e-5
