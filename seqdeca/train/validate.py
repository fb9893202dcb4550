"""Validation during training: the evaluation metrics on fixed held-out windows.

:func:`make_validation_set` indexes ``data.val_sources`` in evaluation order (no augmentation)
and keeps ``train.val_windows`` windows evenly spread over them, so every validation of a run
(and of a resumed run) sees the same windows. :func:`validate` runs the unwrapped model on them
in eval mode under ``no_grad`` and returns NaN-free means over the valid frames, computed with
:mod:`seqdeca.eval.metrics` (the evaluation's functions, with the evaluation's units;
docs/design.md, "Metrics"):

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
import torch.nn.functional as F

from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.dataset import SequenceDataset, WindowBatch, WindowCollator
from seqdeca.errors import UserError
from seqdeca.eval import metrics as M
from seqdeca.eval.clip_metrics import mediapipe_targets
from seqdeca.face_model.layer import FlameParams
from seqdeca.models.au_head import select_affwild2
from seqdeca.models.detail_sources import DetailSources, detail_sources
from seqdeca.models.seqdeca_model import SeqDECA

__all__ = [
    "ValidationSet",
    "evaluating",
    "evaluation_dataset",
    "make_validation_set",
    "spread_indices",
    "validate",
]

_DEGREES = 180.0 / math.pi
_MEDIAPIPE_POINTS = 478  # tracked clips hold all MediaPipe points, indexed by MediaPipe id
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
    return SequenceDataset(sources=list(sources), window=cfg.data.window, train=False,
                           seed=cfg.run.seed, image_size=cfg.crop.size, ground_truth=bool(needs),
                           ground_truth_for=needs)  # fmt: skip


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
            batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
            collate_fn=WindowCollator(self.dataset.clip_ids),
            generator=torch.Generator().manual_seed(0),  # leaves the global RNG alone
        )  # fmt: skip
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
            truth.append({k: torch.from_numpy(gt[k].astype(np.float32))
                          for k in _GT_KEYS if k in gt.files})  # fmt: skip
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
        dataset=dataset, indices=spread_indices(len(dataset), cfg.train.val_windows),
        batch_size=max(1, cfg.data.batch_size), num_workers=cfg.data.num_workers,
        truth=_read_truth(dataset),
    )  # fmt: skip


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


def _masked(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, values, torch.full_like(values, float("nan")))


def _resized(x: torch.Tensor, size: tuple[int, int], *, mask: bool = False) -> torch.Tensor:
    """(B, T, C, H, W) resized to ``size``: bilinear images, or area + threshold masks."""
    b = x.shape[0]
    flat = x.flatten(0, 1).float()
    if tuple(flat.shape[-2:]) != tuple(size):
        if mask:
            flat = (F.interpolate(flat, size=size, mode="area") > 0.5).float()
        else:
            flat = F.interpolate(flat, size=size, mode="bilinear", antialias=True,
                                 align_corners=False)  # fmt: skip
    return flat.unflatten(0, (b, -1))


def _photometric(pool: _Pool, prefix: str, render: torch.Tensor, batch: WindowBatch) -> None:
    """Masked L1 / PSNR (and SSIM for the coarse render) of (B, T, 3, H, W) against the input."""
    size = tuple(render.shape[-2:])
    image = _resized(batch.images, size)
    mask = _resized((batch.masks > 0)[:, :, None], size, mask=True)
    render = render.float().clamp(0, 1)
    pool.add(f"{prefix}l1", _masked(M.masked_l1(render, image, mask), batch.valid))
    pool.add(f"{prefix}psnr", _masked(M.masked_psnr(render, image, mask), batch.valid))
    if not prefix:
        pool.add("ssim", _masked(M.masked_ssim(render, image, mask), batch.valid))


def _landmarks(pool: _Pool, out: dict, batch: WindowBatch, mediapipe_ids: torch.Tensor | None):
    """NMEs and landmark acceleration (model's MediaPipe set when it has one, else the 68)."""
    valid = batch.valid
    pool.add("nme_68", M.landmark_nme(out["landmarks68"], batch.landmarks68,
                                      M.IBUG68_OUTER_EYE_CORNERS, valid))  # fmt: skip
    b, t = valid.shape
    matched = None
    if "landmarks_mp" in out and batch.landmarks.shape[-2] == _MEDIAPIPE_POINTS:
        matched = mediapipe_targets(batch.landmarks.flatten(0, 1), mediapipe_ids)
    if matched is not None:
        target, corners = matched[0].unflatten(0, (b, t)), matched[1]
        pool.add("nme_mp", M.landmark_nme(out["landmarks_mp"], target, corners, valid))
        pred = out["landmarks_mp"]
    else:
        pred, target, corners = out["landmarks68"], batch.landmarks68, M.IBUG68_OUTER_EYE_CORNERS
    pred_n, target_n = M.normalise_landmarks(pred, corners), M.normalise_landmarks(target, corners)
    for k in range(b):
        pool.add("accel_landmarks", 100.0 * M.acceleration(pred_n[k], valid[k]))
        pool.add("accel_landmarks_input", 100.0 * M.acceleration(target_n[k], valid[k]))
        head = M.remove_global_pose(out["vertices"][k], out["pose"][k, :, :3])
        pool.add("accel_vertices", 1000.0 * M.acceleration(head, valid[k]))


def _ground_truth(
    pool: _Pool, out: dict, model: SeqDECA, truth: list, windows: np.ndarray, batch: WindowBatch
) -> None:
    """Expression / jaw / vertex error of the windows that come from synthetic clips."""
    t = batch.valid.shape[1]
    for k, (number, start) in enumerate(windows.tolist()):
        gt = truth[number]
        if gt is None or "expression" not in gt:
            continue
        gt = {name: v[start : start + t].to(out["expression"].device) for name, v in gt.items()}
        valid = batch.valid[k]
        pred_exp, gt_exp = out["expression"][k], gt["expression"]
        e = max(pred_exp.shape[-1], gt_exp.shape[-1])
        error = M.code_error(F.pad(pred_exp, (0, e - pred_exp.shape[-1])),
                             F.pad(gt_exp, (0, e - gt_exp.shape[-1])))  # fmt: skip
        pool.add("expression_error", _masked(error, valid))
        if "jaw_pose" in gt:
            jaw = M.code_error(out["jaw_pose"][k], gt["jaw_pose"]) * _DEGREES
            pool.add("jaw_error", _masked(jaw, valid))
        fm = model.face_model
        if all(n in gt for n in _GT_KEYS) and gt["shape"].shape[-1] <= fm.num_shape \
                and gt_exp.shape[-1] <= fm.num_expression:  # fmt: skip
            mesh = fm(FlameParams(shape=gt["shape"], expression=gt_exp,
                                  global_pose=gt["global_pose"], jaw_pose=gt["jaw_pose"]))  # fmt: skip
            error = M.vertex_error_mm(
                M.remove_global_pose(out["vertices"][k], out["pose"][k, :, :3]),
                M.remove_global_pose(mesh.vertices, gt["global_pose"]),
            )
            pool.add("vertex_error", _masked(error, valid))


def _detail_render(model: SeqDECA, out: dict) -> torch.Tensor:
    """(B, T, 3, H, W) the coarse render's albedo and light shaded with the detail normals."""
    b = out["vertices"].shape[0]
    albedo = out["albedo"].flatten(0, 1) if "albedo" in out else None
    image = model.renderer(
        out["vertices"].flatten(0, 1), out["cam"].flatten(0, 1), light=out["light"].flatten(0, 1),
        albedo=albedo, detail_normals=out["detail_normals"].flatten(0, 1),
    ).image  # fmt: skip
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
            out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
            _landmarks(pool, out, batch, model.face_model.mediapipe_ids)
            _photometric(pool, "", out["render"], batch)
            _ground_truth(pool, out, model, vset.truth, windows, batch)
            if bool((batch.au >= 0).any()):
                labels = torch.where(batch.valid[..., None], batch.au, -1.0)  # (B, T, 12)
                au_pred.append(select_affwild2(out["au_intensities"]).flatten(0, 1).cpu())
                au_labels.append(labels.flatten(0, 1).cpu())
            if stage == "detail":
                _photometric(pool, "detail_", _detail_render(model, out), batch)
            frames += int(batch.valid.sum())
    result = pool.means()
    if au_pred:  # F1 over all labelled frames at once (it is not a mean of per-batch F1s)
        f1 = M.au_f1(torch.cat(au_pred), torch.cat(au_labels))  # (12,)
        if bool(torch.isfinite(f1).any()):
            result["au_f1"] = float(torch.nanmean(f1))
    result["frames"] = float(frames)
    return result
