"""What the detail stage needs besides its two steps: the settings checked up front
(:func:`check_detail_settings`), the critic with its optimizer (:class:`Critic`; there is none
with ``loss.adversarial: 0``) and the gradient penalty's RNG (:func:`penalty_rng`). Where its
inputs come from (the encoder or the ground truth) is :mod:`seqdeca.models.detail_sources`,
shared with the evaluation; how a step runs is :class:`~seqdeca.train.stages.DetailStep`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.losses.adversarial import GAN_KINDS
from seqdeca.losses.detail import CRITIC_REGIONS, Z_SYM_REGIONS
from seqdeca.losses.weights import uses_critic
from seqdeca.models.detail_sources import DetailSources

__all__ = ["Critic", "check_detail_settings", "penalty_rng"]


def check_detail_settings(cfg: Config) -> DetailSources:
    """Refuse, in one line and before any work, detail-stage settings that cannot run.

    Returns:
        The run's :class:`DetailSources`.

    Raises:
        UserError: an unknown ``loss.gan_type``, ``loss.z_sym_region``, ``loss.critic_region``,
            ``train.detail_coarse``
            or ``train.detail_condition``; fp16 mixed precision with a critic (Accelerate shares
            one gradient scaler between the critic's and the generator's optimizers, whose
            steps then unscale each other's gradients with the wrong scale).
    """
    if cfg.loss.gan_type not in GAN_KINDS:
        raise UserError(f"unknown loss.gan_type={cfg.loss.gan_type!r}; choose one of {GAN_KINDS}")
    if cfg.loss.z_sym_region not in Z_SYM_REGIONS:
        raise UserError(
            f"unknown loss.z_sym_region={cfg.loss.z_sym_region!r}; choose one of {Z_SYM_REGIONS}"
        )
    if cfg.loss.critic_region not in CRITIC_REGIONS:
        raise UserError(
            f"unknown loss.critic_region={cfg.loss.critic_region!r}; choose one of {CRITIC_REGIONS}"
        )
    if cfg.train.mixed_precision == "fp16" and uses_critic(cfg.loss):
        raise UserError(
            "train.mixed_precision=fp16 cannot train the detail stage's critic (Accelerate shares "
            "one gradient scaler between critic and generator): use bf16 or no"
        )
    return DetailSources.from_config(cfg.train)


@dataclass
class Critic:
    """The detail stage's critic and its optimizer, both prepared.

    Attributes:
        module: the (possibly DDP-wrapped) :class:`ConditionedDetailCritic`.
        optimizer: its Adam (``train.critic_lr``).
    """

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer


def penalty_rng(seed: int, step: int, batch: int, process: int) -> torch.Generator:
    """CPU RNG of one batch's gradient-penalty draw, a function of (``run.seed``, optimizer step,
    batch of the step's critic cycle, process index) only, so that an interrupted and resumed run
    draws what an uninterrupted one does."""
    key = ((seed * 1_000_003 + step) * 10_007 + batch) * 101 + process
    return torch.Generator().manual_seed(key % (2**63))
