"""The ONE face crop of seqdeca: a DECA-style square box, temporally smoothed, as a 3x3 matrix.

Box (DECA's rule for boxes made from 68 landmarks): take the iBUG-68 subset of the MediaPipe
landmarks (:data:`seqdeca.prep.landmark_sets.IBUG68_FROM_MEDIAPIPE`), its bounding box
``left, right, top, bottom``; the crop is centred on the box centre and its side is
``scale * 1.1 * ((right - left) + (bottom - top)) / 2`` (DECA: ``old_size = mean side * 1.1``,
``size = old_size * 1.25``). There is no rotation: the crop is an axis-aligned square.

Smoothing: the per-frame centres and sides are averaged over a centred window of
``smooth_frames`` frames, counting only valid frames; invalid frames take the smoothed box of the
nearest valid frame (the earlier one on a tie), so the crop itself adds no jitter and every frame
has a crop.

Matrix convention (shared with :func:`seqdeca.render.paste_into_frame`): ``crop_from_frame``
maps ORIGINAL-frame continuous pixel coordinates (homogeneous column vector ``[x, y, 1]``, pixel
``(i, j)`` centred at ``(j + 0.5, i + 0.5)``) to CROP pixel coordinates in the same convention.
The box's top-left corner maps to ``(0, 0)`` and its bottom-right corner to ``(size, size)``.
"""

from __future__ import annotations

import numpy as np

from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE

__all__ = [
    "DECA_BOX_FACTOR",
    "apply_transform",
    "crop_boxes",
    "crop_transforms",
    "matrix_scale",
    "scale_matrix",
    "smooth_boxes",
    "warp_to_crop",
]

# DECA enlarges the mean side of a 68-landmark box by 1.1 before applying its crop scale.
DECA_BOX_FACTOR = 1.1


def crop_boxes(landmarks: np.ndarray, *, scale: float) -> np.ndarray:
    """Per-frame DECA-style square boxes from MediaPipe landmarks.

    Args:
        landmarks: (T, 478 or 468, C>=2) pixel landmarks (NaN rows for invalid frames).
        scale: crop scale (DECA: 1.25).

    Returns:
        (T, 3) float64 boxes ``(centre_x, centre_y, side)`` in the landmarks' pixels; NaN where
        the frame's landmarks are NaN.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, IBUG68_FROM_MEDIAPIPE, :2]
    lo, hi = points.min(axis=1), points.max(axis=1)  # NaN propagates for invalid frames
    centre = (lo + hi) / 2
    side = scale * DECA_BOX_FACTOR * (hi - lo).mean(axis=1)
    return np.concatenate([centre, side[:, None]], axis=1)


def smooth_boxes(boxes: np.ndarray, valid: np.ndarray, smooth_frames: int) -> np.ndarray:
    """Centred moving average of boxes over valid frames; invalid frames hold the nearest one.

    Args:
        boxes: (T, K) per-frame values (NaN allowed where invalid).
        valid: (T,) bool; at least one frame must be valid.
        smooth_frames: window length in frames (an even value acts like the next odd one;
            1 = no smoothing).

    Returns:
        (T, K) float64 smoothed values, finite everywhere.

    Raises:
        ValueError: no frame is valid.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(boxes).all(axis=1)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        raise ValueError("no valid frame to place a crop")
    half = max(int(smooth_frames), 1) // 2
    filled = np.where(valid[:, None], boxes, 0.0)
    csum = np.concatenate([np.zeros((1, boxes.shape[1])), np.cumsum(filled, axis=0)])
    ccount = np.concatenate([[0], np.cumsum(valid)])
    t = np.arange(len(boxes))
    lo, hi = np.clip(t - half, 0, len(boxes)), np.clip(t + half + 1, 0, len(boxes))
    count = (ccount[hi] - ccount[lo])[:, None]
    smoothed = (csum[hi] - csum[lo]) / np.maximum(count, 1)
    # Every frame takes the smoothed box of its nearest valid frame (itself if valid).
    pos = np.clip(np.searchsorted(idx, t), 1, max(idx.size - 1, 1))
    before, after = idx[np.clip(pos - 1, 0, idx.size - 1)], idx[np.clip(pos, 0, idx.size - 1)]
    nearest = np.where(np.abs(t - before) <= np.abs(after - t), before, after)
    nearest = np.where(valid, t, nearest)
    return smoothed[nearest]


def _box_matrices(boxes: np.ndarray, size: int) -> np.ndarray:
    """(T, 3) boxes (cx, cy, side) -> (T, 3, 3) crop_from_frame matrices (scale + shift)."""
    k = size / boxes[:, 2]
    m = np.zeros((len(boxes), 3, 3), dtype=np.float64)
    m[:, 0, 0] = m[:, 1, 1] = k
    m[:, 0, 2] = -k * (boxes[:, 0] - boxes[:, 2] / 2)
    m[:, 1, 2] = -k * (boxes[:, 1] - boxes[:, 2] / 2)
    m[:, 2, 2] = 1.0
    return m


def crop_transforms(
    landmarks: np.ndarray,
    valid: np.ndarray,
    *,
    size: int,
    scale: float,
    smooth_frames: int,
) -> np.ndarray:
    """Per-frame ``crop_from_frame`` matrices of a clip (see the module docstring).

    Args:
        landmarks: (T, 478, C>=2) landmarks in ORIGINAL-frame pixels, NaN where invalid.
        valid: (T,) bool; at least one frame must be valid.
        size: crop side in pixels (square output).
        scale: DECA crop scale (crop side = scale * 1.1 * mean landmark-box side).
        smooth_frames: temporal smoothing window of the box centre and side, frames.

    Returns:
        (T, 3, 3) float64 crop_from_frame matrices.

    Raises:
        ValueError: no frame is valid, or a box is degenerate.
    """
    boxes = smooth_boxes(crop_boxes(landmarks, scale=scale), valid, smooth_frames)
    if not np.all(boxes[:, 2] > 1e-6):
        raise ValueError("degenerate face box (zero size)")
    return _box_matrices(boxes, size)


def apply_transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map 2D points with homogeneous 3x3 matrices.

    Args:
        points: (..., N, 2) points, or (..., 2) with a single (3, 3) matrix.
        matrix: (3, 3), or (..., 3, 3) matching the leading dims of ``points`` (one matrix per
            set of N points, e.g. points (T, N, 2) with matrices (T, 3, 3)).

    Returns:
        Points of the input's shape, float64 (NaN stays NaN).
    """
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim == 2:
        out = points @ matrix[:2, :2].T + matrix[:2, 2]
        w = points @ matrix[2, :2] + matrix[2, 2]
        return out / w[..., None]
    homog = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    mapped = homog @ np.swapaxes(matrix, -1, -2)
    return mapped[..., :2] / mapped[..., 2:]


def matrix_scale(matrix: np.ndarray) -> np.ndarray:
    """Isotropic scale factor(s) of similarity matrices: sqrt(|det| of the 2x2 block), (...)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.sqrt(np.abs(np.linalg.det(m[..., :2, :2])))


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """(3, 3) matrix scaling continuous pixel coordinates (a resize of the whole frame)."""
    return np.diag([sx, sy, 1.0])


def warp_to_crop(frames: np.ndarray, crop_from_frame: np.ndarray, size: int) -> np.ndarray:
    """Warp frames into their crops (bilinear, black outside the frame).

    Args:
        frames: (n, H, W, 3) uint8 frames (the pixel grid ``crop_from_frame`` refers to).
        crop_from_frame: (n, 3, 3) matrices, or (3, 3) for all frames (affine part used).
        size: crop side in pixels.

    Returns:
        (n, size, size, 3) uint8 crops.
    """
    import cv2

    frames = np.asarray(frames)
    mats = np.broadcast_to(np.asarray(crop_from_frame, np.float64), (len(frames), 3, 3))
    # cv2 indexes pixel centres at integers: shift by half a pixel on both sides.
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unhalf = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, (frame, m) in enumerate(zip(frames, mats)):
        affine = (unhalf @ m @ half)[:2]
        out[i] = cv2.warpAffine(
            np.ascontiguousarray(frame),
            affine,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
    return out
