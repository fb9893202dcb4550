"""3-class region masks of a face crop from MediaPipe face-mesh polygons.

Classes (uint8): 0 = background / irrelevant, 1 = face (inside MediaPipe's face-oval contour),
2 = important regions: both eyes (eye contours), both brows (convex hull of each eyebrow's
points) and the lips/mouth (outer lip contour, so an open mouth is included). Class 2 is drawn
over class 1. Polygons are filled with sub-pixel precision in the continuous pixel convention of
the crop (pixel (i, j) centred at (j + 0.5, i + 0.5)).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from seqdeca.prep.landmark_sets import contour_loops

__all__ = ["BACKGROUND", "FACE", "IMPORTANT", "region_masks", "region_polygons"]

BACKGROUND, FACE, IMPORTANT = 0, 1, 2
_SHIFT = 4  # cv2.fillPoly fractional bits


@lru_cache(maxsize=1)
def region_polygons() -> dict[str, np.ndarray]:
    """MediaPipe vertex ids of the mask polygons (ordered loops; brows are point sets to hull).

    Returns:
        {"face_oval", "left_eye", "right_eye", "lips_outer", "left_brow", "right_brow"} ->
        (K,) int64 vertex ids.
    """
    from mediapipe.python.solutions import face_mesh_connections as fmc

    loops = contour_loops()
    out = {k: loops[k] for k in ("face_oval", "left_eye", "right_eye", "lips_outer")}
    for name, edges in (
        ("left_brow", fmc.FACEMESH_LEFT_EYEBROW),
        ("right_brow", fmc.FACEMESH_RIGHT_EYEBROW),
    ):
        out[name] = np.unique(np.asarray(sorted(edges), dtype=np.int64))
    return out


def _fill(mask: np.ndarray, xy: np.ndarray, value: int, *, hull: bool = False) -> None:
    import cv2

    pts = np.round((xy - 0.5) * (1 << _SHIFT)).astype(np.int32)
    if hull:
        pts = cv2.convexHull(pts)[:, 0]
    cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], int(value), lineType=cv2.LINE_8, shift=_SHIFT)


def region_masks(landmarks_crop: np.ndarray, size: int) -> np.ndarray:
    """The 3-class mask of one crop.

    Args:
        landmarks_crop: (478 or 468, 2 or 3) MediaPipe landmarks in CROP pixels (NaN = invalid).
        size: crop side in pixels.

    Returns:
        (size, size) uint8 with values in {0, 1, 2}; all 0 when the landmarks are not finite.
    """
    mask = np.zeros((size, size), dtype=np.uint8)
    xy = np.asarray(landmarks_crop, dtype=np.float64)[:, :2]
    if not np.isfinite(xy[:468]).all():
        return mask
    # Keep far-off points inside int32 range after the fractional shift.
    xy = np.clip(xy, -4.0 * size, 5.0 * size)
    poly = region_polygons()
    _fill(mask, xy[poly["face_oval"]], FACE)
    for name in ("left_eye", "right_eye", "lips_outer"):
        _fill(mask, xy[poly[name]], IMPORTANT)
    for name in ("left_brow", "right_brow"):
        _fill(mask, xy[poly[name]], IMPORTANT, hull=True)
    return mask
