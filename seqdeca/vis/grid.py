"""Tile images into a labelled grid, draw points and text on tiles, and save PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) or (H, W, 3) or (H, W) in [0, 1] (tensor or array) -> (H, W, 3) uint8."""
    arr = (
        image.detach().float().cpu().numpy()
        if isinstance(image, torch.Tensor)
        else np.asarray(image)
    )
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return arr


def image_grid(
    rows: Sequence[Sequence[torch.Tensor | np.ndarray]],
    labels: Sequence[str] | None = None,
    pad: int = 2,
) -> np.ndarray:
    """Tile ``rows[r][c]`` images (all the same size) into one (H', W', 3) uint8 picture.

    Args:
        rows: images as accepted by :func:`to_uint8`.
        labels: optional column titles drawn in a strip above the first row.
        pad: white pixels between tiles.
    """
    tiles = [[to_uint8(im) for im in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
    n_cols = max(len(r) for r in tiles)
    top = 16 if labels else 0
    out = np.full((top + len(tiles) * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            y, x = top + pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = tile
    if labels:
        img = Image.fromarray(out)
        draw = ImageDraw.Draw(img)
        for c, text in enumerate(labels):
            draw.text((pad + c * (w + pad) + 2, 2), text, fill=(0, 0, 0))
        out = np.asarray(img)
    return out


def draw_points(
    image: np.ndarray,
    points: torch.Tensor | np.ndarray,
    colour: tuple[int, int, int],
    radius: float = 1.0,
) -> np.ndarray:
    """Filled dots on a copy of an image.

    Args:
        image: (H, W, 3) uint8.
        points: (L, >=2) continuous pixel positions of that image (pixel centres at +0.5);
            NaN points are skipped.
        colour: RGB 0-255.
        radius: dot radius in pixels.

    Returns:
        (H, W, 3) uint8.
    """
    xy = points.detach().float().cpu().numpy() if isinstance(points, torch.Tensor) else points
    img = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(img)
    for x, y in np.asarray(xy, dtype=np.float64)[:, :2]:
        if np.isfinite(x) and np.isfinite(y):
            cx, cy = x - 0.5, y - 0.5  # pixel index space
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    return np.asarray(img)


def draw_text(
    image: np.ndarray, text: str, colour: tuple[int, int, int] = (255, 255, 0)
) -> np.ndarray:
    """``text`` in the top-left corner of a copy of an (H, W, 3) uint8 image."""
    img = Image.fromarray(np.ascontiguousarray(image))
    ImageDraw.Draw(img).text((2, 2), text, fill=colour)
    return np.asarray(img)


def save_png(image: np.ndarray | torch.Tensor, path: str | Path) -> Path:
    """Write an image (see :func:`to_uint8`) as PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    tmp.replace(path)
    return path
