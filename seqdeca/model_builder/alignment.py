"""Alignment of tracked MediaPipe frames into the model's frontal, metric frame.

Holds the MediaPipe -> model axis change (:func:`mediapipe_to_model`), similarity and generalised
Procrustes (:func:`similarity_procrustes`, :func:`generalized_procrustes`), the canonical
frontal frame of a face (:func:`canonical_frame`) and the alignment of all frames of several
clips (:func:`align_frames`): Procrustes on the face points, then on the stable points, rotated
frontal and scaled to metres by the inter-pupil distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqdeca.model_builder.rig import NUM_FACE_POINTS
from seqdeca.prep.landmark_sets import _FOREHEAD, IRIS_CENTRES, contour_loops

__all__ = [
    "align_frames",
    "canonical_frame",
    "generalized_procrustes",
    "mediapipe_to_model",
    "similarity_procrustes",
]

# Left/right partners (subject's right, subject's left) that define the frontal x axis.
_MIRROR_PAIRS = (
    (33, 263),
    (133, 362),
    (234, 454),
    (61, 291),
    (468, 473),
    (127, 356),
    (58, 288),
    (105, 334),
)
_CHIN, _NOSE_TIP = 152, 4


def mediapipe_to_model(landmarks: np.ndarray) -> np.ndarray:
    """MediaPipe (x_px, y_px, z) (..., P, 3) -> model axes (x right, y up, z to camera), float64."""
    return np.asarray(landmarks, dtype=np.float64) * np.array([1.0, -1.0, -1.0])


def similarity_procrustes(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama) mapping each source onto its target.

    Args:
        source: (N, P, 3) points.
        target: (N, P, 3) or (P, 3) points.
        weights: (P,) non-negative point weights (default uniform).

    Returns:
        scale (N,), rotation (N, 3, 3) proper, translation (N, 3) such that
        ``scale * source @ rotation.T + translation`` is closest to ``target``.
    """
    target = np.broadcast_to(target, source.shape)
    w = np.ones(source.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_t = np.einsum("p,npc->nc", w, source), np.einsum("p,npc->nc", w, target)
    a, b = source - mu_s[:, None], target - mu_t[:, None]
    cov = np.einsum("p,npi,npj->nij", w, b, a)
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones((len(source), 3))
    d[:, 2] = np.sign(np.linalg.det(u @ vt))
    rotation = u @ (d[:, :, None] * vt)
    scale = (sv * d).sum(1) / np.einsum("p,npc->n", w, a**2)
    translation = mu_t - scale[:, None] * np.einsum("nij,nj->ni", rotation, mu_s)
    return scale, rotation, translation


def _apply(
    points: np.ndarray, scale: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """(N, P, 3) -> scale * R p + t per item."""
    return scale[:, None, None] * np.einsum("nij,npj->npi", rotation, points) + translation[:, None]


def generalized_procrustes(
    frames: np.ndarray,
    point_ids: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    max_iterations: int = 100,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Align all frames to their common mean with similarity transforms.

    The mean is re-aligned to the previous one after every iteration, so it keeps the pose and
    size of the initial reference (default: the first frame).

    Args:
        frames: (N, P, 3) point sets.
        point_ids: indices of the points that define the alignment.
        reference: (P, 3) initial reference.

    Returns:
        aligned (N, P, 3) frames and their mean (P, 3).
    """
    ref = frames[0] if reference is None else reference
    ids = np.asarray(point_ids)
    for _ in range(max_iterations):
        aligned = _apply(frames, *similarity_procrustes(frames[:, ids], ref[ids]))
        mean = aligned.mean(0)
        mean = _apply(mean[None], *similarity_procrustes(mean[None, ids], ref[ids]))[0]
        change = np.abs(mean - ref).max()
        ref = mean
        if change < tol:
            break
    return _apply(frames, *similarity_procrustes(frames[:, ids], ref[ids])), ref


def canonical_frame(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and centre that make a face frontal and upright.

    x follows the subject's right -> left of mirror pairs (eyes, cheeks, mouth corners, ...),
    y the chin -> forehead direction made orthogonal to x, z = x cross y (towards the viewer).

    Args:
        reference: (478, 3) points in model axes.

    Returns:
        rotation (3, 3) and centre (3,) (centroid of the face points): ``R (p - c)`` is canonical.
    """
    pairs = np.asarray(_MIRROR_PAIRS)
    across = reference[pairs[:, 1]] - reference[pairs[:, 0]]
    x = (across / np.linalg.norm(across, axis=1, keepdims=True)).sum(0)
    x /= np.linalg.norm(x)
    up = reference[_FOREHEAD] - reference[_CHIN]
    y = up - (up @ x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)]), reference[:NUM_FACE_POINTS].mean(0)


def _stable_candidates(canonical: np.ndarray) -> np.ndarray:
    """Face points above the nose tip, without the eye contours (blinks) and irises."""
    loops = contour_loops()
    moving = set(loops["left_eye"].tolist()) | set(loops["right_eye"].tolist())
    upper = np.nonzero(canonical[:NUM_FACE_POINTS, 1] >= canonical[_NOSE_TIP, 1])[0]
    return np.array([i for i in upper if i not in moving], dtype=np.int64)


def align_frames(
    clips: Sequence[np.ndarray], *, stable_fraction: float = 0.5, ipd_metres: float = 0.063
) -> tuple[list[np.ndarray], dict]:
    """Align the frames of several clips into one frontal, metric frame.

    Args:
        clips: per clip (T_i, 478, 3) points in model axes (any unit, e.g. pixels).
        stable_fraction: fraction of the upper-face candidates (least within-clip motion first)
            used for the final alignment.
        ipd_metres: the mean distance between the iris centres after scaling.

    Returns:
        per clip (T_i, 478, 3) aligned points in metres, and a dict with "stable_ids" and
        "scale" (metres per input unit of the reference).
    """
    frames = np.concatenate(clips)
    clip_of = np.concatenate([np.full(len(c), i) for i, c in enumerate(clips)])
    aligned, ref = generalized_procrustes(frames, np.arange(NUM_FACE_POINTS))
    rot, centre = canonical_frame(ref)
    ref = (ref - centre) @ rot.T
    aligned = (aligned - centre) @ rot.T
    dev = np.concatenate(
        [aligned[clip_of == i] - aligned[clip_of == i].mean(0) for i in range(len(clips))]
    )
    motion = np.sqrt((dev**2).sum(-1).mean(0))
    cand = _stable_candidates(ref)
    stable = np.sort(
        cand[np.argsort(motion[cand], kind="stable")[: max(4, int(len(cand) * stable_fraction))]]
    )
    aligned, ref = generalized_procrustes(frames, stable, reference=ref)
    rot, centre = canonical_frame(ref)
    aligned = (aligned - centre) @ rot.T
    ipd = np.linalg.norm(aligned[:, IRIS_CENTRES[0]] - aligned[:, IRIS_CENTRES[1]], axis=-1).mean()
    aligned *= ipd_metres / ipd
    splits = np.cumsum([len(c) for c in clips])[:-1]
    return np.split(aligned, splits), {"stable_ids": stable, "scale": ipd_metres / ipd}
