"""Optimizer and learning-rate schedule of a training stage.

The schedule is a pure function of the optimizer step (:func:`learning_rate`), so resuming
needs no scheduler state: the loop sets the rate before every step with :func:`set_learning_rate`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from seqdeca.config.schema import TrainConfig
from seqdeca.errors import UserError


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``params`` (only what the stage trains) with ``cfg.lr`` / ``cfg.weight_decay``.

    Raises:
        UserError: ``params`` is empty (nothing would train) or the rate is not positive.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise UserError(
            f"train.stage={cfg.stage!r} has no trainable parameters; check model.freeze_*"
        )
    if cfg.lr <= 0:
        raise UserError(f"train.lr must be > 0, got {cfg.lr}")
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_gan_optimizers(
    generator_params: Iterable[nn.Parameter],
    critic_params: Iterable[nn.Parameter] | None,
    cfg: TrainConfig,
) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Detail stage: Adam for the generator (``cfg.lr``) and the critic (``cfg.critic_lr``), both
    with betas ``(cfg.gan_beta1, cfg.gan_beta2)`` (GANimation: lr 1e-4, betas (0.5, 0.999)).
    Without a critic (``critic_params`` None) the generator's Adam is the same and the second
    optimizer is None.

    Raises:
        UserError: no trainable parameters, or a rate that is not positive.
    """
    generator_params = [p for p in generator_params if p.requires_grad]
    critic = None if critic_params is None else [p for p in critic_params if p.requires_grad]
    if not generator_params or critic == []:
        raise UserError("train.stage='detail' has no trainable generator or critic parameters")
    if cfg.lr <= 0 or (critic is not None and cfg.critic_lr <= 0):
        raise UserError(f"train.lr and train.critic_lr must be > 0, got {cfg.lr}, {cfg.critic_lr}")
    betas = (cfg.gan_beta1, cfg.gan_beta2)
    generator = torch.optim.Adam(generator_params, lr=cfg.lr, betas=betas)
    if critic is None:
        return generator, None
    return generator, torch.optim.Adam(critic, lr=cfg.critic_lr, betas=betas)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Rate for optimizer step ``step`` (0-based): linear warm-up over ``cfg.warmup_steps``
    from ``cfg.lr / warmup_steps`` up to ``cfg.lr``, then constant."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's rate (works on Accelerate's wrapped optimizer too)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
