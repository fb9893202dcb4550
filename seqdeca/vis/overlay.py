"""The video2mesh overlay: input | textured render over the input | grey shape, side by side.

Renders are made in the face crop (``crop_from_frame``) and pasted back into the frame with
:func:`seqdeca.render.paste.paste_into_frame`. The panels are made at a reduced height (the
overlay is for looking, not measuring), which keeps encoding fast on CPUs.
"""

from __future__ import annotations

import numpy as np
import torch

from seqdeca.data.crop import scale_matrix
from seqdeca.render.paste import paste_into_frame

__all__ = ["OVERLAY_HEIGHT", "overlay_frames", "panel_size"]

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
    """Compose overlay frames.

    Args:
        frames: (n, H, W, 3) uint8 RGB frames.
        crop_from_frame: (n, 3, 3) matrices from THESE frames' pixels to render pixels (rows of
            invalid frames are ignored).
        valid: (n,) bool, frames that have a render.
        render: (n, 3, h, w) textured renders in [0, 1].
        alpha: (n, 1, h, w) render coverage.
        shape_image: (n, 3, h, w) grey shape renders (black background).
        height: panel height in pixels (see :func:`panel_size`).

    Returns:
        (n, Ph, 3 * Pw, 3) uint8: input | render over the input | shape on black.
    """
    fh, fw = frames.shape[1:3]
    pw, ph = panel_size((fw, fh), height)
    panels = _to_panel(frames, (pw, ph))
    over = panels.copy()
    shape = np.zeros_like(panels)
    rows = np.flatnonzero(valid)
    if rows.size:
        mats = crop_from_frame[rows] @ np.linalg.inv(scale_matrix(pw / fw, ph / fh))
        x0, y0, x1, y1 = _union_box(mats, render.shape[-1], (pw, ph))
        if x1 > x0 and y1 > y0:  # paste only where the crops are (much less work)
            shift = np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
            mats_t = torch.from_numpy(mats @ shift).float()
            base = torch.from_numpy(panels[rows, y0:y1, x0:x1]).permute(0, 3, 1, 2).float() / 255
            r, a, s = render[rows].float(), alpha[rows].float(), shape_image[rows].float()
            pasted = paste_into_frame(r.clamp(0, 1), a, base, mats_t)
            shape_alpha = (s.amax(dim=1, keepdim=True) > 0).float()
            shaped = paste_into_frame(s.clamp(0, 1), shape_alpha, torch.zeros_like(base), mats_t)
            over[rows, y0:y1, x0:x1] = _uint8(pasted)
            shape[rows, y0:y1, x0:x1] = _uint8(shaped)
    return np.concatenate([panels, over, shape], axis=2)


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
