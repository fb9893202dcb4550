"""Rotations, camera and normals against independent references."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from seqdeca.geometry import (
    axis_angle_to_matrix,
    face_normals,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    ndc_to_pixels,
    pixels_to_ndc,
    project_weak_perspective,
    rot6d_to_matrix,
    vertex_normals,
)


def test_rodrigues_matches_matrix_exponential():
    torch.manual_seed(0)
    aa = torch.randn(64, 3, dtype=torch.float64)
    reference = torch.linalg.matrix_exp(
        torch.stack(
            [
                torch.zeros(64, dtype=torch.float64),
                -aa[:, 2],
                aa[:, 1],
                aa[:, 2],
                torch.zeros(64, dtype=torch.float64),
                -aa[:, 0],
                -aa[:, 1],
                aa[:, 0],
                torch.zeros(64, dtype=torch.float64),
            ],
            dim=-1,
        ).reshape(64, 3, 3)
    )
    assert_close(axis_angle_to_matrix(aa), reference)


def test_axis_angle_round_trip_and_small_angles():
    torch.manual_seed(1)
    aa = torch.nn.functional.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    aa = aa * torch.rand(100, 1, dtype=torch.float64) * 3.0
    assert_close(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa, atol=1e-6, rtol=1e-6)
    tiny = torch.tensor([[1e-9, -2e-9, 0.0]], dtype=torch.float64)
    assert_close(matrix_to_axis_angle(axis_angle_to_matrix(tiny)), tiny, atol=1e-12, rtol=0)


def test_rodrigues_gradient_is_finite_at_zero():
    aa = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,))
    aa = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,))


def test_rot6d_round_trip():
    torch.manual_seed(2)
    rot = axis_angle_to_matrix(torch.randn(10, 3))
    assert_close(rot6d_to_matrix(matrix_to_rot6d(rot)), rot, atol=1e-5, rtol=1e-5)


def test_weak_perspective_follows_deca():
    pts = torch.tensor([[[0.1, 0.2, 0.05], [-0.1, 0.0, -0.02]]])
    cam = torch.tensor([[8.0, 0.01, -0.02]])
    out = project_weak_perspective(pts, cam)
    s, tx, ty = 8.0, 0.01, -0.02
    expected = torch.tensor(
        [
            [
                [s * (0.1 + tx), -s * (0.2 + ty), -s * 0.05],
                [s * (-0.1 + tx), -s * (0.0 + ty), s * 0.02],
            ]
        ]
    )
    assert_close(out, expected)


def test_pixel_ndc_round_trip_and_deca_formula():
    kpt = torch.tensor([[0.0, 0.0], [224.0, 112.0], [56.0, 200.0]])
    assert_close(pixels_to_ndc(kpt, 224), kpt / 224 * 2 - 1)
    assert_close(ndc_to_pixels(pixels_to_ndc(kpt, (224, 300)), (224, 300)), kpt)


def test_normals_of_a_square_and_a_tilted_plane():
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    assert_close(face_normals(v, f), torch.tensor([[[0.0, 0, 1], [0, 0, 1]]]))
    rot = axis_angle_to_matrix(torch.tensor([math.pi / 5, 0.3, 0.0]))
    vn = vertex_normals(v @ rot.T, f)
    assert_close(vn, (torch.tensor([0.0, 0, 1]) @ rot.T).expand(1, 4, 3), atol=1e-6, rtol=1e-6)
