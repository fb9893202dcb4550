"""A contact sheet of a prepared clip: crops with landmarks and the 3-class masks, for people.

For evenly spaced frames the sheet shows two tiles side by side: the crop with its iBUG-68
landmarks (optionally all 478 MediaPipe points as small dots) and the crop with the region mask
tinted (class 1 face, class 2 eyes / brows / mouth). Frames without a face (``valid.npy`` false)
get a red border and "no face". A title line names the clip, dataset, frames and valid count.
Pure numpy / PIL; reads only the prepared clip layout (docs/data.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from seqdeca.errors import UserError
from seqdeca.vis.grid import image_grid

__all__ = [
    "INVALID_COLOUR",
    "LANDMARK_COLOUR",
    "PreparedClipView",
    "contact_sheet",
    "load_prepared_view",
    "sheet_shape",
]

LANDMARK_COLOUR = (0, 255, 0)  # iBUG-68 points
DENSE_COLOUR = (0, 200, 255)  # the 478 MediaPipe points
INVALID_COLOUR = (255, 0, 0)  # border of frames without a face
CLASS_TINTS = {1: ((70, 130, 255), 0.35), 2: ((255, 210, 0), 0.6)}  # class: (RGB, opacity)
TITLE_HEIGHT = 18  # pixels of the title strip
LABEL_HEIGHT = 16  # pixels of image_grid's column-label strip
PAD = 2  # image_grid padding
BORDER = 4  # red border width on invalid frames


@dataclass
class PreparedClipView:
    """What the sheet reads from a prepared clip folder.

    Attributes:
        folder: the clip folder.
        clip_id, dataset: from meta.json (folder names when absent).
        landmarks: (T, 478, 3) float32 crop pixels (NaN rows = invalid).
        landmarks68: (T, 68, 2) float32 crop pixels.
        valid: (T,) bool.
    """

    folder: Path
    clip_id: str
    dataset: str
    landmarks: np.ndarray
    landmarks68: np.ndarray
    valid: np.ndarray

    @property
    def num_frames(self) -> int:
        """T."""
        return len(self.valid)


def load_prepared_view(folder: str | Path) -> PreparedClipView:
    """Read the arrays and meta of a prepared clip folder.

    Raises:
        UserError: the folder is missing or is not a prepared clip (no valid.npy, frames/,
            masks/, landmarks.npy, landmarks68.npy).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"clip folder not found: {folder}")
    needed = ("valid.npy", "landmarks.npy", "landmarks68.npy", "frames", "masks")
    absent = [name for name in needed if not (folder / name).exists()]
    if absent:
        raise UserError(
            f"{folder} is not a prepared clip (missing {', '.join(absent)}); "
            "pass <out_root>/<dataset>/<clip_id> written by tools/prepare_data.py"
        )
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return PreparedClipView(
        folder=folder,
        clip_id=str(meta.get("clip_id", folder.name)),
        dataset=str(meta.get("dataset", folder.parent.name)),
        landmarks=np.load(folder / "landmarks.npy"),
        landmarks68=np.load(folder / "landmarks68.npy"),
        valid=np.load(folder / "valid.npy").astype(bool),
    )


def pick_frames(num_frames: int, count: int) -> np.ndarray:
    """(n,) int64 evenly spaced frame indices from 0 to T - 1, n = min(count, T)."""
    n = max(1, min(int(count), num_frames))
    return np.unique(np.linspace(0, num_frames - 1, n).round().astype(np.int64))


def sheet_shape(num_tiles: int, columns: int, tile: int) -> tuple[int, int]:
    """(height, width) in pixels of a sheet of ``num_tiles`` frames, ``columns`` frames a row."""
    cols = min(columns, num_tiles)
    rows = -(-num_tiles // cols)
    return (TITLE_HEIGHT + LABEL_HEIGHT + rows * (tile + PAD) + PAD, 2 * cols * (tile + PAD) + PAD)


def _points(draw: ImageDraw.ImageDraw, xy: np.ndarray, scale: float, radius: float, colour) -> None:
    """Filled dots at continuous crop-pixel positions (pixel centre at +0.5), scaled to the tile."""
    for x, y in np.asarray(xy, dtype=np.float64)[:, :2]:
        if np.isfinite(x) and np.isfinite(y):
            cx, cy = x * scale - 0.5, y * scale - 0.5  # tile pixel index space
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)


def _mask_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image with class 1 and 2 of ``mask`` (H, W) tinted."""
    out = image.astype(np.float32)
    for value, (colour, alpha) in CLASS_TINTS.items():
        sel = mask == value
        out[sel] = (1 - alpha) * out[sel] + alpha * np.asarray(colour, np.float32)
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def _mark_invalid(image: Image.Image) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for k in range(BORDER):
        draw.rectangle((k, k, w - 1 - k, h - 1 - k), outline=INVALID_COLOUR)
    draw.text((BORDER + 3, h - BORDER - 14), "no face", fill=INVALID_COLOUR)


def frame_tiles(view: PreparedClipView, t: int, *, tile: int, dense: bool) -> list[np.ndarray]:
    """The two (tile, tile, 3) uint8 tiles of frame ``t``: landmarks, mask overlay."""
    frame = Image.open(view.folder / "frames" / f"{t:06d}.jpg").convert("RGB")
    mask_img = Image.open(view.folder / "masks" / f"{t:06d}.png")
    scale = tile / frame.size[0]
    frame = frame.resize((tile, tile), Image.BILINEAR) if frame.size[0] != tile else frame
    mask = np.asarray(mask_img.resize((tile, tile), Image.NEAREST))
    left = frame.copy()
    draw = ImageDraw.Draw(left)
    if dense:
        _points(draw, view.landmarks[t], scale, 0.6, DENSE_COLOUR)
    _points(draw, view.landmarks68[t], scale, max(1.5, 2.0 * scale), LANDMARK_COLOUR)
    right = Image.fromarray(_mask_overlay(np.asarray(frame), mask))
    for img in (left, right):
        ImageDraw.Draw(img).text((4, 2), f"t={t}", fill=(255, 255, 255))
        if not view.valid[t]:
            _mark_invalid(img)
    return [np.asarray(left), np.asarray(right)]


def contact_sheet(
    folder: str | Path,
    *,
    frames: int = 8,
    columns: int = 4,
    tile: int | None = None,
    dense: bool = False,
) -> np.ndarray:
    """Build the contact sheet of a prepared clip.

    Args:
        folder: ``<out_root>/<dataset>/<clip_id>``.
        frames: how many evenly spaced frames (at most T).
        columns: frames per row (each frame takes two tiles).
        tile: tile side in pixels (default: the crop size).
        dense: also draw all 478 MediaPipe points as small dots.

    Returns:
        (H, W, 3) uint8 picture, of the size given by :func:`sheet_shape`.

    Raises:
        UserError: not a prepared clip folder.
    """
    view = load_prepared_view(folder)
    if view.num_frames == 0:
        raise UserError(f"{view.folder} holds no frames")
    first = Image.open(view.folder / "frames" / "000000.jpg")
    side = int(tile or first.size[0])
    idx = pick_frames(view.num_frames, frames)
    cols = max(1, min(columns, len(idx)))
    pairs = [frame_tiles(view, int(t), tile=side, dense=dense) for t in idx]
    blank = np.full((side, side, 3), 255, np.uint8)
    rows = []
    for start in range(0, len(pairs), cols):
        chunk = pairs[start : start + cols]
        row = [im for pair in chunk for im in pair]
        rows.append(row + [blank] * (2 * cols - len(row)))
    grid = image_grid(rows, labels=["crop + 68 landmarks", "mask"] * cols, pad=PAD)
    n_valid = int(view.valid.sum())
    title = (
        f"{view.clip_id}  dataset={view.dataset}  frames={view.num_frames}  valid={n_valid} "
        f"({100 * n_valid / view.num_frames:.0f}%)  | blue = face, yellow = eyes/brows/mouth, "
        "red border = no face"
    )
    sheet = Image.new("RGB", (grid.shape[1], grid.shape[0] + TITLE_HEIGHT), (255, 255, 255))
    sheet.paste(Image.fromarray(grid), (0, TITLE_HEIGHT))
    ImageDraw.Draw(sheet).text((PAD + 2, 3), title, fill=(0, 0, 0))
    return np.asarray(sheet)
