"""Per-frame metric series of one clip for one method (what the runner pools and reports).

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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqdeca.eval import metrics as M
from seqdeca.eval.clips import PreparedClip
from seqdeca.geometry.camera import pixels_to_ndc

__all__ = [
    "SERIES_UNITS",
    "ClipPrediction",
    "ExpressionMeshes",
    "clip_series",
    "mediapipe_targets",
    "photometric_series",
    "reference_series",
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

_MEDIAPIPE_EYE_CORNERS = (33, 263)  # seqdeca.data.landmark_sets.OUTER_EYE_CORNERS


@dataclass
class ClipPrediction:
    """What one method predicted for every frame of a clip (all on the CPU, float32).

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
        render_alpha: (T, 1, H, W) the render's coverage (1 where the mesh covers the pixel),
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
    out = torch.full((t_count,), float("nan"), dtype=torch.float32)
    out[before : before + values.shape[0]] = values.float()
    return out


def _temporal(points: torch.Tensor, valid: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
    """(T, ..., D) points -> acceleration and jerk series of length T (times ``scale``)."""
    t_count = points.shape[0]
    return {
        "accel": _centred(M.acceleration(points, valid) * scale, 1, t_count),
        "jerk": _centred(M.jerk(points, valid) * scale, 1, t_count),
    }


def mediapipe_targets(
    landmarks478: torch.Tensor, mediapipe_ids: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """Tracked MediaPipe points matching a model's MediaPipe set, and their eye-corner indices.

    Args:
        landmarks478: (T, 478, C) tracked points.
        mediapipe_ids: (L_mp,) MediaPipe id of each model landmark (``FaceModel.mediapipe_ids``).

    Returns:
        ((T, L_mp, C) points, (right, left) outer eye corner positions in them), or None when
        the model has no MediaPipe set or the set lacks the outer eye corners.
    """
    if mediapipe_ids is None:
        return None
    ids = [int(i) for i in mediapipe_ids]
    if any(corner not in ids for corner in _MEDIAPIPE_EYE_CORNERS):
        return None
    corners = (ids.index(_MEDIAPIPE_EYE_CORNERS[0]), ids.index(_MEDIAPIPE_EYE_CORNERS[1]))
    return landmarks478[:, mediapipe_ids.long()], corners


def photometric_series(pred: ClipPrediction, clip: PreparedClip) -> dict[str, torch.Tensor]:
    """Only the photometric series (l1, psnr, ssim, psnr_covered) of a prediction with a render
    (NaN rows of the render give NaN), e.g. for a row that differs from another only in its
    renders."""
    if pred.render is None:
        return {}
    return {k: v.float() for k, v in _photometric(pred.render, clip, pred.render_alpha).items()}


def _photometric(render: torch.Tensor, clip: PreparedClip,
                 alpha: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Masked L1 / PSNR / SSIM of the render against the crop resized to the render size
    (mask: classes 1 and 2 of the 3-class mask); with the render's coverage ``alpha`` also
    ``psnr_covered``, the PSNR over the mask pixels the mesh covers (a face model with holes at
    the eye openings and the mouth renders black there, which the plain PSNR counts)."""
    size = render.shape[-2:]
    image = clip.frames
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image, size=size, mode="bilinear", antialias=True,
                              align_corners=False)  # fmt: skip
    mask = (clip.masks > 0).float()[:, None]
    if tuple(mask.shape[-2:]) != tuple(size):
        mask = (F.interpolate(mask, size=size, mode="area") > 0.5).float()
    render = render.clamp(0, 1)
    invalid = torch.full((clip.num_frames,), float("nan"))
    out = {
        "l1": M.masked_l1(render, image, mask),
        "psnr": M.masked_psnr(render, image, mask),
        "ssim": M.masked_ssim(render, image, mask),
    }
    if alpha is not None:
        out["psnr_covered"] = M.masked_psnr(render, image, mask * (alpha > 0.5).float())
    return {k: torch.where(clip.valid, v.float(), invalid) for k, v in out.items()}


def _ground_truth(
    pred: ClipPrediction, clip: PreparedClip, gt_vertices: torch.Tensor | None,
    expression_meshes: ExpressionMeshes | None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    gt = clip.gt
    if gt is None:
        return {}
    out = {}
    if "expression" in gt:
        e = max(pred.expression.shape[-1], gt["expression"].shape[-1])
        out["expression_error"] = M.code_error(
            F.pad(pred.expression, (0, e - pred.expression.shape[-1])),
            F.pad(gt["expression"], (0, e - gt["expression"].shape[-1])),
        )
    degrees = 180.0 / math.pi
    for key, name in (("global_pose", "pose_error"), ("jaw_pose", "jaw_error")):
        if key in gt:
            out[name] = M.code_error(getattr(pred, key), gt[key]) * degrees
    if gt_vertices is not None and gt_vertices.shape[-2] == pred.vertices.shape[-2]:
        head = M.remove_global_pose(pred.vertices, pred.global_pose)
        true_head = M.remove_global_pose(gt_vertices, gt["global_pose"])
        out["vertex_error"] = M.vertex_error_mm(head, true_head)
        accel = M.acceleration_error(head, true_head, clip.valid) * 1000.0
        out["accel_error"] = _centred(accel, 1, clip.num_frames)
    if expression_meshes is not None:
        m = expression_meshes
        out["expression_vertex_error"] = M.vertex_error_mm(m.pred_expression, m.true_expression)
        out["expression_jaw_vertex_error"] = M.vertex_error_mm(m.pred_expression_jaw,
                                                               m.true_expression_jaw)  # fmt: skip
        accel = M.acceleration_error(m.pred_expression_jaw, m.true_expression_jaw, clip.valid)
        out["expression_jaw_accel_error"] = _centred(accel * 1000.0, 1, clip.num_frames)
        if "tracked" in gt:  # frames whose crop and landmarks come from gap interpolation
            gap = ~gt["tracked"].bool()
            out["expression_jaw_vertex_error_gap"] = torch.where(
                gap, out["expression_jaw_vertex_error"], torch.nan
            )
    invalid = torch.full((clip.num_frames,), float("nan"))
    return {k: torch.where(clip.valid, v.float(), invalid) for k, v in out.items()}


def clip_series(
    pred: ClipPrediction,
    clip: PreparedClip,
    *,
    mediapipe_ids: torch.Tensor | None,
    gt_vertices: torch.Tensor | None = None,
    expression_meshes: ExpressionMeshes | None = None,
) -> dict[str, torch.Tensor]:
    """All per-frame metric series of one clip (keys of :data:`SERIES_UNITS` that apply).

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
    size, valid = clip.size, clip.valid
    out: dict[str, torch.Tensor] = {}
    if pred.landmarks68 is not None:
        target68 = pixels_to_ndc(clip.landmarks68[..., :2], size)
        out["nme_68"] = M.landmark_nme(pred.landmarks68, target68, M.IBUG68_OUTER_EYE_CORNERS,
                                       valid)  # fmt: skip
    matched = mediapipe_targets(clip.landmarks, mediapipe_ids)
    if pred.landmarks_mp is not None and matched is not None:
        target, corners = matched
        target = pixels_to_ndc(target[..., :2], size)
        out["nme_mp"] = M.landmark_nme(pred.landmarks_mp, target, corners, valid)
        normalised = M.normalise_landmarks(pred.landmarks_mp, corners)
    elif pred.landmarks68 is not None:
        normalised = M.normalise_landmarks(pred.landmarks68, M.IBUG68_OUTER_EYE_CORNERS)
    else:
        normalised = None
    if normalised is not None:
        series = _temporal(normalised, valid, 100.0)
        out["accel_landmarks"], out["jerk_landmarks"] = series["accel"], series["jerk"]
    head = M.remove_global_pose(pred.vertices, pred.global_pose)
    series = _temporal(head, valid, 1000.0)
    out["accel_vertices"], out["jerk_vertices"] = series["accel"], series["jerk"]
    if pred.render is not None:
        out |= _photometric(pred.render, clip, pred.render_alpha)
    out |= _ground_truth(pred, clip, gt_vertices, expression_meshes)
    return {k: v.float() for k, v in out.items()}


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
