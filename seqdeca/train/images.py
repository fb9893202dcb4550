"""Image grids during training: what the model makes of a few fixed windows.

Every ``train.images_every`` steps the main process runs the unwrapped model (eval mode,
``no_grad``) on :func:`preview_batch`'s fixed windows and writes the centre frame of each window
as one row of :func:`seqdeca.vis.training_grid.training_grid` (input | coarse render | shape |
detail shape | UV displacement | landmarks) to ``run_dir/images/step_NNNNNN.png`` and to
TensorBoard (tag ``images``). The detail columns appear in the detail stage; the detail shape is
:meth:`Renderer.render_shape` shaded with the generated detail normals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from seqdeca.config.schema import Config
from seqdeca.data.dataset import WindowBatch, collate_windows
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.seqdeca_model import SeqDECA
from seqdeca.train.validate import evaluating, evaluation_dataset, spread_indices
from seqdeca.vis.grid import save_png
from seqdeca.vis.training_grid import GridFrames, training_grid

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["IMAGE_DIR", "PREVIEW_ROWS", "grid_frames", "preview_batch", "write_training_images"]

IMAGE_DIR = "images"
PREVIEW_ROWS = 4  # frames (rows) per grid


def preview_batch(cfg: Config, rows: int = PREVIEW_ROWS) -> WindowBatch | None:
    """``rows`` fixed windows evenly spread over ``data.val_sources`` (else ``data.sources``),
    not augmented; None when ``train.images_every`` is 0."""
    if cfg.train.images_every <= 0:
        return None
    dataset = evaluation_dataset(cfg, cfg.data.val_sources or cfg.data.sources)
    return collate_windows(
        [dataset[int(i)] for i in spread_indices(len(dataset), rows)], dataset.clip_ids
    )


def grid_frames(
    model: SeqDECA,
    batch: WindowBatch,
    *,
    stage: str,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    sources: DetailSources | None = None,
) -> GridFrames:
    """The model's outputs for the centre frame of every window of ``batch`` (B rows); the
    detail stage's coarse codes and AU condition from ``sources`` (None: the model's own)."""
    batch = batch.to(device)
    centre = batch.images.shape[1] // 2
    given = {} if sources is None else sources.forward_kwargs(batch.gt, model.layout)
    with evaluating(model), autocast() if autocast is not None else contextlib.nullcontext():
        out = model(batch.images, batch.valid, stage, render_shape=True, **given)
        out = out.map_tensors(lambda v: v[:, centre].float() if v.is_floating_point() else v)
        frames = GridFrames(
            images=batch.images[:, centre],
            render=out.decoded.render.clamp(0, 1),
            shape=out.decoded.shape_image,
            landmarks=out.decoded.landmarks68,
            target_landmarks=batch.landmarks68[:, centre],
        )
        if out.detail is not None:  # the detail stage
            frames.detail_shape = model.renderer.render_shape(
                out.decoded.vertices, out.cam, detail_normals=out.detail.detail_normals
            )
            frames.displacement = out.detail.displacement
    return frames


def write_training_images(
    model: SeqDECA,
    batch: WindowBatch,
    *,
    stage: str,
    run_dir: str | Path,
    step: int,
    writer: SummaryWriter | None = None,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    sources: DetailSources | None = None,
) -> Path:
    """Write the grid of ``batch`` to ``run_dir/images/step_NNNNNN.png`` (and TensorBoard).

    Args:
        model: the unwrapped :class:`SeqDECA`.
        batch: :func:`preview_batch`.
        stage: "temporal" or "detail".
        run_dir: the run folder.
        step: optimizer step (file name and TensorBoard step).
        writer: a ``SummaryWriter`` to add the grid to (tag "images"), or None.
        sources: see :func:`grid_frames`.

    Returns:
        The PNG path.
    """
    frames = grid_frames(
        model, batch, stage=stage, device=device, autocast=autocast, sources=sources
    )
    grid, _ = training_grid(frames)
    path = save_png(grid, Path(run_dir) / IMAGE_DIR / f"step_{step:06d}.png")
    if writer is not None:
        writer.add_image("images", grid, step, dataformats="HWC")
    return path
