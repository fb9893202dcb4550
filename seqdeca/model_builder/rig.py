"""Topology and rig of the bundled face model, whose vertices ARE MediaPipe's 478 points.

Holds the triangulation of a frontal template (:func:`triangulate_face`, with MediaPipe's
contours of :func:`seqdeca.prep.landmark_sets.contour_loops` forced in), the joint regressor and
skinning weights (:class:`FaceRig`, :func:`joint_regressor`, :func:`skinning_weights`), the
planar UV layout and its masks (:func:`planar_uvs`, :func:`uv_masks`) and the landmark embeddings
(:func:`landmark_embeddings`). Templates are (478, 3) in the canonical frame of
:func:`seqdeca.model_builder.alignment.align_frames` (metres, x right, y up, z to the camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import Delaunay

from seqdeca.face_model.assets import JOINT_NAMES, LandmarkEmbedding
from seqdeca.prep.landmark_sets import (
    IBUG68_FROM_MEDIAPIPE,
    IRIS_CENTRES,
    LEFT_IRIS,
    MEDIAPIPE105,
    RIGHT_IRIS,
    contour_loops,
)
from seqdeca.render import rasterize_uv

__all__ = [
    "NUM_FACE_POINTS",
    "NUM_POINTS",
    "FaceRig",
    "Triangulation",
    "joint_regressor",
    "landmark_embeddings",
    "planar_uvs",
    "skinning_weights",
    "triangulate_face",
    "uv_masks",
]

NUM_FACE_POINTS = 468
NUM_POINTS = 478
_MOUTH_CORNERS = (61, 291)
_EAR_LEVEL = (234, 454)  # lateral face-oval points in front of the ears


# ------------------------------------------------------------------------------------ topology


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (M, 2) points against a closed (K, 2) polygon."""
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = polygon[:, 0], polygon[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    crosses = (ay > y) != (by > y)
    xcross = ax + (y - ay) * (bx - ax) / np.where(by == ay, 1e-30, by - ay)
    return (crosses & (x < xcross)).sum(1) % 2 == 1


def _signed_area(xy: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) signed areas of the 2D triangles ``xy[faces]``, positive when counter-clockwise."""
    a, b, c = xy[faces[:, 0]], xy[faces[:, 1]], xy[faces[:, 2]]
    return 0.5 * (
        (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    )


@dataclass
class Triangulation:
    """Faces of the bundled model.

    Attributes:
        faces: (F, 3) int64, counter-clockwise seen from +z; the last 8 are the iris fans.
        hole_faces: (H, 3) triangles that fill the eye openings and the inner mouth (not part of
            the mesh; used for the "whole face" UV mask).
        num_iris_faces: how many of the last faces are iris fans.
    """

    faces: np.ndarray
    hole_faces: np.ndarray
    num_iris_faces: int


def _segments_cross(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> bool:
    """Whether the open segments pq and rs properly intersect (2D)."""

    def side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0


def _insert_edge(
    tri: np.ndarray, xy: np.ndarray, a: int, b: int, max_flips: int = 100
) -> np.ndarray:
    """Make (a, b) an edge of a 2D triangulation by flipping the edges that cross it (Sloan).

    Every flip acts on a convex quadrilateral, so the triangulation stays valid; if no crossing
    edge can be flipped the triangulation is returned as it is (the caller checks the result).
    """
    tri = tri.copy()
    for _ in range(max_flips):
        if ((tri == a).any(1) & (tri == b).any(1)).any():
            return tri
        flipped = False
        for i, j in _crossing_edges(tri, xy, a, b):
            pair = np.nonzero((tri == i).any(1) & (tri == j).any(1))[0]
            if len(pair) != 2:
                continue
            e, f = (int(next(v for v in tri[k] if v not in (i, j))) for k in pair)
            if _segments_cross(xy[i], xy[j], xy[e], xy[f]):  # convex quad: the flip is legal
                tri[pair[0]], tri[pair[1]] = (e, f, i), (f, e, j)
                flipped = True
                break
        if not flipped:
            return tri
    return tri


def _crossing_edges(tri: np.ndarray, xy: np.ndarray, a: int, b: int) -> list[tuple[int, int]]:
    """Edges of ``tri`` that properly cross the segment (a, b), in a deterministic order."""
    edges = {tuple(sorted((int(u), int(v)))) for t in tri for u, v in zip(t, np.roll(t, -1))}
    return [
        e
        for e in sorted(edges)
        if a not in e and b not in e and _segments_cross(xy[a], xy[b], xy[e[0]], xy[e[1]])
    ]


def _unwrapped_xy(template: np.ndarray) -> np.ndarray:
    """(V, 2) the face seen from a point behind it, so that its sides unfold around the front.

    Perspective from one face depth behind the rearmost face point: points further back spread
    outwards, which keeps every point inside the face-oval contour even where the frontal
    projection folds (cheek sides of a turned or deep face).
    """
    z = template[:NUM_FACE_POINTS, 2]
    viewpoint = z.min() - (z.max() - z.min())
    return template[:, :2] / (template[:, 2:3] - viewpoint)


def triangulate_face(template: np.ndarray) -> Triangulation:
    """Triangulate a MediaPipe-topology template from its frontal view.

    A 2D Delaunay triangulation of the 468 face points seen from the front (from a point behind
    the face, :func:`_unwrapped_xy`, so that the sides do not fold), with every MediaPipe contour
    (face oval, eyes, lips) made an edge by edge flips, minus the triangles outside the oval and
    inside the eyes and the inner lips, plus a 4-triangle fan per iris. Faces are
    counter-clockwise in that view (seen from +z).

    Args:
        template: (478, 3) frontal face (model axes).
    """
    xy = _unwrapped_xy(template)
    loops = contour_loops()
    tri = Delaunay(xy[:NUM_FACE_POINTS]).simplices.astype(np.int64)
    for loop in loops.values():  # the contours must be edges of the mesh (constrained Delaunay)
        for a, b in zip(loop, np.roll(loop, -1)):
            tri = _insert_edge(tri, xy, int(a), int(b))
    flip = _signed_area(xy, tri) < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    centroids = xy[tri].mean(1)
    inside_oval = _inside(centroids, xy[loops["face_oval"]])
    hole = np.zeros(len(tri), dtype=bool)
    for name in ("left_eye", "right_eye", "lips_inner"):
        hole |= _inside(centroids, xy[loops[name]])
    fans = []
    for centre, rim in ((IRIS_CENTRES[0], RIGHT_IRIS), (IRIS_CENTRES[1], LEFT_IRIS)):
        rim_xy = xy[list(rim)] - xy[centre]
        order = np.asarray(rim)[np.argsort(np.arctan2(rim_xy[:, 1], rim_xy[:, 0]))]  # CCW
        fans += [(centre, order[k], order[(k + 1) % 4]) for k in range(4)]
    faces = np.concatenate([tri[inside_oval & ~hole], np.asarray(fans, dtype=np.int64)])
    return Triangulation(faces=faces, hole_faces=tri[inside_oval & hole], num_iris_faces=len(fans))


# ----------------------------------------------------------------------------------------- rig


def _affine_weights(anchors: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Minimum-norm weights w (K,) with sum(w) = 1 and w @ anchors = target (anchors (K, 3))."""
    system = np.vstack([anchors.T, np.ones(len(anchors))])  # (4, K)
    return np.linalg.lstsq(system, np.append(target, 1.0), rcond=None)[0]


@dataclass
class FaceRig:
    """Joint placement of the bundled model (metres, offsets in the canonical frame).

    Attributes:
        eye_depth: eyeball centre behind the iris centre.
        jaw_drop, jaw_back: jaw hinge below / behind the midpoint of the ear-level oval points.
        neck_drop, neck_back: neck (and root) joint below / behind the jaw hinge.
        jaw_band_mouth, jaw_band_cheek: width of the jaw-weight fall-off at the mouth corners and
            at the sides of the face.
    """

    eye_depth: float = 0.012
    jaw_drop: float = 0.01
    jaw_back: float = 0.01
    neck_drop: float = 0.03
    neck_back: float = 0.02
    jaw_band_mouth: float = 0.003
    jaw_band_cheek: float = 0.02


_JOINT_ANCHORS = (10, 152, 4, 234, 454, 127, 356, 33, 263, 61, 291, 168)


def joint_regressor(template: np.ndarray, rig: FaceRig | None = None) -> np.ndarray:
    """(5, V) joint regressor whose rows are affine vertex combinations (rows sum to 1).

    Joints (``JOINT_NAMES``): root and neck at the same point below and behind the jaw hinge;
    the jaw hinge on the midline between the ear-level oval points (234, 454), moved down and
    back; each eye ``eye_depth`` behind its iris centre (left = subject's left = iris 473).
    """
    rig = rig or FaceRig()
    ear = template[list(_EAR_LEVEL)].mean(0)
    jaw = ear + np.array([0.0, -rig.jaw_drop, -rig.jaw_back])
    jaw[0] = 0.5 * (template[_MOUTH_CORNERS[0], 0] + template[_MOUTH_CORNERS[1], 0])
    neck = jaw + np.array([0.0, -rig.neck_drop, -rig.neck_back])
    back = np.array([0.0, 0.0, -rig.eye_depth])
    targets = {
        "root": neck,
        "neck": neck,
        "jaw": jaw,
        "left_eye": template[IRIS_CENTRES[1]] + back,
        "right_eye": template[IRIS_CENTRES[0]] + back,
    }
    eye_anchors = {
        "left_eye": (473, 263, 362, 386, 374, 10, 4),
        "right_eye": (468, 33, 133, 159, 145, 10, 4),
    }
    reg = np.zeros((len(JOINT_NAMES), len(template)))
    for j, name in enumerate(JOINT_NAMES):
        ids = np.asarray(eye_anchors.get(name, _JOINT_ANCHORS))
        reg[j, ids] = _affine_weights(template[ids], targets[name])
    return reg


def _jaw_split(template: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height of the jaw/head split line and fall-off band at abscissae ``x`` (canonical frame).

    Between the inner-lip corners the line is the midline of the upper and lower inner lips;
    beyond them it rises linearly to the ear-level oval points.
    """
    inner = contour_loops()["lips_inner"]
    corner_r, corner_l = 78, 308
    k = int(np.nonzero(inner == corner_l)[0][0])
    arc_a, arc_b = inner[: k + 1], np.append(inner[k:], corner_r)
    ya = np.interp(x, *_sorted_xy(template[arc_a]))
    yb = np.interp(x, *_sorted_xy(template[arc_b]))
    mid = 0.5 * (ya + yb)
    xr, xl = template[corner_r, 0], template[corner_l, 0]
    y_corner = np.where(x < 0, template[corner_r, 1], template[corner_l, 1])
    ear = template[list(_EAR_LEVEL)]
    x_ear = np.where(x < 0, ear[0, 0], ear[1, 0])
    x_corner = np.where(x < 0, xr, xl)
    frac = np.clip((x - x_corner) / (x_ear - x_corner), 0.0, 1.0)
    outside = (x < xr) | (x > xl)
    line = np.where(
        outside, y_corner + frac * (np.where(x < 0, ear[0, 1], ear[1, 1]) - y_corner), mid
    )
    return line, frac


def _sorted_xy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0], kind="stable")
    return points[order, 0], points[order, 1]


def skinning_weights(template: np.ndarray, rig: FaceRig | None = None) -> np.ndarray:
    """(V, 5) skinning weights, rows sum to 1.

    Lower face (below the jaw split line: lower lip, chin, jaw line) -> jaw, with a smooth
    fall-off whose width grows from ``jaw_band_mouth`` at the mouth corners to
    ``jaw_band_cheek`` at the sides; iris points -> their eye; everything else -> neck. The root
    gets no weight (as in FLAME).
    """
    rig = rig or FaceRig()
    x, y = template[:, 0], template[:, 1]
    line, frac = _jaw_split(template, x)
    band = rig.jaw_band_mouth + frac * (rig.jaw_band_cheek - rig.jaw_band_mouth)
    t = np.clip(0.5 + (line - y) / band, 0.0, 1.0)
    jaw = t * t * (3 - 2 * t)  # smoothstep
    weights = np.zeros((len(template), len(JOINT_NAMES)))
    weights[:, JOINT_NAMES.index("jaw")] = jaw
    weights[:, JOINT_NAMES.index("neck")] = 1 - jaw
    for iris, joint in (
        (LEFT_IRIS + (IRIS_CENTRES[1],), "left_eye"),
        (RIGHT_IRIS + (IRIS_CENTRES[0],), "right_eye"),
    ):
        weights[list(iris)] = 0.0
        weights[list(iris), JOINT_NAMES.index(joint)] = 1.0
    return weights


# ------------------------------------------------------------------------------------ UV space


def planar_uvs(template: np.ndarray, margin: float = 0.04) -> np.ndarray:
    """(V, 2) UVs: the frontal (x, y) of the template scaled uniformly into [margin, 1 - margin].

    The longer side of the face spans the UV square; v grows upwards (OBJ convention).
    """
    xy = template[:, :2]
    lo, hi = xy[:NUM_FACE_POINTS].min(0), xy[:NUM_FACE_POINTS].max(0)
    scale = (1 - 2 * margin) / (hi - lo).max()
    return ((xy - 0.5 * (lo + hi)) * scale + 0.5).astype(np.float32)


def uv_masks(
    verts_uvs: np.ndarray, topology: Triangulation, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """UV masks (H, W) float32 in {0, 1}, row 0 = v 1.

    Returns:
        uv_face_mask (the skin: mesh triangles without the irises) and uv_face_eye_mask (the
        whole face region: skin, eye openings, irises and inner mouth).
    """
    uvs = torch.as_tensor(verts_uvs, dtype=torch.float32)
    skin = topology.faces[: len(topology.faces) - topology.num_iris_faces]
    whole = np.concatenate([topology.faces, topology.hole_faces])
    masks = [rasterize_uv(uvs, torch.as_tensor(f), size).mask[0].numpy() for f in (skin, whole)]
    return masks[0].astype(np.float32), masks[1].astype(np.float32)


# ----------------------------------------------------------------------------------- landmarks


def landmark_embeddings(
    faces: np.ndarray,
) -> tuple[dict[str, LandmarkEmbedding], dict[str, np.ndarray]]:
    """Landmark sets of a model whose vertices ARE the 478 MediaPipe points.

    Every landmark sits exactly on its vertex: the lowest-index face containing it with a one-hot
    barycentric coordinate. Sets: "mediapipe478", "mediapipe105" (FLAME's MediaPipe subset),
    "ibug68" (static 68 via the MediaPipe -> iBUG mapping).

    Returns:
        (landmarks by name, MediaPipe vertex ids by name).
    """
    ids = {
        "mediapipe478": np.arange(NUM_POINTS, dtype=np.int64),
        "mediapipe105": MEDIAPIPE105.copy(),
        "ibug68": IBUG68_FROM_MEDIAPIPE.copy(),
    }
    face_of = np.full(NUM_POINTS, -1, dtype=np.int64)
    corner_of = np.zeros(NUM_POINTS, dtype=np.int64)
    for f in range(len(faces) - 1, -1, -1):  # reverse so that the lowest face index wins
        face_of[faces[f]] = f
        corner_of[faces[f]] = np.arange(3)
    if (face_of < 0).any():
        raise ValueError(f"vertices {np.nonzero(face_of < 0)[0][:5].tolist()} belong to no face")
    sets = {}
    for name, vid in ids.items():
        bary = np.zeros((len(vid), 3), dtype=np.float32)
        bary[np.arange(len(vid)), corner_of[vid]] = 1.0
        sets[name] = LandmarkEmbedding(face_idx=face_of[vid], bary=bary)
    return sets, ids
