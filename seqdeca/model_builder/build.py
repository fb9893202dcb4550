"""Build seqdeca's bundled FLAME-format face model from tracked video.

This module holds the settings (:class:`BuildConfig`), the orchestration
(:func:`geometry_assets`, :func:`build_face_model`) and the held-out check
(:func:`evaluate_leave_one_out`); the steps live in ``alignment`` (step 2), ``statistics``
(steps 3 and 6) and ``rig`` (steps 4 to 6) of ``seqdeca.model_builder``.

Pipeline (every step is deterministic: the same clips give the same arrays):

1. Track every clip with MediaPipe (:func:`seqdeca.prep.tracking.track_video`): 478 points per
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

import seqdeca
from seqdeca.errors import UserError
from seqdeca.face_model.assets import JOINT_NAMES, FaceModelAssets
from seqdeca.model_builder.alignment import align_frames, mediapipe_to_model
from seqdeca.model_builder.rig import (
    NUM_FACE_POINTS,
    Triangulation,
    _signed_area,
    joint_regressor,
    landmark_embeddings,
    planar_uvs,
    skinning_weights,
    triangulate_face,
    uv_masks,
)
from seqdeca.model_builder.statistics import (
    ClipGeometry,
    statistical_model,
    texture_space,
    unwrap_clip,
)
from seqdeca.prep.tracking import TrackResult, track_video

__all__ = [
    "BuildConfig",
    "build_face_model",
    "evaluate_leave_one_out",
    "format_residual_table",
    "geometry_assets",
    "heldout_residual",
    "normalize_track",
]


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
        name=name,
        v_template=template.astype(np.float32),
        faces=topology.faces,
        shapedirs=geo.shapedirs.astype(np.float32),
        exprdirs=geo.exprdirs.astype(np.float32),
        posedirs=np.zeros((v, 3, 9 * (len(JOINT_NAMES) - 1)), dtype=np.float32),
        j_regressor=joint_regressor(template).astype(np.float32),
        lbs_weights=skinning_weights(template).astype(np.float32),
        parents=np.array([-1, 0, 1, 1, 1], dtype=np.int64),
        verts_uvs=uvs,
        faces_uvs=topology.faces.copy(),
        landmarks=landmarks,
        landmark_vertex_ids=ids,
        uv_face_mask=face_mask,
        uv_face_eye_mask=face_eye_mask,
    )
    return assets, geo, topology


def build_face_model(
    videos: Sequence[str | Path],
    *,
    config: BuildConfig | None = None,
    tracks: Sequence[TrackResult] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[FaceModelAssets, dict]:
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
        assets.texture_mean, assets.texture_basis = _albedo(videos, tracks, assets, config, log)
    report = _build_report(assets, config, videos, tracks, geo, len(info["stable_ids"]))
    assets.meta = dict(report)
    return assets, report


def _albedo(
    videos: Sequence[Path],
    tracks: Sequence[TrackResult],
    assets: FaceModelAssets,
    config: BuildConfig,
    log: Callable[[str], None],
) -> tuple[np.ndarray, np.ndarray]:
    """Mean albedo (3, H, W) and albedo basis (K, 3, H, W) of the clips unwrapped into UV."""
    sums = []
    for video, track in zip(videos, tracks):
        log(f"unwrapping {video.name} into UV")
        kwargs = {
            "size": config.uv_size,
            "step": config.texture_step,
            "max_side": config.texture_max_side,
        }
        sums.append(unwrap_clip(video, track, assets.verts_uvs, assets.faces, **kwargs))
    mean, basis, _ = texture_space(sums, config.n_texture)
    return mean, basis


def _build_report(
    assets: FaceModelAssets,
    config: BuildConfig,
    videos: Sequence[Path],
    tracks: Sequence[TrackResult],
    geo: ClipGeometry,
    stable_points: int,
) -> dict:
    """The JSON-ready build report of :func:`build_face_model` (also stored as ``assets.meta``)."""
    return {
        "name": assets.name,
        "seqdeca_version": seqdeca.__version__,
        "build_date": config.build_date or datetime.date.today().isoformat(),
        "clips": [
            {
                "file": v.name,
                "frames": t.num_frames,
                "valid_frames": int(t.valid.sum()),
                "size": list(t.size),
                "fps": t.fps,
            }
            for v, t in zip(videos, tracks)
        ],
        "vertices": assets.num_vertices,
        "faces": len(assets.faces),
        "n_shape": assets.num_shape,
        "n_expression": assets.num_expression,
        "n_texture": assets.num_texture,
        "ipd_metres": config.ipd_metres,
        "stable_points": stable_points,
        "shape_explained": [round(float(x), 5) for x in geo.shape_explained],
        "expression_explained_cumulative": [
            round(float(x), 5) for x in np.cumsum(geo.expression_explained)
        ],
        "uv_folded_faces": int((_signed_area(assets.verts_uvs, assets.faces) <= 0).sum()),
        "posedirs": "zeros (no pose-corrective blend shapes)",
        "jaw_opens_with": "positive jaw_pose[0] (rotation about +x)",
    }


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
    videos: Sequence[str | Path],
    *,
    config: BuildConfig | None = None,
    tracks: Sequence[TrackResult] | None = None,
    frame_step: int = 2,
    log: Callable[[str], None] = lambda _: None,
    **fit_kwargs,
) -> list[dict]:
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
    lines = [
        "| held-out clip | frames fitted | model (% IOD) | template only (% IOD) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['frames']} | {r['full']:.2f} | {r['template']:.2f} |")
    full, tmpl = np.mean([r["full"] for r in rows]), np.mean([r["template"] for r in rows])
    lines.append(
        f"| **mean over clips** | {sum(r['frames'] for r in rows)} | **{full:.2f}** | {tmpl:.2f} |"
    )
    return "\n".join(lines)
