"""The training loop of every stage: epochs, gradient accumulation, skipped batches and steps,
logging, validation and checkpoints (:class:`Trainer`; :func:`seqdeca.train.loop.train` builds
it). What a batch does is the stage's step object (:mod:`seqdeca.train.stages`).
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
from tqdm import tqdm

from seqdeca.config.schema import Config
from seqdeca.data.dataset import WindowBatch, training_window_lengths
from seqdeca.errors import UserError
from seqdeca.train.detail_setup import Critic
from seqdeca.train.monitor import BadSampleCount, Monitor
from seqdeca.train.optim import learning_rate, set_learning_rate
from seqdeca.train.stages import DetailStep, StepLosses, TemporalStep
from seqdeca.train.state import (
    TrainState,
    export_model,
    prune_checkpoints,
    publish_checkpoint,
    temporary_checkpoint_dir,
    write_state_json,
)

__all__ = [
    "LOSS_LOG",
    "TrainSummary",
    "Trainer",
    "TrainingError",
    "epoch_loader",
    "save_checkpoint",
    "skip_unreadable",
]

log = logging.getLogger(__name__)

LOSS_LOG = "losses.jsonl"


class TrainingError(UserError):
    """Training cannot go on (e.g. too many non-finite steps in a row)."""


@dataclass
class TrainSummary:
    """What :func:`~seqdeca.train.loop.train` did.

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
        bad_samples: unreadable windows dropped in this invocation (all processes).
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
    bad_samples: int = 0

    def windows_per_s_after(self, warmup: int) -> float:
        """Windows per second over the steps after the first ``warmup`` of this invocation."""
        if len(self.step_marks) <= warmup:
            return float("nan")
        t0, w0 = self.step_marks[warmup - 1] if warmup else (0.0, 0)
        t1, w1 = self.step_marks[-1]
        return (w1 - w0) / max(t1 - t0, 1e-9)


class Trainer:
    """One stage's run from ``state.step`` to ``train.max_steps``.

    Args:
        cfg: the resolved config of the run.
        accelerator: the run's accelerator (trackers started).
        model: the prepared :class:`~seqdeca.models.SeqDECA`.
        optimizer: the model's prepared optimizer (its rate follows
            :func:`~seqdeca.train.optim.learning_rate`).
        critic: the detail stage's prepared critic and optimizer, or None.
        loader: the prepared training window loader.
        stage: what a batch does (:class:`TemporalStep` or :class:`DetailStep`).
        state: the train state (registered for checkpointing; restored when resuming).
        monitor: validation, image grids, export requests and unreadable-window counts.
    """

    def __init__(
        self,
        cfg: Config,
        accelerator: Accelerator,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        critic: Critic | None,
        loader: torch.utils.data.DataLoader,
        stage: TemporalStep | DetailStep,
        state: TrainState,
        monitor: Monitor,
    ) -> None:
        self.cfg, self.accelerator, self.model, self.optimizer = cfg, accelerator, model, optimizer
        self.critic, self.loader, self.stage, self.state = critic, loader, stage, state
        self.monitor = monitor
        self.run_dir = Path(cfg.run.output_dir)
        self.summary = TrainSummary(
            run_dir=self.run_dir,
            steps=state.step,
            skipped_steps=0,
            saved_step=state.step if state.step else -1,
            main_process=accelerator.is_main_process,
        )
        self.windows = 0  # training windows so far (all processes)
        self.started = time.perf_counter()

    def fit(self) -> TrainSummary:
        """Train to ``train.max_steps``, then write a last checkpoint and ``model.pt``."""
        tcfg, state = self.cfg.train, self.state
        # TQDM_DISABLE is read here: tqdm applies it only when ``disable`` is not passed
        quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")
        self.bar = tqdm(
            total=tcfg.max_steps,
            initial=state.step,
            desc="train",
            disable=quiet or not self.accelerator.is_main_process,
        )
        with self.bar:  # closed (newline) before an error message is printed
            while state.step < tcfg.max_steps:
                if self.run_epoch(epoch_loader(self.accelerator, self.loader, state)):
                    state.epoch, state.batches_in_epoch = state.epoch + 1, 0
        self.summary.steps = state.step
        self.summary.windows_per_s = self.windows / max(time.perf_counter() - self.started, 1e-9)
        if state.step != self.summary.saved_step:
            self.save_checkpoint()
        if self.accelerator.is_main_process:
            core = self.accelerator.unwrap_model(self.model)
            self.summary.model_path = export_model(
                core, self.cfg, self.run_dir / "model.pt", step=state.step
            )
        self.summary.last_val = self.monitor.last_val
        self.accelerator.wait_for_everyone()
        return self.summary

    def run_epoch(self, batches: torch.utils.data.DataLoader) -> bool:
        """Steps over (the rest of) one epoch; True when the epoch ran to its end."""
        accelerator, state, tcfg = self.accelerator, self.state, self.cfg.train
        for batch in batches:
            if skip_unreadable(accelerator, state, batch, self.monitor.bad_samples):
                continue
            with accelerator.accumulate(*self.stage.models):
                set_learning_rate(self.optimizer, learning_rate(state.step, tcfg))
                self.stage.backward(batch)
                finished = self.stage.optimize() if accelerator.sync_gradients else None
            state.batches_in_epoch += 1
            self.windows += batch.images.shape[0] * accelerator.num_processes
            if finished is None:
                continue
            self.end_step(finished)
            if state.step >= tcfg.max_steps:
                return False
        return True

    def end_step(self, finished: StepLosses) -> None:
        """Count and log a finished step; validate, draw, export and checkpoint when due."""
        self.count_step(finished, bad_samples=self.monitor.bad_samples.take_step())
        elapsed = max(time.perf_counter() - self.started - self.monitor.seconds, 1e-9)
        self.summary.step_marks.append((elapsed, self.windows))  # training time only
        self.log_scalars(finished.losses, elapsed)
        self.bar.update(1)
        self.monitor.after_step(self.accelerator, self.model, self.state.step)
        loss = finished.losses.get("total", float("nan"))
        self.bar.set_postfix(loss=f"{loss:.4g}", **self.monitor.postfix())
        every = self.cfg.train.checkpoint_every
        if every > 0 and self.state.step % every == 0:
            self.save_checkpoint()

    def count_step(self, finished: StepLosses, *, bad_samples: int) -> None:
        """Count the step, write its ``losses.jsonl`` line (with the unreadable windows dropped
        since the previous step) and stop after ``train.max_bad_steps`` skipped in a row.

        Raises:
            TrainingError: ``train.max_bad_steps`` non-finite steps in a row.
        """
        state, summary, losses, bad = self.state, self.summary, finished.losses, finished.skipped
        state.step += 1
        state.bad_steps = state.bad_steps + 1 if bad else 0
        summary.last_losses = losses
        summary.skipped_steps += int(bad)
        summary.bad_samples += bad_samples
        if self.accelerator.is_main_process:
            record = {
                "step": state.step,
                "epoch": state.epoch,
                "skipped": bad,
                "bad_samples": bad_samples,
            } | losses
            with (self.run_dir / LOSS_LOG).open("a") as f:
                f.write(json.dumps(record) + "\n")
        if bad:
            log.warning(
                "step %d: non-finite loss %s; step skipped (%d in a row)",
                state.step,
                losses,
                state.bad_steps,
            )
        if state.bad_steps >= self.cfg.train.max_bad_steps:
            terms = sorted(k for k, v in losses.items() if not torch.isfinite(torch.tensor(v)))
            raise TrainingError(
                f"training stopped at step {state.step}: {state.bad_steps} non-finite losses in "
                f"a row (terms {terms}); lower train.lr, check the data, or resume from an "
                f"earlier checkpoint in {self.run_dir / 'checkpoints'}"
            )

    def log_scalars(self, losses: dict[str, float], elapsed: float) -> None:
        """TensorBoard scalars every ``train.log_every`` steps and at the last (main process)."""
        tcfg, step = self.cfg.train, self.state.step
        if not self.accelerator.is_main_process or (
            step % max(1, tcfg.log_every) != 0 and step != tcfg.max_steps
        ):
            return
        scalars = {f"loss/{k}": v for k, v in losses.items()}
        scalars["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.critic is not None:
            scalars["lr_critic"] = self.critic.optimizer.param_groups[0]["lr"]
        scalars["throughput/windows_per_s"] = self.windows / elapsed
        scalars["data/bad_samples"] = self.monitor.bad_samples.total
        lengths = training_window_lengths(self.cfg.data.window, self.cfg.data.min_window)
        scalars["throughput/frames_per_s"] = self.windows * sum(lengths) / len(lengths) / elapsed
        self.accelerator.log(scalars, step=step)

    def save_checkpoint(self) -> None:
        save_checkpoint(self.accelerator, self.run_dir, self.state, self.cfg.train.keep_checkpoints)
        self.summary.saved_step = self.state.step


def epoch_loader(
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


def skip_unreadable(
    accelerator: Accelerator, state: TrainState, batch: WindowBatch, count: BadSampleCount
) -> bool:
    """Count the unreadable windows dropped from ``batch``; True when the batch of some process
    has no window left (every process then skips this batch: no forward, no optimizer step; it
    counts as consumed in ``state.batches_in_epoch``).

    Raises:
        TrainingError: ``count.limit`` (``train.max_bad_samples``) unreadable windows in a row on
            some process.
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
            f"training stopped at step {state.step}: {count.limit} unreadable training windows "
            f"in a row (last: {count.last or 'on another process'}); prepare those clips again or "
            "leave them out of data.sources, or raise train.max_bad_samples"
        )
    if empty:
        state.batches_in_epoch += 1  # consumed: a resumed run skips it too
    return bool(empty)


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
