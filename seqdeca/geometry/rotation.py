"""Rotation representations: axis-angle (radians), 3x3 matrices, and the continuous 6D form.

All functions take any leading batch shape ``(...)`` and are differentiable, including at the
zero rotation (the Rodrigues formula uses a Taylor expansion for small angles).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SMALL = 1e-6


def _skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices of vectors ``v`` (..., 3) -> (..., 3, 3)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        axis_angle: (..., 3) rotation vectors, angle = norm in radians.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < _SMALL**2
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    # sin(t)/t and (1-cos(t))/t^2 with their Taylor series near zero.
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    k = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix` for angles in [0, pi).

    Args:
        matrix: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) rotation vectors.
    """
    trace = matrix[..., 0, 0] + matrix[..., 1, 1] + matrix[..., 2, 2]
    cos = ((trace - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    w = torch.stack(
        [
            matrix[..., 2, 1] - matrix[..., 1, 2],
            matrix[..., 0, 2] - matrix[..., 2, 0],
            matrix[..., 1, 0] - matrix[..., 0, 1],
        ],
        dim=-1,
    )
    sin = torch.sin(theta)
    small = sin.abs() < 1e-5
    scale = torch.where(small, 0.5 + theta**2 / 12, theta / (2 * torch.where(small, 1.0, sin)))
    return w * scale[..., None]


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """Zhou et al.'s continuous 6D representation (first two matrix columns) to matrices.

    Args:
        rot6d: (..., 6), the two columns concatenated.

    Returns:
        (..., 3, 3) rotation matrices (Gram-Schmidt on the two columns).
    """
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) matrices -> (..., 6), the first two columns."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)
