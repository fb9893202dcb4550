"""The statistical spaces of the face model: geometry from aligned clips, albedo from UV.

Holds PCA with unit-variance codes (:func:`pca_basis`), the template and the identity and
expression bases of aligned clips (:class:`ClipGeometry`, :func:`statistical_model`), the
unwrapping of a clip's frames into UV with its tracked landmarks as the mesh
(:func:`unwrap_clip`) and the mean albedo and albedo basis of the unwrapped clips
(:func:`texture_space`). One clip is one subject throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from seqdeca.geometry.mesh import vertex_normals
from seqdeca.io.video import VideoReader
from seqdeca.prep.tracking import TrackResult
from seqdeca.render import rasterize_uv, world_to_uv

__all__ = [
    "ClipGeometry",
    "pca_basis",
    "statistical_model",
    "texture_space",
    "unwrap_clip",
]


# ---------------------------------------------------------------------------------- statistics


def pca_basis(samples: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of zero-mean samples, scaled to unit-variance coefficients.

    Args:
        samples: (M, D) zero-mean rows.
        n_components: K, clipped to the rank available (M - 1 at most when M <= D).

    Returns:
        basis (K, D) = unit direction * its standard deviation (sign: largest entry positive),
        and the explained-variance fraction (K,).
    """
    m = samples.shape[0]
    _, sv, vt = np.linalg.svd(samples, full_matrices=False)
    var = sv**2 / max(m, 1)
    k = int(min(n_components, np.sum(var > var.sum() * 1e-12)))
    dirs = vt[:k]
    sign = np.sign(dirs[np.arange(k), np.abs(dirs).argmax(1)])
    basis = dirs * (sign * np.sqrt(var[:k]))[:, None]
    return basis, var[:k] / max(var.sum(), 1e-30)


@dataclass
class ClipGeometry:
    """Template and bases in metres (model axes).

    Attributes:
        template: (478, 3).
        shapedirs: (478, 3, S); exprdirs: (478, 3, E).
        shape_explained, expression_explained: (S,), (E,) explained-variance fractions.
    """

    template: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    shape_explained: np.ndarray
    expression_explained: np.ndarray


def statistical_model(
    aligned: Sequence[np.ndarray], *, n_shape: int, n_expression: int
) -> ClipGeometry:
    """Template, identity basis and expression basis from aligned clips (one subject each).

    Args:
        aligned: per clip (T_i, 478, 3) metres (:func:`align_frames`).
        n_shape: identity components (at most clips - 1 are available).
        n_expression: expression components.
    """
    means = np.stack([c.mean(0) for c in aligned])
    template = means.mean(0)
    shape, shape_ev = pca_basis((means - template).reshape(len(means), -1), n_shape)
    deviations = np.concatenate([c - c.mean(0) for c in aligned]).reshape(-1, template.size)
    expr, expr_ev = pca_basis(deviations, n_expression)
    v = template.shape[0]
    return ClipGeometry(
        template=template,
        shapedirs=shape.T.reshape(v, 3, -1),
        exprdirs=expr.T.reshape(v, 3, -1),
        shape_explained=shape_ev,
        expression_explained=expr_ev,
    )


# -------------------------------------------------------------------------------------- albedo


def unwrap_clip(
    video: str | Path,
    track: TrackResult,
    verts_uvs: np.ndarray,
    faces: np.ndarray,
    *,
    size: int = 256,
    step: int = 2,
    max_side: int = 960,
    chunk_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate a clip's frames in UV space, using its tracked landmarks as the mesh.

    Every UV pixel is a barycentric point of one face; the same barycentric point of a frame's
    2D landmarks is sampled (bilinear) from the frame. Samples are weighted by how frontal the
    surface is in that frame (squared z of the interpolated vertex normal, zero facing away).

    Args:
        video: the clip; track: its tracking result; verts_uvs (V, 2), faces (F, 3): the UV mesh.
        size: UV map side; step: use every ``step``-th frame; max_side: decoding size.

    Returns:
        weighted colour sum (3, H, W) and weight sum (H, W), float64.
    """
    faces_t = torch.as_tensor(faces, dtype=torch.int64)
    fragments = rasterize_uv(torch.as_tensor(verts_uvs, dtype=torch.float32), faces_t, size)
    colour = torch.zeros(3, size, size, dtype=torch.float64)
    weight = torch.zeros(size, size, dtype=torch.float64)
    with VideoReader(video, max_side=max_side) as reader:
        scale = torch.tensor(
            [reader.decode_size[0] / reader.size[0], reader.decode_size[1] / reader.size[1]]
        )
        for idx, frames in reader.chunks(chunk_size, step=step):
            keep = track.valid[idx]
            if not keep.any():
                continue
            lmk = torch.as_tensor(track.landmarks[idx[keep]], dtype=torch.float32)
            img = torch.as_tensor(frames[keep]).permute(0, 3, 1, 2).float() / 255.0
            normal_z = vertex_normals(lmk * torch.tensor([1.0, -1.0, -1.0]), faces_t)[..., 2:]
            attrs = torch.cat([lmk[..., :2] * scale, normal_z], dim=-1)  # (n, V, 3)
            uv = world_to_uv(attrs, faces_t, fragments)  # (n, 3, H, W): frame pixel x, y; n_z
            grid = (
                uv[:, :2].permute(0, 2, 3, 1) / torch.tensor([img.shape[3], img.shape[2]]) * 2 - 1
            )
            rgb = F.grid_sample(img, grid, mode="bilinear", align_corners=False)
            w = uv[:, 2].clamp_min(0) ** 2 * fragments.mask.float()
            colour += (rgb * w[:, None]).sum(0).double()
            weight += w.sum(0).double()
    return colour.numpy(), weight.numpy()


def texture_space(
    sums: Sequence[tuple[np.ndarray, np.ndarray]], n_components: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean albedo and albedo basis from per-subject UV accumulations.

    Args:
        sums: per subject (colour sum (3, H, W), weight sum (H, W)) from :func:`unwrap_clip`.
        n_components: K (at most subjects - 1).

    Returns:
        mean (3, H, W) in [0, 1], basis (K, 3, H, W) scaled to unit-variance coefficients, and the
        coverage (H, W) bool. Pixels no subject saw take the value of the nearest seen pixel.
    """
    seen = np.stack([w > 1e-6 for _, w in sums])  # (M, H, W)
    subject = np.stack([c / np.maximum(w, 1e-6) for c, w in sums])  # (M, 3, H, W)
    count = seen.sum(0)
    mean = (subject * seen[:, None]).sum(0) / np.maximum(count, 1)
    subject = np.where(seen[:, None], subject, mean[None])  # unseen by one subject: the mean
    coverage = count > 0
    if not coverage.any():
        raise ValueError("no UV pixel was seen in any frame")
    _, (ii, jj) = ndimage.distance_transform_edt(~coverage, return_indices=True)
    subject, mean = subject[..., ii, jj], mean[..., ii, jj]  # fill unseen pixels from the nearest
    basis, _ = pca_basis((subject - mean).reshape(len(subject), -1), n_components)
    return (
        mean.clip(0, 1).astype(np.float32),
        basis.reshape(-1, *mean.shape).astype(np.float32),
        coverage,
    )
