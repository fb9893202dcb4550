"""PNG pictures of the detail stage: detail shading next to the truth, and AU sweep grids.

The caller renders the images (these functions only lay them out), except
:func:`sweep_highpass_cells`, which runs a detail generator over an AU sweep. Like
:mod:`seqdeca.evaluation.plots`, drawing uses matplotlib's object API (``Figure`` + Agg canvas, no
global backend switched); without matplotlib nothing is written and a warning says so.

Images are tensors or arrays, ``(F, H, W)``, ``(F, H, W, 3)``, ``(F, 1, H, W)`` or
``(F, 3, H, W)``; RGB and grey images are shown in [0, 1] (clipped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from seqdeca.eval.detail_metrics import MM_PER_METRE, Generate, au_sweep, highpass

__all__ = ["sweep_highpass_cells", "write_au_sweep_grid", "write_detail_comparison"]

log = logging.getLogger(__name__)

_CELL_INCHES = 1.8


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning(
            "matplotlib is not installed: no detail pictures written (pip install matplotlib)"
        )
        return False
    return True


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _images(images: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """(F, H, W), (F, H, W, C) or (F, C, H, W) with C in {1, 3} -> (F, H, W) or (F, H, W, 3)."""
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else images
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
        raise ValueError(f"{name} must be (F, H, W[, 3]) or (F, 1|3, H, W), got {arr.shape}")
    return arr


def _show_unit(ax, image: np.ndarray) -> None:
    """An RGB or grey image in [0, 1] on an axis without ticks."""
    if image.ndim == 3:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    else:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def write_detail_comparison(
    inputs: torch.Tensor | np.ndarray,
    predicted: torch.Tensor | np.ndarray,
    true: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    frame_labels: Sequence[str] | None = None,
    titles: Sequence[str] = ("input", "predicted detail shading", "true detail shading"),
) -> Path | None:
    """One row per frame: input | predicted detail shading | true detail shading.

    Args:
        inputs: (F, ...) input crops in [0, 1].
        predicted: (F, ...) predicted detail shading (e.g. ``uv_shading`` or a detail render).
        true: (F, ...) the same view of the true displacement.
        path: PNG file (folder created).
        frame_labels: optional F row labels (e.g. "frame 12").
        titles: the three column titles.

    Returns:
        ``path``, or None when matplotlib is missing.
    """
    columns = [
        _images(x, n) for x, n in ((inputs, "inputs"), (predicted, "predicted"), (true, "true"))
    ]
    frames = columns[0].shape[0]
    if any(c.shape[0] != frames for c in columns):
        raise ValueError(f"frame counts differ: {[c.shape[0] for c in columns]}")
    if frame_labels is not None and len(frame_labels) != frames:
        raise ValueError(f"{len(frame_labels)} frame labels for {frames} frames")
    if not _have_matplotlib():
        return None
    fig = _figure(3 * _CELL_INCHES, frames * _CELL_INCHES + 0.3)
    axes = fig.subplots(frames, 3, squeeze=False)
    for f in range(frames):
        for c, column in enumerate(columns):
            _show_unit(axes[f][c], column[f])
            if f == 0:
                axes[f][c].set_title(titles[c], fontsize=8)
        if frame_labels is not None:
            axes[f][0].set_ylabel(frame_labels[f], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_au_sweep_grid(
    cells: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    patterns: Sequence[str],
    intensities: Sequence[float],
    unit: str = "mm",
    title: str | None = None,
) -> Path | None:
    """A GANimation-style sweep grid: rows = AU patterns, columns = commanded intensity.

    Args:
        cells: (P, S, H, W) maps (e.g. :func:`sweep_highpass_cells`), drawn with a diverging
            colour map symmetric about 0 and shared by all cells (one colour bar in ``unit``);
            or (P, S, H, W, 3) RGB images in [0, 1] (e.g. rendered shading), drawn as they are.
        path: PNG file (folder created).
        patterns: the P row labels.
        intensities: the S column intensities.
        unit: colour bar label of single-channel cells.
        title: optional figure title.

    Returns:
        ``path``, or None when matplotlib is missing.
    """
    arr = cells.detach().float().cpu().numpy() if isinstance(cells, torch.Tensor) else cells
    arr = np.asarray(arr, dtype=np.float32)
    rgb = arr.ndim == 5 and arr.shape[-1] == 3
    if not (arr.ndim == 4 or rgb) or arr.shape[:2] != (len(patterns), len(intensities)):
        raise ValueError(
            f"cells {arr.shape} must be ({len(patterns)}, {len(intensities)}, H, W[, 3])"
        )
    if not _have_matplotlib():
        return None
    rows, cols = arr.shape[:2]
    fig = _figure(cols * _CELL_INCHES + (0 if rgb else 0.8), rows * _CELL_INCHES + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = float(np.nanmax(np.abs(arr))) if arr.size and not rgb else 0.0
    limit = limit if limit > 0 else 1.0
    shown = None
    for p in range(rows):
        for s in range(cols):
            ax = axes[p][s]
            if rgb:
                _show_unit(ax, arr[p, s])
            else:
                shown = ax.imshow(
                    arr[p, s], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
                )
                ax.set_xticks([])
                ax.set_yticks([])
            if p == 0:
                ax.set_title(f"{intensities[s]:.2f}", fontsize=8)
        axes[p][0].set_ylabel(patterns[p], fontsize=8)
    if shown is not None:
        fig.colorbar(shown, ax=[a for row in axes for a in row], shrink=0.8, label=unit)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def sweep_highpass_cells(
    generate: Generate,
    latent: torch.Tensor,
    au_of_region: Mapping[str, Sequence[int]],
    *,
    base_condition: torch.Tensor,
    steps: int = 5,
    sigma: float | None = None,
) -> torch.Tensor:
    """High-pass displacement of one latent code over each pattern's AU sweep, for the grid.

    Args:
        generate: ``(N, D), (N, K) -> (N, 1, H, W)`` displacement, metres (eval mode).
        latent: (1, D) the fixed latent code.
        au_of_region: pattern -> AU channel indices (rows, in order).
        base_condition: (1, K) the other channels.
        steps: S intensities ``linspace(0, 1, S)`` (columns).
        sigma: high-pass sigma in texels (None: the metric's default).

    Returns:
        (P, S, H, W) high-pass displacement in mm.
    """
    if latent.shape[0] != 1:
        raise ValueError(f"expected one latent code (1, D), got {tuple(latent.shape)}")
    rows = []
    for channels in au_of_region.values():
        maps = au_sweep(generate, latent, channels, base_condition=base_condition, steps=steps)
        rows.append(highpass(maps[:, 0], sigma=sigma) * MM_PER_METRE)  # (S, H, W)
    return torch.stack(rows).cpu()
