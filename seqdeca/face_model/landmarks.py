"""Landmarks as barycentric points on mesh faces, and DECA's yaw-dependent jaw contour.

Yaw convention (used by :func:`chain_yaw_degrees` and the dynamic contour table): the yaw of a
rotation matrix R is ``atan2(-R[2, 0], sqrt(R[0, 0]^2 + R[1, 0]^2))``, the Y angle of an
X-Y-Z Euler decomposition. For a pure rotation about the model's +y axis (up) it equals the
right-handed rotation angle, so a POSITIVE yaw turns the face (which looks along +z, towards
the camera) towards +x: the image's right, the subject's own left. This is the convention of
DECA's ``landmark_embedding.npy`` (DECA does not negate it; smplx's FLAME, with a different
embedding file, does). seqdeca stores the contour table with row ``yaw + (Y - 1) / 2`` for
integer yaws ``-(Y-1)/2 .. (Y-1)/2``; the loader in ``flame_io`` reorders DECA's rows into that
order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def barycentric_points(
    vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Points given by barycentric coordinates on mesh faces.

    Args:
        vertices: (N, V, 3) mesh vertices.
        faces: (F, 3) vertex indices (int64).
        face_idx: (L,) face of every point, shared by the batch, or (N, L) per item.
        bary: (L, 3) or (N, L, 3) barycentric coordinates (rows sum to 1).

    Returns:
        (N, L, 3) points, ``sum_k bary[..., k] * vertices[faces[face_idx, k]]``.
    """
    n = vertices.shape[0]
    if face_idx.dim() == 1:
        corners = vertices[:, faces[face_idx]]  # (N, L, 3 corners, 3 xyz)
    else:
        vid = faces[face_idx]  # (N, L, 3)
        batch = torch.arange(n, device=vertices.device)[:, None, None]
        corners = vertices[batch, vid]
    bary = bary.to(vertices.dtype).expand(n, *bary.shape[-2:])
    return torch.einsum("nlkc,nlk->nlc", corners, bary)


def kinematic_chain(parents: Sequence[int], joint: int) -> list[int]:
    """Joint indices from ``joint`` up to the root, e.g. FLAME's neck chain ``[1, 0]``."""
    chain = []
    while joint != -1:
        chain.append(joint)
        joint = int(parents[joint])
    return chain


def chain_yaw_degrees(rot_mats: torch.Tensor, chain: Sequence[int]) -> torch.Tensor:
    """Yaw of the composed rotation of a kinematic chain, in degrees (see module docstring).

    Args:
        rot_mats: (N, J, 3, 3) local joint rotations.
        chain: joint indices from the child up to the root (:func:`kinematic_chain`); the
            composed rotation is ``R[chain[-1]] @ ... @ R[chain[0]]`` (root applied last).

    Returns:
        (N,) yaw in degrees.
    """
    composed = rot_mats[:, chain[0]]
    for j in chain[1:]:
        composed = rot_mats[:, j] @ composed
    sy = torch.sqrt(composed[:, 0, 0] ** 2 + composed[:, 1, 0] ** 2)
    return torch.rad2deg(torch.atan2(-composed[:, 2, 0], sy))


def contour_rows(yaw_degrees: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Row of a dynamic contour table for each yaw.

    Args:
        yaw_degrees: (N,) yaw in degrees.
        num_rows: Y, the table's rows (odd; 79 for DECA: yaws -39..39).

    Returns:
        (N,) int64 rows ``clamp(round(yaw), -h, h) + h`` with ``h = (Y - 1) // 2``. Rounding is
        half-to-even, like DECA's ``torch.round``.
    """
    half = (num_rows - 1) // 2
    yaw = torch.round(yaw_degrees.detach()).clamp(-half, half)
    return yaw.long() + half


def deca_row_order(num_rows: int) -> list[int]:
    """For each seqdeca contour row (yaw ascending), the matching row of DECA's table.

    DECA stores yaw ``y >= 0`` at row ``y`` and yaw ``y < 0`` at row ``h - y`` (``h`` = 39), so
    its 79 rows read 0, 1, ..., 39, -1, -2, ..., -39 degrees.
    """
    if num_rows % 2 != 1:
        raise ValueError(f"a dynamic contour table needs an odd number of rows, got {num_rows}")
    half = (num_rows - 1) // 2
    return [y if y >= 0 else half - y for y in range(-half, half + 1)]
