"""Validation during training: the evaluation metrics on fixed held-out windows.

:func:`make_validation_set` indexes ``data.val_sources`` in evaluation order (no augmentation)
and keeps ``train.val_windows`` windows evenly spread over them, so every validation of a run
(and of a resumed run) sees the same windows. :func:`validate` runs the unwrapped model on them
in eval mode under ``no_grad`` and returns NaN-free means over the valid frames of the series of
:func:`seqdeca.eval.clip_metrics.frame_series` (the evaluation's path, with the evaluation's
units; docs/design.md, "Metrics"):

| key | what | unit |
| --- | --- | --- |
| nme_68 / nme_mp | landmark NME of the iBUG-68 / MediaPipe points | % inter-ocular |
| l1 / psnr / ssim | coarse render vs input inside the face mask | [0,1] / dB / - |
| accel_landmarks | acceleration of the normalised landmarks | % IOD / frame^2 |
| accel_landmarks_input | the same figure for the reference landmarks | % IOD / frame^2 |
| accel_vertices | acceleration of the pose-removed mesh | mm / frame^2 |
| expression_error, jaw_error, vertex_error | synthetic clips (``gt.npz``) only | -, deg, mm |
| au_f1 | mean F1 at 0.5 over the Aff-Wild2 AUs with labels | - |
| detail_l1 / detail_psnr | detail stage: render shaded with the detail normals | [0,1] / dB |

Temporal figures need windows of at least 3 frames. Validation draws no random numbers (its
loader has its own generator), so training losses do not depend on whether it runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.dataset import SequenceDataset, WindowBatch, WindowCollator
from seqdeca.errors import UserError
from seqdeca.eval import metrics as M
from seqdeca.eval.clip_metrics import (
    ClipPrediction,
    frame_series,
    masked_image_series,
    model_prediction,
    truth_series,
    window_reference,
)
from seqdeca.face_model.layer import FlameParams
from seqdeca.models.au_head import select_affwild2
from seqdeca.models.detail_sources import DetailSources, detail_sources
from seqdeca.models.outputs import SeqDECAOutput
from seqdeca.models.seqdeca_model import SeqDECA

__all__ = [
    "ValidationSet",
    "evaluating",
    "evaluation_dataset",
    "make_validation_set",
    "spread_indices",
    "validate",
]

#: Ground-truth arrays of ``gt.npz`` that validation reads.
_GT_KEYS = ("shape", "expression", "global_pose", "jaw_pose")


def spread_indices(total: int, count: int) -> np.ndarray:
    """``count`` distinct indices evenly spread over ``range(total)`` (all when count <= 0)."""
    if count <= 0 or count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def evaluation_dataset(cfg: Config, sources: list[DataSourceConfig]) -> SequenceDataset:
    """Every window of ``sources`` in order, not augmented (``data.window`` frames each), with
    ``gt.npz`` when the detail stage's sources need it (refused in one line where missing)."""
    detail = detail_sources(cfg)
    needs = "" if detail is None else detail.settings()
    return SequenceDataset(
        sources=list(sources),
        window=cfg.data.window,
        train=False,
        seed=cfg.run.seed,
        image_size=cfg.crop.size,
        ground_truth=bool(needs),
        ground_truth_for=needs,
    )


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode and ``no_grad`` inside the block; the previous mode is restored after it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


@dataclass
class ValidationSet:
    """Fixed held-out windows.

    Attributes:
        dataset: the evaluation-order dataset of ``data.val_sources``.
        indices: (W,) the selected window indices, in order.
        batch_size: windows per forward pass.
        num_workers: DataLoader workers.
        truth: per clip number, its ``gt.npz`` arrays (T, ...) or None (real clips).
    """

    dataset: SequenceDataset
    indices: np.ndarray
    batch_size: int
    num_workers: int
    truth: list[dict[str, torch.Tensor] | None]

    def batches(self) -> Iterator[tuple[WindowBatch, np.ndarray]]:
        """``(batch, windows)`` in order; ``windows`` (B, 2) = (clip number, start frame)."""
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.dataset, self.indices.tolist()),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=WindowCollator(self.dataset.clip_ids),
            generator=torch.Generator().manual_seed(0),  # leaves the global RNG alone
        )
        rows = self.dataset.windows[self.dataset.plan[self.indices]]
        for k, batch in enumerate(loader):
            yield batch, rows[k * self.batch_size : k * self.batch_size + len(batch.clip_ids)]


def _read_truth(dataset: SequenceDataset) -> list[dict[str, torch.Tensor] | None]:
    truth: list[dict[str, torch.Tensor] | None] = []
    for clip in dataset.clips:
        path = clip.path / "gt.npz"
        if not path.is_file():
            truth.append(None)
            continue
        with np.load(path) as gt:
            truth.append(
                {k: torch.from_numpy(gt[k].astype(np.float32)) for k in _GT_KEYS if k in gt.files}
            )
    return truth


def make_validation_set(cfg: Config) -> ValidationSet | None:
    """The fixed validation windows of ``cfg`` (None when ``train.validate_every`` is 0).

    Raises:
        UserError: validation is on but ``data.val_sources`` is empty (or holds no window).
    """
    if cfg.train.validate_every <= 0:
        return None
    if not cfg.data.val_sources:
        raise UserError(
            f"train.validate_every={cfg.train.validate_every} needs held-out clips: set "
            "data.val_sources (e.g. 'data.val_sources=[{root: outputs/val}]') or validate_every=0"
        )
    dataset = evaluation_dataset(cfg, cfg.data.val_sources)
    return ValidationSet(
        dataset=dataset,
        indices=spread_indices(len(dataset), cfg.train.val_windows),
        batch_size=max(1, cfg.data.batch_size),
        num_workers=cfg.data.num_workers,
        truth=_read_truth(dataset),
    )


class _Pool:
    """Per-frame (or per-window) values by metric name; NaN-aware means at the end."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, values: torch.Tensor) -> None:
        self.values.setdefault(name, []).append(values.detach().float().reshape(-1).cpu())

    def means(self) -> dict[str, float]:
        out = {}
        for name, parts in self.values.items():
            value = float(torch.nanmean(torch.cat(parts))) if parts else float("nan")
            if math.isfinite(value):
                out[name] = value
        return out


#: Series of :func:`~seqdeca.eval.clip_metrics.frame_series` that validation reports, by frame.
_FRAME_KEYS = ("nme_68", "nme_mp")
#: Temporal series (NaN at the ends of a window): their centre frames 1..T-2 are pooled.
_MOTION_KEYS = ("accel_landmarks", "accel_landmarks_input", "accel_vertices")
_IMAGE_KEYS = ("l1", "psnr", "ssim")
_TRUTH_KEYS = ("expression_error", "jaw_error", "vertex_error")


def _add(
    pool: _Pool,
    series: dict[str, torch.Tensor],
    keys: tuple[str, ...],
    prefix: str = "",
    centre: bool = False,
) -> None:
    for name in keys:
        if name in series:
            pool.add(prefix + name, series[name][..., 1:-1] if centre else series[name])


def _ground_truth(
    pool: _Pool,
    pred: ClipPrediction,
    model: SeqDECA,
    truth: list,
    windows: np.ndarray,
    batch: WindowBatch,
) -> None:
    """Expression / jaw / vertex error of the windows that come from synthetic clips."""
    t = batch.valid.shape[1]
    for k, (number, start) in enumerate(windows.tolist()):
        gt = truth[number]
        if gt is None or "expression" not in gt:
            continue
        gt = {name: v[start : start + t].to(pred.expression.device) for name, v in gt.items()}
        fm, mesh = model.face_model, None
        if (
            all(n in gt for n in _GT_KEYS)
            and gt["shape"].shape[-1] <= fm.num_shape
            and gt["expression"].shape[-1] <= fm.num_expression
        ):
            mesh = fm(
                FlameParams(
                    shape=gt["shape"],
                    expression=gt["expression"],
                    global_pose=gt["global_pose"],
                    jaw_pose=gt["jaw_pose"],
                )
            )
        series = truth_series(
            pred.window(k), gt, batch.valid[k], gt_vertices=None if mesh is None else mesh.vertices
        )
        _add(pool, series, _TRUTH_KEYS)


def _detail_render(model: SeqDECA, out: SeqDECAOutput) -> torch.Tensor:
    """(B, T, 3, H, W) the coarse render's albedo and light shaded with the detail normals."""
    decoded, detail = out.decoded, out.detail
    b = decoded.vertices.shape[0]
    albedo = decoded.albedo.flatten(0, 1) if decoded.albedo is not None else None
    image = model.renderer(
        decoded.vertices.flatten(0, 1),
        out.cam.flatten(0, 1),
        light=out.light.flatten(0, 1),
        albedo=albedo,
        detail_normals=detail.detail_normals.flatten(0, 1),
    ).image
    return image.unflatten(0, (b, -1))


def validate(
    model: SeqDECA,
    vset: ValidationSet,
    *,
    stage: str,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    sources: DetailSources | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` (unwrapped) on the validation windows; see the module docstring.

    Args:
        model: the :class:`SeqDECA` (not DDP-wrapped: no collective runs here).
        vset: :func:`make_validation_set`.
        stage: "temporal" or "detail" (the detail stage adds detail_l1 / detail_psnr).
        device: where the model is.
        autocast: mixed-precision context factory (e.g. ``accelerator.autocast``), or None.
        sources: the detail stage's coarse codes and AU condition (None: the model's own);
            with ground-truth coarse codes the coarse figures compare the truth with itself.

    Returns:
        metric name -> mean over the valid frames (metrics without a finite value are left out),
        plus "frames" (valid frames seen).
    """
    pool, frames = _Pool(), 0
    au_pred: list[torch.Tensor] = []
    au_labels: list[torch.Tensor] = []
    with evaluating(model):
        for batch, windows in vset.batches():
            batch = batch.to(device)
            given = {} if sources is None else sources.forward_kwargs(batch.gt, model.layout)
            with autocast() if autocast is not None else contextlib.nullcontext():
                out = model(batch.images, batch.valid, stage, **given)
            out = out.map_tensors(lambda v: v.float() if v.is_floating_point() else v)
            pred, ref = model_prediction(out), window_reference(batch)
            series = frame_series(
                pred, ref, mediapipe_ids=model.face_model.mediapipe_ids, input_motion=True
            )
            _add(pool, series, _FRAME_KEYS)
            _add(pool, series, _MOTION_KEYS, centre=True)
            _add(pool, series, _IMAGE_KEYS)
            _ground_truth(pool, pred, model, vset.truth, windows, batch)
            if bool((batch.au >= 0).any()):
                labels = torch.where(batch.valid[..., None], batch.au, -1.0)  # (B, T, 12)
                au_pred.append(select_affwild2(out.fused.au_intensities).flatten(0, 1).cpu())
                au_labels.append(labels.flatten(0, 1).cpu())
            if stage == "detail":
                detail = masked_image_series(_detail_render(model, out), ref, ssim=False)
                _add(pool, detail, _IMAGE_KEYS, prefix="detail_")
            frames += int(batch.valid.sum())
    result = pool.means()
    if au_pred:  # F1 over all labelled frames at once (it is not a mean of per-batch F1s)
        f1 = M.au_f1(torch.cat(au_pred), torch.cat(au_labels))  # (12,)
        if bool(torch.isfinite(f1).any()):
            result["au_f1"] = float(torch.nanmean(f1))
    result["frames"] = float(frames)
    return result
