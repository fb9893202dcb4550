"""What the loop does between optimizer steps besides logging losses: validation, image grids and
exports on request.

* validation every ``train.validate_every`` steps and at the last step
  (:mod:`seqdeca.train.validate`): ``val/*`` TensorBoard scalars, one line per validation in
  ``run_dir/val.jsonl`` and the main figures in the progress bar;
* an image grid every ``train.images_every`` steps and at the last step
  (:mod:`seqdeca.train.images`): ``run_dir/images/step_NNNNNN.png`` and TensorBoard;
* export on request: creating the file ``run_dir/export.request`` makes the loop write the
  current weights as an inference checkpoint after the next step, to the path written on the
  file's first line (relative to ``run_dir``) or, when it is empty, ``run_dir/exports/model_step_NNNNNN.pt``; the request
  file is then removed;
* unreadable training windows (:class:`BadSampleCount`): windows whose files cannot be read are
  dropped from their batch by the collate function; the loop counts them (``bad_samples`` in
  each line of ``losses.jsonl``, the ``data/bad_samples`` TensorBoard scalar) and stops after
  ``train.max_bad_samples`` in a row.

DDP: every process builds the same (small) datasets and calls :meth:`Monitor.after_step` with
the same step, but only the main process runs the unwrapped model (no collective inside); the
others wait for it at one barrier, so nothing can hang on a collective that one process skips.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import Accelerator
from torch import nn

from seqdeca.config.schema import Config, TrainConfig
from seqdeca.data.dataset import WindowBatch
from seqdeca.errors import UserError
from seqdeca.models.detail_sources import detail_sources
from seqdeca.train.images import preview_batch, write_training_images
from seqdeca.train.state import export_model
from seqdeca.train.validate import ValidationSet, make_validation_set, validate

__all__ = ["EXPORT_DIR", "EXPORT_REQUEST", "VAL_LOG", "BadSampleCount", "Monitor"]

log = logging.getLogger(__name__)

VAL_LOG = "val.jsonl"
EXPORT_REQUEST = "export.request"
EXPORT_DIR = "exports"
#: Validation figures shown in the progress bar (when present), with their short names.
_POSTFIX = {"nme_68": "val_nme", "expression_error": "val_exp", "detail_l1": "val_dl1"}


def _due(step: int, every: int, last: int) -> bool:
    return every > 0 and (step % every == 0 or step == last)


@dataclass
class BadSampleCount:
    """Unreadable training windows of this invocation (resuming starts the counts afresh).

    Attributes:
        limit: ``train.max_bad_samples``; a run of this many on one process stops training.
        total: unreadable windows so far (all processes).
        since_step: unreadable windows since the last logged optimizer step (all processes).
        in_a_row: unreadable windows in a row on this process, in loader order.
        last: ``clip_id/file (reason)`` of the newest one on this process.
    """

    limit: int = TrainConfig.max_bad_samples
    total: int = 0
    since_step: int = 0
    in_a_row: int = 0
    last: str = ""

    def observe(self, read_ok: list[bool], notes: list[str]) -> bool:
        """Follow one batch of this process (a flag per window drawn, in order; the notes of
        the unreadable ones); True when a run of ``limit`` unreadable windows was reached."""
        reached = False
        for ok in read_ok:
            self.in_a_row = 0 if ok else self.in_a_row + 1
            reached |= self.in_a_row >= self.limit
        self.last = notes[-1] if notes else self.last
        return reached

    def add(self, count: int) -> None:
        """Count ``count`` unreadable windows (summed over processes)."""
        self.total += count
        self.since_step += count

    def take_step(self) -> int:
        """The count since the previous call (for the step's log line)."""
        count, self.since_step = self.since_step, 0
        return count


@dataclass
class Monitor:
    """Validation, image grids and export requests of one run (see the module docstring).

    Attributes:
        cfg: the run's config.
        run_dir: the run folder.
        vset: the fixed validation windows, or None (validation off).
        preview: the fixed image-grid windows, or None (grids off).
        last_val: the newest validation metrics (empty before the first).
        seconds: wall time spent in :meth:`after_step` so far (left out of throughput figures).
        bad_samples: unreadable training windows seen by the loop.
    """

    cfg: Config
    run_dir: Path
    vset: ValidationSet | None = None
    preview: WindowBatch | None = None
    last_val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    bad_samples: BadSampleCount = field(default_factory=BadSampleCount)

    @classmethod
    def create(cls, cfg: Config, accelerator: Accelerator, *, fresh: bool) -> Monitor:
        """Build the validation set and preview windows (on every process: a bad setting fails
        everywhere alike); a fresh run also clears ``val.jsonl``.

        Raises:
            UserError: validation on without ``data.val_sources``, unusable sources, or
                ``train.max_bad_samples`` < 1.
        """
        if cfg.train.max_bad_samples < 1:
            raise UserError(f"train.max_bad_samples={cfg.train.max_bad_samples} must be >= 1")
        monitor = cls(
            cfg=cfg,
            run_dir=Path(cfg.run.output_dir),
            vset=make_validation_set(cfg),
            preview=preview_batch(cfg),
            bad_samples=BadSampleCount(limit=cfg.train.max_bad_samples),
        )
        if fresh and accelerator.is_main_process:
            (monitor.run_dir / VAL_LOG).unlink(missing_ok=True)
        return monitor

    def postfix(self) -> dict[str, str]:
        """Short validation figures for the progress bar."""
        return {
            short: f"{self.last_val[k]:.4g}" for k, short in _POSTFIX.items() if k in self.last_val
        }

    def after_step(self, accelerator: Accelerator, model: nn.Module, step: int) -> None:
        """Validate, draw and export as due after optimizer step ``step`` (every process calls)."""
        tcfg, start = self.cfg.train, time.perf_counter()
        validate_now = self.vset is not None and _due(step, tcfg.validate_every, tcfg.max_steps)
        images_now = self.preview is not None and _due(step, tcfg.images_every, tcfg.max_steps)
        if accelerator.is_main_process:
            core = accelerator.unwrap_model(model)
            if validate_now:
                self._validate(accelerator, core, step)
            if images_now:
                writer = accelerator.get_tracker("tensorboard", unwrap=True)
                write_training_images(
                    core,
                    self.preview,
                    stage=tcfg.stage,
                    run_dir=self.run_dir,
                    step=step,
                    writer=writer,
                    device=accelerator.device,
                    autocast=accelerator.autocast,
                    sources=detail_sources(self.cfg),
                )
            self._export_if_requested(core, step)
        if validate_now or images_now:
            accelerator.wait_for_everyone()
        self.seconds += time.perf_counter() - start

    def _validate(self, accelerator: Accelerator, core: nn.Module, step: int) -> None:
        metrics = validate(
            core,
            self.vset,
            stage=self.cfg.train.stage,
            device=accelerator.device,
            autocast=accelerator.autocast,
            sources=detail_sources(self.cfg),
        )
        self.last_val = metrics
        accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=step)
        with (self.run_dir / VAL_LOG).open("a") as f:
            f.write(json.dumps({"step": step} | metrics) + "\n")
        log.info(
            "step %d validation: %s", step, " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        )

    def _export_if_requested(self, core: nn.Module, step: int) -> Path | None:
        request = self.run_dir / EXPORT_REQUEST
        if not request.is_file():
            return None
        lines = request.read_text().strip().splitlines()
        target = self.run_dir / EXPORT_DIR / f"model_step_{step:06d}.pt"
        if lines and lines[0].strip():
            target = self.run_dir / Path(lines[0].strip()).expanduser()  # absolute paths stay
        path = export_model(core, self.cfg, target, step=step)
        request.unlink(missing_ok=True)
        log.info("exported the step-%d weights to %s (requested by %s)", step, path, request)
        return path
