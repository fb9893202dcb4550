"""Per-face and per-vertex quantities of triangle meshes batched over N."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def face_vertices(values: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Gather per-vertex values at the corners of every face.

    Args:
        values: (N, V, C) per-vertex values.
        faces: (F, 3) vertex indices.

    Returns:
        (N, F, 3, C).
    """
    return values[:, faces]


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals (N, F, 3) of counter-clockwise faces (right-hand rule)."""
    tri = face_vertices(vertices, faces)
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return F.normalize(n, dim=-1, eps=1e-12)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (N, V, 3).
        faces: (F, 3).

    Returns:
        (N, V, 3) unit normals (zero for vertices that belong to no face).
    """
    tri = face_vertices(vertices, faces)
    # The unnormalised cross product is twice the face area times its normal.
    fn = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    out = torch.zeros_like(vertices)
    idx = faces.reshape(-1).to(vertices.device)
    out.index_add_(1, idx, fn.repeat_interleave(3, dim=1))
    return F.normalize(out, dim=-1, eps=1e-12)
