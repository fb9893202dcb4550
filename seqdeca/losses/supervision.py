"""Ground-truth supervision of the per-frame encoders, for sources with ``gt.npz`` (synthetic).

The temporal stage starts from frozen, pretrained per-frame encoders. Where no pretrained
weights exist (here: no DECA or OpenGraphAU weights can be downloaded), these two terms pretrain
them on synthetic clips, whose ground truth is known:

* :func:`code_supervision_loss` (``loss.code_supervision``): predicted codes (the training step
  scores the coarse encoder's and the fused ones) against the true ones, a mean absolute error
  per code group (expression, global pose, jaw
  pose, shape, camera, light), summed over the groups so that every group counts whatever its
  size. Codes of different sizes are compared on the components both have, the extra true
  components against zero (a smaller model cannot express them).
* :func:`au_intensity_loss` (``loss.au_supervision``): the AU network's 27 main AU outputs
  (cosine similarities in [0, 1]) against the true AU intensities in [0, 1], mean squared error.

Both average over valid frames only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqdeca.losses.regularisers import expand_valid, weighted_mean

__all__ = ["CODE_GROUPS", "au_intensity_loss", "code_supervision_loss"]

#: Supervised code groups (``gt.npz`` names).
CODE_GROUPS: tuple[str, ...] = ("expression", "global_pose", "jaw_pose", "shape", "cam", "light")


def _group_error(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None):
    """Mean |pred - target| over the valid frames; (B, T, ...) each, trailing sizes padded."""
    pred, target = pred.flatten(2), target.to(pred).flatten(2)
    size = max(pred.shape[-1], target.shape[-1])
    pred = F.pad(pred, (0, size - pred.shape[-1]))
    target = F.pad(target, (0, size - target.shape[-1]))
    return weighted_mean((pred - target).abs(), expand_valid(valid, pred))


def code_supervision_loss(
    pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor], valid: torch.Tensor | None
) -> torch.Tensor:
    """Sum over :data:`CODE_GROUPS` of the per-group mean absolute code error.

    Args:
        pred: the coarse encoder's per-frame codes (B, T, ...): "expression" (E),
            "global_pose" (3), "jaw_pose" (3), "shape" (S), "cam" (3), "light" (9, 3). A group
            missing from either side is skipped.
        target: the ground truth, same names (``gt.npz``).
        valid: (B, T) bool, or None.

    Returns:
        0-dim tensor.
    """
    terms = [
        _group_error(pred[k], target[k], valid) for k in CODE_GROUPS if k in pred and k in target
    ]
    if not terms:
        raise KeyError(f"no supervised code group in the outputs {sorted(pred)}")
    return torch.stack(terms).sum()


def au_intensity_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """Mean squared error of AU outputs against true intensities.

    Args:
        pred: (B, T, K) AU network main outputs in [0, 1].
        target: (B, T, K) true intensities in [0, 1].
        valid: (B, T) bool, or None.

    Returns:
        0-dim tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"AU outputs {tuple(pred.shape)} vs targets {tuple(target.shape)}")
    return weighted_mean((pred - target.to(pred)) ** 2, expand_valid(valid, pred))
