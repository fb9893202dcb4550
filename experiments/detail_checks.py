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
  With ``pooled`` it also fits the structure of the truth: per clip one static map plus one
  pattern map per wrinkle AU, each frame's map their sum weighted by the frame's true AU
  intensities, jointly over the clip's frames (what a generator could learn from many frames).
  With ``matched`` it also scores and fits two contrast terms that take the candidate map through
  the photo's own path (:func:`_matched_term`, :func:`_offset_term`), so that what rendering
  and unwrapping do to a face without detail cancels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.data.clip_files import GROUND_TRUTH_KEYS
from seqdeca.data.synthetic_detail import CENTRE_AUS, detail_ground_truth
from seqdeca.eval.clips import load_clip
from seqdeca.eval.detail_metrics import highpass
from seqdeca.losses.detail import uv_photometric_loss
from seqdeca.models.critic import contrast_loss_mask, observed_contrast, shading_contrast
from seqdeca.models.detail_path import PhotoPath, flat_path_offset, path_contrast, photo_path
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
    uv_input: (N, 3, S, S); vertices: (N, V, 3); light: (N, 9, 3);
    drive: (N, A) the true intensities of the A wrinkle AUs (:data:`CENTRE_AUS`), in [0, 1];
    photo: (N, 3, H, W) the frames, [0, 1] RGB; cam: (N, 3); texture: (N, 3, Ht, Wt) the true UV
    albedo at the face model's size, clipped to [0, 1] as the clips were rendered (or None).
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
    drive: torch.Tensor
    photo: torch.Tensor
    cam: torch.Tensor
    texture: torch.Tensor | None


def _frames(model: SeqDECA, path: Path, device: str, stride: int = 3) -> CheckFrames:
    """Every ``stride``-th frame of the clip at ``path``."""
    clip = load_clip(path)
    rows = torch.arange(0, len(clip.valid), stride)
    gt = {k: clip.gt[k][rows][:, None] for k in GROUND_TRUTH_KEYS if k in clip.gt}
    size = model.renderer.uv_size[0]
    photo = clip.frames[rows].to(device)
    arrays = {k: v.numpy() for k, v in clip.gt.items()}
    truth = torch.from_numpy(detail_ground_truth(arrays, size))[rows].to(device)
    given = DetailSources(coarse="ground_truth").forward_kwargs(gt, model.layout)
    with torch.no_grad():
        o = model(photo[:, None], None, "detail", **given)
    face = model.uv_detail_mask(truth)
    albedo = resize_maps(o.decoded.albedo[:, 0], (size, size), mode="bilinear", antialias=False)
    seen = face[None, None] * o.detail.uv_visible_mask[:, 0]
    coarse = o.detail.uv_coarse_shading[:, 0]
    uv_input = o.detail.uv_input[:, 0]
    wrinkle_aus = [MAIN_AU_NAMES.index(au) for au in CENTRE_AUS]
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
        drive=clip.gt["au_intensity"][rows][:, wrinkle_aus].float().to(device),
        photo=photo,
        cam=o.cam[:, 0],
        texture=None if o.decoded.albedo is None else o.decoded.albedo[:, 0].clamp(0, 1),
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


class CheckPath(NamedTuple):
    """The photo's path for a clip's checked frames: ``path`` (the library's
    :class:`~seqdeca.models.detail_path.PhotoPath` at the frames' size) and ``offset`` (N, 1, S, S),
    what it leaves in the contrast of a face without detail
    (:func:`~seqdeca.models.detail_path.flat_path_offset`)."""

    path: PhotoPath
    offset: torch.Tensor


def _photo_path(model: SeqDECA, f: CheckFrames) -> CheckPath:
    """Rasterize the frames once at the photo's size and measure the zero map's offset."""
    path = photo_path(model.renderer, f.vertices, f.cam, tuple(f.photo.shape[-2:]))
    offset = flat_path_offset(
        model.renderer,
        path,
        vertices=f.vertices,
        light=f.light,
        texture=f.texture,
        photo=f.photo,
        albedo=f.albedo,
        coarse_shading=f.coarse_shading,
        mask=f.seen,
        uv_mask=f.face,
        fixed_displacement=model._fixed_displacement(),
    )
    return CheckPath(path, offset)


def _rendered_contrast(
    model: SeqDECA, f: CheckFrames, path: CheckPath, displacement: torch.Tensor
) -> torch.Tensor:
    """(N, 1, S, S) the photo's detail contrast had the clip been rendered with a (N, S, S)
    displacement (:func:`~seqdeca.models.detail_path.path_contrast`)."""
    normals = model.renderer.detail_normal_map(
        displacement[:, None], f.vertices, f.face, model._fixed_displacement()
    )
    return path_contrast(
        model.renderer,
        path.path,
        vertices=f.vertices,
        light=f.light,
        texture=f.texture,
        normals=normals,
        photo=f.photo,
        albedo=f.albedo,
        coarse_shading=f.coarse_shading,
        mask=f.seen,
    )


def _matched_term(
    model: SeqDECA, f: CheckFrames, path: CheckPath, displacement: torch.Tensor
) -> torch.Tensor:
    """The contrast term on the photo's path: |contrast(unwrap(render(d))) - the photo's|."""
    fake = _rendered_contrast(model, f, path, displacement)
    return uv_photometric_loss(fake, f.real, f.compared, None)


def _offset_term(
    model: SeqDECA, f: CheckFrames, path: CheckPath, displacement: torch.Tensor
) -> torch.Tensor:
    """The contrast term with the zero map's contrast subtracted on both sides, each on its own
    path: |UV contrast of d - (the photo's - the path's offset)|, as the detail stage compares
    with ``model.detail_path_offset``."""
    fake = shading_contrast(_shading(model, f, displacement), f.coarse_shading, f.seen)
    return uv_photometric_loss(fake, f.real - path.offset, f.compared, None)


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


#: Fitted maps (M, S, S) -> the frames' (N, S, S) displacement, both metres.
Compose = Callable[[torch.Tensor], torch.Tensor]
#: The frames' (N, S, S) displacement, metres -> the scalar loss of the fit.
Objective = Callable[[torch.Tensor], torch.Tensor]


def _fit(
    f: CheckFrames, maps: tuple[int, ...], compose: Compose, objective: Objective, steps: int
) -> torch.Tensor:
    """Fit (M, S, S) maps of shape ``maps`` (Adam from zero, in units of 0.1 mm) to
    ``objective(compose(maps))``; returns the fitted (N, S, S) displacement, detached."""
    free = torch.zeros(maps, device=f.truth.device, requires_grad=True)
    optimizer = torch.optim.Adam([free], lr=0.05)
    for _ in range(steps):
        loss = objective(compose(1e-4 * free))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return compose(1e-4 * free).detach()


def _pooled(f: CheckFrames) -> tuple[tuple[int, ...], Compose]:
    """The pooled fit's maps, (1 + A, S, S): a static map and one pattern map per wrinkle AU;
    frame n's displacement is ``maps[0] + sum_a drive[n, a] * maps[1 + a]``."""
    _, size, _ = f.truth.shape

    def compose(maps: torch.Tensor) -> torch.Tensor:
        return maps[0] + torch.einsum("na,ahw->nhw", f.drive, maps[1:])

    return (1 + f.drive.shape[1], size, size), compose


#: A contrast term of a clip's frames: (model, frames, displacement (N, S, S)) -> scalar.
Term = Callable[[SeqDECA, CheckFrames, torch.Tensor], torch.Tensor]
#: A contrast term on the photo's path: (model, frames, path, displacement) -> scalar.
PathTerm = Callable[[SeqDECA, CheckFrames, CheckPath, torch.Tensor], torch.Tensor]


def _on_path(term: PathTerm, path: CheckPath) -> Term:
    """``term`` with the photo's path of the frames fixed."""

    def bound(model: SeqDECA, f: CheckFrames, displacement: torch.Tensor) -> torch.Tensor:
        return term(model, f, path, displacement)

    return bound


def signal_check(
    model: SeqDECA,
    clips: list[Path],
    out: Path,
    *,
    contrast: float,
    z_reg: float,
    steps: int = 300,
    device: str = "cpu",
    pooled: bool = False,
    matched: bool = False,
) -> dict[str, float]:
    """Fit a free (N, S, S) displacement per frame to ``contrast`` x the detail contrast term +
    ``z_reg`` x mean |d| (Adam, ``steps`` steps, from zero) and score the zero map, the fitted
    map and the truth against the truth (OUT/signal_check.json; errors in mm).

    ``pooled``: also fit the same objective with the pooled maps of :func:`_pooled` over the
    same frames (``pooled``) and over every frame of the clip (``pooled every frame``).
    ``matched``: also score and fit (free, and pooled over the same frames with ``pooled``) with
    :func:`_matched_term` (rows ``matched ...``) and :func:`_offset_term` (``offset ...``) in
    place of the contrast term."""

    def objective_of(f: CheckFrames, term: Term = _contrast_term) -> Objective:
        def objective(displacement: torch.Tensor) -> torch.Tensor:
            loss = contrast * term(model, f, displacement)
            return loss + z_reg * displacement.abs().mean()

        return objective

    def score(
        name: str, displacement: torch.Tensor, f: CheckFrames, term: Term = _contrast_term
    ) -> None:
        with torch.no_grad():
            for key, value in _errors_mm(displacement, f).items():
                scores.setdefault(f"{name} {key}", []).append(value)
            scores.setdefault(f"{name} contrast", []).append(float(term(model, f, displacement)))

    scores: dict[str, list[float]] = {}
    for path in clips:
        f = _frames(model, path, device)
        fitted = _fit(f, tuple(f.truth.shape), lambda d: d, objective_of(f), steps)
        score("zero", 0 * f.truth, f)
        score("fitted", fitted, f)
        with torch.no_grad():
            scores.setdefault("true contrast", []).append(float(_contrast_term(model, f, f.truth)))
        if pooled:
            score("pooled", _fit(f, *_pooled(f), objective_of(f), steps), f)
            every = _frames(model, path, device, stride=1)
            score("pooled every frame zero", 0 * every.truth, every)
            score(
                "pooled every frame",
                _fit(every, *_pooled(every), objective_of(every), steps),
                every,
            )
            with torch.no_grad():
                term = float(_contrast_term(model, every, every.truth))
            scores.setdefault("pooled every frame true contrast", []).append(term)
        if matched:
            photo_path = _photo_path(model, f)
            for name, path_term in (("matched", _matched_term), ("offset", _offset_term)):
                term = _on_path(path_term, photo_path)
                score(f"{name} zero", 0 * f.truth, f, term)
                score(f"{name} true", f.truth, f, term)
                objective = objective_of(f, term)
                free = _fit(f, tuple(f.truth.shape), lambda d: d, objective, steps)
                score(f"{name} fitted", free, f, term)
                if pooled:
                    score(f"{name} pooled", _fit(f, *_pooled(f), objective, steps), f, term)
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    (out / "signal_check.json").write_text(json.dumps(result, indent=1))
    print("[signal check] " + ", ".join(f"{k}: {v:.5f}" for k, v in result.items()))
    return result
