"""On-the-fly corruption of training windows and the clean-consistency term it feeds."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from seqdeca.config import load_config
from seqdeca.data.corrupt_crops import corrupt_window, corruption_rates
from seqdeca.data.synthetic_corrupt import REALISTIC_MIX

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


def _window(t: int = 40, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(t, 3, size, size, generator=g) * 255).round() / 255
    ring = torch.linspace(0, 2 * np.pi, 68)
    points = torch.stack([0.4 * torch.cos(ring), 0.5 * torch.sin(ring)], -1)  # a face-sized ring
    return images, points.expand(t, 68, 2).clone()


def test_rates_scale_the_realistic_mix():
    rates = corruption_rates(2.0)
    assert rates.occluder == pytest.approx(2 * REALISTIC_MIX["occluder"])
    assert corruption_rates(100.0).blur == 0.95
    with pytest.raises(ValueError):
        corruption_rates(-1.0)


def test_corrupt_window_changes_some_frames_and_keeps_the_input():
    images, points = _window()
    before = images.clone()
    out = corrupt_window(images, points, corruption_rates(3.0), np.random.default_rng(1))
    torch.testing.assert_close(images, before)  # the clean crops are untouched
    assert out.shape == images.shape and out.dtype == torch.float32
    changed = (out - images).abs().flatten(1).amax(1) > 1e-6
    assert 0 < int(changed.sum()) < len(images)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    again = corrupt_window(images, points, corruption_rates(3.0), np.random.default_rng(1))
    torch.testing.assert_close(out, again)  # a seeded draw
    none = corrupt_window(images, points, corruption_rates(0.0), np.random.default_rng(1))
    assert none is images


def test_unknown_landmarks_get_no_occluder():
    images, points = _window(t=30)
    points[:] = float("nan")
    rates = corruption_rates(0.0)
    rates.occluder = 0.9
    out = corrupt_window(images, points, rates, np.random.default_rng(2))
    torch.testing.assert_close(out, images, rtol=0, atol=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from seqdeca.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("clips")
    make_synthetic_dataset(
        root, load_config(TINY, ["crop.size=64"]), clips=2, frames=8, seed=3, progress=False
    )
    return root


def test_training_items_carry_clean_crops_and_batches_stack_them(clips):
    from seqdeca.config.schema import AugmentationConfig
    from seqdeca.data.dataset import SequenceDataset, collate_windows

    aug = AugmentationConfig(
        flip_prob=0,
        max_rotation_deg=0,
        scale_jitter=0,
        shift_jitter=0,
        color_jitter=0,
        corruption=8.0,
    )
    data = SequenceDataset(sources=[clips], window=3, train=True, augmentation=aug, image_size=64)
    items = [data[i] for i in range(len(data))]
    assert all("clean_images" in item for item in items)
    differs = [bool((item["images"] != item["clean_images"]).any()) for item in items]
    assert any(differs)
    batch = collate_windows(items[:2])
    assert batch.clean_images.shape == batch.images.shape
    plain = SequenceDataset(sources=[clips], window=3, train=False, augmentation=aug, image_size=64)
    assert "clean_images" not in plain[0]  # evaluation is never corrupted
    assert collate_windows([plain[0]]).clean_images is None


def test_clean_consistency_compares_fused_codes_with_the_teacher():
    from seqdeca.models.from_config import build_model
    from seqdeca.train.steps import SkipLog, coarse_terms

    cfg = load_config(TINY, ["loss.clean_consistency=1.0"])
    for name in (
        "landmark",
        "eye_closure",
        "lip_closure",
        "photometric",
        "light_reg",
        "au_label",
        "shape_reg",
        "expression_reg",
        "texture_reg",
    ):
        setattr(cfg.loss, name, 0.0)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    clean = torch.rand(1, 3, 3, 64, 64)
    valid = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        out = model(clean, valid)
        teacher = model.per_frame_codes(clean)
    kwargs = {"loss_cfg": cfg.loss, "mediapipe_ids": None, "skips": SkipLog()}
    batch = types.SimpleNamespace(valid=valid, clean_images=None, images=clean)
    assert coarse_terms(out, batch, **kwargs) == {}  # no teacher codes: skipped with a reason
    assert "clean_consistency" in kwargs["skips"].reasons
    codes = {"expression": teacher["expression"], "jaw_pose": teacher["pose"][..., 3:]}
    # the fusion starts at zero: on the clean crops the fused codes ARE the teacher's
    term = coarse_terms(out, batch, **kwargs, teacher=codes)["clean_consistency"]
    assert term.item() == pytest.approx(0.0)
    codes["expression"] = teacher["expression"] + 0.5
    term = coarse_terms(out, batch, **kwargs, teacher=codes)["clean_consistency"]
    assert term.item() == pytest.approx(0.5)


def test_photometric_target_is_the_clean_crop():
    from seqdeca.train.steps import SkipLog, coarse_terms

    cfg = load_config(TINY)
    for name in (
        "landmark",
        "eye_closure",
        "lip_closure",
        "light_reg",
        "au_label",
        "shape_reg",
        "expression_reg",
        "texture_reg",
    ):
        setattr(cfg.loss, name, 0.0)
    g = torch.Generator().manual_seed(0)
    clean, noise = (
        torch.rand(1, 2, 3, 64, 64, generator=g),
        torch.rand(1, 2, 3, 64, 64, generator=g),
    )
    decoded = types.SimpleNamespace(
        render=torch.rand(1, 2, 3, 64, 64, generator=g), render_mask=torch.ones(1, 2, 1, 64, 64)
    )
    out = types.SimpleNamespace(decoded=decoded)  # what the term reads
    common = {
        "valid": torch.ones(1, 2, dtype=torch.bool),
        "masks": torch.ones(1, 2, 64, 64, dtype=torch.uint8),
    }
    kwargs = {"loss_cfg": cfg.loss, "mediapipe_ids": None, "skips": SkipLog()}
    corrupted = types.SimpleNamespace(images=noise, clean_images=clean, **common)
    plain = types.SimpleNamespace(images=clean, clean_images=None, **common)
    value = coarse_terms(out, corrupted, **kwargs)["photometric"]
    torch.testing.assert_close(value, coarse_terms(out, plain, **kwargs)["photometric"])
    noisy = types.SimpleNamespace(images=noise, clean_images=None, **common)
    assert not torch.allclose(value, coarse_terms(out, noisy, **kwargs)["photometric"])


def test_binomial_smooth_by_hand():
    from seqdeca.losses.temporal import binomial_smooth

    codes = torch.tensor([[0.0, 4.0, 0.0, 4.0, 8.0]])[..., None]
    valid = torch.tensor([[True, True, True, False, True]])
    expected = torch.tensor([4 / 3, 2.0, 4 / 3, 4.0, 8.0])  # invalid neighbours drop out
    torch.testing.assert_close(binomial_smooth(codes, valid)[0, :, 0], expected)


def test_smoothed_teacher_reaches_the_consistency_term(clips):
    """``loss.clean_consistency_smooth``: the temporal step holds the fused codes to the
    teacher's codes averaged over neighbouring frames (checked through the logged term)."""
    from accelerate import Accelerator

    from seqdeca.config.schema import AugmentationConfig
    from seqdeca.data.dataset import SequenceDataset, collate_windows
    from seqdeca.losses.supervision import code_supervision_loss
    from seqdeca.losses.temporal import binomial_smooth
    from seqdeca.models.from_config import build_model
    from seqdeca.train.steps import SkipLog, temporal_step

    aug = AugmentationConfig(
        flip_prob=0,
        max_rotation_deg=0,
        scale_jitter=0,
        shift_jitter=0,
        color_jitter=0,
        corruption=8.0,
    )
    data = SequenceDataset(sources=[clips], window=3, train=True, augmentation=aug, image_size=64)
    batch = collate_windows([data[0], data[1]])
    values = {}
    for smooth in (False, True):
        cfg = load_config(
            TINY,
            ["loss.clean_consistency=1.0", f"loss.clean_consistency_smooth={str(smooth).lower()}"],
        )
        torch.manual_seed(0)
        model = build_model(cfg)
        with torch.no_grad():  # a "pretrained" encoder: codes that depend on the image
            torch.nn.init.normal_(model.coarse_encoder.layers[2].weight, std=0.01)
        model.set_stage("temporal")
        result = temporal_step(
            Accelerator(cpu=True),
            model,
            batch,
            loss_cfg=cfg.loss,
            mediapipe_ids=None,
            skips=SkipLog(),
        )
        values[smooth] = float(result.logged["clean_consistency"])
        model.eval()
        with torch.no_grad():
            out = model(batch.images, batch.valid)
            teacher = model.per_frame_codes(batch.clean_images)
        target = {"expression": teacher["expression"], "jaw_pose": teacher["pose"][..., 3:]}
        if smooth:
            target = {k: binomial_smooth(v, batch.valid) for k, v in target.items()}
        fused = {"expression": out.expression, "jaw_pose": out.jaw_pose}
        expected = float(code_supervision_loss(fused, target, batch.valid))
        assert values[smooth] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert values[True] != pytest.approx(values[False])
