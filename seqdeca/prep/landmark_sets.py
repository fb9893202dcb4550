"""Index tables that relate MediaPipe's 478 face-mesh points to other landmark conventions, and
MediaPipe's ordered contours (:func:`contour_loops`).

All indices are 0-based MediaPipe vertex ids (0-467 face mesh, 468-477 iris points). MediaPipe's
"left" and "right" are the SUBJECT's: the left eye (outer corner 263, iris centre 473) appears on
the right of a non-mirrored frontal image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "IBUG68_FROM_MEDIAPIPE",
    "IRIS_CENTRES",
    "LEFT_IRIS",
    "MEDIAPIPE105",
    "OUTER_EYE_CORNERS",
    "RIGHT_IRIS",
    "contour_loops",
    "inter_ocular_distance",
    "mediapipe_to_ibug68",
]

# iBUG-68 point i is MediaPipe vertex IBUG68_FROM_MEDIAPIPE[i] (a widely used mapping). MediaPipe's
# jaw points are surface points, not the silhouette contour that iBUG annotates.
IBUG68_FROM_MEDIAPIPE = np.array(
    [
        162,
        234,
        93,
        58,
        172,
        136,
        149,
        148,
        152,
        377,
        378,
        365,
        397,
        288,
        323,
        454,
        389,  # jaw 0-16
        71,
        63,
        105,
        66,
        107,  # right brow 17-21
        336,
        296,
        334,
        293,
        301,  # left brow 22-26
        168,
        197,
        5,
        4,
        75,
        97,
        2,
        326,
        305,  # nose 27-35
        33,
        160,
        158,
        133,
        153,
        144,  # right eye 36-41
        362,
        385,
        387,
        263,
        373,
        380,  # left eye 42-47
        61,
        39,
        37,
        0,
        267,
        269,
        291,
        405,
        314,
        17,
        84,
        181,  # outer lip 48-59
        78,
        82,
        13,
        312,
        308,
        317,
        14,
        87,  # inner lip 60-67
    ],
    dtype=np.int64,
)

# Outer eye corners (subject's right, left): the inter-ocular distance of seqdeca's NME.
OUTER_EYE_CORNERS = (33, 263)
# Iris centres (subject's right, left) and the four rim points of each iris.
IRIS_CENTRES = (468, 473)
RIGHT_IRIS = (469, 470, 471, 472)
LEFT_IRIS = (474, 475, 476, 477)
# Top of the forehead on the face oval: where the oval's loop starts.
_FOREHEAD = 10

# FLAME's MediaPipe landmark embedding: the MediaPipe vertex ids of its 105 landmarks, in the
# file's order. Provenance: `landmark_indices` of FLAME's mediapipe_landmark_embedding.npz as
# distributed in github.com/georgeretsi/smirk (assets/mediapipe_landmark_embedding/, commit c7de404).
MEDIAPIPE105 = np.array(
    [
        276,
        282,
        283,
        285,
        293,
        295,
        296,
        300,
        334,
        336,
        46,
        52,
        53,
        55,
        63,
        65,
        66,
        70,
        105,
        107,
        249,
        263,
        362,
        373,
        374,
        380,
        381,
        382,
        384,
        385,
        386,
        387,
        388,
        390,
        398,
        466,
        7,
        33,
        133,
        144,
        145,
        153,
        154,
        155,
        157,
        158,
        159,
        160,
        161,
        163,
        173,
        246,
        168,
        6,
        197,
        195,
        5,
        4,
        129,
        98,
        97,
        2,
        326,
        327,
        358,
        0,
        13,
        14,
        17,
        37,
        39,
        40,
        61,
        78,
        80,
        81,
        82,
        84,
        87,
        88,
        91,
        95,
        146,
        178,
        181,
        185,
        191,
        267,
        269,
        270,
        291,
        308,
        310,
        311,
        312,
        314,
        317,
        318,
        321,
        324,
        375,
        402,
        405,
        409,
        415,
    ],
    dtype=np.int64,
)


def mediapipe_to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """Select the 68 iBUG points from MediaPipe landmarks.

    Args:
        landmarks: (..., 468 or 478, C) MediaPipe points.

    Returns:
        (..., 68, C) in iBUG order.
    """
    return np.asarray(landmarks)[..., IBUG68_FROM_MEDIAPIPE, :]


def inter_ocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners 33 and 263 in the first two coordinates.

    Args:
        landmarks: (..., 468 or 478, C>=2) MediaPipe points.

    Returns:
        (...) distances in the landmarks' unit.
    """
    points = np.asarray(landmarks)
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(points[..., a, :2] - points[..., b, :2], axis=-1)


def _loop(edges: Sequence[tuple[int, int]], start: int) -> np.ndarray:
    """The closed vertex loop through ``start`` of an undirected edge set, in walking order."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    loop, prev, cur = [start], start, min(nbrs[start])
    while cur != start:
        loop.append(cur)
        prev, cur = cur, next(n for n in sorted(nbrs[cur]) if n != prev)
    return np.asarray(loop, dtype=np.int64)


def contour_loops() -> dict[str, np.ndarray]:
    """Ordered MediaPipe contours: face_oval, left_eye, right_eye, lips_outer, lips_inner."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return {
        "face_oval": _loop(fmc.FACEMESH_FACE_OVAL, _FOREHEAD),
        "left_eye": _loop(fmc.FACEMESH_LEFT_EYE, 263),
        "right_eye": _loop(fmc.FACEMESH_RIGHT_EYE, 33),
        "lips_outer": _loop(fmc.FACEMESH_LIPS, 61),
        "lips_inner": _loop(fmc.FACEMESH_LIPS, 78),
    }
