"""Per-frame metric series of one clip for one method (what the runner pools and reports).

:func:`frame_series` is the one evaluation path: the evaluation (:func:`clip_series`, a prepared
clip), training validation (``seqdeca.train.validate``, a batch of windows) and the learning
check (``experiments/learning_check.py``) turn a prediction (:class:`ClipPrediction`) and a
reference (:class:`FrameReference`: landmarks normalised, images, masks; ground truth for
synthetic clips) into these series with it. Images are resized to the render with
:func:`seqdeca.render.resize.resize_maps`.

Every series is a (T,) float tensor aligned with the clip's frames, NaN where undefined (invalid
frame, metric not available for the method, or the clip ends for a temporal difference): the
acceleration at frame t uses frames t-1, t, t+1; the jerk at frame t uses t-1 .. t+2. Pooling is
a NaN-aware mean over all frames of all clips, so every clip weighs by its number of frames.

Series keys and units (see :data:`SERIES_UNITS`): landmark NME in % of the inter-ocular
distance; photometric L1 ([0, 1] units), PSNR (dB), SSIM; vertex acceleration / jerk of the
pose-removed mesh in mm per frame^2 / frame^3; landmark acceleration / jerk of the normalised
landmarks (centred, divided by the inter-ocular distance) in % IOD per frame^2 / frame^3;
expression code error (mean |diff|, codes padded with zeros to the longer one); global / jaw
pose error in degrees (mean |axis-angle diff|); vertex error of the pose-removed meshes in mm.

What the temporal stage predicts, scored on synthetic clips with the ground-truth identity and no
head pose (:class:`ExpressionMeshes`): ``expression_vertex_error`` (expression alone, jaw closed
on both sides) and ``expression_jaw_vertex_error`` (expression and jaw), in mm; and
``accel_error``, the distance between the acceleration of the pose-removed predicted mesh and
that of the ground truth (mm/frame^2): jitter and over-smoothing both raise it. It includes the
predicted identity's frame-to-frame jitter, which no temporal stage of expression and jaw can
remove; ``expression_jaw_accel_error`` is the same distance on the expression + jaw meshes of the
true identity, the part the temporal stage is responsible for.
``expression_jaw_vertex_error_gap`` is the same score on the frames whose crop comes from gap
interpolation (``gt.npz`` ``tracked`` false: tracking lost, e.g. under an occluder), where time
should help most.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from seqdeca.eval import metrics as M
from seqdeca.eval.clips import PreparedClip
from seqdeca.geometry.camera import pixels_to_ndc
from seqdeca.render.resize import resize_maps

if TYPE_CHECKING:
    from seqdeca.data.dataset import WindowBatch
    from seqdeca.models.outputs import SeqDECAOutput

__all__ = [
    "SERIES_UNITS",
    "ClipPrediction",
    "ExpressionMeshes",
    "FrameReference",
    "clip_reference",
    "clip_series",
    "frame_series",
    "masked_image_series",
    "mediapipe_targets",
    "model_prediction",
    "photometric_series",
    "reference_series",
    "truth_series",
    "window_reference",
]

SERIES_UNITS: dict[str, str] = {
    "nme_68": "% IOD",
    "nme_mp": "% IOD",
    "l1": "[0,1]",
    "psnr": "dB",
    "psnr_covered": "dB",
    "ssim": "",
    "accel_vertices": "mm/frame^2",
    "jerk_vertices": "mm/frame^3",
    "accel_landmarks": "% IOD/frame^2",
    "jerk_landmarks": "% IOD/frame^3",
    "expression_error": "",
    "pose_error": "deg",
    "jaw_error": "deg",
    "vertex_error": "mm",
    "expression_vertex_error": "mm",
    "expression_jaw_vertex_error": "mm",
    "expression_jaw_vertex_error_gap": "mm",
    "accel_error": "mm/frame^2",
    "expression_jaw_accel_error": "mm/frame^2",
}

_MEDIAPIPE_EYE_CORNERS = (33, 263)  # seqdeca.prep.landmark_sets.OUTER_EYE_CORNERS
_MEDIAPIPE_POINTS = 478  # tracked clips hold all MediaPipe points, indexed by MediaPipe id


@dataclass
class ClipPrediction:
    """What one method predicted for every frame of a clip (all on the CPU, float32).

    The shapes below are those of one clip; :func:`frame_series` also takes a batch of windows
    with a leading B dimension (:func:`model_prediction`, on the model's device).

    Attributes:
        landmarks68: (T, 68, 2) normalised image coordinates (y down), or None.
        landmarks_mp: (T, L_mp, 2) the model's MediaPipe landmarks, normalised, or None.
        vertices: (T, V, 3) posed vertices, metres.
        global_pose: (T, 3) axis-angle head rotation.
        jaw_pose: (T, 3) axis-angle.
        expression: (T, E) expression codes.
        render: (T, 3, H, W) rendered face in [0, 1], or None (fit mode).
        au_probabilities: (T, 12) Aff-Wild2 AU probabilities, or None.
        seconds: wall time spent predicting the clip.
        render_alpha: (T, 1, H, W) the render's coverage (1 where it paints the pixel: the
            mesh, and in fit mode the openings it paints),
            or None (then no ``psnr_covered``).
    """

    landmarks68: torch.Tensor | None
    landmarks_mp: torch.Tensor | None
    vertices: torch.Tensor
    global_pose: torch.Tensor
    jaw_pose: torch.Tensor
    expression: torch.Tensor
    render: torch.Tensor | None
    au_probabilities: torch.Tensor | None
    seconds: float
    render_alpha: torch.Tensor | None = None

    def window(self, k: int) -> ClipPrediction:
        """Window ``k`` of a (B, T, ...) prediction, as (T, ...)."""
        return ClipPrediction(**{f.name: _select(getattr(self, f.name), k) for f in fields(self)})


def _select(value: object, k: int) -> object:
    return value[k] if isinstance(value, torch.Tensor) else value


def model_prediction(out: SeqDECAOutput) -> ClipPrediction:
    """The prediction of a :class:`~seqdeca.models.outputs.SeqDECAOutput` (B, T, ...), as it is
    (device and dtype kept): decoded landmarks, vertices and render, fused codes."""
    decoded = out.decoded
    return ClipPrediction(
        landmarks68=decoded.landmarks68,
        landmarks_mp=decoded.landmarks_mp,
        vertices=decoded.vertices,
        global_pose=out.pose[..., :3],
        jaw_pose=out.jaw_pose,
        expression=out.expression,
        render=decoded.render,
        au_probabilities=None,
        seconds=0.0,
    )


@dataclass
class FrameReference:
    """What a prediction is scored against, for frames (..., T): one clip (T,) or a batch of
    windows (B, T).

    Attributes:
        valid: (..., T) bool, frames with a tracked face.
        landmarks68: (..., T, 68, 2) iBUG-68 points, normalised image coordinates (y down).
        landmarks: (..., T, P, C>=2) all tracked points, normalised (P = 478: MediaPipe, by
            MediaPipe id), NaN where unknown.
        images: (..., T, 3, H, W) RGB in [0, 1], or None (no photometric series).
        masks: (..., T, H, W) mask classes (0 background, 1 face, 2 eyes/brows/mouth), or None.
    """

    valid: torch.Tensor
    landmarks68: torch.Tensor
    landmarks: torch.Tensor
    images: torch.Tensor | None = None
    masks: torch.Tensor | None = None


def window_reference(batch: WindowBatch, *, images: bool = True) -> FrameReference:
    """The reference of a (B, T) batch of windows (its landmarks are already normalised);
    ``images=False`` leaves the images and masks out (no photometric series)."""
    return FrameReference(
        valid=batch.valid,
        landmarks68=batch.landmarks68,
        landmarks=batch.landmarks,
        images=batch.images if images else None,
        masks=batch.masks if images else None,
    )


@dataclass
class ExpressionMeshes:
    """Meshes of the ground-truth identity with no head pose, for the expression scores.

    Attributes (all (T, V, 3), metres):
        true_expression: the true expression, jaw closed.
        pred_expression: the predicted expression, jaw closed.
        true_expression_jaw: the true expression and jaw pose.
        pred_expression_jaw: the predicted expression and jaw pose.
    """

    true_expression: torch.Tensor
    pred_expression: torch.Tensor
    true_expression_jaw: torch.Tensor
    pred_expression_jaw: torch.Tensor


def _centred(values: torch.Tensor, before: int, t_count: int) -> torch.Tensor:
    """Pad a (T - k,) difference series with NaN to (T,), ``before`` NaNs in front."""
    out = torch.full((t_count,), float("nan"), dtype=torch.float32, device=values.device)
    out[before : before + values.shape[0]] = values.float()
    return out


def _temporal(points: torch.Tensor, valid: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
    """(T, ..., D) points -> acceleration and jerk series of length T (times ``scale``)."""
    t_count = points.shape[0]
    return {
        "accel": _centred(M.acceleration(points, valid) * scale, 1, t_count),
        "jerk": _centred(M.jerk(points, valid) * scale, 1, t_count),
    }


def _tracks(valid: torch.Tensor) -> list[tuple[int, ...]]:
    """Index tuples of the (T,) tracks of a (..., T) frame layout: ``[()]`` for one clip,
    ``[(0,), (1,), ...]`` for a (B, T) batch of windows."""
    return list(itertools.product(*(range(n) for n in valid.shape[:-1])))


def _motion(
    name: str,
    valid: torch.Tensor,
    track_points: Callable[[tuple[int, ...]], torch.Tensor],
    scale: float,
) -> dict[str, torch.Tensor]:
    """``accel_<name>`` / ``jerk_<name>`` (..., T) series, each track's (T, ..., D) points from
    ``track_points(index)``: time differences never cross from one clip or window to another."""
    parts = [_temporal(track_points(i), valid[i], scale) for i in _tracks(valid)]
    return {
        f"{kind}_{name}": torch.stack([p[kind] for p in parts]).reshape(valid.shape)
        for kind in ("accel", "jerk")
    }


def mediapipe_targets(
    landmarks478: torch.Tensor, mediapipe_ids: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """Tracked MediaPipe points matching a model's MediaPipe set, and their eye-corner indices.

    Args:
        landmarks478: (..., 478, C) tracked points.
        mediapipe_ids: (L_mp,) MediaPipe id of each model landmark (``FaceModel.mediapipe_ids``).

    Returns:
        ((..., L_mp, C) points, (right, left) outer eye corner positions in them), or None when
        the model has no MediaPipe set or the set lacks the outer eye corners.
    """
    if mediapipe_ids is None:
        return None
    ids = [int(i) for i in mediapipe_ids]
    if any(corner not in ids for corner in _MEDIAPIPE_EYE_CORNERS):
        return None
    corners = (ids.index(_MEDIAPIPE_EYE_CORNERS[0]), ids.index(_MEDIAPIPE_EYE_CORNERS[1]))
    return landmarks478[..., mediapipe_ids.long(), :], corners


def masked_image_series(
    render: torch.Tensor,
    ref: FrameReference,
    alpha: torch.Tensor | None = None,
    *,
    ssim: bool = True,
) -> dict[str, torch.Tensor]:
    """Masked L1 / PSNR / SSIM of a render against the reference images resized to the render
    size (bilinear, antialiased; mask: classes 1 and 2 of the 3-class mask, area-resized and
    thresholded at 0.5); with the render's coverage ``alpha`` also ``psnr_covered``, the PSNR
    over the mask pixels the render paints (what it leaves black, e.g. the openings of a face
    model without eyes or mouth interior, or the mask beyond the mesh's outline, the plain PSNR
    counts).

    Args:
        render: (..., T, 3, H, W) in [0, 1] (clamped here).
        ref: the reference, with ``images`` and ``masks``.
        alpha: (..., T, 1, H, W) the render's coverage, or None.
        ssim: also the SSIM series.

    Returns:
        (..., T) series "l1", "psnr" (and "ssim", "psnr_covered"), NaN on invalid frames.
    """
    size = tuple(render.shape[-2:])
    image = resize_maps(ref.images.float(), size, antialias=True)
    mask = resize_maps((ref.masks > 0).float().unsqueeze(-3), size, mode="area_threshold")
    render = render.float().clamp(0, 1)
    out = {"l1": M.masked_l1(render, image, mask), "psnr": M.masked_psnr(render, image, mask)}
    if ssim:
        out["ssim"] = M.masked_ssim(render, image, mask)
    if alpha is not None:
        out["psnr_covered"] = M.masked_psnr(render, image, mask * (alpha > 0.5).float())
    return {k: torch.where(ref.valid, v.float(), torch.nan) for k, v in out.items()}


def photometric_series(pred: ClipPrediction, clip: PreparedClip) -> dict[str, torch.Tensor]:
    """Only the photometric series (l1, psnr, ssim, psnr_covered) of a prediction with a render
    (NaN rows of the render give NaN), e.g. for a row that differs from another only in its
    renders."""
    if pred.render is None:
        return {}
    return masked_image_series(pred.render, clip_reference(clip), pred.render_alpha)


def truth_series(
    pred: ClipPrediction,
    truth: dict[str, torch.Tensor],
    valid: torch.Tensor,
    *,
    gt_vertices: torch.Tensor | None = None,
    expression_meshes: ExpressionMeshes | None = None,
) -> dict[str, torch.Tensor]:
    """The ground-truth series of one clip or window of a synthetic clip.

    Args:
        pred: a (T, ...) prediction.
        truth: ``gt.npz`` arrays over the same T frames ("expression", "global_pose",
            "jaw_pose", "tracked", ...; the series of missing arrays are left out).
        valid: (T,) bool.
        gt_vertices: (T, V, 3) ground-truth mesh, or None (no vertex_error / accel_error).
        expression_meshes: the meshes of the expression scores, or None.

    Returns:
        (T,) series: expression_error (codes padded with zeros to the longer one), pose_error
        and jaw_error (deg), vertex_error (mm), accel_error (mm/frame^2), the expression scores.
    """
    t_count = valid.shape[0]
    out = {}
    if "expression" in truth:
        e = max(pred.expression.shape[-1], truth["expression"].shape[-1])
        out["expression_error"] = M.code_error(
            F.pad(pred.expression, (0, e - pred.expression.shape[-1])),
            F.pad(truth["expression"], (0, e - truth["expression"].shape[-1])),
        )
    degrees = 180.0 / math.pi
    for key, name in (("global_pose", "pose_error"), ("jaw_pose", "jaw_error")):
        if key in truth:
            out[name] = M.code_error(getattr(pred, key), truth[key]) * degrees
    if gt_vertices is not None and gt_vertices.shape[-2] == pred.vertices.shape[-2]:
        head = M.remove_global_pose(pred.vertices, pred.global_pose)
        true_head = M.remove_global_pose(gt_vertices, truth["global_pose"])
        out["vertex_error"] = M.vertex_error_mm(head, true_head)
        accel = M.acceleration_error(head, true_head, valid) * 1000.0
        out["accel_error"] = _centred(accel, 1, t_count)
    if expression_meshes is not None:
        m = expression_meshes
        out["expression_vertex_error"] = M.vertex_error_mm(m.pred_expression, m.true_expression)
        out["expression_jaw_vertex_error"] = M.vertex_error_mm(
            m.pred_expression_jaw, m.true_expression_jaw
        )
        accel = M.acceleration_error(m.pred_expression_jaw, m.true_expression_jaw, valid)
        out["expression_jaw_accel_error"] = _centred(accel * 1000.0, 1, t_count)
        if "tracked" in truth:  # frames whose crop and landmarks come from gap interpolation
            gap = ~truth["tracked"].bool()
            out["expression_jaw_vertex_error_gap"] = torch.where(
                gap, out["expression_jaw_vertex_error"], torch.nan
            )
    return {k: torch.where(valid, v.float(), torch.nan) for k, v in out.items()}


def frame_series(
    pred: ClipPrediction,
    ref: FrameReference,
    *,
    mediapipe_ids: torch.Tensor | None,
    truth: dict[str, torch.Tensor] | None = None,
    gt_vertices: torch.Tensor | None = None,
    expression_meshes: ExpressionMeshes | None = None,
    input_motion: bool = False,
    ssim: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-frame metric series of a prediction against its reference: the one evaluation path
    of the evaluation (:func:`clip_series`), training validation and the learning check.

    Frames have leading dimensions (..., T): one clip (T,) or a batch of windows (B, T); the
    temporal series are taken along T within each clip or window.

    Args:
        pred: (..., T, ...) prediction; landmarks normalised like ``ref``.
        ref: the reference frames.
        mediapipe_ids: (L_mp,) ``FaceModel.mediapipe_ids`` of the predicting face model, or
            None (no nme_mp; landmark motion on the 68 points).
        truth: ``gt.npz`` arrays of a synthetic clip (frames (T,) only), or None.
        gt_vertices: (T, V, 3) ground-truth mesh (with ``truth``), or None.
        expression_meshes: the expression scores' meshes (with ``truth``), or None.
        input_motion: also ``accel_landmarks_input`` / ``jerk_landmarks_input``, the motion of
            the reference landmarks (the points and normalisation of the predicted ones).
        ssim: compute the SSIM series (with a render and reference images).

    Returns:
        (..., T) float32 series named as in :data:`SERIES_UNITS`, NaN where undefined.
    """
    valid = ref.valid
    out: dict[str, torch.Tensor] = {}
    if pred.landmarks68 is not None:
        out["nme_68"] = M.landmark_nme(
            pred.landmarks68, ref.landmarks68, M.IBUG68_OUTER_EYE_CORNERS, valid
        )
    matched = None
    if pred.landmarks_mp is not None and ref.landmarks.shape[-2] == _MEDIAPIPE_POINTS:
        matched = mediapipe_targets(ref.landmarks, mediapipe_ids)
    if matched is not None:
        target, corners = matched
        out["nme_mp"] = M.landmark_nme(pred.landmarks_mp, target, corners, valid)
        points = pred.landmarks_mp
    elif pred.landmarks68 is not None:
        points, target, corners = pred.landmarks68, ref.landmarks68, M.IBUG68_OUTER_EYE_CORNERS
    else:
        points = None
    if points is not None:
        normalised = M.normalise_landmarks(points, corners)
        out |= _motion("landmarks", valid, lambda i: normalised[i], 100.0)
        if input_motion:
            reference = M.normalise_landmarks(target, corners)
            out |= _motion("landmarks_input", valid, lambda i: reference[i], 100.0)

    def head(i: tuple[int, ...]) -> torch.Tensor:  # (T, V, 3) the pose-removed mesh of track i
        return M.remove_global_pose(pred.vertices[i], pred.global_pose[i])

    out |= _motion("vertices", valid, head, 1000.0)
    if pred.render is not None and ref.images is not None:
        out |= masked_image_series(pred.render, ref, pred.render_alpha, ssim=ssim)
    if truth is not None:
        out |= truth_series(
            pred, truth, valid, gt_vertices=gt_vertices, expression_meshes=expression_meshes
        )
    return {k: v.float() for k, v in out.items()}


def clip_reference(clip: PreparedClip) -> FrameReference:
    """The reference frames of a prepared clip, landmarks converted from crop pixels to
    normalised image coordinates."""
    return FrameReference(
        valid=clip.valid,
        landmarks68=pixels_to_ndc(clip.landmarks68[..., :2], clip.size),
        landmarks=pixels_to_ndc(clip.landmarks[..., :2], clip.size),
        images=clip.frames,
        masks=clip.masks,
    )


def clip_series(
    pred: ClipPrediction,
    clip: PreparedClip,
    *,
    mediapipe_ids: torch.Tensor | None,
    gt_vertices: torch.Tensor | None = None,
    expression_meshes: ExpressionMeshes | None = None,
) -> dict[str, torch.Tensor]:
    """All per-frame metric series of one clip (keys of :data:`SERIES_UNITS` that apply):
    :func:`frame_series` against the clip's landmarks, images, masks and ground truth.

    Args:
        pred: the method's prediction.
        clip: the clip with its reference landmarks, images, masks, labels and ground truth.
        mediapipe_ids: (L_mp,) ``FaceModel.mediapipe_ids`` of the predicting face model.
        gt_vertices: (T, V, 3) ground-truth mesh (synthetic clips), or None.
        expression_meshes: the ground-truth identity's meshes for the expression scores
            (synthetic clips), or None.

    Returns:
        dict of (T,) float32 series.
    """
    return frame_series(
        pred,
        clip_reference(clip),
        mediapipe_ids=mediapipe_ids,
        truth=clip.gt,
        gt_vertices=gt_vertices,
        expression_meshes=expression_meshes,
    )


def reference_series(
    clip: PreparedClip,
    *,
    mediapipe_ids: torch.Tensor | None,
    gt_vertices: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Temporal series of the inputs: tracked landmarks and, if given, the ground-truth mesh.

    The landmark series use the same points and normalisation as :func:`clip_series` (the
    model's MediaPipe set, else the 68 set), so the numbers sit side by side.
    """
    matched = mediapipe_targets(clip.landmarks, mediapipe_ids)
    if matched is not None:
        normalised = M.normalise_landmarks(matched[0], matched[1])
    else:
        normalised = M.normalise_landmarks(clip.landmarks68, M.IBUG68_OUTER_EYE_CORNERS)
    series = _temporal(normalised, clip.valid, 100.0)
    out = {"accel_landmarks": series["accel"], "jerk_landmarks": series["jerk"]}
    if gt_vertices is not None and clip.gt is not None and "global_pose" in clip.gt:
        head = M.remove_global_pose(gt_vertices, clip.gt["global_pose"])
        series = _temporal(head, clip.valid, 1000.0)
        out["accel_vertices"], out["jerk_vertices"] = series["accel"], series["jerk"]
    return out
