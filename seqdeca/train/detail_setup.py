"""What the detail stage needs besides its two steps: the settings checked up front
(:func:`check_detail_settings`) and the training loop's GAN state (:class:`GanParts`,
:func:`build_gan_parts`, :func:`penalty_rng`). Where its inputs come from (the encoder or the
ground truth) is :mod:`seqdeca.models.detail_sources`, shared with the evaluation.

Without a critic (``loss.adversarial: 0``) :class:`GanParts` holds none (no critic, no critic
optimizer): the loop then makes one generator update per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from accelerate import Accelerator

from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.losses.adversarial import GAN_KINDS
from seqdeca.losses.detail import Z_SYM_REGIONS
from seqdeca.losses.weights import uses_critic
from seqdeca.models.code_layout import CodeLayout
from seqdeca.models.detail_sources import DetailSources

__all__ = ["GanParts", "build_gan_parts", "check_detail_settings", "penalty_rng"]

def check_detail_settings(cfg: Config) -> DetailSources:
    """Refuse, in one line and before any work, detail-stage settings that cannot run.

    Returns:
        The run's :class:`DetailSources`.

    Raises:
        UserError: an unknown ``loss.gan_type``, ``loss.z_sym_region``, ``train.detail_coarse``
            or ``train.detail_condition``; fp16 mixed precision with a critic (Accelerate shares
            one gradient scaler between the critic's and the generator's optimizers, whose
            steps then unscale each other's gradients with the wrong scale).
    """
    if cfg.loss.gan_type not in GAN_KINDS:
        raise UserError(f"unknown loss.gan_type={cfg.loss.gan_type!r}; choose one of {GAN_KINDS}")
    if cfg.loss.z_sym_region not in Z_SYM_REGIONS:
        raise UserError(f"unknown loss.z_sym_region={cfg.loss.z_sym_region!r}; choose one of "
                        f"{Z_SYM_REGIONS}")  # fmt: skip
    if cfg.train.mixed_precision == "fp16" and uses_critic(cfg.loss):
        raise UserError(
            "train.mixed_precision=fp16 cannot train the detail stage's critic (Accelerate shares "
            "one gradient scaler between critic and generator): use bf16 or no"
        )
    return DetailSources.from_config(cfg.train)


@dataclass
class GanParts:
    """Detail stage: the prepared critic, its optimizer and what the generator step needs.

    Attributes:
        critic: the prepared (possibly DDP-wrapped) :class:`ConditionedDetailCritic`, or None
            (``loss.adversarial: 0``: no critic).
        optimizer: the critic's Adam (None without a critic).
        uv_mask: (Huv, Wuv) UV face mask of the model (photometric, z_diff, z_sym).
        sources: where the coarse codes and the AU condition come from.
        layout: the model's code layout (ground-truth codes are fitted to it).
        id_mrf_net: the frozen ID-MRF loss when ``loss.id_mrf > 0`` (not prepared: no
            parameter of it trains).
    """

    critic: torch.nn.Module | None
    optimizer: torch.optim.Optimizer | None
    uv_mask: torch.Tensor
    sources: DetailSources
    layout: CodeLayout
    id_mrf_net: torch.nn.Module | None = None
    critic_steps: int = 0  # critic updates done in the current step's cycle
    cycle_batches: int = 0  # batches seen in the current step's cycle
    critic_bad: bool = False  # a non-finite critic loss in the current critic update
    generator_bad: bool = False  # a non-finite generator loss in the current step
    cycle_bad: bool = False  # a critic update of the current step was skipped
    critic_sums: dict[str, float] = field(default_factory=dict)
    generator_sums: dict[str, float] = field(default_factory=dict)

    def reset_cycle(self) -> None:
        """Start the next step's cycle (after a generator update)."""
        self.critic_steps = self.cycle_batches = 0
        self.critic_bad = self.generator_bad = self.cycle_bad = False
        self.critic_sums, self.generator_sums = {}, {}


def build_gan_parts(
    accelerator: Accelerator, cfg: Config, model: torch.nn.Module, critic: torch.nn.Module | None,
    critic_optimizer: torch.optim.Optimizer | None, *, id_mrf_net: torch.nn.Module | None,
) -> GanParts:  # fmt: skip
    """The detail stage's :class:`GanParts` around the prepared model and critic (None without
    one) and the ID-MRF loss (:func:`~seqdeca.losses.optional.build_id_mrf_loss`, or None)."""
    core = accelerator.unwrap_model(model)
    if id_mrf_net is not None:
        id_mrf_net.to(accelerator.device)
    return GanParts(critic=critic, optimizer=critic_optimizer,
                    uv_mask=core.uv_detail_mask(torch.zeros((), device=accelerator.device)),
                    sources=DetailSources.from_config(cfg.train), layout=core.layout,
                    id_mrf_net=id_mrf_net)  # fmt: skip


def penalty_rng(cfg: Config, step: int, gan: GanParts, accelerator: Accelerator) -> torch.Generator:
    """CPU RNG of one batch's gradient-penalty draw, a function of (seed, step, batch, process)
    only, so that an interrupted and resumed run draws what an uninterrupted one does."""
    key = (cfg.run.seed, step, gan.cycle_batches, accelerator.process_index)
    seed = ((key[0] * 1_000_003 + key[1]) * 10_007 + key[2]) * 101 + key[3]
    return torch.Generator().manual_seed(seed % (2**63))
