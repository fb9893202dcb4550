"""The step of each stage: what one batch does, and which optimizer steps fall due when
Accelerate synchronises the gradients.

The trainer (:class:`~seqdeca.train.trainer.Trainer`) runs every batch inside
``accelerator.accumulate(*stage.models)``::

    stage.backward(batch)                   # forward, weighted loss, backward
    if accelerator.sync_gradients:          # every train.grad_accum batches, and an epoch's last
        finished = stage.optimize()         # the optimizer steps due; StepLosses when a step ends

* :class:`TemporalStep` (``train.stage=temporal``): the coarse / temporal terms
  (:func:`~seqdeca.train.steps.temporal_step`); one optimizer step per sync.
* :class:`DetailStep` (``train.stage=detail``): one step is ``train.n_critic`` critic updates of
  ``grad_accum`` batches each (:func:`~seqdeca.train.gan_steps.critic_step`); the generator
  (:func:`~seqdeca.train.gan_steps.generator_step`) trains on the batches of the last of them
  (GANimation trains G every n_critic-th batch) and its update ends the step. Without a critic
  (``loss.adversarial: 0``) a step is one generator update.

Each optimizer's batches are an :class:`Update`: their logged terms are averaged for the step's
line in ``losses.jsonl`` (the critic's with a ``D_`` prefix), and a non-finite loss on any
process discards its gradients on every process alike instead of stepping. A skipped critic
update skips its cycle's generator update too; the step then counts as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn

from seqdeca.config.schema import Config, LossConfig
from seqdeca.data.dataset import WindowBatch
from seqdeca.losses.weights import WeightedLoss
from seqdeca.models.detail_sources import DetailSources
from seqdeca.train.detail_setup import Critic, penalty_rng
from seqdeca.train.gan_steps import critic_step, detail_forward, generator_step
from seqdeca.train.state import TrainState
from seqdeca.train.steps import SkipLog, temporal_step

__all__ = ["CriticCycle", "DetailStep", "StepLosses", "TemporalStep", "Update", "any_process"]


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True when ``flag`` is set on any process (every process must call this)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


@dataclass
class StepLosses:
    """A finished optimizer step: its averaged unweighted terms ("total" included) and whether
    it was skipped for a non-finite loss."""

    losses: dict[str, float]
    skipped: bool


@dataclass
class Update:
    """One optimizer and the batches accumulated for its next step.

    Attributes:
        optimizer: the prepared optimizer.
        clip: parameters whose gradient norm is clipped to ``grad_clip`` (when > 0) before the
            step; None: no clipping.
        grad_clip: ``train.grad_clip``.
        prefix: put before the term names in the logged losses ("D_" for the critic).
        sums: logged name -> sum over the batches recorded since :meth:`take_means`.
        batches: batches recorded since :meth:`take_means`.
        bad: a non-finite loss among the batches recorded since :meth:`apply`.
    """

    optimizer: torch.optim.Optimizer
    clip: list[nn.Parameter] | None = None
    grad_clip: float = 0.0
    prefix: str = ""
    sums: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    bad: bool = False

    def record(self, result: WeightedLoss) -> None:
        """Count one batch's loss (its backward pass is done)."""
        self.bad |= not result.finite
        for name, value in result.logged.items():
            key = self.prefix + name
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.batches += 1

    def apply(self, accelerator: Accelerator, *, skip: bool = False) -> bool:
        """Step the optimizer unless a recorded loss was non-finite on some process or ``skip``
        is set, then clear the gradients; True when the step was skipped (every process must
        call this)."""
        skipped = any_process(accelerator, self.bad) or skip
        if not skipped:
            if self.clip is not None and self.grad_clip > 0:
                accelerator.clip_grad_norm_(self.clip, self.grad_clip)
            self.optimizer.step()
        self.optimizer.zero_grad()
        self.bad = False
        return skipped

    def take_means(self) -> dict[str, float]:
        """The recorded terms averaged over their batches; starts the next sums."""
        means = {k: v / max(self.batches, 1) for k, v in self.sums.items()}
        self.sums, self.batches = {}, 0
        return means


class TemporalStep:
    """The temporal (coarse) stage: every batch is one forward and backward pass of the weighted
    coarse terms, and every gradient sync one optimizer step.

    Args:
        accelerator: the run's accelerator.
        model: the prepared :class:`~seqdeca.models.SeqDECA`.
        update: the model's optimizer, clipping its trainable parameters.
        loss_cfg: the loss weights and options.
        mediapipe_ids: (L,) MediaPipe ids of the model's "landmarks_mp" points, or None.
        identity_net: the frozen identity loss when ``loss.identity > 0``, else None.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: nn.Module,
        update: Update,
        *,
        loss_cfg: LossConfig,
        mediapipe_ids: torch.Tensor | None,
        identity_net: nn.Module | None,
    ) -> None:
        self.accelerator, self.model, self.update = accelerator, model, update
        self.models = (model,)
        self.loss_cfg, self.mediapipe_ids, self.identity_net = loss_cfg, mediapipe_ids, identity_net
        self.skips = SkipLog()

    def backward(self, batch: WindowBatch) -> None:
        """Forward pass, weighted coarse loss and backward pass of one batch."""
        result = temporal_step(
            self.accelerator,
            self.model,
            batch,
            loss_cfg=self.loss_cfg,
            mediapipe_ids=self.mediapipe_ids,
            skips=self.skips,
            identity_net=self.identity_net,
        )
        self.update.record(result)

    def optimize(self) -> StepLosses:
        """The optimizer step (skipped after a non-finite loss); the step's averaged terms."""
        skipped = self.update.apply(self.accelerator)
        return StepLosses(self.update.take_means(), skipped)


@dataclass
class CriticCycle:
    """Where the detail step stands in its cycle of ``train.n_critic`` critic updates.

    Attributes:
        updates: critic updates done in this cycle.
        batches: batches seen in this cycle (a key of the gradient penalty's RNG).
        skipped: a critic update of this cycle was skipped (non-finite loss).
    """

    updates: int = 0
    batches: int = 0
    skipped: bool = False


class DetailStep:
    """The detail stage: per batch the critic's loss and backward pass and, on the batches of a
    cycle's last critic update, the generator's; per gradient sync a critic update, and after
    ``train.n_critic`` of them the generator's update, which ends the step.

    Args:
        accelerator: the run's accelerator.
        model: the prepared :class:`~seqdeca.models.SeqDECA`.
        generator: the model's optimizer; ``generator.clip`` holds the detail encoder's and
            generator's parameters (clipped, and the only ones the generator's backward pass
            reaches).
        critic: the prepared critic and its optimizer, or None (``loss.adversarial: 0``).
        cfg: the run's config (``loss``, ``train.n_critic`` and the detail sources,
            ``run.seed``).
        state: the run's train state (its step keys the gradient penalty's RNG).
        id_mrf_net: the frozen ID-MRF loss when ``loss.id_mrf > 0``, else None.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: nn.Module,
        generator: Update,
        critic: Critic | None,
        *,
        cfg: Config,
        state: TrainState,
        id_mrf_net: nn.Module | None,
    ) -> None:
        core = accelerator.unwrap_model(model)
        self.accelerator, self.model, self.critic = accelerator, model, critic
        self.generator = generator
        self.models = (model,) if critic is None else (model, critic.module)
        self.trainable = generator.clip  # the generator's backward pass reaches these only
        self.critic_update = None if critic is None else Update(critic.optimizer, prefix="D_")
        # the generator's critic pass: unwrapped, so that only the generator gets gradients
        self.core_critic = None if critic is None else accelerator.unwrap_model(critic.module)
        self.n_critic = 1 if critic is None else cfg.train.n_critic
        self.loss_cfg, self.seed, self.state = cfg.loss, cfg.run.seed, state
        self.uv_mask = core.uv_detail_mask(torch.zeros((), device=accelerator.device))
        self.sources, self.layout = DetailSources.from_config(cfg.train), core.layout
        self.id_mrf_net = id_mrf_net
        self.skips = SkipLog()
        self.cycle = CriticCycle()

    def backward(self, batch: WindowBatch) -> None:
        """The detail forward pass (with gradients on the generator's batches only), the
        critic's loss and backward pass, and on the generator's batches the generator's."""
        generator_batch = self.cycle.updates == self.n_critic - 1
        out = detail_forward(
            self.accelerator,
            self.model,
            batch.images,
            batch.valid,
            with_grad=generator_batch,
            given=self.sources.forward_kwargs(batch.gt, self.layout),
        )
        if self.critic is not None:
            rng = penalty_rng(
                self.seed, self.state.step, self.cycle.batches, self.accelerator.process_index
            )
            self.critic_update.record(
                critic_step(
                    self.accelerator, self.critic.module, out, loss_cfg=self.loss_cfg, generator=rng
                )
            )
        self.cycle.batches += 1
        if generator_batch:
            result = generator_step(
                self.accelerator,
                out,
                self.core_critic,
                self.uv_mask,
                parameters=self.trainable,
                loss_cfg=self.loss_cfg,
                skips=self.skips,
                id_mrf_net=self.id_mrf_net,
            )
            self.generator.record(result)

    def optimize(self) -> StepLosses | None:
        """The critic update due at this sync; after the cycle's ``n_critic``-th, also the
        generator's update, and the step's averaged terms (None before)."""
        if self.critic_update is not None:
            self.cycle.skipped |= self.critic_update.apply(self.accelerator)
        self.cycle.updates += 1
        if self.cycle.updates < self.n_critic:
            return None
        skipped = self.generator.apply(self.accelerator, skip=self.cycle.skipped)
        losses = self.generator.take_means()
        if self.critic_update is not None:
            losses |= self.critic_update.take_means()
        self.cycle = CriticCycle()
        return StepLosses(losses, skipped)
