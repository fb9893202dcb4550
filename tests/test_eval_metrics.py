"""Unit tests of seqdeca.eval.metrics with hand-computable values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from seqdeca.eval import metrics as M
from seqdeca.geometry.rotation import axis_angle_to_matrix


def _eyes_10_apart(lead: tuple[int, ...] = ()) -> torch.Tensor:
    """(..., 68, 2) random points whose outer eye corners 36, 45 are 10 apart."""
    points = torch.rand(*lead, 68, 2) * 20
    points[..., 36, :] = torch.tensor([0.0, 0.0])
    points[..., 45, :] = torch.tensor([6.0, 8.0])
    return points


def test_inter_ocular_distance_and_nme_of_a_shifted_set() -> None:
    target = _eyes_10_apart((2, 3))
    assert_close(M.inter_ocular_distance(target, (36, 45)), torch.full((2, 3), 10.0))
    pred = target + torch.tensor([3.0, 4.0])  # every point 5 away = 50 % of the IOD
    assert_close(M.landmark_nme(pred, target, (36, 45)), torch.full((2, 3), 50.0))
    # The target's distance normalises, not the prediction's.
    assert_close(
        M.landmark_nme(target * 2, target * 2 + 5 * 0.6, (36, 45)),
        M.landmark_nme(target, target + 3 * 0.5, (36, 45)),
    )


def test_nme_valid_masks_and_nan() -> None:
    target = _eyes_10_apart((4,))
    pred = target.clone()
    pred[:, :34] += torch.tensor([3.0, 4.0])  # half the points 5 off
    valid = torch.tensor([True, False, True, True])
    nme = M.landmark_nme(pred, target, (36, 45), valid)
    assert torch.isnan(nme[1]) and torch.isfinite(nme[[0, 2, 3]]).all()
    assert_close(nme[0], torch.tensor(25.0))
    point_valid = torch.zeros(4, 68, dtype=torch.bool)
    point_valid[:, 34:] = True  # only the exact points count
    assert_close(M.landmark_nme(pred, target, (36, 45), point_valid), torch.zeros(4))
    target[2] = float("nan")
    assert torch.isnan(M.landmark_nme(pred, target, (36, 45))[2])


def test_masked_l1_and_psnr_of_known_noise() -> None:
    image = torch.full((2, 3, 8, 8), 0.5)
    render = image + 0.1
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    render[..., 0, 0] = 1.0  # outside the mask: ignored
    assert_close(M.masked_l1(render, image, mask), torch.full((2,), 0.1))
    assert_close(M.masked_psnr(render, image, mask), torch.full((2,), 20.0))
    assert torch.isnan(M.masked_l1(render, image, torch.zeros_like(mask))).all()


def test_masked_ssim_identical_and_against_skimage() -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 32, 32, generator=gen)
    mask = torch.ones(1, 1, 32, 32)
    assert_close(M.masked_ssim(image[None], image[None], mask), torch.ones(1))
    noisy = (image + 0.2 * torch.randn(3, 32, 32, generator=gen)).clamp(0, 1)
    interior = torch.zeros(1, 32, 32)
    interior[:, 5:-5, 5:-5] = 1  # skimage averages where the window fits in the image
    ours = M.masked_ssim(noisy, image, interior)
    reference = skimage_metrics.structural_similarity(
        noisy.permute(1, 2, 0).double().numpy(),
        image.permute(1, 2, 0).double().numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )
    assert 0 < float(ours) < 0.9
    assert_close(ours.double(), torch.tensor(reference, dtype=torch.float64), atol=1e-4, rtol=0)


def test_acceleration_and_jerk_of_polynomials() -> None:
    t = torch.arange(7.0)[:, None, None]  # (T, 1, 1)
    linear = (3 * t + 1).expand(7, 5, 3)
    assert_close(M.acceleration(linear), torch.zeros(5))
    quadratic = (t**2).expand(7, 5, 3)  # second difference 2 per coordinate
    assert_close(M.acceleration(quadratic), torch.full((5,), 2 * math.sqrt(3)))
    assert_close(M.jerk(quadratic), torch.zeros(4))
    cubic = (t**3).expand(7, 4, 2)  # third difference 6 per coordinate
    assert_close(M.jerk(cubic), torch.full((4,), 6 * math.sqrt(2)))
    assert M.acceleration(quadratic[:2]).shape == (0,)


def test_temporal_differences_skip_invalid_frames() -> None:
    x = torch.arange(8.0)[:, None, None].expand(8, 3, 2).clone()
    valid = torch.ones(8, dtype=torch.bool)
    valid[4] = False
    acc = M.acceleration(x, valid)  # centres 1..6; frame 4 touches centres 3, 4, 5
    assert torch.isnan(acc[[2, 3, 4]]).all() and (acc[[0, 1, 5]] == 0).all()
    x[4, 0] = float("nan")  # a NaN point spoils the frames it touches the same way
    assert torch.isnan(M.acceleration(x)[[2, 3, 4]]).all()
    assert torch.isnan(M.jerk(x, valid)[[1, 2, 3, 4]]).all()


def test_remove_global_pose_inverts_rotation_and_translation() -> None:
    gen = torch.Generator().manual_seed(1)
    head = torch.randn(5, 20, 3, generator=gen)
    pose = torch.randn(5, 3, generator=gen) * 0.5
    posed = head @ axis_angle_to_matrix(pose).transpose(-1, -2) + torch.randn(
        5, 1, 3, generator=gen
    )
    expected = head - head.mean(-2, keepdim=True)
    assert_close(M.remove_global_pose(posed, pose), expected, atol=1e-5, rtol=1e-5)
    # Batched over extra leading dimensions.
    assert_close(M.remove_global_pose(posed[None], pose[None])[0], expected, atol=1e-5, rtol=1e-5)


def test_normalise_landmarks_removes_translation_and_scale() -> None:
    points = _eyes_10_apart((3,))
    normalised = M.normalise_landmarks(points, (36, 45))
    assert_close(M.normalise_landmarks(points * 4 + 7, (36, 45)), normalised)
    assert_close(normalised.mean(-2), torch.zeros(3, 2), atol=1e-6, rtol=0)
    assert_close(M.inter_ocular_distance(normalised, (36, 45)), torch.ones(3))


def test_au_f1_with_known_labels() -> None:
    probabilities = torch.tensor(
        [[0.9, 0.1, 0.2, 0.7], [0.2, 0.8, 0.1, 0.9], [0.7, 0.6, 0.3, 0.1], [0.8, 0.4, 0.0, 0.9]]
    )
    labels = torch.tensor([[1, 0, -1, 0], [1, -1, -1, 0], [0, -1, -1, 0], [1, 1, -1, 0]])
    f1 = M.au_f1(probabilities, labels)
    # AU0: TP 2 (frames 0, 3), FN 1 (frame 1), FP 1 (frame 2) -> 4 / 6.
    # AU1: labelled frames 0 (0, pred 0) and 3 (1, pred 0) -> TP 0, FN 1 -> 0.
    # AU2: never labelled -> NaN. AU3: all negative, predicted 1 on 3 frames -> 0.
    assert_close(f1[0], torch.tensor(4 / 6))
    assert f1[1] == 0 and torch.isnan(f1[2]) and f1[3] == 0
    assert_close(M.au_f1(labels.clamp(min=0).float(), labels.clamp(min=0))[[0, 1]], torch.ones(2))
    assert M.au_f1(probabilities[None].expand(2, 4, 4), labels[None]).shape == (2, 4)


def test_au_flicker_std_and_flips() -> None:
    probabilities = torch.tensor([[0.2, 0.6], [0.8, 0.6], [0.2, 0.6], [0.8, float("nan")]])
    out = M.au_flicker(probabilities, fps=10.0)
    assert_close(out["std"], torch.tensor([0.3, 0.0]))
    # AU0: 3 flips over 3 pairs (0.3 s) -> 10 / s; AU1: 2 usable pairs, no flip.
    assert_close(out["flips_per_s"], torch.tensor([10.0, 0.0]))


def test_code_and_vertex_errors() -> None:
    target = torch.zeros(2, 5)
    assert_close(
        M.code_error(target + torch.tensor([1.0, -1, 1, -1, 0]), target), torch.full((2,), 0.8)
    )
    vertices = torch.randn(3, 10, 3)
    shifted = vertices + torch.tensor([0.003, 0.004, 0.0])  # 5 mm
    assert_close(M.vertex_error_mm(shifted, vertices), torch.full((3,), 5.0))
    assert np.isclose(float(M.vertex_error_mm(vertices, vertices).sum()), 0.0)
