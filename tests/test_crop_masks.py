"""The face crop (box, smoothing, warp), region masks, gap interpolation and AU proxies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from seqdeca.prep.au_proxy import AU_PROXY_NAMES, au_proxies
from seqdeca.prep.crop import (
    apply_transform,
    crop_boxes,
    crop_transforms,
    smooth_boxes,
    warp_to_crop,
)
from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE, IRIS_CENTRES
from seqdeca.prep.masks import FACE, IMPORTANT, region_masks
from seqdeca.prep.tracking import FaceTracker, interpolate_gaps
from seqdeca.render import paste_into_frame


@pytest.fixture(scope="module")
def astronaut_landmarks() -> np.ndarray:
    """(478, 3) MediaPipe landmarks of scikit-image's astronaut (512x512)."""
    with FaceTracker(static_image_mode=True) as tracker:
        points, ok = tracker.process(skdata.astronaut())
    assert ok
    return points


def _synthetic_track(t: int, noise: float, seed: int = 0) -> np.ndarray:
    """(T, 478, 3) a unit-square-ish landmark cloud drifting slowly, plus per-frame jitter."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, size=(478, 3)).astype(np.float32)
    drift = np.linspace(0, 20, t, dtype=np.float32)[:, None, None]
    jitter = rng.normal(0, noise, size=(t, 1, 3)).astype(np.float32)
    return base[None] + 200 + drift + jitter


def test_crop_maps_box_centre_to_crop_centre_and_inverts():
    lm = _synthetic_track(5, 0.0)
    m = crop_transforms(lm, np.ones(5, bool), size=224, scale=1.25, smooth_frames=1)
    assert m.shape == (5, 3, 3)
    pts = lm[:, IBUG68_FROM_MEDIAPIPE, :2]
    centre = (pts.min(1) + pts.max(1)) / 2
    np.testing.assert_allclose(apply_transform(centre[:, None], m)[:, 0], 112.0, atol=1e-4)
    side = 1.25 * 1.1 * (pts.max(1) - pts.min(1)).mean(1)
    np.testing.assert_allclose(m[:, 0, 0], 224 / side, rtol=1e-6)
    back = apply_transform(apply_transform(lm[..., :2], m), np.linalg.inv(m))
    np.testing.assert_allclose(back, lm[..., :2], atol=1e-3)


def test_smoothing_reduces_jitter_and_holds_invalid_frames():
    lm = _synthetic_track(60, 3.0)
    valid = np.ones(60, bool)
    raw = crop_boxes(lm, scale=1.25)
    smooth = smooth_boxes(raw, valid, 9)
    jitter = lambda b: np.abs(np.diff(b[:, 0], 2)).mean()
    assert jitter(smooth) < 0.3 * jitter(raw)
    valid[10:20] = False
    lm[~valid] = np.nan
    held = smooth_boxes(crop_boxes(lm, scale=1.25), valid, 9)
    assert np.isfinite(held).all()
    np.testing.assert_array_equal(held[10:15], np.repeat(held[9:10], 5, 0))
    np.testing.assert_array_equal(held[15:20], np.repeat(held[20:21], 5, 0))
    with pytest.raises(ValueError, match="no valid frame"):
        smooth_boxes(raw, np.zeros(60, bool), 9)


def test_warp_places_a_known_point_where_the_transform_says():
    frame = np.zeros((300, 400, 3), np.uint8)
    frame[150:154, 250:254] = 255  # a 4x4 white square centred at continuous (252, 152)
    m = np.array([[0.8, 0.0, -120.0], [0.0, 0.8, -40.0], [0, 0, 1]])
    crop = warp_to_crop(frame[None], m[None], 160)[0]
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    weight = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:160, :160] + 0.5
    found = np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()
    np.testing.assert_allclose(found, apply_transform(np.array([252.0, 152.0]), m), atol=0.05)


def test_warp_matches_the_paste_convention():
    """Pasting a crop back with seqdeca.render.paste_into_frame restores the frame region.

    A smooth pattern (period 64 px) survives the bilinear round trip within quantisation, while a
    half-pixel convention mismatch would shift it by about 9 grey levels.
    """
    ys, xs = np.mgrid[:256, :256] + 0.5
    wave = 127.5 + 120 * np.cos(2 * np.pi * (xs + 0.5 * ys) / 64)
    frame = np.repeat(wave[..., None], 3, 2).round().astype(np.uint8)
    m = np.array([[0.7, 0, -20.0], [0, 0.7, -10.0], [0, 0, 1]])
    crop = warp_to_crop(frame[None], m[None], 128)
    as_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255
    pasted = paste_into_frame(
        as_t(crop),
        torch.ones(1, 1, 128, 128, dtype=torch.float64),
        torch.zeros(1, 3, 256, 256, dtype=torch.float64),
        torch.from_numpy(m)[None],
    )
    inner = (slice(None), slice(None), slice(40, 160), slice(50, 160))  # well inside the crop
    torch.testing.assert_close(pasted[inner], as_t(frame[None])[inner], atol=3 / 255, rtol=0)


def test_masks_have_the_right_classes_at_known_points(astronaut_landmarks):
    lm = astronaut_landmarks
    m = crop_transforms(lm[None], np.ones(1, bool), size=224, scale=1.25, smooth_frames=1)[0]
    crop_lm = apply_transform(lm[:, :2], m)
    mask = region_masks(crop_lm, 224)
    assert mask.shape == (224, 224) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1, 2}
    at = lambda p: mask[int(p[1]), int(p[0])]
    for iris in IRIS_CENTRES:
        assert at(crop_lm[iris]) == IMPORTANT
    assert at((crop_lm[0] + crop_lm[17]) / 2) == IMPORTANT  # between the lips' outer points
    assert at(crop_lm[105]) == IMPORTANT  # a brow point
    assert at(crop_lm[50]) == FACE and at(crop_lm[280]) == FACE  # MediaPipe's cheek points
    assert mask[0, 0] == 0 and mask[223, 223] == 0
    assert not region_masks(np.full((478, 3), np.nan), 224).any()


def test_gap_interpolation_fills_short_gaps_only():
    t = 30
    lm = np.repeat(np.arange(t, dtype=np.float32)[:, None, None], 478, 1).repeat(3, 2)
    valid = np.ones(t, bool)
    valid[[0, 5, 6, 7]] = False  # leading gap (never filled) and a 3-frame gap
    valid[15:25] = False  # a 10-frame gap
    lm[~valid] = np.nan
    out, ok, interp = interpolate_gaps(lm, valid, max_gap=5)
    np.testing.assert_array_equal(np.flatnonzero(interp), [5, 6, 7])
    assert ok[5:8].all() and not ok[0] and not ok[15:25].any()
    np.testing.assert_allclose(out[5:8, 0, 0], [5, 6, 7])
    assert np.isnan(out[15:25]).all() and np.isnan(out[0]).all()
    _, ok0, interp0 = interpolate_gaps(lm, valid, max_gap=0)
    np.testing.assert_array_equal(ok0, valid)
    assert not interp0.any()


def test_au_proxies_are_bounded_named_and_react_to_mouth_opening(astronaut_landmarks):
    lm = np.repeat(astronaut_landmarks[None], 20, 0).astype(np.float64)
    iod = np.linalg.norm(lm[0, 33, :2] - lm[0, 263, :2])
    lower = [14, 17, 87, 317, 152, 148, 377, 84, 314, 178, 402, 181, 405, 15, 16]
    lm[10:, lower, 1] += 0.15 * iod  # jaw and lower lip drop in the second half
    valid = np.ones(20, bool)
    valid[3] = False
    proxies, names = au_proxies(lm, valid)
    assert names == AU_PROXY_NAMES and all(n.endswith("_proxy") for n in names)
    assert proxies.shape == (20, len(names)) and proxies.dtype == np.float32
    assert np.isnan(proxies[3]).all()
    finite = proxies[valid]
    assert finite.min() >= 0 and finite.max() <= 1
    au25 = names.index("AU25_proxy")
    assert proxies[12, au25] > 0.8 and proxies[0, au25] < 0.05
    again, _ = au_proxies(lm, valid)
    np.testing.assert_array_equal(again, proxies)  # deterministic
