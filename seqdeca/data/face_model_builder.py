"""Build seqdeca's bundled FLAME-format face model from tracked video (DESIGN.md section 7).

Pipeline (every step is deterministic: the same clips give the same arrays):

1. Track every clip with MediaPipe (:func:`seqdeca.data.tracking.track_video`): 478 points per
   frame, turned into model axes (x right, y UP, z towards the camera: flip y and z).
2. Generalised Procrustes (similarity) over all frames of all clips, first on the 468 face
   points, then on the stable points (upper face and nose, away from the eyes, mouth and jaw,
   the half with the least within-clip motion); rotate the mean face to a canonical frontal frame
   and scale to metres with the mean inter-pupil distance (iris centres 468/473) = 0.063 m.
3. Template = mean of per-clip means (each clip is one subject); identity basis = PCA of the
   clip means; expression basis = PCA of per-frame deviations from the clip mean. Bases are
   scaled by their standard deviations, so codes have about unit variance (like FLAME's).
4. Topology: 2D Delaunay of the template's 468 face points seen from the front, with the
   MediaPipe contours forced in as edges, minus the triangles outside the face oval and inside
   the inner lips and the eyes, plus a 4-triangle fan per iris.
5. Rig: five joints as AFFINE combinations of vertices (so they follow identity), skinning weights
   (lower face -> jaw with a smooth fall-off, irises -> eyes, the rest -> neck), zero posedirs.
6. UVs: a planar projection of the frontal template; UV masks; mean albedo and a small albedo
   basis from frames unwrapped into UV (:func:`seqdeca.render.rasterize_uv`, ``world_to_uv``).

The held-out check (:func:`evaluate_leave_one_out`) builds from all clips but one and fits the
left-out clip's landmarks with :func:`seqdeca.face_model.fitting.fit_to_landmarks`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import Delaunay

import seqdeca
from seqdeca.data.landmark_sets import (
    IBUG68_FROM_MEDIAPIPE,
    IRIS_CENTRES,
    LEFT_IRIS,
    MEDIAPIPE105,
    RIGHT_IRIS,
)
from seqdeca.data.tracking import TrackResult, track_video
from seqdeca.data.video import VideoReader
from seqdeca.errors import UserError
from seqdeca.face_model.assets import JOINT_NAMES, FaceModelAssets, LandmarkEmbedding
from seqdeca.geometry.mesh import vertex_normals
from seqdeca.render import rasterize_uv, world_to_uv

__all__ = [
    "BuildConfig",
    "ClipGeometry",
    "FaceRig",
    "Triangulation",
    "align_frames",
    "build_face_model",
    "canonical_frame",
    "contour_loops",
    "evaluate_leave_one_out",
    "format_residual_table",
    "generalized_procrustes",
    "geometry_assets",
    "heldout_residual",
    "joint_regressor",
    "landmark_embeddings",
    "mediapipe_to_model",
    "normalize_track",
    "pca_basis",
    "planar_uvs",
    "similarity_procrustes",
    "skinning_weights",
    "statistical_model",
    "texture_space",
    "triangulate_face",
    "unwrap_clip",
    "uv_masks",
]  # fmt: skip

NUM_FACE_POINTS = 468
NUM_POINTS = 478
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
_FOREHEAD, _CHIN, _NOSE_TIP = 10, 152, 4
_MOUTH_CORNERS = (61, 291)
_EAR_LEVEL = (234, 454)  # lateral face-oval points in front of the ears


@dataclass
class BuildConfig:
    """Settings of :func:`build_face_model`.

    Attributes:
        n_shape: identity components (at most clips - 1).
        n_expression: expression components.
        ipd_metres: mean inter-pupil distance the model is scaled to.
        stable_fraction: fraction of the upper-face candidates used to align frames.
        uv_size: side of the UV maps (masks, albedo), pixels.
        uv_margin: empty border of the planar UV layout, in UV units.
        n_texture: albedo components (at most clips - 1); 0 with ``texture=False``.
        texture: unwrap frames into an albedo (needs the videos, slower).
        texture_step: use every n-th frame for the albedo.
        texture_max_side: decode frames for the albedo at this long side, pixels.
        build_date: ISO date recorded in the model (default: today). Fix it for identical files.
    """

    n_shape: int = 5
    n_expression: int = 24
    ipd_metres: float = 0.063
    stable_fraction: float = 0.5
    uv_size: int = 256
    uv_margin: float = 0.04
    n_texture: int = 5
    texture: bool = True
    texture_step: int = 2
    texture_max_side: int = 960
    build_date: str | None = None


# ----------------------------------------------------------------------------------- alignment


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
    frames: np.ndarray, point_ids: np.ndarray, *, reference: np.ndarray | None = None,
    max_iterations: int = 100, tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
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


# ---------------------------------------------------------------------------------- statistics


def pca_basis(samples: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of zero-mean samples, scaled to unit-variance coefficients.

    Args:
        samples: (M, D) zero-mean rows.
        n_components: K, clipped to the rank available (M - 1 at most when M <= D).

    Returns:
        basis (K, D) = unit direction * its standard deviation (sign: largest entry positive),
        and the explained-variance fraction (K,).
    """
    m = samples.shape[0]
    _, sv, vt = np.linalg.svd(samples, full_matrices=False)
    var = sv**2 / max(m, 1)
    k = int(min(n_components, np.sum(var > var.sum() * 1e-12)))
    dirs = vt[:k]
    sign = np.sign(dirs[np.arange(k), np.abs(dirs).argmax(1)])
    basis = dirs * (sign * np.sqrt(var[:k]))[:, None]
    return basis, var[:k] / max(var.sum(), 1e-30)


@dataclass
class ClipGeometry:
    """Template and bases in metres (model axes).

    Attributes:
        template: (478, 3).
        shapedirs: (478, 3, S); exprdirs: (478, 3, E).
        shape_explained, expression_explained: (S,), (E,) explained-variance fractions.
    """

    template: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    shape_explained: np.ndarray
    expression_explained: np.ndarray


def statistical_model(
    aligned: Sequence[np.ndarray], *, n_shape: int, n_expression: int
) -> ClipGeometry:
    """Template, identity basis and expression basis from aligned clips (one subject each).

    Args:
        aligned: per clip (T_i, 478, 3) metres (:func:`align_frames`).
        n_shape: identity components (at most clips - 1 are available).
        n_expression: expression components.
    """
    means = np.stack([c.mean(0) for c in aligned])
    template = means.mean(0)
    shape, shape_ev = pca_basis((means - template).reshape(len(means), -1), n_shape)
    deviations = np.concatenate([c - c.mean(0) for c in aligned]).reshape(-1, template.size)
    expr, expr_ev = pca_basis(deviations, n_expression)
    v = template.shape[0]
    return ClipGeometry(
        template=template, shapedirs=shape.T.reshape(v, 3, -1), exprdirs=expr.T.reshape(v, 3, -1),
        shape_explained=shape_ev, expression_explained=expr_ev,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ topology


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


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (M, 2) points against a closed (K, 2) polygon."""
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = polygon[:, 0], polygon[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    crosses = (ay > y) != (by > y)
    xcross = ax + (y - ay) * (bx - ax) / np.where(by == ay, 1e-30, by - ay)
    return (crosses & (x < xcross)).sum(1) % 2 == 1


def _signed_area(xy: np.ndarray, faces: np.ndarray) -> np.ndarray:
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
    targets = {"root": neck, "neck": neck, "jaw": jaw,
               "left_eye": template[IRIS_CENTRES[1]] + back, "right_eye": template[IRIS_CENTRES[0]] + back}  # fmt: skip
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


def unwrap_clip(
    video: str | Path, track: TrackResult, verts_uvs: np.ndarray, faces: np.ndarray, *,
    size: int = 256, step: int = 2, max_side: int = 960, chunk_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Accumulate a clip's frames in UV space, using its tracked landmarks as the mesh.

    Every UV pixel is a barycentric point of one face; the same barycentric point of a frame's
    2D landmarks is sampled (bilinear) from the frame. Samples are weighted by how frontal the
    surface is in that frame (squared z of the interpolated vertex normal, zero facing away).

    Args:
        video: the clip; track: its tracking result; verts_uvs (V, 2), faces (F, 3): the UV mesh.
        size: UV map side; step: use every ``step``-th frame; max_side: decoding size.

    Returns:
        weighted colour sum (3, H, W) and weight sum (H, W), float64.
    """
    faces_t = torch.as_tensor(faces, dtype=torch.int64)
    fragments = rasterize_uv(torch.as_tensor(verts_uvs, dtype=torch.float32), faces_t, size)
    colour = torch.zeros(3, size, size, dtype=torch.float64)
    weight = torch.zeros(size, size, dtype=torch.float64)
    with VideoReader(video, max_side=max_side) as reader:
        scale = torch.tensor(
            [reader.decode_size[0] / reader.size[0], reader.decode_size[1] / reader.size[1]]
        )
        for idx, frames in reader.chunks(chunk_size, step=step):
            keep = track.valid[idx]
            if not keep.any():
                continue
            lmk = torch.as_tensor(track.landmarks[idx[keep]], dtype=torch.float32)
            img = torch.as_tensor(frames[keep]).permute(0, 3, 1, 2).float() / 255.0
            normal_z = vertex_normals(lmk * torch.tensor([1.0, -1.0, -1.0]), faces_t)[..., 2:]
            attrs = torch.cat([lmk[..., :2] * scale, normal_z], dim=-1)  # (n, V, 3)
            uv = world_to_uv(attrs, faces_t, fragments)  # (n, 3, H, W): frame pixel x, y; n_z
            grid = (
                uv[:, :2].permute(0, 2, 3, 1) / torch.tensor([img.shape[3], img.shape[2]]) * 2 - 1
            )
            rgb = F.grid_sample(img, grid, mode="bilinear", align_corners=False)
            w = uv[:, 2].clamp_min(0) ** 2 * fragments.mask.float()
            colour += (rgb * w[:, None]).sum(0).double()
            weight += w.sum(0).double()
    return colour.numpy(), weight.numpy()


def texture_space(
    sums: Sequence[tuple[np.ndarray, np.ndarray]], n_components: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean albedo and albedo basis from per-subject UV accumulations.

    Args:
        sums: per subject (colour sum (3, H, W), weight sum (H, W)) from :func:`unwrap_clip`.
        n_components: K (at most subjects - 1).

    Returns:
        mean (3, H, W) in [0, 1], basis (K, 3, H, W) scaled to unit-variance coefficients, and the
        coverage (H, W) bool. Pixels no subject saw take the value of the nearest seen pixel.
    """
    seen = np.stack([w > 1e-6 for _, w in sums])  # (M, H, W)
    subject = np.stack([c / np.maximum(w, 1e-6) for c, w in sums])  # (M, 3, H, W)
    count = seen.sum(0)
    mean = (subject * seen[:, None]).sum(0) / np.maximum(count, 1)
    subject = np.where(seen[:, None], subject, mean[None])  # unseen by one subject: the mean
    coverage = count > 0
    if not coverage.any():
        raise ValueError("no UV pixel was seen in any frame")
    _, (ii, jj) = ndimage.distance_transform_edt(~coverage, return_indices=True)
    subject, mean = subject[..., ii, jj], mean[..., ii, jj]  # fill unseen pixels from the nearest
    basis, _ = pca_basis((subject - mean).reshape(len(subject), -1), n_components)
    return (
        mean.clip(0, 1).astype(np.float32),
        basis.reshape(-1, *mean.shape).astype(np.float32),
        coverage,
    )


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
    ids = {"mediapipe478": np.arange(NUM_POINTS, dtype=np.int64),
           "mediapipe105": MEDIAPIPE105.copy(), "ibug68": IBUG68_FROM_MEDIAPIPE.copy()}  # fmt: skip
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


# -------------------------------------------------------------------------------------- build


def _track_all(
    videos: Sequence[Path], tracks: Sequence[TrackResult] | None, log: Callable[[str], None]
) -> list[TrackResult]:
    if tracks is not None:
        if len(tracks) != len(videos):
            raise ValueError(f"{len(tracks)} tracking results for {len(videos)} videos")
        return list(tracks)
    out = []
    for video in videos:
        log(f"tracking {video}")
        out.append(track_video(video))
    return out


def geometry_assets(
    aligned: Sequence[np.ndarray], config: BuildConfig, *, name: str = "seqdeca-default"
) -> tuple[FaceModelAssets, ClipGeometry, Triangulation]:
    """The geometric part of the model (no albedo) from aligned clips (:func:`align_frames`)."""
    geo = statistical_model(aligned, n_shape=config.n_shape, n_expression=config.n_expression)
    template = geo.template
    topology = triangulate_face(template)
    uvs = planar_uvs(template, config.uv_margin)
    face_mask, face_eye_mask = uv_masks(uvs, topology, config.uv_size)
    landmarks, ids = landmark_embeddings(topology.faces)
    v = len(template)
    assets = FaceModelAssets(
        name=name, v_template=template.astype(np.float32), faces=topology.faces,
        shapedirs=geo.shapedirs.astype(np.float32), exprdirs=geo.exprdirs.astype(np.float32),
        posedirs=np.zeros((v, 3, 9 * (len(JOINT_NAMES) - 1)), dtype=np.float32),
        j_regressor=joint_regressor(template).astype(np.float32),
        lbs_weights=skinning_weights(template).astype(np.float32),
        parents=np.array([-1, 0, 1, 1, 1], dtype=np.int64), verts_uvs=uvs,
        faces_uvs=topology.faces.copy(), landmarks=landmarks, landmark_vertex_ids=ids,
        uv_face_mask=face_mask, uv_face_eye_mask=face_eye_mask,
    )  # fmt: skip
    return assets, geo, topology


def build_face_model(
    videos: Sequence[str | Path], *, config: BuildConfig | None = None,
    tracks: Sequence[TrackResult] | None = None, log: Callable[[str], None] = lambda _: None,
) -> tuple[FaceModelAssets, dict]:  # fmt: skip
    """Build a FLAME-format face model from video clips, one subject per clip.

    Args:
        videos: the clips (at least 2; identity and albedo bases have clips - 1 components).
        config: settings (default :class:`BuildConfig`).
        tracks: precomputed tracking results, one per video (default: track here).
        log: progress callback, one line per step.

    Returns:
        the assets (save with ``save_assets(..., compact=True)``) and a JSON-ready build report.
    """
    config = config or BuildConfig()
    videos = [Path(v) for v in videos]
    if len(videos) < 2:
        raise UserError(
            f"building a face model needs at least 2 clips (one subject each), got {len(videos)}"
        )
    tracks = _track_all(videos, tracks, log)
    empty = [str(v) for v, t in zip(videos, tracks) if not t.valid.any()]
    if empty:
        raise UserError(f"MediaPipe found no face in {empty}: remove these clips")
    log("aligning frames")
    points = [mediapipe_to_model(t.landmarks[t.valid]) for t in tracks]
    aligned, info = align_frames(
        points, stable_fraction=config.stable_fraction, ipd_metres=config.ipd_metres
    )
    assets, geo, _ = geometry_assets(aligned, config)
    if config.texture and config.n_texture >= 0:
        sums = []
        for video, track in zip(videos, tracks):
            log(f"unwrapping {video.name} into UV")
            kwargs = {
                "size": config.uv_size,
                "step": config.texture_step,
                "max_side": config.texture_max_side,
            }
            sums.append(unwrap_clip(video, track, assets.verts_uvs, assets.faces, **kwargs))
        assets.texture_mean, assets.texture_basis, _ = texture_space(sums, config.n_texture)
    report = {
        "name": assets.name,
        "seqdeca_version": seqdeca.__version__,
        "build_date": config.build_date or datetime.date.today().isoformat(),
        "clips": [
            {"file": v.name, "frames": t.num_frames, "valid_frames": int(t.valid.sum()),
             "size": list(t.size), "fps": t.fps}
            for v, t in zip(videos, tracks)
        ],
        "vertices": assets.num_vertices, "faces": len(assets.faces),
        "n_shape": assets.num_shape, "n_expression": assets.num_expression, "n_texture": assets.num_texture,
        "ipd_metres": config.ipd_metres,
        "stable_points": len(info["stable_ids"]),
        "shape_explained": [round(float(x), 5) for x in geo.shape_explained],
        "expression_explained_cumulative": [round(float(x), 5) for x in np.cumsum(geo.expression_explained)],
        "uv_folded_faces": int((_signed_area(assets.verts_uvs, assets.faces) <= 0).sum()),
        "posedirs": "zeros (no pose-corrective blend shapes)",
        "jaw_opens_with": "positive jaw_pose[0] (rotation about +x)",
    }  # fmt: skip
    assets.meta = dict(report)
    return assets, report


# ------------------------------------------------------------------------- held-out evaluation


def normalize_track(landmarks_px: np.ndarray) -> tuple[np.ndarray, float]:
    """Pixel landmarks (T, P, >=2) -> isotropic normalised coordinates for fitting.

    The clip's mean landmark box centre maps to 0 and 1.5x its largest box side to 2 (one
    scale for x and y, y stays down).

    Returns:
        (T, P, 2) normalised landmarks and the pixels per normalised unit.
    """
    xy = landmarks_px[..., :2].astype(np.float64)
    lo, hi = xy.min(1), xy.max(1)  # (T, 2)
    centre = 0.5 * (lo + hi).mean(0)
    half = 0.75 * float((hi - lo).max())
    return ((xy - centre) / half).astype(np.float32), half


def heldout_residual(
    assets: FaceModelAssets, track: TrackResult, *, frame_step: int = 2, **fit_kwargs
) -> dict:
    """Fit a model to a clip's tracked 478 points; residual over the 468 face points.

    Args:
        assets: a model with the "mediapipe478" landmark set.
        track: the clip's tracking result (valid frames, every ``frame_step``-th, are fitted).
        **fit_kwargs: passed to :func:`seqdeca.face_model.fitting.fit_to_landmarks`.

    Returns:
        dict with "full" and "template" mean residuals in percent of the inter-ocular distance
        (outer eye corners 33-263 of the tracked landmarks, per frame), and "frames".
    """
    from seqdeca.face_model.fitting import fit_to_landmarks
    from seqdeca.face_model.layer import FaceModel

    px = track.landmarks[np.nonzero(track.valid)[0][::frame_step]]
    target, half = normalize_track(px)
    iod = np.linalg.norm(px[:, 33, :2] - px[:, 263, :2], axis=-1)
    model = FaceModel(assets)
    out = {"frames": len(px)}
    for key, extra in (("full", {}), ("template", {"n_shape": 0, "n_expression": 0})):
        fit = fit_to_landmarks(model, target, "mediapipe478", **{**fit_kwargs, **extra})
        dist = np.linalg.norm(
            fit.landmarks_2d.numpy()[:, :NUM_FACE_POINTS] - target[:, :NUM_FACE_POINTS], axis=-1
        )
        out[key] = float((dist.mean(1) * half / iod).mean() * 100)
    return out


def evaluate_leave_one_out(
    videos: Sequence[str | Path], *, config: BuildConfig | None = None,
    tracks: Sequence[TrackResult] | None = None, frame_step: int = 2,
    log: Callable[[str], None] = lambda _: None, **fit_kwargs,
) -> list[dict]:  # fmt: skip
    """Leave-one-clip-out 2D residual of the geometric model.

    For every clip: build the geometry from the others (no albedo), fit the held-out clip's
    landmarks (:func:`heldout_residual`) with the full model and with the template alone
    (identity and expression off; pose, jaw and camera still fitted).

    Returns:
        one dict per clip: "clip", "frames", "full" and "template" residuals (% of the IOD).
    """
    config = config or BuildConfig()
    videos = [Path(v) for v in videos]
    tracks = _track_all(videos, tracks, log)
    points = [mediapipe_to_model(t.landmarks[t.valid]) for t in tracks]
    rows = []
    for h, video in enumerate(videos):
        train = [p for i, p in enumerate(points) if i != h]
        aligned, _ = align_frames(
            train, stable_fraction=config.stable_fraction, ipd_metres=config.ipd_metres
        )
        assets, _, _ = geometry_assets(aligned, config)
        row = {
            "clip": video.name,
            **heldout_residual(assets, tracks[h], frame_step=frame_step, **fit_kwargs),
        }
        log(
            f"{row['clip']}: {row['full']:.3f}% (template only {row['template']:.3f}%), {row['frames']} frames"
        )
        rows.append(row)
    return rows


def format_residual_table(rows: Sequence[dict]) -> str:
    """A Markdown table of :func:`evaluate_leave_one_out` rows with an overall mean row."""
    lines = ["| held-out clip | frames fitted | model (% IOD) | template only (% IOD) |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['clip']} | {r['frames']} | {r['full']:.2f} | {r['template']:.2f} |")
    full, tmpl = np.mean([r["full"] for r in rows]), np.mean([r["template"] for r in rows])
    lines.append(
        f"| **mean over clips** | {sum(r['frames'] for r in rows)} | **{full:.2f}** | {tmpl:.2f} |"
    )
    return "\n".join(lines)
