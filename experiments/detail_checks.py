"""Checks of the detail stage's training signal, without training a network (used by
experiments/detail_ablation.py: ``--photometric-check``, ``--signal-check``).

Both run on every third frame of the first training clips with the TRUE coarse codes, in the
detail stage's UV size:

* :func:`photometric_check` scores the generator's photometric terms at given displacements
  (zero, the true map, twice it, its negative): training can only find the truth if a term is
  lowest there.
* :func:`signal_check` fits a free displacement map per frame (no encoder, no generator) to the
  detail contrast term plus ``z_reg`` and scores it against the truth: if even a free map does
  not approach the truth, the signal is at fault, not the networks that must produce it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from seqdeca.data.clip_files import GROUND_TRUTH_KEYS
from seqdeca.data.synthetic_detail import detail_ground_truth
from seqdeca.eval.clips import load_clip
from seqdeca.eval.detail_metrics import highpass
from seqdeca.losses.detail import uv_photometric_loss
from seqdeca.models.critic import contrast_loss_mask, observed_contrast, shading_contrast
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.seqdeca_model import SeqDECA
from seqdeca.render.resize import resize_maps
from seqdeca.render.shading import sh_shading

__all__ = ["photometric_check", "signal_check"]


class CheckFrames(NamedTuple):
    """One clip's checked frames (N of them) in UV at the detail stage's size S.

    truth: (N, S, S) true displacement; face: (S, S) UV face mask; albedo: (N, 3, S, S);
    seen: (N, 1, S, S) face x visible; compared: (N, 1, S, S) the contrast term's region;
    coarse_shading: (N, 3, S, S); real: (N, 1, S, S) the photo's detail contrast;
    uv_input: (N, 3, S, S); vertices: (N, V, 3); light: (N, 9, 3).
    """

    truth: torch.Tensor
    face: torch.Tensor
    albedo: torch.Tensor
    seen: torch.Tensor
    compared: torch.Tensor
    coarse_shading: torch.Tensor
    real: torch.Tensor
    uv_input: torch.Tensor
    vertices: torch.Tensor
    light: torch.Tensor


def _frames(model: SeqDECA, path: Path, device: str) -> CheckFrames:
    clip = load_clip(path)
    rows = torch.arange(0, len(clip.valid), 3)
    gt = {k: clip.gt[k][rows][:, None] for k in GROUND_TRUTH_KEYS if k in clip.gt}
    size = model.renderer.uv_size[0]
    arrays = {k: v.numpy() for k, v in clip.gt.items()}
    truth = torch.from_numpy(detail_ground_truth(arrays, size))[rows].to(device)
    given = DetailSources(coarse="ground_truth").forward_kwargs(gt, model.layout)
    with torch.no_grad():
        o = model(clip.frames[rows][:, None].to(device), None, "detail", **given)
    face = model.uv_detail_mask(truth)
    albedo = resize_maps(o.decoded.albedo[:, 0], (size, size), mode="bilinear", antialias=False)
    seen = face[None, None] * o.detail.uv_visible_mask[:, 0]
    coarse = o.detail.uv_coarse_shading[:, 0]
    uv_input = o.detail.uv_input[:, 0]
    return CheckFrames(
        truth=truth,
        face=face,
        albedo=albedo,
        seen=seen,
        compared=contrast_loss_mask(seen, albedo),
        coarse_shading=coarse,
        real=observed_contrast(uv_input, albedo, coarse, seen),
        uv_input=uv_input,
        vertices=o.decoded.vertices[:, 0],
        light=o.light[:, 0],
    )


def _shading(model: SeqDECA, f: CheckFrames, displacement: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) SH shading of the detail normals of a (N, S, S) displacement."""
    normals = model.renderer.detail_normal_map(
        displacement[:, None], f.vertices, f.face, model._fixed_displacement()
    )
    return sh_shading(normals, f.light)


def _contrast_term(model: SeqDECA, f: CheckFrames, displacement: torch.Tensor) -> torch.Tensor:
    fake = shading_contrast(_shading(model, f, displacement), f.coarse_shading, f.seen)
    return uv_photometric_loss(fake, f.real, f.compared, None)


def photometric_check(
    model: SeqDECA, clips: list[Path], out: Path, device: str = "cpu"
) -> dict[str, float]:
    """The UV photometric L1 and the detail contrast term at the displacements zero, true,
    2 x true and -true, averaged over ``clips`` (OUT/photometric_check.json)."""
    losses: dict[str, list[float]] = {}
    for path in clips:
        f = _frames(model, path, device)
        maps = {"zero": 0 * f.truth, "true": f.truth, "2 x true": 2 * f.truth, "-true": -f.truth}
        with torch.no_grad():
            for name, displacement in maps.items():
                shaded = f.albedo * _shading(model, f, displacement)
                l1 = uv_photometric_loss(shaded, f.uv_input, f.seen, None)
                losses.setdefault(name, []).append(float(l1))
                contrast = _contrast_term(model, f, displacement)
                losses.setdefault(f"contrast {name}", []).append(float(contrast))
    result = {k: float(np.mean(v)) for k, v in losses.items()}
    (out / "photometric_check.json").write_text(json.dumps(result, indent=1))
    print("[photometric check] " + ", ".join(f"{k}: {v:.5f}" for k, v in result.items()))
    return result


def _errors_mm(displacement: torch.Tensor, f: CheckFrames) -> dict[str, float]:
    """Mean |d - truth| and mean |highpass(d) - highpass(truth)| in the face mask, in mm."""
    face = f.face.bool()
    error = (displacement - f.truth).abs()[:, face]
    high = (highpass(displacement) - highpass(f.truth)).abs()[:, face]
    return {"error_mm": 1000 * float(error.mean()), "highpass_error_mm": 1000 * float(high.mean())}


def signal_check(
    model: SeqDECA,
    clips: list[Path],
    out: Path,
    *,
    contrast: float,
    z_reg: float,
    steps: int = 300,
    device: str = "cpu",
) -> dict[str, float]:
    """Fit a free (N, S, S) displacement per frame to ``contrast`` x the detail contrast term +
    ``z_reg`` x mean |d| (Adam, ``steps`` steps, from zero) and score the zero map, the fitted
    map and the truth against the truth (OUT/signal_check.json; errors in mm)."""
    scores: dict[str, list[float]] = {}
    for path in clips:
        f = _frames(model, path, device)
        free = torch.zeros_like(f.truth, requires_grad=True)  # in units of 0.1 mm
        optimizer = torch.optim.Adam([free], lr=0.05)
        for _ in range(steps):
            displacement = 1e-4 * free
            loss = contrast * _contrast_term(model, f, displacement)
            loss = loss + z_reg * displacement.abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        fitted = (1e-4 * free).detach()
        with torch.no_grad():
            for name, displacement in (("zero", 0 * f.truth), ("fitted", fitted)):
                for key, value in _errors_mm(displacement, f).items():
                    scores.setdefault(f"{name} {key}", []).append(value)
                term = float(_contrast_term(model, f, displacement))
                scores.setdefault(f"{name} contrast", []).append(term)
            scores.setdefault("true contrast", []).append(float(_contrast_term(model, f, f.truth)))
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    (out / "signal_check.json").write_text(json.dumps(result, indent=1))
    print("[signal check] " + ", ".join(f"{k}: {v:.5f}" for k, v in result.items()))
    return result
