"""The one place that maps :class:`LossConfig` to per-term weights, and the weighted sum.

Term names are the ``LossConfig`` field names; a term is on when its weight is > 0. The
training loop computes the terms it needs (unweighted scalars from this package), then
:func:`weighted_sum` combines them, refusing names it has no weight for and flagging non-finite
totals (the loop then skips the step).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from seqdeca.config.schema import LossConfig
from seqdeca.losses.landmarks import landmark68_weights

__all__ = [
    "WeightedLoss",
    "coarse_options",
    "coarse_weights",
    "critic_weights",
    "detail_weights",
    "landmark_point_weights",
    "needs_ground_truth",
    "uses_critic",
    "weighted_sum",
]


def coarse_weights(cfg: LossConfig) -> dict[str, float]:
    """Weights of the coarse / temporal stage's terms, keyed by term name."""
    return {
        "landmark": float(cfg.landmark),
        "landmark_mediapipe": float(cfg.landmark_mediapipe),
        "eye_closure": float(cfg.eye_closure),
        "lip_closure": float(cfg.lip_closure),
        "photometric": float(cfg.photometric),
        "identity": float(cfg.identity),
        "shape_reg": float(cfg.shape_reg),
        "expression_reg": float(cfg.expression_reg),
        "texture_reg": float(cfg.texture_reg),
        "light_reg": float(cfg.light_reg),
        "jaw_reg": float(cfg.jaw_reg),
        "residual_reg": float(cfg.residual_reg),
        "clean_consistency": float(cfg.clean_consistency),
        "temporal": float(cfg.temporal),
        "au_label": float(cfg.au_label),
        "au_render": float(cfg.au_render),
        "code_supervision": float(cfg.code_supervision),
        "au_supervision": float(cfg.au_supervision),
        "au_head_supervision": float(cfg.au_head_supervision),
    }


def needs_ground_truth(cfg: LossConfig) -> bool:
    """Whether a coarse term reads the synthetic ground truth (``gt.npz``)."""
    return cfg.code_supervision > 0 or cfg.au_supervision > 0 or cfg.au_head_supervision > 0


def coarse_options(cfg: LossConfig) -> dict[str, float]:
    """Settings of coarse terms that are not term weights (keyword arguments of the terms)."""
    return {"important_region_weight": float(cfg.important_region_weight)}


def landmark_point_weights(cfg: LossConfig) -> torch.Tensor:
    """(68,) per-point weights of the ``landmark`` term: DECA's, with the jaw contour that
    ``loss.landmark_source`` and ``loss.contour_weight`` select
    (:func:`~seqdeca.losses.landmarks.contour_weights`).

    Raises:
        UserError: unknown ``loss.landmark_source``.
    """
    return landmark68_weights(cfg.landmark_source, float(cfg.contour_weight))


def detail_weights(cfg: LossConfig) -> dict[str, float]:
    """Weights of the detail generator's terms (``au_regression`` on generated samples)."""
    return {
        "detail_photometric": float(cfg.detail_photometric),
        "detail_contrast": float(cfg.detail_contrast),
        "id_mrf": float(cfg.id_mrf),
        "z_reg": float(cfg.z_reg),
        "z_diff": float(cfg.z_diff),
        "z_sym": float(cfg.z_sym),
        "adversarial": float(cfg.adversarial),
        "au_regression": float(cfg.au_regression),
    }


def uses_critic(cfg: LossConfig) -> bool:
    """Whether the detail stage trains a critic: its adversarial term is on (``loss.adversarial``
    > 0). Without one (DECA's detail training) no critic, critic optimizer or critic step exists
    and the critic-side settings (``au_regression``, ``gradient_penalty``, ``gan_type``,
    ``train.n_critic``, ``train.critic_lr``, ``model.critic_au``) have nothing to act on."""
    return cfg.adversarial > 0


def critic_weights(cfg: LossConfig) -> dict[str, float]:
    """Weights of the critic's terms: the adversarial term (1), lambda_gp, AU regression on real."""
    return {
        "critic": 1.0,
        "gradient_penalty": float(cfg.gradient_penalty),
        "au_regression": float(cfg.au_regression),
    }


class WeightedLoss(NamedTuple):
    """Result of :func:`weighted_sum`.

    Attributes:
        total: 0-dim weighted sum of the enabled terms (a zero tensor when none is enabled).
        logged: term name -> detached UNWEIGHTED value of every enabled term, plus "total".
        finite: False when the total is NaN or inf (skip the optimiser step).
    """

    total: torch.Tensor
    logged: dict[str, torch.Tensor]
    finite: bool


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> WeightedLoss:
    """Combine unweighted terms with their weights.

    Args:
        terms: term name -> 0-dim tensor (unweighted).
        weights: term name -> weight (from :func:`coarse_weights` etc.); terms with weight 0
            are skipped (neither summed nor logged, so a NaN there is harmless).

    Returns:
        :class:`WeightedLoss` (total, logged, finite).

    Raises:
        ValueError: a term has no weight, a weight is negative, or a term is not a scalar.
    """
    unknown = sorted(set(terms) - set(weights))
    if unknown:
        raise ValueError(f"loss terms without a weight: {unknown}; known: {sorted(weights)}")
    total: torch.Tensor | None = None
    logged: dict[str, torch.Tensor] = {}
    for name, term in terms.items():
        weight = weights[name]
        if weight < 0:
            raise ValueError(f"loss weight {name} = {weight} is negative")
        if weight == 0:
            continue
        if term.numel() != 1:
            raise ValueError(f"loss term {name} is not a scalar: shape {tuple(term.shape)}")
        term = term.reshape(())
        logged[name] = term.detach()
        total = weight * term if total is None else total + weight * term
    if total is None:
        first = next(iter(terms.values()), None)
        total = first.new_zeros(()) if first is not None else torch.zeros(())
    logged["total"] = total.detach()
    return WeightedLoss(total=total, logged=logged, finite=bool(torch.isfinite(total)))
