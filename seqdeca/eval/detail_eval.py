"""Detail-stage evaluation on clips with ground-truth detail (synthetic clips made with
``synthetic.detail``, :mod:`seqdeca.data.synthetic_detail`).

Per clip, every valid frame goes through the model's detail stage (one frame per window) with
the coarse codes and AU condition the checkpoint was trained with (``train.detail_coarse`` /
``train.detail_condition``, :class:`~seqdeca.models.detail_sources.DetailSources`: a detail
stage trained on the true coarse codes is scored on them too). The predicted displacement is
compared with the true one at the renderer's UV size (:mod:`seqdeca.eval.detail_metrics`):
``displacement_error`` (mm) and ``detail_normal_error`` (degrees, both through the renderer's
detail-normal path on the model's coarse mesh), overall and per wrinkle region
(``displacement_error/forehead``, ...).

AU controllability (:func:`controllability`) sweeps the generator's AU condition for the latent
codes of a few held-out frames (:func:`seqdeca.eval.detail_metrics.au_controllability`); an
unconditioned generator scores 0. For a conditioned generator the per-frame series also hold
the AU condition and the true intensities of each wrinkle pattern, whose correlation
(:func:`seqdeca.eval.detail_condition.condition_correlation`) says whether the condition reads
the AUs of these faces at all.

``zero=True`` scores a zero displacement instead of the prediction (the floor every detail
model must beat), on the same coarse meshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seqdeca.data.clip_files import GROUND_TRUTH_KEYS
from seqdeca.data.synthetic_detail import DETAIL_KEYS, detail_ground_truth, detail_region_masks
from seqdeca.eval.clips import PreparedClip
from seqdeca.eval.detail_condition import condition_series
from seqdeca.eval.detail_metrics import (
    DETAIL_PATTERN_AUS,
    AUControllability,
    Generate,
    au_channels,
    au_controllability,
    coarse_uv_geometry,
    detail_normal_error,
    displacement_error,
)
from seqdeca.models.detail import detail_latent
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.outputs import SeqDECAOutput
from seqdeca.models.seqdeca_model import SeqDECA
from seqdeca.render.shading import sh_shading

__all__ = [
    "DetailFrames",
    "controllability",
    "detail_clip_series",
    "generator_function",
    "has_detail_truth",
    "pooled",
]

#: ITU-R BT.601 luma weights (R, G, B), as (1, 3, 1, 1).
_LUMA = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
#: Lowest grey level a shading ratio divides by (dark texels would turn noise into ratios).
_RATIO_FLOOR = 0.05


def has_detail_truth(clip: PreparedClip) -> bool:
    """Whether the clip's gt.npz holds ground-truth detail (and the AU intensities it follows)."""
    return clip.gt is not None and all(k in clip.gt for k in (*DETAIL_KEYS, "au_intensity"))


@dataclass(frozen=True)
class DetailFrames:
    """What a clip's detail evaluation keeps besides its metrics (for pictures and sweeps).

    Attributes:
        frames: (F,) indices of the kept frames.
        latent: (F, D) the generator's latent codes of those frames.
        condition: (F, K) their AU conditions.
        input_uv: (F, 3, H, W) the input unwrapped into UV, [0, 1].
        predicted_shading: (F, 1, H, W) grey SH shading of the predicted detail normals over
            that of a zero displacement (same path, mesh and light): 1 where the detail changes
            nothing, the wrinkles' shading around it.
        true_shading: (F, 1, H, W) the same for the true displacement.
    """

    frames: torch.Tensor
    latent: torch.Tensor
    condition: torch.Tensor
    input_uv: torch.Tensor
    predicted_shading: torch.Tensor
    true_shading: torch.Tensor


def _uv_masks(model: SeqDECA, size: int, device: torch.device) -> tuple[torch.Tensor, dict]:
    face = model.uv_detail_mask(torch.zeros((), device=device))
    regions = {
        k: torch.from_numpy(v).to(device)
        for k, v in detail_region_masks(model.face_model, size).items()
    }
    return face, regions


def _gt_batch(clip: PreparedClip, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 1, ...) per-frame gt.npz arrays of the frames ``rows`` (one frame per window), those
    a training batch carries."""
    return {k: clip.gt[k][rows][:, None] for k in GROUND_TRUTH_KEYS if k in clip.gt}


def detail_clip_series(
    model: SeqDECA,
    clip: PreparedClip,
    *,
    sources: DetailSources,
    device: str | torch.device,
    batch_size: int = 16,
    zero: bool = False,
    keep: int = 0,
) -> tuple[dict[str, torch.Tensor], DetailFrames | None]:
    """Per-frame detail errors of one clip (module docstring).

    Args:
        model: the model, in eval mode, on ``device``.
        clip: a clip with :func:`has_detail_truth`.
        sources: where the detail stage's coarse codes and AU condition come from.
        batch_size: frames per forward pass.
        zero: score a zero displacement instead of the prediction.
        keep: keep this many evenly spaced valid frames for :class:`DetailFrames` (0: none).

    Returns:
        ``{key: (T,) tensor}`` (NaN on invalid frames): "displacement_error" (mm),
        "detail_normal_error" (degrees) and their "/<region>" values, and for a conditioned
        generator (also with ``zero``: the condition the model would give) the AU condition
        and truth of each pattern (:func:`seqdeca.eval.detail_condition.condition_series`);
        and the kept frames.
    """
    size = model.renderer.uv_size[0]
    face, regions = _uv_masks(model, size, torch.device(device))
    fixed = model._fixed_displacement()
    conditioned = model.detail_generator.au_dim > 0
    truth = torch.from_numpy(detail_ground_truth({k: v.numpy() for k, v in clip.gt.items()}, size))
    valid = torch.nonzero(clip.valid).flatten()
    kept_rows = valid[torch.linspace(0, len(valid) - 1, keep).round().long()] if keep else valid[:0]
    series: dict[str, torch.Tensor] = {}
    kept: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(valid), batch_size):
        rows = valid[start : start + batch_size]
        images = clip.frames[rows][:, None].to(device)
        kwargs = sources.forward_kwargs(_gt_batch(clip, rows), model.layout)
        with torch.no_grad():
            out = model(images, None, "detail", **kwargs)
            pred = out.detail.displacement[:, 0, 0]  # (B, H, W)
            pred = torch.zeros_like(pred) if zero else pred
            true = truth[rows].to(pred)
            vertices = out.decoded.vertices[:, 0]
            uv_vertices, uv_normals = coarse_uv_geometry(model.renderer, vertices)
            errors = displacement_error(pred, true, face_mask=face, regions=regions)
            errors |= detail_normal_error(
                pred,
                true,
                uv_vertices=uv_vertices,
                uv_normals=uv_normals,
                face_mask=face,
                regions=regions,
                detail_mask=face,
                fixed_displacement=fixed,
            )
            if conditioned:
                errors |= condition_series(
                    out.detail.au_condition[:, 0],
                    clip.gt["au_intensity"][rows].to(pred),
                    model.au_condition_names,
                    DETAIL_PATTERN_AUS,
                )
            for key, values in errors.items():
                full = series.setdefault(key, torch.full((len(clip.valid),), float("nan")))
                full[rows] = values.float().cpu()
            chosen = torch.isin(rows, kept_rows)
            if chosen.any():
                kept.append(_kept(model, out, pred, true, rows, chosen, fixed, face))
    if not kept:
        return series, None
    merged = {k: torch.cat([d[k] for d in kept]) for k in kept[0]}
    return series, DetailFrames(**merged)


def _kept(
    model: SeqDECA,
    out: SeqDECAOutput,
    pred: torch.Tensor,
    true: torch.Tensor,
    rows: torch.Tensor,
    chosen: torch.Tensor,
    fixed: torch.Tensor | None,
    face: torch.Tensor,
) -> dict:
    """The :class:`DetailFrames` fields of the ``chosen`` frames of one batch."""
    light = out.light[:, 0][chosen]
    vertices = out.decoded.vertices[:, 0][chosen]

    def grey_shading(disp: torch.Tensor) -> torch.Tensor:  # (F, H, W) -> (F, 1, H, W)
        normals = model.renderer.detail_normal_map(disp[:, None], vertices, face, fixed)
        return (sh_shading(normals, light) * _LUMA.to(light)).sum(1, keepdim=True)

    flat = grey_shading(torch.zeros_like(pred[chosen])).clamp_min(_RATIO_FLOOR)
    shading = [(grey_shading(d) / flat).cpu() for d in (pred[chosen], true[chosen])]
    latent = detail_latent(out.jaw_pose[:, 0], out.expression[:, 0], out.detail.detail_code[:, 0])
    return {
        "frames": rows[chosen].cpu(),
        "latent": latent[chosen].cpu(),
        "condition": out.detail.au_condition[:, 0][chosen].cpu(),
        "input_uv": out.detail.uv_input[:, 0][chosen].clamp(0, 1).cpu(),
        "predicted_shading": shading[0],
        "true_shading": shading[1],
    }


def generator_function(model: SeqDECA) -> Generate:
    """The model's detail generator (eval mode) as ``generate(latent, condition)``; an
    unconditioned generator ignores the condition."""
    generator = model.detail_generator.eval()
    conditioned = generator.au_dim > 0

    def generate(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return generator(z, c if conditioned else None)

    return generate


def controllability(
    model: SeqDECA, latent: torch.Tensor, *, steps: int = 5, shuffles: int = 2, seed: int = 0
) -> AUControllability | None:
    """AU controllability of the model's generator for ``latent`` (N, D) codes (module
    docstring), at the generator's own output size; None when the condition has none of the
    wrinkle patterns' AUs. The other AU channels are held at 0."""
    generator = model.detail_generator.eval()
    names = model.au_condition_names
    channels = au_channels(DETAIL_PATTERN_AUS, names)
    if not channels:
        return None
    size = generator.uv_size
    device = next(generator.parameters()).device
    regions = {
        k: torch.from_numpy(v).to(device)
        for k, v in detail_region_masks(model.face_model, size).items()
    }
    return au_controllability(
        generator_function(model),
        latent.to(device),
        regions,
        channels,
        au_dim=len(names),
        steps=steps,
        shuffles=shuffles,
        seed=seed,
    )


def pooled(series: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """NaN-mean of every key over the frames of all clips."""
    keys = sorted({k for s in series for k in s})
    out = {}
    for key in keys:
        values = torch.cat([s[key] for s in series if key in s])
        finite = values[torch.isfinite(values)]
        out[key] = float(finite.mean()) if len(finite) else float(np.nan)
    return out
