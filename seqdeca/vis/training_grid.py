"""The training image grid: one row per frame, one column per view of the model's output.

Columns (:func:`grid_columns`): input | coarse render | shape | detail shape | UV displacement |
landmarks; the two detail columns only when detail outputs are given. Every tile is resized to
``tile`` pixels; the landmark tile draws the reference landmarks (green) and the predicted ones
(red) on the input. The displacement tile stretches that map's own range (written on it, in
millimetres) from black to white, so that its structure shows however small it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seqdeca.geometry.camera import ndc_to_pixels
from seqdeca.vis.grid import draw_points, draw_text, image_grid, to_uint8

__all__ = [
    "COARSE_COLUMNS",
    "DETAIL_COLUMNS",
    "GridFrames",
    "displacement_image",
    "grid_columns",
    "grid_size",
    "training_grid",
]

COARSE_COLUMNS = ("input", "coarse render", "shape", "landmarks")
DETAIL_COLUMNS = ("input", "coarse render", "shape", "detail shape", "UV displacement", "landmarks")
TARGET_COLOUR = (0, 220, 0)
PRED_COLOUR = (255, 40, 40)
_LABEL_HEIGHT = 16  # the title strip of vis.grid.image_grid
_PAD = 2
MIN_TILE = 128  # default tiles are at least this big (landmarks stay legible)


@dataclass
class GridFrames:
    """What the grid shows for R frames (all on any device, float).

    Attributes:
        images: (R, 3, S, S) input crops in [0, 1].
        render: (R, 3, H, W) coarse render in [0, 1].
        shape: (R, 3, H, W) grey shape render in [0, 1].
        landmarks: (R, L, 2) predicted landmarks, normalised [-1, 1] (y down).
        target_landmarks: (R, L, 2) reference landmarks, normalised (NaN = unknown).
        detail_shape: (R, 3, H, W) shape shaded with the detail normals, or None.
        displacement: (R, 1, Huv, Wuv) UV displacement in metres, or None.
    """

    images: torch.Tensor
    render: torch.Tensor
    shape: torch.Tensor
    landmarks: torch.Tensor
    target_landmarks: torch.Tensor
    detail_shape: torch.Tensor | None = None
    displacement: torch.Tensor | None = None


def grid_columns(detail: bool) -> tuple[str, ...]:
    """Column titles of the grid (with or without the two detail columns)."""
    return DETAIL_COLUMNS if detail else COARSE_COLUMNS


def grid_size(rows: int, columns: int, tile: int) -> tuple[int, int]:
    """(height, width) in pixels of a labelled grid of ``rows`` x ``columns`` tiles."""
    return (_LABEL_HEIGHT + rows * (tile + _PAD) + _PAD, columns * (tile + _PAD) + _PAD)


def _tile(image: torch.Tensor, tile: int) -> torch.Tensor:
    """(C, H, W) -> (C, tile, tile), area-preserving when shrinking."""
    image = image.detach().float().cpu()
    if tuple(image.shape[-2:]) == (tile, tile):
        return image
    return F.interpolate(
        image[None], size=(tile, tile), mode="bilinear", antialias=True, align_corners=False
    )[0]


def displacement_image(displacement: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
    """(1, H, W) or (H, W) displacement (metres) -> ((3, H, W) grey in [0, 1] spanning the map's
    own range, (min, max) in millimetres)."""
    d = displacement.detach().float().cpu().reshape(displacement.shape[-2:])
    lo, hi = (float(d.min()), float(d.max())) if d.numel() else (0.0, 0.0)
    grey = (d - lo) / max(hi - lo, 1e-12) if hi > lo else torch.full_like(d, 0.5)
    return grey.clamp(0, 1).expand(3, -1, -1), (1000.0 * lo, 1000.0 * hi)


def _landmark_tile(image: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, tile: int):
    base = to_uint8(_tile(image, tile))
    radius = max(1.0, tile / 128)
    base = draw_points(
        base, ndc_to_pixels(target.detach().float().cpu(), tile), TARGET_COLOUR, radius
    )
    return draw_points(base, ndc_to_pixels(pred.detach().float().cpu(), tile), PRED_COLOUR, radius)


def training_grid(frames: GridFrames, tile: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The grid picture of R frames.

    Args:
        frames: see :class:`GridFrames`.
        tile: tile size in pixels (default: the render height, at least MIN_TILE).

    Returns:
        ((H', W', 3) uint8 picture of size :func:`grid_size` ``(R, len(columns), tile)``,
        column titles).
    """
    tile = tile or max(int(frames.render.shape[-2]), MIN_TILE)
    detail = frames.detail_shape is not None and frames.displacement is not None
    rows = []
    for r in range(frames.images.shape[0]):
        row = [
            to_uint8(_tile(frames.images[r], tile)),
            to_uint8(_tile(frames.render[r], tile)),
            to_uint8(_tile(frames.shape[r], tile)),
        ]
        if detail:
            row.append(to_uint8(_tile(frames.detail_shape[r], tile)))
            grey, (lo, hi) = displacement_image(frames.displacement[r])
            row.append(draw_text(to_uint8(_tile(grey, tile)), f"{lo:.2g}..{hi:.2g} mm"))
        row.append(
            _landmark_tile(frames.images[r], frames.landmarks[r], frames.target_landmarks[r], tile)
        )
        rows.append(row)
    labels = list(grid_columns(detail))
    return image_grid(rows, labels=labels, pad=_PAD), labels
