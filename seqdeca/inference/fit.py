"""Fit mode: the face model fitted to tracked MediaPipe landmarks (no trained network needed).

Which model landmarks match the 478 tracked MediaPipe points (:func:`fit_landmark_set`):

* a model with the MediaPipe set "mediapipe478" (the bundled model) -> all 478 points;
* "mediapipe105" (FLAME's MediaPipe embedding) -> the 105 points it names;
* else the static iBUG-68 points ("ibug68", or the 51 "ibug68_static" of a model with DECA's
  dynamic contour) through :data:`~seqdeca.prep.landmark_sets.IBUG68_FROM_MEDIAPIPE`.

Every fitted point weighs 1, except the iBUG-68 jaw points 0-16 among them, which weigh
``fit.contour_weight`` (default 2, :func:`fit_point_weights`). Fit mode always compares the
model's points with the same MediaPipe surface points (a model with DECA's dynamic silhouette
contour fits only its 51 static points), so its jaw has no silhouette mismatch; on the sample
clips a jaw weight of 2 fitted the 68 and the 478 points better than 1 (docs/data.md).

Targets are in normalised CROP coordinates ([-1, 1], y down), so the fitted camera is the same
crop camera the network predicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from seqdeca.config.schema import FitConfig
from seqdeca.errors import UserError
from seqdeca.face_model.assets import FaceModelAssets, LandmarkEmbedding
from seqdeca.face_model.fitting import FitResult, fit_to_landmarks, fit_windows
from seqdeca.face_model.layer import FaceModel
from seqdeca.geometry.camera import pixels_to_ndc
from seqdeca.prep.crop import apply_transform
from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE, MEDIAPIPE105

__all__ = [
    "ClipFitter",
    "FitLandmarks",
    "fit_clip",
    "fit_landmark_set",
    "fit_point_weights",
    "landmark_face_model",
    "refine_steps",
]


@dataclass(frozen=True)
class FitLandmarks:
    """The model landmark set used for fitting and the tracked points it matches.

    Attributes:
        name: the face model's landmark set name.
        mediapipe_ids: (L,) int64 MediaPipe point ids (0-477) of the set's landmarks, in order.
    """

    name: str
    mediapipe_ids: np.ndarray


def fit_landmark_set(face_model: FaceModel) -> FitLandmarks:
    """The landmark set of ``face_model`` to fit to MediaPipe tracks (module docstring).

    Raises:
        UserError: the model has neither a MediaPipe nor an iBUG-68 landmark set.
    """
    names = face_model.landmark_names
    if face_model.mediapipe_set is not None and face_model.mediapipe_ids is not None:
        ids = face_model.mediapipe_ids.detach().cpu().numpy().astype(np.int64)
        return FitLandmarks(face_model.mediapipe_set, ids)
    if "ibug68" in names and not face_model.has_dynamic_contour:
        return FitLandmarks("ibug68", IBUG68_FROM_MEDIAPIPE.copy())
    if "ibug68_static" in names:
        return FitLandmarks("ibug68_static", IBUG68_FROM_MEDIAPIPE[17:].copy())
    if "ibug68" in names:
        return FitLandmarks("ibug68", IBUG68_FROM_MEDIAPIPE.copy())
    raise UserError(
        f"face model '{face_model.name}' has no MediaPipe or iBUG-68 landmarks to fit to "
        "(give face_model.landmark_embedding or face_model.mediapipe_embedding)"
    )


def fit_point_weights(mediapipe_ids: np.ndarray, contour_weight: float) -> np.ndarray:
    """(L,) float32 weights of fitted points: ``contour_weight`` on the iBUG-68 jaw points 0-16
    (MediaPipe ids ``IBUG68_FROM_MEDIAPIPE[:17]``), 1 on every other point.

    Args:
        mediapipe_ids: (L,) MediaPipe ids of the fitted points.
        contour_weight: ``fit.contour_weight``, >= 0.

    Raises:
        UserError: ``contour_weight`` is negative.
    """
    if not contour_weight >= 0:
        raise UserError(f"inference.fit.contour_weight must be >= 0, got {contour_weight}")
    weights = np.ones(len(mediapipe_ids), dtype=np.float32)
    weights[np.isin(mediapipe_ids, IBUG68_FROM_MEDIAPIPE[:17])] = contour_weight  # the jaw
    return weights


def refine_steps(fit_cfg: FitConfig) -> int:
    """Gauss-Newton steps of the window problems in video fitting (:class:`ClipFitter`):
    ``fit.refine_steps``, or when it is -1 (auto), 1 when ``fit.smoothness > 0`` else 0."""
    if fit_cfg.refine_steps >= 0:
        return int(fit_cfg.refine_steps)
    return 1 if fit_cfg.smoothness > 0 else 0


def fit_clip(
    face_model: FaceModel,
    landmarks: torch.Tensor | np.ndarray,
    valid: torch.Tensor | np.ndarray,
    fit_cfg: FitConfig,
    *,
    landmark_name: str,
    shape: torch.Tensor | None = None,
    landmark_weights: torch.Tensor | np.ndarray | None = None,
) -> FitResult:
    """Fit identity (unless given), expression, pose and camera to a clip's landmarks.

    Args:
        face_model: the face model (its device is used).
        landmarks: (T, L, 2) targets in normalised crop coordinates ([-1, 1], y down), matching
            the model's ``landmark_name`` set point by point.
        valid: (T,) bool, frames with landmarks.
        fit_cfg: priors, smoothness, LM iterations and refinement steps (every key is used).
        landmark_name: the model's landmark set (see :func:`fit_landmark_set`).
        shape: (S,) identity to keep fixed (shared by the chunks of one clip); None fits it.
        landmark_weights: (L,) per-point weights (:func:`fit_point_weights`), None = uniform.

    Returns:
        :class:`~seqdeca.face_model.fitting.FitResult` (``shape`` is the given one when fixed).

    Raises:
        ValueError: shapes disagree or no frame is valid.
    """
    return fit_to_landmarks(
        face_model,
        landmarks,
        landmark_name,
        valid=valid,
        landmark_weights=landmark_weights,
        shape=shape,
        shape_prior=fit_cfg.shape_prior,
        expression_prior=fit_cfg.expression_prior,
        jaw_prior=fit_cfg.jaw_prior,
        smoothness=fit_cfg.smoothness,
        iterations=fit_cfg.iterations,
        refine_steps=None if fit_cfg.refine_steps < 0 else fit_cfg.refine_steps,  # Adam steps
    )


# ------------------------------------------------------------------------------- video fitting

#: Identity is fitted on the valid frames among the first SHAPE_SPAN frames from the clip's
#: first frame with a face (at most SHAPE_FRAMES of them, evenly spread), then kept fixed.
SHAPE_SPAN = 64
SHAPE_FRAMES = 8
#: Name of the landmark set of the reduced fitting model.
FIT_SET = "fit"


def landmark_face_model(
    assets: FaceModelAssets, name: str, rows: np.ndarray, *, n_shape: int, n_expression: int
) -> FaceModel:
    """A :class:`FaceModel` reduced to what some landmarks need (for fast fitting).

    Keeps only the mesh vertices the landmarks' barycentric weights use, plus one "virtual"
    vertex per joint that carries the joint regressor's output (template, identity and
    expression bases regressed once); its joint regressor selects those. Joints, skinning and
    the kept landmarks therefore equal the full model's exactly, at a fraction of the cost
    (e.g. 131 instead of 478 vertices for 126 MediaPipe landmarks).

    Args:
        assets: the full model's assets.
        name: the landmark set of ``assets``.
        rows: (L,) rows of that set to keep; the reduced model's set :data:`FIT_SET` has them.
        n_shape, n_expression: components kept (as in the full model).
    """
    emb = assets.landmarks[name]
    corners = assets.faces[emb.face_idx[rows]]  # (L, 3) vertex ids
    bary = emb.bary[rows]
    used = bary != 0  # corners with zero weight may point at any kept vertex
    first = corners[np.arange(len(rows)), used.argmax(1)]
    corners = np.where(used, corners, first[:, None])
    keep = np.unique(corners)
    remap = np.full(assets.num_vertices, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    j = assets.j_regressor.shape[0]
    jreg = assets.j_regressor.astype(np.float64)

    def with_joints(mesh_part: np.ndarray, joint_part: np.ndarray) -> np.ndarray:
        return np.concatenate([mesh_part[keep], joint_part.astype(mesh_part.dtype)], axis=0)

    weights = np.zeros((j, j), dtype=assets.lbs_weights.dtype)
    weights[:, 0] = 1  # virtual vertices are never landmarks: any valid skinning row will do
    reduced = FaceModelAssets(
        name=f"{assets.name}-{FIT_SET}",
        v_template=with_joints(assets.v_template, jreg @ assets.v_template),
        faces=remap[corners],
        shapedirs=with_joints(assets.shapedirs, np.einsum("jv,vck->jck", jreg, assets.shapedirs)),
        exprdirs=with_joints(assets.exprdirs, np.einsum("jv,vck->jck", jreg, assets.exprdirs)),
        posedirs=with_joints(assets.posedirs, np.zeros((j, *assets.posedirs.shape[1:]))),
        j_regressor=np.concatenate([np.zeros((j, len(keep))), np.eye(j)], axis=1).astype(
            assets.j_regressor.dtype
        ),
        lbs_weights=with_joints(assets.lbs_weights, weights),
        parents=assets.parents,
        landmarks={FIT_SET: LandmarkEmbedding(face_idx=np.arange(len(rows)), bary=bary)},
    )
    return FaceModel(reduced, n_shape=n_shape, n_expression=n_expression)


class ClipFitter:
    """Fit mode for one clip: identity once, then expression, pose and camera per frame.

    Per frame: Levenberg-Marquardt with the clip's identity fixed, every frame its own problem
    (``independent_frames``), so results do not depend on how the clip is chunked. Then, when
    ``fit.smoothness > 0`` and refinement steps are on, each frame's centred window of
    ``window`` frames is refined jointly (:func:`~seqdeca.face_model.fitting.fit_windows`)
    and its centre kept.

    Args:
        face_model: the full model (sizes and device).
        assets: its assets (to build the reduced fitting model).
        fit_cfg: the ``inference.fit`` settings.
        window: frames per window.
    """

    def __init__(
        self, face_model: FaceModel, assets: FaceModelAssets, fit_cfg: FitConfig, *, window: int
    ) -> None:
        lm = fit_landmark_set(face_model)
        rows = np.arange(len(lm.mediapipe_ids))
        if lm.name == "mediapipe478":  # the iBUG-68 and FLAME-105 points carry the expression
            wanted = np.union1d(MEDIAPIPE105, IBUG68_FROM_MEDIAPIPE)
            rows = np.flatnonzero(np.isin(lm.mediapipe_ids, wanted))
        self.mediapipe_ids = lm.mediapipe_ids[rows]
        self.point_weights = fit_point_weights(self.mediapipe_ids, fit_cfg.contour_weight)
        device = face_model.v_template.device
        self.model = landmark_face_model(
            assets,
            lm.name,
            rows,
            n_shape=face_model.num_shape,
            n_expression=face_model.num_expression,
        ).to(device)
        self.fit_cfg = fit_cfg
        self.window = max(1, int(window))
        self.shape: torch.Tensor | None = None
        self.shape_rows: np.ndarray | None = None
        self.shape_fit: FitResult | None = None

    def targets(
        self, landmarks: np.ndarray, crop_from_frame: np.ndarray, crop_size: int
    ) -> torch.Tensor:
        """(n, L, 2) normalised crop coordinates of the tracked points the fit uses.

        Args:
            landmarks: (n, 478, >=2) tracked points in original-frame pixels.
            crop_from_frame: (n, 3, 3) crop matrices (NaN rows stay NaN).
            crop_size: crop side in pixels.
        """
        points = apply_transform(landmarks[:, self.mediapipe_ids, :2], crop_from_frame)
        return pixels_to_ndc(torch.from_numpy(points).float(), crop_size)

    def fit_shape(self, targets: torch.Tensor, valid: np.ndarray) -> torch.Tensor:
        """Fit and keep the clip's identity from up to SHAPE_FRAMES evenly spread valid rows.

        The rows used and their per-frame fits (fitted with the identity, no temporal term) are
        kept as ``shape_rows`` (m,) and ``shape_fit`` (:class:`FitResult` of m frames): fit mode
        estimates the face's texture on those frames.
        """
        rows = np.flatnonzero(valid)
        if rows.size == 0:
            raise ValueError("fit_shape: no valid frame")
        pick = rows[
            np.unique(
                np.linspace(0, rows.size - 1, min(SHAPE_FRAMES, rows.size)).round().astype(int)
            )
        ]
        spread = dataclasses.replace(self.fit_cfg, smoothness=0.0, refine_steps=0)  # not a sequence
        res = fit_clip(
            self.model,
            targets[pick],
            np.ones(len(pick), bool),
            spread,
            landmark_name=FIT_SET,
            landmark_weights=self.point_weights,
        )
        self.shape = res.shape.detach()
        self.shape_rows, self.shape_fit = pick, res
        return self.shape

    def fit_chunk(self, targets: torch.Tensor, valid: np.ndarray, own: slice) -> FitResult:
        """Per-frame fits of the rows ``own`` of a chunk (rows around them are window context).

        Args:
            targets: (n, L, 2) from :meth:`targets` for every row of the chunk.
            valid: (n,) bool.
            own: the rows to return.

        Returns:
            :class:`FitResult` with per-frame fields (len(own rows), ...); rows of invalid
            frames hold meaningless values (their ``residual`` is NaN). A window without any
            frame with a face has no data term and would make the batched window solve
            singular: such rows are solved with a valid row's window instead (and discarded).
        """
        f = self.fit_cfg
        n = len(valid)
        ok = np.asarray(valid, dtype=bool)
        own_rows = np.arange(n)[own]
        if not ok[own_rows].any():  # nothing to write (maybe no identity yet): placeholders
            return _placeholder(self.model, len(own_rows), targets)
        if self.shape is None:
            raise RuntimeError("fit_shape must run before fit_chunk")
        safe = torch.where(torch.from_numpy(ok)[:, None, None], targets, torch.zeros_like(targets))
        offsets = np.arange(self.window) - (self.window - 1) // 2
        win = np.clip(own_rows[:, None] + offsets[None], 0, n - 1)  # (m, W): edges replicate
        win = np.where(ok[win], win, own_rows[:, None])  # frames without a face: the centre
        empty = ~ok[win].any(axis=1)
        win[empty] = win[np.flatnonzero(~empty)[0]]
        res = fit_windows(
            self.model,
            safe,
            FIT_SET,
            shape=self.shape,
            windows=win,
            valid=ok,
            landmark_weights=self.point_weights,
            smoothness=f.smoothness,
            steps=refine_steps(f),
            expression_prior=f.expression_prior,
            jaw_prior=f.jaw_prior,
            iterations=f.iterations,
        )
        res.residual[torch.from_numpy(empty).to(res.residual.device)] = float("nan")
        return res


def _placeholder(model: FaceModel, n: int, like: torch.Tensor) -> FitResult:
    """A FitResult of n frames without a face: neutral codes, unit camera, NaN residuals."""
    zeros = like.new_zeros
    return FitResult(
        shape=zeros(model.num_shape),
        expression=zeros(n, model.num_expression),
        global_pose=zeros(n, 3),
        jaw_pose=zeros(n, 3),
        cam=torch.cat([like.new_ones(n, 1), zeros(n, 2)], dim=-1),
        landmarks_2d=like.new_full((n, like.shape[1], 2), float("nan")),
        residual=like.new_full((n,), float("nan")),
        loss=float("nan"),
    )
