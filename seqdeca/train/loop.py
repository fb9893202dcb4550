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

The detail stage (``train.stage=detail``) adds the AU-conditioned UV critic with its own Adam
(``train.critic_lr``); both models and both optimizers are prepared, so ``save_state`` checkpoints
hold the critic and both optimizers. One step there is ``train.n_critic`` critic updates and one
generator update (:func:`_detail_epoch`, :mod:`seqdeca.train.gan_steps`). With
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

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from tqdm import tqdm

from seqdeca.config.loader import save_config
from seqdeca.config.schema import Config
from seqdeca.data.dataset import WindowBatch, training_window_lengths, window_loader
from seqdeca.errors import UserError
from seqdeca.losses.optional import build_id_mrf_loss, build_identity_loss
from seqdeca.losses.weights import landmark_point_weights, needs_ground_truth, uses_critic
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.from_config import build_critic, build_model
from seqdeca.train.detail_setup import GanParts, build_gan_parts, check_detail_settings, penalty_rng
from seqdeca.train.gan_steps import critic_step, detail_forward, generator_step
from seqdeca.train.monitor import VAL_LOG, BadSampleCount, Monitor
from seqdeca.train.optim import (
    build_gan_optimizers,
    build_optimizer,
    learning_rate,
    set_learning_rate,
)
from seqdeca.train.state import (
    CheckpointError,
    TrainState,
    check_checkpoint,
    export_model,
    load_initial_weights,
    load_state_strictly,
    prune_checkpoints,
    publish_checkpoint,
    resolve_resume,
    temporary_checkpoint_dir,
    trim_log,
    write_state_json,
)
from seqdeca.train.steps import SkipLog, temporal_step

log = logging.getLogger(__name__)

LOSS_LOG = "losses.jsonl"
IMPLEMENTED_STAGES = ("temporal", "detail")


class TrainingError(UserError):
    """Training cannot go on (e.g. too many non-finite steps in a row)."""


@dataclass
class TrainSummary:
    """What :func:`train` did.

    Attributes:
        run_dir: the run folder.
        steps: optimizer steps done in total (including those of a resumed run).
        skipped_steps: non-finite steps skipped in this invocation.
        last_losses: unweighted terms and "total" of the last step.
        windows_per_s: training windows per second over this invocation (all processes).
        model_path: the exported inference checkpoint.
        saved_step: step of the newest checkpoint written or resumed from (-1: none).
        main_process: False on the other processes of a multi-process run (they stay quiet).
        last_val: metrics of the newest validation (empty when validation is off).
        step_marks: ``(training seconds since the first step started, windows so far)`` after
            each step of this invocation (all processes; validation and image time left out;
            for throughput without the warm-up steps).
    """

    run_dir: Path
    steps: int
    skipped_steps: int
    last_losses: dict[str, float] = field(default_factory=dict)
    windows_per_s: float = 0.0
    model_path: Path | None = None
    saved_step: int = -1
    main_process: bool = True
    last_val: dict[str, float] = field(default_factory=dict)
    step_marks: list[tuple[float, int]] = field(default_factory=list)
    bad_samples: int = 0  # unreadable windows dropped in this invocation (all processes)

    def windows_per_s_after(self, warmup: int) -> float:
        """Windows per second over the steps after the first ``warmup`` of this invocation."""
        if len(self.step_marks) <= warmup:
            return float("nan")
        t0, w0 = self.step_marks[warmup - 1] if warmup else (0.0, 0)
        t1, w1 = self.step_marks[-1]
        return (w1 - w0) / max(t1 - t0, 1e-9)


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


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: TrainState, keep: int) -> Path:
    """Atomic ``save_state`` into ``run_dir/checkpoints/step_NNNNNN``; keeps the newest ``keep``."""
    tmp, final = temporary_checkpoint_dir(run_dir, state.step)
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_state_json(tmp, state)
        publish_checkpoint(tmp, final)
        prune_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()
    return final


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
        raise CheckpointError(f"checkpoint {path}: train state step {state.step} != "
                              f"{expected['step']} in its train_state.json")  # fmt: skip


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True when ``flag`` is set on any process (every process must call this)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def _skip_unreadable(
    accelerator: Accelerator, cfg: Config, state: TrainState, batch: WindowBatch,
    count: BadSampleCount,
) -> bool:  # fmt: skip
    """Count the unreadable windows dropped from ``batch``; True when the batch of some process
    has no window left (every process then skips this batch: no forward, no optimizer step).

    Raises:
        TrainingError: ``train.max_bad_samples`` unreadable windows in a row on some process.
    """
    reached = count.observe(batch.read_ok, batch.unreadable)
    flags = [float(not batch.clip_ids), float(reached), float(batch.bad_samples)]
    if accelerator.num_processes > 1:  # one collective: every process decides alike
        total = accelerator.reduce(torch.tensor(flags, device=accelerator.device), reduction="sum")
        flags = total.tolist()
    empty, reached_somewhere, dropped = flags
    count.add(int(dropped))
    if reached_somewhere:
        raise TrainingError(
            f"training stopped at step {state.step}: {cfg.train.max_bad_samples} unreadable "
            f"training windows in a row (last: {count.last or 'on another process'}); prepare "
            "those clips again or leave them out of data.sources, or raise train.max_bad_samples"
        )
    if empty:
        state.batches_in_epoch += 1  # consumed: a resumed run skips it too
    return bool(empty)


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _build(cfg: Config) -> tuple:
    """Seeded model, optimizer(s) and loader of the configured stage (before ``prepare``).

    Returns:
        ``(model, optimizer, loader, critic, critic_optimizer)``; the last two are None outside
        the detail stage (built after the model, so the model's initial weights do not depend
        on the stage).
    """
    stage = cfg.train.stage
    if stage not in IMPLEMENTED_STAGES:
        raise UserError(
            f"train.stage={stage!r} is not implemented yet; choose one of {IMPLEMENTED_STAGES}"
        )
    set_seed(cfg.run.seed)
    model = build_model(cfg)
    if cfg.train.init_from:
        load_initial_weights(model, cfg.train.init_from, modules=cfg.train.init_modules)
    model.set_stage(stage)
    model.train()
    critic = critic_optimizer = None
    if stage == "detail":
        if uses_critic(cfg.loss):
            critic = build_critic(cfg, model)
            critic.train()
        critic_params = None if critic is None else critic.parameters()
        optimizer, critic_optimizer = build_gan_optimizers(
            model.trainable_parameters(stage), critic_params, cfg.train
        )
    else:
        optimizer = build_optimizer(model.trainable_parameters(stage), cfg.train)
    loader = window_loader(cfg.data, train=True, seed=cfg.run.seed, crop=cfg.crop,
                           **_ground_truth_users(cfg))  # fmt: skip
    return model, optimizer, loader, critic, critic_optimizer


def _ground_truth_users(cfg: Config) -> dict:
    """``ground_truth`` / ``ground_truth_for`` of the training loader: the settings of the stage
    that read ``gt.npz``, if any."""
    if cfg.train.stage != "detail":
        return {"ground_truth": needs_ground_truth(cfg.loss)}
    sources = DetailSources.from_config(cfg.train)
    if not sources.ground_truth:
        return {}
    return {"ground_truth": True, "ground_truth_for": sources.settings()}


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
    tcfg, run_dir = cfg.train, Path(cfg.run.output_dir)
    if tcfg.grad_accum < 1 or tcfg.max_steps < 0 or tcfg.max_bad_steps < 1 or tcfg.n_critic < 1:
        raise UserError(
            "train.grad_accum, train.max_bad_steps and train.n_critic must be >= 1, max_steps >= 0"
        )
    landmark_point_weights(cfg.loss)  # an unknown landmark source: one line before any work
    if tcfg.stage == "detail":
        check_detail_settings(cfg)
    accelerator = make_accelerator(cfg, run_dir)
    model, optimizer, loader, critic, critic_optimizer = _build(cfg)
    mediapipe_ids = model.face_model.mediapipe_ids
    trainable = model.trainable_parameters(tcfg.stage)
    gan = None
    if critic is None:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    else:
        model, critic, optimizer, critic_optimizer, loader = accelerator.prepare(
            model, critic, optimizer, critic_optimizer, loader
        )
    if tcfg.stage == "detail":
        gan = build_gan_parts(accelerator, cfg, model, critic, critic_optimizer,
                              id_mrf_net=build_id_mrf_loss(cfg.loss))  # fmt: skip
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    checkpoint = None if resume is None else resolve_resume(run_dir, resume)
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, state)
    elif resume is not None:
        log.info("--resume: no checkpoint in %s yet, starting from scratch", run_dir)
        resume = None
    loss_log = run_dir / LOSS_LOG
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        if resume is None:
            loss_log.unlink(missing_ok=True)
        else:  # the steps after the checkpoint are run, and logged, again
            trim_log(loss_log, state.step)
            trim_log(run_dir / VAL_LOG, state.step)
    monitor = Monitor.create(cfg, accelerator, fresh=resume is None)
    accelerator.init_trackers("tb")
    try:
        summary = _run_steps(
            accelerator, cfg, model, optimizer, loader, state, trainable=trainable,
            mediapipe_ids=mediapipe_ids, loss_log=loss_log, gan=gan, monitor=monitor,
        )  # fmt: skip
        if state.step != summary.saved_step:
            save_checkpoint(accelerator, run_dir, state, tcfg.keep_checkpoints)
        if accelerator.is_main_process:
            core = accelerator.unwrap_model(model)
            summary.model_path = export_model(core, cfg, run_dir / "model.pt", step=state.step)
        summary.last_val = monitor.last_val
        accelerator.wait_for_everyone()
    finally:
        accelerator.end_training()
    return summary


def _run_steps(
    accelerator: Accelerator,
    cfg: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader,
    state: TrainState,
    *,
    trainable: list[torch.nn.Parameter],
    mediapipe_ids: torch.Tensor | None,
    loss_log: Path,
    gan: GanParts | None = None,
    monitor: Monitor,
) -> TrainSummary:
    """The step loop from ``state`` to ``train.max_steps`` (see the module docstring)."""
    summary = TrainSummary(run_dir=Path(cfg.run.output_dir), steps=state.step, skipped_steps=0,
                           saved_step=state.step if state.step else -1,
                           main_process=accelerator.is_main_process)  # fmt: skip
    # TQDM_DISABLE is read here: tqdm applies it only when ``disable`` is not passed
    quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")
    bar = tqdm(total=cfg.train.max_steps, initial=state.step, desc="train",
               disable=quiet or not accelerator.is_main_process)  # fmt: skip
    start, windows, skips = time.perf_counter(), [0], SkipLog()
    identity_net = build_identity_loss(cfg.loss) if gan is None else None  # frozen, not prepared
    if identity_net is not None:
        identity_net.to(accelerator.device)
    with bar:  # closed (newline) before an error message is printed
        while state.step < cfg.train.max_steps:
            epoch_loader = _epoch_loader(accelerator, loader, state)
            common = {"bar": bar, "trainable": trainable, "loss_log": loss_log, "summary": summary,
                      "windows": windows, "start": start, "skips": skips, "monitor": monitor}  # fmt: skip
            if gan is None:
                finished = _epoch(accelerator, cfg, model, optimizer, epoch_loader, state,
                                  mediapipe_ids=mediapipe_ids, identity_net=identity_net,
                                  **common)  # fmt: skip
            else:
                finished = _detail_epoch(accelerator, cfg, model, optimizer, gan, epoch_loader,
                                         state, **common)  # fmt: skip
            if finished:
                state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    summary.steps = state.step
    summary.windows_per_s = windows[0] / max(time.perf_counter() - start, 1e-9)
    return summary


def _epoch_loader(
    accelerator: Accelerator, loader: torch.utils.data.DataLoader, state: TrainState
) -> torch.utils.data.DataLoader:
    """The prepared ``loader`` for epoch ``state.epoch``, past its first ``batches_in_epoch``.

    Accelerate's copy calls ``dataset.set_epoch(loader.iteration)`` when iterated, so the epoch
    is set on the prepared loader (its ``iteration``), not only on the dataset: otherwise every
    epoch would replay the plan and augmentation of epoch 0.
    """
    loader.set_epoch(state.epoch)  # also calls loader.dataset.set_epoch(state.epoch)
    loader.dataset.set_epoch(state.epoch)
    return accelerator.skip_first_batches(loader, state.batches_in_epoch)


def _epoch(
    accelerator: Accelerator,
    cfg: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch_loader: torch.utils.data.DataLoader,
    state: TrainState,
    *,
    bar: tqdm,
    trainable: list[torch.nn.Parameter],
    mediapipe_ids: torch.Tensor | None,
    identity_net: torch.nn.Module | None,
    loss_log: Path,
    summary: TrainSummary,
    windows: list[int],
    start: float,
    skips: SkipLog,
    monitor: Monitor,
) -> bool:
    """Steps over (the rest of) one epoch; True when the epoch ran to its end."""
    tcfg, sums, window_bad = cfg.train, {}, False
    for batch in epoch_loader:
        if _skip_unreadable(accelerator, cfg, state, batch, monitor.bad_samples):
            continue
        with accelerator.accumulate(model):
            set_learning_rate(optimizer, learning_rate(state.step, tcfg))
            result = temporal_step(accelerator, model, batch, loss_cfg=cfg.loss,
                                   mediapipe_ids=mediapipe_ids, skips=skips,
                                   identity_net=identity_net)  # fmt: skip
            window_bad |= not result.finite
            _add(sums, result.logged)
            bad = False
            if accelerator.sync_gradients:
                bad = _any_process(accelerator, window_bad)
                if not bad:
                    if tcfg.grad_clip > 0:
                        accelerator.clip_grad_norm_(trainable, tcfg.grad_clip)
                    optimizer.step()
                optimizer.zero_grad()
        state.batches_in_epoch += 1
        windows[0] += batch.images.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        losses = _means(sums)
        sums, window_bad = {}, False
        rates = {"lr": optimizer.param_groups[0]["lr"]}
        if _after_step(accelerator, cfg, state, losses, bad, rates=rates, bar=bar, model=model,
                       loss_log=loss_log, summary=summary, windows=windows, start=start,
                       monitor=monitor):  # fmt: skip
            return False
    return True


def _after_step(
    accelerator: Accelerator,
    cfg: Config,
    state: TrainState,
    losses: dict[str, float],
    bad: bool,
    *,
    rates: dict[str, float],
    bar: tqdm,
    model: torch.nn.Module,
    loss_log: Path,
    summary: TrainSummary,
    windows: list[int],
    start: float,
    monitor: Monitor,
) -> bool:
    """Count and log an optimizer step, validate / draw / export and checkpoint when due; True
    when max_steps is reached."""
    tcfg = cfg.train
    _finish_step(accelerator, cfg, state, losses, bad, loss_log, summary,
                 bad_samples=monitor.bad_samples.take_step())  # fmt: skip
    elapsed = max(time.perf_counter() - start - monitor.seconds, 1e-9)  # training time only
    summary.step_marks.append((elapsed, windows[0]))
    if accelerator.is_main_process and (
        state.step % max(1, tcfg.log_every) == 0 or state.step == tcfg.max_steps
    ):
        scalars = {f"loss/{k}": v for k, v in losses.items()} | rates
        scalars["throughput/windows_per_s"] = windows[0] / elapsed
        scalars["data/bad_samples"] = monitor.bad_samples.total
        lengths = training_window_lengths(cfg.data.window, cfg.data.min_window)
        scalars["throughput/frames_per_s"] = windows[0] * sum(lengths) / len(lengths) / elapsed
        accelerator.log(scalars, step=state.step)
    bar.update(1)
    monitor.after_step(accelerator, model, state.step)
    bar.set_postfix(loss=f"{losses.get('total', float('nan')):.4g}", **monitor.postfix())
    if tcfg.checkpoint_every > 0 and state.step % tcfg.checkpoint_every == 0:
        save_checkpoint(accelerator, Path(cfg.run.output_dir), state, tcfg.keep_checkpoints)
        summary.saved_step = state.step
    return state.step >= tcfg.max_steps


def _add(sums: dict[str, float], logged: dict[str, torch.Tensor], prefix: str = "") -> None:
    for k, v in logged.items():
        sums[prefix + k] = sums.get(prefix + k, 0.0) + float(v)
    sums["_batches"] = sums.get("_batches", 0.0) + 1


def _means(sums: dict[str, float]) -> dict[str, float]:
    n = sums.pop("_batches", 1.0)
    return {k: v / n for k, v in sums.items()}


def _detail_epoch(
    accelerator: Accelerator,
    cfg: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    gan: GanParts,
    epoch_loader: torch.utils.data.DataLoader,
    state: TrainState,
    *,
    bar: tqdm,
    trainable: list[torch.nn.Parameter],
    loss_log: Path,
    summary: TrainSummary,
    windows: list[int],
    start: float,
    skips: SkipLog,
    monitor: Monitor,
) -> bool:
    """Detail-stage steps over (the rest of) one epoch; True when the epoch ran to its end.

    One step (``state.step``) = ``train.n_critic`` critic optimizer steps of ``grad_accum``
    batches each; the generator trains on the batches of the last of them (GANimation trains
    G every n_critic-th batch). Both models are inside one ``accumulate(model, critic)``. A
    non-finite critic update is skipped alone; the step counts as bad when any of its critic
    updates or its generator update was. Critic terms are logged with a ``D_`` prefix
    (averaged over the step's batches); the generator's under their own names and "total".
    Without a critic a step is one generator update of ``grad_accum`` batches. Checkpoints fall
    on step boundaries, so a resumed run starts a fresh cycle.
    """
    core_critic = None if gan.critic is None else accelerator.unwrap_model(gan.critic)
    n_critic = 1 if gan.critic is None else cfg.train.n_critic
    models = (model,) if gan.critic is None else (model, gan.critic)
    for batch in epoch_loader:
        if _skip_unreadable(accelerator, cfg, state, batch, monitor.bad_samples):
            continue
        generator_batch = gan.critic_steps == n_critic - 1
        with accelerator.accumulate(*models):
            set_learning_rate(optimizer, learning_rate(state.step, cfg.train))
            out = detail_forward(accelerator, model, batch.images, batch.valid,
                                 with_grad=generator_batch,
                                 given=gan.sources.forward_kwargs(batch.gt, gan.layout))  # fmt: skip
            if gan.critic is not None:
                result = critic_step(accelerator, gan.critic, out, loss_cfg=cfg.loss,
                                     generator=penalty_rng(cfg, state.step, gan, accelerator))  # fmt: skip
                gan.critic_bad |= not result.finite
                _add(gan.critic_sums, result.logged, "D_")
            gan.cycle_batches += 1
            if generator_batch:
                result = generator_step(accelerator, out, core_critic, gan.uv_mask,
                                        parameters=trainable, loss_cfg=cfg.loss, skips=skips,
                                        id_mrf_net=gan.id_mrf_net)  # fmt: skip
                gan.generator_bad |= not result.finite
                _add(gan.generator_sums, result.logged)
            step_done, bad = False, False
            if accelerator.sync_gradients:
                step_done, bad = _detail_updates(accelerator, cfg, gan, optimizer, trainable,
                                                 n_critic=n_critic)  # fmt: skip
        state.batches_in_epoch += 1
        windows[0] += batch.images.shape[0] * accelerator.num_processes
        if not step_done:
            continue
        losses = _means(gan.generator_sums) | _means(gan.critic_sums)
        gan.reset_cycle()
        rates = {"lr": optimizer.param_groups[0]["lr"]}
        if gan.optimizer is not None:
            rates["lr_critic"] = gan.optimizer.param_groups[0]["lr"]
        if _after_step(accelerator, cfg, state, losses, bad, rates=rates, bar=bar, model=model,
                       loss_log=loss_log, summary=summary, windows=windows, start=start,
                       monitor=monitor):  # fmt: skip
            return False
    return True


def _detail_updates(
    accelerator: Accelerator, cfg: Config, gan: GanParts, optimizer: torch.optim.Optimizer,
    trainable: list[torch.nn.Parameter], *, n_critic: int,
) -> tuple[bool, bool]:  # fmt: skip
    """The optimizer steps due when gradients are synchronised: the critic's (unless its loss
    was non-finite), then, after the cycle's ``n_critic``-th, the generator's.

    Returns:
        ``(step_done, bad)``: whether the generator's step (the loop's step) is over, and
        whether it counts as bad (a non-finite critic or generator loss in its cycle).
    """
    if gan.optimizer is not None:
        critic_bad = _any_process(accelerator, gan.critic_bad)
        if not critic_bad:
            gan.optimizer.step()
        gan.optimizer.zero_grad()
        gan.cycle_bad |= critic_bad
    gan.critic_bad, gan.critic_steps = False, gan.critic_steps + 1
    if gan.critic_steps < n_critic:
        return False, False
    bad = _any_process(accelerator, gan.generator_bad) or gan.cycle_bad
    if not bad:
        if cfg.train.grad_clip > 0:
            accelerator.clip_grad_norm_(trainable, cfg.train.grad_clip)
        optimizer.step()
    optimizer.zero_grad()
    return True, bad


def _finish_step(
    accelerator: Accelerator,
    cfg: Config,
    state: TrainState,
    losses: dict[str, float],
    bad: bool,
    loss_log: Path,
    summary: TrainSummary,
    *,
    bad_samples: int = 0,
) -> None:
    """Count the step, log its losses (and the unreadable windows dropped since the previous
    step) and stop after ``train.max_bad_steps`` bad ones in a row."""
    state.step += 1
    state.bad_steps = state.bad_steps + 1 if bad else 0
    summary.last_losses = losses
    summary.skipped_steps += int(bad)
    summary.bad_samples += bad_samples
    if accelerator.is_main_process:
        record = {"step": state.step, "epoch": state.epoch, "skipped": bad,
                  "bad_samples": bad_samples} | losses  # fmt: skip
        _append_jsonl(loss_log, record)
    if bad:
        log.warning("step %d: non-finite loss %s; step skipped (%d in a row)",
                    state.step, losses, state.bad_steps)  # fmt: skip
    if state.bad_steps >= cfg.train.max_bad_steps:
        terms = sorted(k for k, v in losses.items() if not torch.isfinite(torch.tensor(v)))
        raise TrainingError(
            f"training stopped at step {state.step}: {state.bad_steps} non-finite losses in a row "
            f"(terms {terms}); lower train.lr, check the data, or resume from an earlier checkpoint "
            f"in {Path(cfg.run.output_dir) / 'checkpoints'}"
        )
