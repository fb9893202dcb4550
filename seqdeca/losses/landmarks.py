"""Landmark terms: weighted L1 on iBUG-68, plain L1 on MediaPipe points, eye and lip closure.

All coordinates are normalised image coordinates in [-1, 1] (y down), as ``WindowBatch``'s
``landmarks68`` / ``landmarks`` and the projected model landmarks. Leading dimensions are free
(``(B, T)`` windows or ``(N,)`` frames); ``valid`` names exactly those. A target point that is
NaN is treated as not visible (MediaPipe landmarks of untracked frames are NaN), and so is a
closure pair with a NaN end.

Facts followed from DECA (``decalib/utils/lossfunc.py``):

* ``weighted_landmark_loss``: per-point weights 1, except 2 on 5, 6, 10, 11 (jaw), 1.5 on the
  nose 27-35 and the mouth 48-67, 3 on the nose tip / nostrils 30, 31, 35 and the mouth
  corners 48, 54. The loss is ``sum_k w_k (|dx_k| + |dy_k|) / (2 sum_k w_k)`` with the sums
  running over the whole batch, i.e. a weight-normalised mean absolute coordinate error.
* ``eye_dis``: Euclidean distances between upper and lower lids, pairs (37, 41), (38, 40),
  (43, 47), (44, 46); ``lip_dis``: inner lips (61, 67), (62, 66), (63, 65). The closure loss is
  the mean absolute difference of predicted and target distances.

The jaw contour (points 0-16) depends on where the target landmarks come from
(:data:`CONTOUR_PROFILES`, chosen by ``loss.landmark_source``):

* ``"detector"``: a 2D 68-point detector such as FAN (DECA's training data). Its jaw points are
  the face's silhouette, which a model with DECA's dynamic contour predicts; DECA's weights are
  kept exactly (2 on 5, 6, 10, 11).
* ``"mediapipe"``: prepared clips map MediaPipe's mesh to iBUG-68
  (``IBUG68_FROM_MEDIAPIPE``), whose jaw points are fixed SURFACE points, not the silhouette.
  Weighting them double (DECA) amplifies the mismatch with a silhouette contour; this source
  weighs every jaw point 1 (chosen on the sample clips: docs/data.md, "Landmark sources and
  jaw-contour weights").
"""

from __future__ import annotations

import torch

from seqdeca.errors import UserError
from seqdeca.losses.regularisers import expand_valid, weighted_mean

__all__ = [
    "CONTOUR_PROFILES",
    "EYE_PAIRS",
    "JAW_CONTOUR",
    "LANDMARK_SOURCES",
    "LIP_PAIRS",
    "closure_loss",
    "contour_weights",
    "deca_landmark_weights",
    "eye_closure_loss",
    "landmark68_weights",
    "landmark_loss",
    "lip_closure_loss",
    "mediapipe_landmark_loss",
    "weighted_landmark_l1",
]

EYE_PAIRS: tuple[tuple[int, int], ...] = ((37, 41), (38, 40), (43, 47), (44, 46))
LIP_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))


#: iBUG-68 indices of the jaw contour.
JAW_CONTOUR: tuple[int, ...] = tuple(range(17))

#: Jaw-contour weights (points 0-16, in order) of each landmark source (module docstring).
CONTOUR_PROFILES: dict[str, tuple[float, ...]] = {
    "detector": tuple(2.0 if i in (5, 6, 10, 11) else 1.0 for i in JAW_CONTOUR),  # DECA
    "mediapipe": (1.0,) * len(JAW_CONTOUR),
}
LANDMARK_SOURCES: tuple[str, ...] = tuple(CONTOUR_PROFILES)


def deca_landmark_weights() -> torch.Tensor:
    """(68,) DECA's per-landmark weights for the iBUG-68 L1 loss (float32, CPU)."""
    weights = torch.ones(68)
    weights[[5, 6, 10, 11]] = 2.0
    weights[27:36] = 1.5  # nose
    weights[48:68] = 1.5  # outer and inner mouth
    weights[[30, 31, 35, 48, 54]] = 3.0  # nose tip, nostrils, mouth corners
    return weights


def contour_weights(source: str, contour_weight: float = -1.0) -> torch.Tensor:
    """(17,) weights of the jaw contour points 0-16 (float32, CPU).

    Args:
        source: where the target landmarks come from, one of :data:`LANDMARK_SOURCES`.
        contour_weight: >= 0 gives every jaw point this weight; negative (-1) takes the
            source's profile from :data:`CONTOUR_PROFILES`.

    Raises:
        UserError: unknown ``source``.
    """
    if source not in CONTOUR_PROFILES:
        raise UserError(
            f"unknown landmark source {source!r}; choose one of {', '.join(LANDMARK_SOURCES)} "
            "(loss.landmark_source)"
        )
    if contour_weight >= 0:
        return torch.full((len(JAW_CONTOUR),), float(contour_weight))
    return torch.tensor(CONTOUR_PROFILES[source], dtype=torch.float32)


def landmark68_weights(source: str = "detector", contour_weight: float = -1.0) -> torch.Tensor:
    """(68,) iBUG-68 weights: DECA's, with the jaw contour of :func:`contour_weights`.

    ``landmark68_weights("detector")`` equals :func:`deca_landmark_weights` exactly.
    """
    weights = deca_landmark_weights()
    weights[list(JAW_CONTOUR)] = contour_weights(source, contour_weight)
    return weights


def _check_points(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(
            f"expected matching (..., L, 2) landmarks, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def weighted_landmark_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    point_weights: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weight-normalised L1 between landmark sets (DECA's ``batch_kp_2d_l1_loss`` form).

    Args:
        pred: (*lead, L, 2) predicted landmarks, normalised [-1, 1].
        target: (*lead, L, 2) target landmarks; NaN points are ignored.
        point_weights: (L,) per-point weights, or None for 1.
        valid: (*lead) bool per sample, or None.

    Returns:
        0-dim ``sum w (|dx| + |dy|) / (2 sum w)`` over visible points of valid samples.
    """
    _check_points(pred, target)
    weights = expand_valid(valid, pred[..., 0])  # (*lead, 1)
    visible = torch.isfinite(target).all(dim=-1).to(pred.dtype)  # (*lead, L)
    weights = weights * visible
    # Replace unknown targets before differencing: a NaN would poison the gradient even masked.
    target = torch.where(torch.isfinite(target), target, pred.detach())
    if point_weights is not None:
        weights = weights * point_weights.to(device=pred.device, dtype=pred.dtype)
    per_point = (pred - target).abs().sum(dim=-1) / 2  # mean over x, y
    return weighted_mean(per_point, weights)


def landmark_loss(
    pred68: torch.Tensor,
    target68: torch.Tensor,
    valid: torch.Tensor | None = None,
    point_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted L1 on the iBUG-68 landmarks.

    Args:
        pred68: (*lead, 68, 2) projected model landmarks, normalised.
        target68: (*lead, 68, 2) detected landmarks (``WindowBatch.landmarks68``).
        valid: (*lead) bool, or None.
        point_weights: (68,) per-point weights (:func:`landmark68_weights`; training takes
            them from the config with :func:`seqdeca.losses.weights.landmark_point_weights`),
            or None for DECA's :func:`deca_landmark_weights`.
    """
    if pred68.shape[-2] != 68:
        raise ValueError(f"expected (..., 68, 2) landmarks, got {tuple(pred68.shape)}")
    if point_weights is None:
        point_weights = deca_landmark_weights()
    if point_weights.shape != (68,):
        raise ValueError(f"expected (68,) point weights, got {tuple(point_weights.shape)}")
    return weighted_landmark_l1(pred68, target68, point_weights, valid)


def mediapipe_landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    target_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain (unweighted) L1 on MediaPipe landmarks.

    Args:
        pred: (*lead, L, 2) predicted points, normalised.
        target: (*lead, 478, 2) MediaPipe landmarks (``WindowBatch.landmarks``), or (*lead, L, 2)
            when ``target_index`` is None.
        valid: (*lead) bool, or None.
        target_index: (L,) int64 MediaPipe ids of the predicted points (e.g. the face model's
            embedded subset), or None when ``target`` already matches ``pred``.
    """
    if target_index is not None:
        target = target.index_select(-2, target_index.to(target.device))
    return weighted_landmark_l1(pred, target, None, valid)


def _pair_distances(points: torch.Tensor, pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """(*lead, L, 2) -> (*lead, P) Euclidean distances of the index pairs."""
    first = points[..., [a for a, _ in pairs], :]
    second = points[..., [b for _, b in pairs], :]
    return (first - second).pow(2).sum(-1).clamp_min(1e-12).sqrt()


def closure_loss(
    pred68: torch.Tensor,
    target68: torch.Tensor,
    pairs: tuple[tuple[int, int], ...],
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean |predicted - target| distance of landmark pairs (DECA's eye / lip distance loss).

    Args:
        pred68: (*lead, 68, 2) predicted landmarks, normalised.
        target68: (*lead, 68, 2) target landmarks; pairs with a NaN end are ignored.
        pairs: iBUG-68 index pairs (upper, lower).
        valid: (*lead) bool, or None.
    """
    _check_points(pred68, target68)
    target_d = _pair_distances(target68, pairs)  # (*lead, P)
    pred_d = _pair_distances(pred68, pairs)
    known = torch.isfinite(target_d)
    weights = expand_valid(valid, pred_d) * known.to(pred_d.dtype)
    target_d = torch.where(known, target_d, pred_d.detach())
    return weighted_mean((pred_d - target_d).abs(), weights)


def eye_closure_loss(
    pred68: torch.Tensor, target68: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Eye closure: upper vs lower lid distances, pairs :data:`EYE_PAIRS`. Shapes as above."""
    return closure_loss(pred68, target68, EYE_PAIRS, valid)


def lip_closure_loss(
    pred68: torch.Tensor, target68: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Lip closure: upper vs lower inner-lip distances, pairs :data:`LIP_PAIRS`."""
    return closure_loss(pred68, target68, LIP_PAIRS, valid)
