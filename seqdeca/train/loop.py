"""The training loop of a stage with Accelerate (single CPU process, DDP, GPUs, mixed precision).

``train(cfg)`` seeds (before building the model), builds the model (starting from the weights
of ``train.init_from`` when set, e.g. the temporal stage's model.pt for the detail stage), the
window loader and AdamW over the stage's trainable parameters, then runs ``cfg.train.max_steps``
optimizer steps of ``cfg.train.grad_accum`` batches each inside ``accelerator.accumulate``. Per
step it writes one line to ``run_dir/losses.jsonl`` (main process), TensorBoard scalars every
``train.log_every`` steps, and an atomic ``save_state`` checkpoint every
``train.checkpoint_every`` steps; at the end a last checkpoint and ``run_dir/model.pt``.
Between steps :class:`~seqdeca.train.monitor.Monitor` validates on held-out windows
(``train.validate_every``), draws image grids (``train.images_every``) and exports the weights
when ``run_dir/export.request`` appears.

This module builds and prepares the run (:func:`train`); the loop over epochs and steps is
:class:`~seqdeca.train.trainer.Trainer` and what one batch does is the stage's step object
(:mod:`seqdeca.train.stages`).

The detail stage (``train.stage=detail``) adds the AU-conditioned UV critic with its own Adam
(``train.critic_lr``); both models and both optimizers are prepared, so ``save_state`` checkpoints
hold the critic and both optimizers. One step there is ``train.n_critic`` critic updates and one
generator update (:class:`~seqdeca.train.stages.DetailStep`). With
``loss.adversarial: 0`` there is no critic: one step is one generator update, and checkpoints
hold the model and its optimizer only, as in the temporal stage. The detail stage's coarse codes
and AU condition may come from the synthetic ground truth
(:mod:`seqdeca.models.detail_sources`).

Non-finite losses: the step's gradients are discarded (on every process alike) and the step is
logged as skipped; ``train.max_bad_steps`` such steps in a row stop training with a
:class:`TrainingError`. Unreadable data: a window whose file is missing, cut or corrupt is
dropped from its batch (one warning line names the file) and counted (``bad_samples`` in each
``losses.jsonl`` line, ``data/bad_samples`` in TensorBoard); a batch left with no window is
skipped on every process (no optimizer step), and ``train.max_bad_samples`` unreadable windows
in a row stop training with a :class:`TrainingError`. Resuming loads a checkpoint with
``load_state`` (model, optimizer, RNG states and :class:`~seqdeca.train.state.TrainState`) and
continues mid-epoch with ``skip_first_batches``, so the loss trajectory equals an
uninterrupted run's (the unreadable-window counts start afresh).
"""

from __future__ import annotations

import logging
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from torch import nn

from seqdeca.config.loader import save_config
from seqdeca.config.schema import Config
from seqdeca.data.dataset import window_loader
from seqdeca.errors import UserError
from seqdeca.losses.optional import build_id_mrf_loss, build_identity_loss
from seqdeca.losses.weights import landmark_point_weights, needs_ground_truth, uses_critic
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.from_config import build_critic, build_model
from seqdeca.train.detail_setup import Critic, check_detail_settings
from seqdeca.train.monitor import VAL_LOG, Monitor
from seqdeca.train.optim import build_gan_optimizers, build_optimizer
from seqdeca.train.stages import DetailStep, TemporalStep, Update
from seqdeca.train.state import (
    CheckpointError,
    TrainState,
    check_checkpoint,
    load_initial_weights,
    load_state_strictly,
    resolve_resume,
    trim_log,
)
from seqdeca.train.trainer import LOSS_LOG, Trainer, TrainingError, TrainSummary

__all__ = ["TrainSummary", "TrainingError", "load_checkpoint", "make_accelerator", "train"]

log = logging.getLogger(__name__)

IMPLEMENTED_STAGES = ("temporal", "detail")


def train(cfg: Config, *, resume: str | None = None) -> TrainSummary:
    """Train ``cfg.train.stage`` into ``cfg.run.output_dir``.

    Args:
        cfg: the resolved config (``data``, ``model``, ``loss``, ``train``, ``run`` are read).
        resume: None (fresh run; existing checkpoints of the folder are left alone but
            ``losses.jsonl`` restarts), ``"latest"`` (the newest checkpoint of the run folder) or
            a checkpoint folder.

    Returns:
        :class:`TrainSummary`.

    Raises:
        TrainingError: ``train.max_bad_steps`` non-finite steps in a row.
        CheckpointError: a resume checkpoint is missing, corrupt or does not fit.
        UserError: bad settings (stage, data sources, ...).
    """
    check_settings(cfg)
    tcfg, run_dir, detail = cfg.train, Path(cfg.run.output_dir), cfg.train.stage == "detail"
    accelerator = make_accelerator(cfg, run_dir)

    # model, optimizer(s) and loader, seeded, then prepared (moved, wrapped for DDP, sharded)
    model, optimizer, loader, critic = _build(cfg)
    mediapipe_ids = model.face_model.mediapipe_ids
    trainable = model.trainable_parameters(tcfg.stage)
    if critic is None:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    else:
        model, critic.module, optimizer, critic.optimizer, loader = accelerator.prepare(
            model, critic.module, optimizer, critic.optimizer, loader
        )
    # the frozen loss networks draw their initial weights from the global RNG: where they are
    # built fixes the random numbers of the run
    id_mrf_net = _on_device(build_id_mrf_loss(cfg.loss), accelerator) if detail else None

    # the train state (restored with everything else when resuming), the run folder, the monitor
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    resumed = _resume(accelerator, run_dir, resume, state)
    _open_run_dir(accelerator, cfg, resumed_at=state.step if resumed else None)
    monitor = Monitor.create(cfg, accelerator, fresh=not resumed)
    accelerator.init_trackers("tb")

    try:
        # what one batch does, then the loop
        update = Update(optimizer, clip=trainable, grad_clip=tcfg.grad_clip)
        if detail:
            stage = DetailStep(
                accelerator, model, update, critic, cfg=cfg, state=state, id_mrf_net=id_mrf_net
            )
        else:
            identity_net = _on_device(build_identity_loss(cfg.loss), accelerator)
            stage = TemporalStep(
                accelerator,
                model,
                update,
                loss_cfg=cfg.loss,
                mediapipe_ids=mediapipe_ids,
                identity_net=identity_net,
            )
        trainer = Trainer(
            cfg,
            accelerator,
            model=model,
            optimizer=optimizer,
            critic=critic,
            loader=loader,
            stage=stage,
            state=state,
            monitor=monitor,
        )
        return trainer.fit()
    finally:
        accelerator.end_training()


def check_settings(cfg: Config) -> None:
    """Refuse settings that cannot train, in one line and before any work.

    Raises:
        UserError: bad counts (``train.grad_accum``, ``max_steps``, ``max_bad_steps``,
            ``n_critic``), an unknown landmark source, a stage that is not implemented, or
            detail-stage settings that cannot run.
    """
    tcfg = cfg.train
    if tcfg.grad_accum < 1 or tcfg.max_steps < 0 or tcfg.max_bad_steps < 1 or tcfg.n_critic < 1:
        raise UserError(
            "train.grad_accum, train.max_bad_steps and train.n_critic must be >= 1, max_steps >= 0"
        )
    landmark_point_weights(cfg.loss)  # an unknown landmark source
    if tcfg.stage not in IMPLEMENTED_STAGES:
        raise UserError(
            f"train.stage={tcfg.stage!r} is not implemented yet; choose one of {IMPLEMENTED_STAGES}"
        )
    if tcfg.stage == "detail":
        check_detail_settings(cfg)


def make_accelerator(cfg: Config, run_dir: Path) -> Accelerator:
    """Accelerator of the run: CPU when ``run.device == "cpu"``, ``train.mixed_precision``,
    ``train.grad_accum`` and TensorBoard logging into ``run_dir``.

    DDP looks for unused parameters: which terms exist depends on the batch (e.g. the AU head
    gets no gradient in a batch without AU labels or proxies).
    """
    return Accelerator(
        cpu=cfg.run.device == "cpu",
        mixed_precision=cfg.train.mixed_precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with="tensorboard",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)),
    )


def load_checkpoint(accelerator: Accelerator, path: Path, state: TrainState) -> None:
    """Validate and ``load_state`` a checkpoint (restores ``state`` through registration).

    Every pickle in it is read with ``weights_only=True`` (see
    :func:`~seqdeca.train.state.load_state_strictly`).

    Raises:
        CheckpointError: one line when the folder is incomplete, corrupt or does not fit.
        UnsafeFileError: a file in it asks for anything but data.
    """
    expected = check_checkpoint(path)
    load_state_strictly(accelerator, path)
    if state.step != expected["step"]:
        raise CheckpointError(
            f"checkpoint {path}: train state step {state.step} != "
            f"{expected['step']} in its train_state.json"
        )


def _build(cfg: Config) -> tuple:
    """Seeded model, optimizer, loader and critic of the configured stage (before ``prepare``).

    Returns:
        ``(model, optimizer, loader, critic)``; ``critic`` (:class:`Critic`) is None outside the
        detail stage and without an adversarial loss (built after the model, so the model's
        initial weights do not depend on the stage).
    """
    stage = cfg.train.stage
    set_seed(cfg.run.seed)
    model = build_model(cfg)
    if cfg.train.init_from:
        load_initial_weights(model, cfg.train.init_from, modules=cfg.train.init_modules)
    model.set_stage(stage)
    model.train()
    critic = None
    if stage == "detail":
        module = build_critic(cfg, model) if uses_critic(cfg.loss) else None
        if module is not None:
            module.train()
        critic_params = None if module is None else module.parameters()
        optimizer, critic_optimizer = build_gan_optimizers(
            model.trainable_parameters(stage), critic_params, cfg.train
        )
        if module is not None:
            critic = Critic(module=module, optimizer=critic_optimizer)
    else:
        optimizer = build_optimizer(model.trainable_parameters(stage), cfg.train)
    loader = window_loader(
        cfg.data, train=True, seed=cfg.run.seed, crop=cfg.crop, **_ground_truth_users(cfg)
    )
    return model, optimizer, loader, critic


def _ground_truth_users(cfg: Config) -> dict:
    """``ground_truth`` / ``ground_truth_for`` of the training loader: the settings of the stage
    that read ``gt.npz``, if any."""
    if cfg.train.stage != "detail":
        return {"ground_truth": needs_ground_truth(cfg.loss)}
    sources = DetailSources.from_config(cfg.train)
    if not sources.ground_truth:
        return {}
    return {"ground_truth": True, "ground_truth_for": sources.settings()}


def _resume(accelerator: Accelerator, run_dir: Path, resume: str | None, state: TrainState) -> bool:
    """Load the checkpoint that ``resume`` names (see :func:`train`); True when one was loaded."""
    checkpoint = None if resume is None else resolve_resume(run_dir, resume)
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, state)
    elif resume is not None:
        log.info("--resume: no checkpoint in %s yet, starting from scratch", run_dir)
    return checkpoint is not None


def _on_device(net: nn.Module | None, accelerator: Accelerator) -> nn.Module | None:
    """A frozen loss network (not prepared: none of its parameters trains) on the run's device."""
    if net is not None:
        net.to(accelerator.device)
    return net


def _open_run_dir(accelerator: Accelerator, cfg: Config, *, resumed_at: int | None) -> None:
    """Create the run folder and save the resolved config into it (main process). A fresh run
    (``resumed_at`` None) starts ``losses.jsonl`` anew; a resumed one drops the lines past the
    checkpoint's step from it and from ``val.jsonl``: those steps are run, and logged, again."""
    if not accelerator.is_main_process:
        return
    run_dir = Path(cfg.run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    if resumed_at is None:
        (run_dir / LOSS_LOG).unlink(missing_ok=True)
    else:
        trim_log(run_dir / LOSS_LOG, resumed_at)
        trim_log(run_dir / VAL_LOG, resumed_at)
