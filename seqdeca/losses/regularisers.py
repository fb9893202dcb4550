"""Code regularisers (DECA's) and the masked reductions every loss term shares.

Every term returns an UNWEIGHTED scalar; the weights live in :class:`LossConfig`
(:mod:`seqdeca.losses.weights`). Leading dimensions are free: ``(B, T, ...)`` windows or
``(N, ...)`` folded frames; ``valid`` has exactly those leading dimensions.

DECA's regularisers, for reference (``codedict`` per image, summed over the batch):

* shape / expression / texture: ``sum(code ** 2) / 2``;
* light, as (9, 3) = 9 SH coefficients x RGB: ``mean((light - light.mean(over RGB)) ** 2)``,
  which pulls every coefficient towards grey (white light) without limiting its intensity.

Here the code terms are the same per-sample ``sum(code ** 2) / 2`` but AVERAGED over valid
samples instead of summed over the batch, so that their scale does not depend on the batch size
(with DECA's batch the weights differ by that factor).
"""

from __future__ import annotations

import torch

__all__ = [
    "code_l2",
    "expand_valid",
    "jaw_regulariser",
    "light_regulariser",
    "valid_mean",
    "weighted_mean",
]


def expand_valid(valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A float weight broadcastable to ``like`` from a per-sample ``valid`` flag.

    Args:
        valid: (*lead) bool or {0, 1} float, or None (all valid).
        like: (*lead, *rest) tensor whose leading dimensions ``valid`` names.

    Returns:
        (*lead, 1, ..., 1) float weights (ones when ``valid`` is None).
    """
    if valid is None:
        return torch.ones((1,) * like.dim(), dtype=like.dtype, device=like.device)
    if tuple(valid.shape) != tuple(like.shape[: valid.dim()]):
        raise ValueError(
            f"valid {tuple(valid.shape)} does not match the leading dims of {tuple(like.shape)}"
        )
    extra = like.dim() - valid.dim()
    return valid.to(like.dtype).reshape(*valid.shape, *((1,) * extra))


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * v) / sum(w)`` over every element, NaN-safe where the weight is zero.

    Args:
        values: any shape; entries with zero weight may be NaN or inf (they are ignored).
        weights: broadcastable to ``values``, >= 0.

    Returns:
        0-dim tensor; exactly 0 (still connected to ``values``' graph) when all weights are 0.

    Note: masked NaN entries are harmless in the value but NOT in the gradient of whatever
    produced them; callers replace unknown targets before differencing.
    """
    weights = torch.broadcast_to(weights.to(values.dtype), values.shape)
    used = weights > 0
    safe = torch.where(used, values, torch.zeros_like(values))
    total = (safe * weights).sum()
    return total / weights.sum().clamp_min(torch.finfo(values.dtype).tiny)


def valid_mean(per_sample: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-sample values over the valid samples (0 when none is valid).

    Args:
        per_sample: (*lead) one value per sample (e.g. (B, T) per frame).
        valid: (*lead) bool, or None.
    """
    return weighted_mean(per_sample, expand_valid(valid, per_sample))


def code_l2(code: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """DECA's code regulariser ``sum(code ** 2) / 2`` per sample, averaged over valid samples.

    Args:
        code: (*lead, D) shape, expression or texture coefficients.
        valid: (*lead) bool, or None.
    """
    return valid_mean(code.pow(2).sum(-1) / 2, valid)


def jaw_regulariser(jaw_pose: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """L2 on the jaw rotation: ``sum(jaw ** 2) / 2`` per sample (axis-angle, radians).

    Args:
        jaw_pose: (*lead, 3) axis-angle jaw rotation.
        valid: (*lead) bool, or None.
    """
    if jaw_pose.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) axis-angle jaw pose, got {tuple(jaw_pose.shape)}")
    return code_l2(jaw_pose, valid)


def light_regulariser(light: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """DECA's light regulariser: deviation of each SH coefficient's colour from its grey mean.

    Args:
        light: (*lead, 9, 3) SH coefficients x RGB (a (*lead, 27) code is reshaped to (9, 3)).
        valid: (*lead) bool, or None.

    Returns:
        0-dim mean over valid samples of ``mean((light - light.mean(RGB)) ** 2)`` per sample.
    """
    if light.shape[-1] == 27:
        light = light.reshape(*light.shape[:-1], 9, 3)
    if light.shape[-2:] != (9, 3):
        raise ValueError(f"expected (..., 9, 3) SH light, got {tuple(light.shape)}")
    deviation = light - light.mean(dim=-1, keepdim=True)
    return valid_mean(deviation.pow(2).mean(dim=(-2, -1)), valid)
