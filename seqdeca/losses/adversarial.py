"""Adversarial terms for the detail cGAN: WGAN-GP (default), hinge or non-saturating BCE, and
GANimation's AU loss.

Scores are the critic's unbounded realism outputs, any shape ``(N, ...)`` (the patch critic's
``(N, 1, h, w)``); every function averages over all of them, so a patch map counts as the mean
of its patches. Sign conventions (minimised by the optimiser):

* WGAN critic: ``E[D(fake)] - E[D(real)]``; generator: ``-E[D(fake)]``.
* hinge critic: ``E[relu(1 - D(real))] + E[relu(1 + D(fake))]``; generator: ``-E[D(fake)]``.
* BCE (non-saturating GAN, Goodfellow et al. 2014), scores read as logits: critic
  ``E[softplus(-D(real))] + E[softplus(D(fake))]`` (= -log sigmoid(D(real)) - log(1 -
  sigmoid(D(fake)))); generator ``E[softplus(-D(fake))]`` (= -log sigmoid(D(fake))).
* gradient penalty (Gulrajani et al. 2017): ``E[(||grad_x D(x_hat)||_2 - 1) ** 2]`` at random
  per-sample interpolates ``x_hat = e real + (1 - e) fake``, ``e ~ U[0, 1]``. The gradient is
  that of the per-sample MEAN patch score (the quantity the critic loss averages), built with
  ``create_graph=True`` so the penalty trains the critic. lambda_gp (10) is the config weight.
* AU regression (GANimation): MSE between the critic's AU head and the AU condition, on real
  samples for the critic and on generated samples for the generator, averaged over samples
  and AUs. GANimation divides that same mean again by the batch size and multiplies by
  lambda_D_cond = 4000, i.e. a weight of 4000 / B (160 at its batch of 25) in the units of the
  config weight ``loss.au_regression``.

The gradient penalty applies to any kind (``loss.gradient_penalty`` > 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from seqdeca.losses.regularisers import expand_valid, weighted_mean

__all__ = [
    "GAN_KINDS",
    "au_regression_loss",
    "critic_loss",
    "generator_loss",
    "gradient_penalty",
]

GAN_KINDS = ("wgan", "hinge", "bce")


def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"GAN loss kind must be one of {GAN_KINDS}, got {kind!r}")


def critic_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, *, kind: str = "wgan"
) -> torch.Tensor:
    """The critic's adversarial loss (to minimise).

    Args:
        real_scores: (N, ...) critic scores of real samples.
        fake_scores: (M, ...) critic scores of generated samples (detached generator output).
        kind: "wgan", "hinge" or "bce" (scores are logits).
    """
    _check_kind(kind)
    if kind == "wgan":
        return fake_scores.mean() - real_scores.mean()
    if kind == "bce":
        return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def generator_loss(fake_scores: torch.Tensor, *, kind: str = "wgan") -> torch.Tensor:
    """The generator's adversarial loss: ``-E[D(fake)]`` for WGAN and hinge, the non-saturating
    ``E[softplus(-D(fake))]`` for BCE.

    Args:
        fake_scores: (N, ...) critic scores of generated samples.
        kind: "wgan", "hinge" or "bce".
    """
    _check_kind(kind)
    if kind == "bce":
        return F.softplus(-fake_scores).mean()
    return -fake_scores.mean()


def gradient_penalty(
    critic_fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    real: torch.Tensor,
    fake: torch.Tensor,
    condition: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty at random per-sample interpolates between real and fake.

    Args:
        critic_fn: ``critic_fn(x)`` or ``critic_fn(x, condition)`` returning scores (N, ...)
            or a tuple whose first element is the scores (``DetailCritic`` returns
            (realism, au)).
        real: (N, ...) real samples.
        fake: (N, ...) generated samples (detached here).
        condition: optional (N, ...) condition passed unchanged (not interpolated).
        generator: optional RNG for the interpolation weights.

    Returns:
        0-dim ``mean_n (||d mean(D(x_hat_n)) / d x_hat_n|| - 1) ** 2``, differentiable w.r.t.
        the critic's parameters.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    n = real.shape[0]
    eps = torch.rand(n, generator=generator, dtype=real.dtype, device="cpu").to(real.device)
    eps = eps.reshape(n, *((1,) * (real.dim() - 1)))
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic_fn(mixed) if condition is None else critic_fn(mixed, condition)
    scores = out[0] if isinstance(out, tuple) else out
    per_sample = scores.reshape(n, -1).mean(dim=1)
    (grad,) = torch.autograd.grad(per_sample.sum(), mixed, create_graph=True)
    norm = (grad.reshape(n, -1).pow(2).sum(dim=1) + 1e-12).sqrt()
    return (norm - 1).pow(2).mean()


def au_regression_loss(
    pred_au: torch.Tensor, target_au: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """GANimation's AU regression: MSE of the critic's AU head against the AU condition.

    Args:
        pred_au: (N, K) the critic's AU estimates (unbounded).
        target_au: (N, K) the AU intensities in [0, 1] the sample is conditioned on.
        valid: (N,) bool, or None.

    Returns:
        0-dim mean over valid samples and AUs of ``(pred - target) ** 2``.
    """
    if pred_au.shape != target_au.shape:
        raise ValueError(f"AU estimates {tuple(pred_au.shape)} != {tuple(target_au.shape)}")
    error = (pred_au - target_au.detach().to(pred_au.dtype)).pow(2)
    return weighted_mean(error, expand_valid(valid, error))
