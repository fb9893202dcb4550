"""Tracking and cropping of rendered synthetic frames, the way data preparation does it.

``synthetic.landmarks: tracked`` runs on the rendered (and corrupted) source frames exactly the
steps of :func:`seqdeca.prep.prepare.prepare_clip` between decoding and writing: MediaPipe
(:class:`~seqdeca.prep.tracking.FaceTracker`, the same number of faces and detection threshold),
:func:`~seqdeca.prep.tracking.interpolate_gaps` over ``track.max_gap`` frames, the smoothed DECA
box (:func:`~seqdeca.prep.crop.crop_transforms` with ``crop``), the warp
(:func:`~seqdeca.prep.crop.warp_to_crop`), landmarks in crop pixels (z scaled like x, y), the
3-class masks from the tracked landmarks and the landmark AU proxies. With exact landmarks and a
rendered frame larger than the crop, the same crop is computed from the exact landmarks (an
ideal tracker).

The ground truth follows the crop: the crop is a scale ``k`` and shift ``(ox, oy)``
(``crop_from_frame``), so a weak-perspective camera ``(s, tx, ty)`` of the ``F``-pixel frame
becomes, for the ``C``-pixel crop, ``s' = s k F / C``, ``tx' = tx + (k F / C + 2 ox / C - 1) / s'``
and ``ty' = ty - (k F / C + 2 oy / C - 1) / s'`` (image y points down, model y up):
projecting the model with the new camera at the crop size gives the cropped projections
(:func:`cam_to_crop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqdeca.config.schema import Config
from seqdeca.prep.crop import apply_transform, crop_transforms, matrix_scale

__all__ = [
    "ClipArrays",
    "TrackedFrames",
    "cam_to_crop",
    "clip_crops",
    "crop_clip",
    "landmarks_to_crop",
    "track_frames",
]

_TRACK_FACES = 3  # as seqdeca.prep.prepare


@dataclass
class TrackedFrames:
    """MediaPipe on a clip's source frames.

    Attributes:
        landmarks: (T, 478, 3) float32 source-frame pixels (x, y, z), NaN where invalid.
        valid: (T,) bool, tracked or interpolated.
        found: (T,) bool, MediaPipe found the face in the frame itself.
        interpolated: (T,) bool, filled across a short gap.
    """

    landmarks: np.ndarray
    valid: np.ndarray
    found: np.ndarray
    interpolated: np.ndarray


def track_frames(frames: np.ndarray, cfg: Config) -> TrackedFrames:
    """Track (T, H, W, 3) uint8 RGB frames in temporal order (reads ``cfg.track``)."""
    from seqdeca.prep.tracking import FaceTracker, interpolate_gaps

    size = (frames.shape[2], frames.shape[1])
    with FaceTracker(
        max_num_faces=_TRACK_FACES, min_detection_confidence=cfg.track.min_detection_confidence
    ) as tracker:
        points, found = tracker.track_frames(frames, size)
    if not found.any():
        return TrackedFrames(points, found.copy(), found, np.zeros_like(found))
    points, valid, interpolated = interpolate_gaps(points, found, cfg.track.max_gap)
    return TrackedFrames(points, valid, found, interpolated)


def clip_crops(landmarks: np.ndarray, valid: np.ndarray, cfg: Config) -> np.ndarray:
    """(T, 3, 3) crop_from_frame matrices of the prepared-data crop (reads ``cfg.crop``)."""
    return crop_transforms(
        landmarks,
        valid,
        size=cfg.crop.size,
        scale=cfg.crop.scale,
        smooth_frames=cfg.crop.smooth_frames,
    )


def landmarks_to_crop(landmarks: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """(T, P, 2 or 3) source-frame pixels -> crop pixels (z, if present, scaled like x, y)."""
    out = np.array(landmarks, dtype=np.float32, copy=True)
    out[..., :2] = apply_transform(landmarks[..., :2], crops)
    if out.shape[-1] > 2:
        out[..., 2:] = landmarks[..., 2:] * matrix_scale(crops)[:, None, None]
    return out


def cam_to_crop(cam: np.ndarray, crops: np.ndarray, frame_size: int, crop_size: int) -> np.ndarray:
    """Weak-perspective cameras of the source frame -> cameras of the crops.

    Args:
        cam: (T, 3) ``(s, tx, ty)`` for the ``frame_size`` square frame.
        crops: (T, 3, 3) crop_from_frame matrices, scale and shift only (the prepared crop).
        frame_size, crop_size: sides in pixels.

    Returns:
        (T, 3) float32 cameras for the ``crop_size`` crops (see the module docstring).
    """
    crops = np.asarray(crops, np.float64)
    if np.abs(crops[:, 0, 1]).max() > 1e-9 or np.abs(crops[:, 0, 0] - crops[:, 1, 1]).max() > 1e-9:
        raise ValueError("cam_to_crop needs scale-and-shift crop matrices")
    k, ox, oy = crops[:, 0, 0], crops[:, 0, 2], crops[:, 1, 2]
    a = k * frame_size / crop_size
    s = np.asarray(cam, np.float64)[:, 0] * a
    tx = cam[:, 1] + (a + 2 * ox / crop_size - 1) / s
    ty = cam[:, 2] - (a + 2 * oy / crop_size - 1) / s
    return np.stack([s, tx, ty], axis=1).astype(np.float32)


@dataclass
class ClipArrays:
    """The per-frame arrays of a clip folder, in crop pixels.

    Attributes:
        images: (T, C, C, 3) uint8; masks: (T, C, C) uint8 3-class masks.
        landmarks: (T, L, 3) float32 (NaN where invalid); landmarks68: (T, 68, 2) float32.
        valid, found, interpolated: (T,) bool (found: MediaPipe saw the face in that frame).
        transforms: (T, 3, 3) float32 crop_from_frame.
        au_proxy: (T, P) float32 landmark AU proxies (P = 0 for the uncropped layout).
        crops: (T, 3, 3) float64 crop_from_frame, or None when the frame is the crop.
    """

    images: np.ndarray
    masks: np.ndarray
    landmarks: np.ndarray
    landmarks68: np.ndarray
    valid: np.ndarray
    found: np.ndarray
    interpolated: np.ndarray
    transforms: np.ndarray
    au_proxy: np.ndarray
    crops: np.ndarray | None


def crop_clip(rendered: dict[str, np.ndarray], cfg: Config, *, tracked: bool) -> ClipArrays:
    """Track (or not) and crop rendered source frames like data preparation.

    Args:
        rendered: ``images`` (T, F, F, 3) uint8 source frames (possibly corrupted), ``masks``
            (T, F, F) uint8, exact ``landmarks`` (T, L, 3) and ``landmarks68`` (T, 68, 2) in
            source pixels (:func:`seqdeca.data.synthetic.render_clip`).
        cfg: reads ``crop`` and ``track``.
        tracked: MediaPipe landmarks (else the exact ones).

    Returns:
        The clip's arrays. Exact landmarks with F equal to the crop size keep the frames as they
        are (crops None); otherwise frames are cropped by the (tracked or exact) DECA box.
    """
    from seqdeca.prep.au_proxy import au_proxies
    from seqdeca.prep.crop import warp_to_crop
    from seqdeca.prep.landmark_sets import mediapipe_to_ibug68
    from seqdeca.prep.masks import region_masks

    images, exact = rendered["images"], rendered["landmarks"]
    t_count, size = len(images), cfg.crop.size
    every = np.ones(t_count, dtype=bool)
    if not tracked and images.shape[1] == size:
        return ClipArrays(
            images,
            rendered["masks"],
            exact,
            rendered["landmarks68"],
            every,
            every,
            ~every,
            np.repeat(np.eye(3, dtype=np.float32)[None], t_count, 0),
            np.zeros((t_count, 0), np.float32),
            None,
        )
    if exact.shape[1] < 468:
        raise ValueError("cropping synthetic frames needs the face model's MediaPipe landmarks")
    track = TrackedFrames(exact, every, every, ~every) if not tracked else track_frames(images, cfg)
    if track.valid.any():
        crops = clip_crops(track.landmarks, track.valid, cfg)
        landmarks = landmarks_to_crop(track.landmarks, crops)
    else:  # no face anywhere: frames framed by the truth, every frame invalid
        crops = clip_crops(exact, every, cfg)
        landmarks = np.full(track.landmarks.shape, np.nan, dtype=np.float32)
    masks = np.stack([region_masks(points, size) for points in landmarks])
    return ClipArrays(
        images=warp_to_crop(images, crops, size),
        masks=masks,
        landmarks=landmarks,
        landmarks68=mediapipe_to_ibug68(landmarks)[..., :2].astype(np.float32),
        valid=track.valid,
        found=track.found,
        interpolated=track.interpolated,
        transforms=crops.astype(np.float32),
        au_proxy=au_proxies(landmarks, track.valid)[0],
        crops=crops,
    )
