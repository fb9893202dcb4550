"""Photometric term: masked L1 between the coarse render and the input image.

DECA multiplies its face mask by the render's coverage (``alpha_images``) and takes the mean of
``mask * |render - image|`` over every pixel. Here the prepared 3-class masks
(``WindowBatch.masks``: 0 background, 1 face, 2 eyes / brows / mouth) give per-pixel weights 0,
1 and ``important_region_weight``; pixels the render does not cover (alpha 0) and invalid
frames get weight 0; the result is normalised by the total weight (the weighted mask area), so
it is a per-pixel mean absolute error independent of how much of the crop the face fills.
"""

from __future__ import annotations

import torch

from seqdeca.losses.regularisers import expand_valid, weighted_mean

__all__ = ["class_weights", "photometric_loss"]


def class_weights(masks: torch.Tensor, important_region_weight: float) -> torch.Tensor:
    """Per-pixel weights from 3-class masks.

    Args:
        masks: (*lead, H, W) integer classes 0 background, 1 face, 2 important regions.
        important_region_weight: weight of class 2 relative to class 1 (DECA-like default 2).

    Returns:
        (*lead, H, W) float32 weights: 0, 1 or ``important_region_weight``.
    """
    if important_region_weight < 0:
        raise ValueError(f"important_region_weight must be >= 0, got {important_region_weight}")
    table = torch.tensor([0.0, 1.0, float(important_region_weight)], device=masks.device)
    return table[masks.long().clamp(0, 2)]


def photometric_loss(
    render: torch.Tensor,
    image: torch.Tensor,
    masks: torch.Tensor,
    alpha: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    important_region_weight: float = 2.0,
) -> torch.Tensor:
    """Masked, coverage-restricted, area-normalised L1 between render and image.

    Args:
        render: (*lead, 3, H, W) rendered RGB (``RenderOutput.image``, time folded back).
        image: (*lead, 3, H, W) input RGB in [0, 1].
        masks: (*lead, H, W) 3-class masks.
        alpha: (*lead, 1, H, W) or (*lead, H, W) render coverage in [0, 1].
        valid: (*lead) bool per frame, or None.
        important_region_weight: weight of mask class 2 relative to class 1.

    Returns:
        0-dim ``sum_p w_p mean_c |render - image| / sum_p w_p`` (0 when nothing is covered).
    """
    if render.shape != image.shape or render.shape[-3] != 3:
        raise ValueError(
            f"expected matching (..., 3, H, W) images, got {tuple(render.shape)} and "
            f"{tuple(image.shape)}"
        )
    if alpha.dim() == render.dim():
        alpha = alpha.squeeze(-3)
    if masks.shape != render.shape[:-3] + render.shape[-2:] or alpha.shape != masks.shape:
        raise ValueError(
            f"masks {tuple(masks.shape)} / alpha {tuple(alpha.shape)} do not match render "
            f"{tuple(render.shape)}"
        )
    weights = class_weights(masks, important_region_weight).to(render.dtype)
    weights = weights * alpha.detach().to(render.dtype) * expand_valid(valid, weights)
    per_pixel = (render - image).abs().mean(dim=-3)  # (*lead, H, W)
    return weighted_mean(per_pixel, weights)
