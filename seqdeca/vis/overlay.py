"""The video2mesh overlay: input | textured render over the input | grey shape, side by side.

Renders are made in the face crop (``crop_from_frame``) and pasted back into the frame with
:func:`seqdeca.render.paste.paste_into_frame`. The panels are made at a reduced height (the
overlay is for looking, not measuring), which keeps encoding fast on CPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqdeca.prep.crop import scale_matrix
from seqdeca.render.paste import paste_into_frame

__all__ = [
    "OVERLAY_HEIGHT",
    "FaceLayer",
    "OverlayPanels",
    "overlay_frames",
    "overlay_layers",
    "panel_size",
]

#: Default panel height in pixels (frames smaller than this keep their size).
OVERLAY_HEIGHT = 360


def panel_size(frame_size: tuple[int, int], height: int = OVERLAY_HEIGHT) -> tuple[int, int]:
    """(width, height) of one panel for frames of ``frame_size`` (w, h): even sides, aspect kept."""
    w, h = frame_size
    ph = min(h, height)
    pw = round(w * ph / h)
    return max(2, pw + pw % 2), max(2, ph + ph % 2)


def _to_panel(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    out = np.empty((len(frames), size[1], size[0], 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return out


@dataclass(frozen=True)
class FaceLayer:
    """One face's renders for :func:`overlay_layers` (n frames).

    Attributes:
        crop_from_frame: (n, 3, 3) matrices from the frames' pixels to render pixels (rows of
            invalid frames are ignored).
        valid: (n,) bool, frames that have a render.
        render: (n, 3, h, w) textured renders in [0, 1].
        alpha: (n, 1, h, w) render coverage.
        shape_image: (n, 3, h, w) grey shape renders (black background).
    """

    crop_from_frame: np.ndarray
    valid: np.ndarray
    render: torch.Tensor
    alpha: torch.Tensor
    shape_image: torch.Tensor


def overlay_frames(
    frames: np.ndarray,
    crop_from_frame: np.ndarray,
    valid: np.ndarray,
    render: torch.Tensor,
    alpha: torch.Tensor,
    shape_image: torch.Tensor,
    *,
    height: int = OVERLAY_HEIGHT,
) -> np.ndarray:
    """Compose overlay frames of one face.

    Args:
        frames: (n, H, W, 3) uint8 RGB frames.
        crop_from_frame, valid, render, alpha, shape_image: see :class:`FaceLayer`.
        height: panel height in pixels (see :func:`panel_size`).

    Returns:
        (n, Ph, 3 * Pw, 3) uint8: input | render over the input | shape on black.
    """
    layer = FaceLayer(crop_from_frame, valid, render, alpha, shape_image)
    return overlay_layers(frames, [layer], height=height)


def overlay_layers(
    frames: np.ndarray, layers: Sequence[FaceLayer], *, height: int = OVERLAY_HEIGHT
) -> np.ndarray:
    """Compose overlay frames with every face's renders (see :class:`OverlayPanels`).

    Args:
        frames: (n, H, W, 3) uint8 RGB frames.
        layers: one :class:`FaceLayer` per face, pasted in this order.
        height: panel height in pixels (see :func:`panel_size`).

    Returns:
        (n, Ph, 3 * Pw, 3) uint8: input | renders over the input | shapes on black.
    """
    panels = OverlayPanels(frames, height=height)
    for layer in layers:
        panels.add(layer)
    return panels.image()


class OverlayPanels:
    """The three overlay panels of n frames, built one face at a time (a face's renders can be
    freed once added); a later face covers an earlier one where they overlap.

    Args:
        frames: (n, H, W, 3) uint8 RGB frames.
        height: panel height in pixels (see :func:`panel_size`).
    """

    def __init__(self, frames: np.ndarray, *, height: int = OVERLAY_HEIGHT) -> None:
        fh, fw = frames.shape[1:3]
        pw, ph = panel_size((fw, fh), height)
        self.panel_from_frame = scale_matrix(pw / fw, ph / fh)
        self.input = _to_panel(frames, (pw, ph))
        self.over = self.input.copy()
        self.shape = np.zeros_like(self.input)

    def add(self, layer: FaceLayer) -> None:
        """Paste one face's renders into the render and shape panels."""
        _paste_layer(self.over, self.shape, layer, self.panel_from_frame)

    def image(self) -> np.ndarray:
        """(n, Ph, 3 * Pw, 3) uint8: input | renders over the input | shapes on black."""
        return np.concatenate([self.input, self.over, self.shape], axis=2)


def _paste_layer(
    over: np.ndarray, shape: np.ndarray, layer: FaceLayer, panel_from_frame: np.ndarray
) -> None:
    """Paste one face's renders into the ``over`` and ``shape`` panels (in place)."""
    rows = np.flatnonzero(layer.valid)
    if not rows.size:
        return
    ph, pw = over.shape[1:3]
    mats = layer.crop_from_frame[rows] @ np.linalg.inv(panel_from_frame)
    x0, y0, x1, y1 = _union_box(mats, layer.render.shape[-1], (pw, ph))
    if x1 <= x0 or y1 <= y0:
        return
    # paste only where the crops are (much less work)
    shift = np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
    mats_t = torch.from_numpy(mats @ shift).float()
    base = torch.from_numpy(over[rows, y0:y1, x0:x1]).permute(0, 3, 1, 2).float() / 255
    dark = torch.from_numpy(shape[rows, y0:y1, x0:x1]).permute(0, 3, 1, 2).float() / 255
    r, a = layer.render[rows].float(), layer.alpha[rows].float()
    s = layer.shape_image[rows].float()
    pasted = paste_into_frame(r.clamp(0, 1), a, base, mats_t)
    shape_alpha = (s.amax(dim=1, keepdim=True) > 0).float()
    shaped = paste_into_frame(s.clamp(0, 1), shape_alpha, dark, mats_t)
    over[rows, y0:y1, x0:x1] = _uint8(pasted)
    shape[rows, y0:y1, x0:x1] = _uint8(shaped)


def _union_box(crop_from_panel: np.ndarray, size: int, panel: tuple[int, int]) -> tuple[int, ...]:
    """Integer (x0, y0, x1, y1) panel box covering every frame's crop square (clipped)."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    pts = corners @ np.swapaxes(np.linalg.inv(crop_from_panel), -1, -2)  # (n, 4, 3)
    pts = pts[..., :2] / pts[..., 2:]
    x0, y0 = np.floor(pts.min(axis=(0, 1))).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=(0, 1))).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, panel[0]), min(y1, panel[1])


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) float in [0, 1] -> (n, H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
