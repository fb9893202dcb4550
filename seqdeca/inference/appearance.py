"""Fit-mode appearance: the clip's texture coefficients and every frame's SH light, by robust
linear least squares on face pixels of the renders.

Image formation is the renderer's (DECA's): a covered pixel p of frame n has the colour

    I_n(p)_c = a_c(uv_p) * s_n(p)_c,   a = mean + sum_k t_k basis_k   (UV albedo maps, RGB c)
    s_n(p)_c = sum_j light_n[j, c] * b_j(normal_p)                    (b: the 9 SH bases with
                                                                       their constants)

which is linear in the light given the albedo (:func:`solve_light`) and linear in the texture
coefficients t given the shading (:func:`solve_texture`). :func:`estimate_texture` solves the
bilinear problem over a handful of frames: alternating the two linear solves converges slowly
along the ridge where a brighter albedo trades against a weaker light (on synthetic clips ten
alternations covered about 60 % of the way to the true coefficients), so it takes a few joint
Gauss-Newton steps instead, whose per-frame light blocks are eliminated (Schur complement).
Afterwards :func:`robust_light` solves each frame's light alone with t fixed. The coefficients'
unit-variance prior (``prior``) settles what the frames cannot tell apart, such as an overall
brighter albedo under a weaker light.

Samples (:func:`face_samples`): the pixels of a render (fit mode renders for them at a third of
``render.image_size``, about 2500 face pixels per frame: plenty for 27 light numbers, and cheap)
that the mesh covers, whose normal faces the camera (unit normal z > ``MIN_FACING``),
whose colour is not clipped (every channel strictly between ``DARKEST`` and ``BRIGHTEST``) and
that the 3-class mask calls face skin (class 1). Class 2 (eyes, brows, lips and mouth) is left
out: the mesh has holes at the eye openings and the open mouth (the mask's polygons include them),
brows are hair, and lips, teeth and tongue are not skin-coloured under the skin's light.

Robustness: iteratively reweighted least squares with Tukey's biweight on each pixel's RGB
residual norm r. Every frame has its own noise scale sigma = median(r) / 1.538 (the median of the
norm of three N(0, sigma^2) channels is 1.538 sigma), floored at ``MIN_SIGMA``; pixels with
r > ``TUKEY_C`` * sigma get weight 0 (hair over the forehead, a hand, a specular spot), the
others (1 - (r / (c sigma))^2)^2. The first solve is plain least squares.

Units: RGB in [0, 1]; normals in the model's frame (y up, z towards the camera), as the
renderer shades them; light (n, 9, 3) as ``codes.npz`` ``light`` and :func:`sh_shading`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqdeca.render.renderer import RenderOutput
from seqdeca.render.shading import sh_basis
from seqdeca.render.uv import uv_to_grid

__all__ = [
    "FaceSamples",
    "LightFit",
    "TextureFit",
    "estimate_texture",
    "face_samples",
    "robust_light",
    "sample_maps",
    "solve_light",
    "solve_texture",
    "tukey_weights",
]

#: Samples need a unit normal with z above this (grazing pixels mix face and background).
MIN_FACING = 0.3
#: Samples with a channel at or beyond these are clipped by the camera (no linear information).
DARKEST, BRIGHTEST = 1.5 / 255, 253.5 / 255
#: Tukey biweight constant (95 % efficiency for Gaussian residuals) and the floor of sigma.
TUKEY_C = 4.685
MIN_SIGMA = 0.01
#: Median of the norm of a 3-vector of independent N(0, 1) values (chi, 3 degrees of freedom).
CHI3_MEDIAN = 1.538
#: Least-squares solves per light: one plain, then reweighted ones.
LIGHT_ITERATIONS = 3
#: Joint Gauss-Newton steps of :func:`estimate_texture`.
JOINT_STEPS = 4
#: Weight of |light - reference light|^2 per frame and channel, relative to the mean diagonal of
#: the light's normal equations. Over the normals of a face seen from the front the 9 SH bases
#: are nearly dependent: the data decide the combinations they see, this settles the others at
#: the reference (the clip's mean light) instead of letting them swing from frame to frame.
LIGHT_RIDGE = 1e-3
#: A frame with fewer usable samples keeps a fallback light.
MIN_SAMPLES = 32


@dataclass(frozen=True)
class FaceSamples:
    """Face-skin pixels of n frames, padded to P per frame.

    Attributes:
        colour: (n, P, 3) observed RGB in [0, 1].
        sh: (n, P, 9) SH bases (constants included) of the pixels' interpolated normals.
        uv: (n, P, 2) UV coordinates (u, v) in [0, 1].
        valid: (n, P) bool, False on padding.
    """

    colour: torch.Tensor
    sh: torch.Tensor
    uv: torch.Tensor
    valid: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        """(n,) samples per frame."""
        return self.valid.sum(1)


def face_samples(render: RenderOutput, images: torch.Tensor, skin: torch.Tensor) -> FaceSamples:
    """The usable pixels of renders (module docstring), compacted to the front of each row.

    Args:
        render: renderer output of n frames at (H, W) (its normals, UVs, coverage).
        images: (n, 3, H, W) the frames at the render size, RGB in [0, 1].
        skin: (n, H, W) bool, class 1 (face skin) of the 3-class mask at the render size.
    """
    normals = render.normal_image
    unit_z = F.normalize(normals, dim=1)[:, 2]
    colour = images.to(normals)
    keep = (render.alpha[:, 0] > 0) & (unit_z > MIN_FACING) & skin
    keep &= (colour.amax(1) < BRIGHTEST) & (colour.amin(1) > DARKEST)
    keep = keep.flatten(1)  # (n, h*w)
    p = max(int(keep.sum(1).max()), 1) if keep.numel() else 1
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :p]  # kept first

    def take(x: torch.Tensor) -> torch.Tensor:  # (n, C, h, w) -> (n, p, C)
        flat = x.flatten(2).transpose(1, 2)
        return flat.gather(1, order[..., None].expand(-1, -1, flat.shape[-1]))

    uv = render.uv_image.permute(0, 3, 1, 2)
    normal = take(normals)
    return FaceSamples(
        colour=take(colour),
        sh=sh_basis(normal),
        uv=take(uv),
        valid=keep.gather(1, order),
    )


def sample_maps(maps: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of UV maps at UV coordinates (as the renderer samples its albedo).

    Args:
        maps: (C, Huv, Wuv) UV maps (row 0 = v 1).
        uv: (n, P, 2) UV coordinates.

    Returns:
        (n, P, C).
    """
    n, p = uv.shape[:2]
    grid = uv_to_grid(uv).reshape(1, n * p, 1, 2).to(maps)
    out = F.grid_sample(
        maps[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0, :, :, 0].T.reshape(n, p, -1)


def tukey_weights(
    residual: torch.Tensor, valid: torch.Tensor, *, c: float = TUKEY_C
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tukey biweights of per-pixel RGB residual norms with a robust per-frame scale.

    Args:
        residual: (n, P) residual norms (>= 0).
        valid: (n, P) bool samples.
        c: cut-off in units of sigma.

    Returns:
        weights (n, P) in [0, 1] (0 on invalid samples) and sigma (n,) (module docstring).
    """
    median = torch.where(valid, residual, torch.nan).nanmedian(dim=1).values
    sigma = torch.nan_to_num(median / CHI3_MEDIAN, nan=MIN_SIGMA).clamp_min(MIN_SIGMA)
    u = residual / (c * sigma[:, None])
    weights = (1 - u.square()).clamp_min(0).square()
    return weights * valid, sigma


def solve_light(
    colour: torch.Tensor,
    albedo: torch.Tensor,
    sh: torch.Tensor,
    weight: torch.Tensor,
    *,
    reference: torch.Tensor,
) -> torch.Tensor:
    """Weighted least-squares SH light of every frame, each RGB channel on its own.

    Minimises ``sum_p w_p (colour_pc - albedo_pc * sum_j sh_pj light_jc)^2`` per frame and
    channel plus the ridge ``LIGHT_RIDGE`` towards ``reference``.

    Args:
        colour, albedo: (n, P, 3) observed colour and albedo at the samples.
        sh: (n, P, 9) SH bases.
        weight: (n, P) sample weights >= 0.
        reference: (9, 3) light the ridge pulls towards.

    Returns:
        (n, 9, 3) light.
    """
    root = weight.sqrt()[..., None]
    design = (root * albedo).transpose(1, 2)[..., None] * sh[:, None]  # (n, 3, P, 9)
    normal = design.transpose(-1, -2) @ design  # (n, 3, 9, 9)
    rhs = (design.transpose(-1, -2) @ (root * colour).transpose(1, 2)[..., None])[..., 0]
    ridge = LIGHT_RIDGE * normal.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)  # (n, 3)
    eye = torch.eye(sh.shape[-1], dtype=normal.dtype, device=normal.device)
    rhs = rhs + ridge[..., None] * reference.T.to(rhs)
    light = torch.linalg.solve(normal + ridge[..., None, None] * eye, rhs)
    return light.transpose(1, 2)


@dataclass(frozen=True)
class LightFit:
    """A robust light solve.

    Attributes:
        light: (n, 9, 3) SH light.
        weight: (n, P) final robust sample weights in [0, 1].
        sigma: (n,) robust residual scale (RGB units).
        ok: (n,) bool, the frame had at least ``MIN_SAMPLES`` samples (else ``light`` is the
            fallback).
    """

    light: torch.Tensor
    weight: torch.Tensor
    sigma: torch.Tensor
    ok: torch.Tensor


def shading_of(sh: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """(n, P, 9) SH bases and (n, 9, 3) light -> (n, P, 3) shading."""
    return sh @ light


def robust_light(
    samples: FaceSamples,
    albedo: torch.Tensor,
    *,
    fallback: torch.Tensor,
    iterations: int = LIGHT_ITERATIONS,
) -> LightFit:
    """Each frame's light by iteratively reweighted least squares (module docstring).

    Args:
        samples: n frames' samples.
        albedo: (n, P, 3) albedo at the samples.
        fallback: (9, 3) light of frames with fewer than ``MIN_SAMPLES`` samples, and the
            reference of the ridge (:func:`solve_light`).
        iterations: solves (>= 1): one plain, then reweighted ones.
    """
    valid = samples.valid
    weight = valid.to(albedo.dtype)
    for _ in range(max(1, iterations)):
        light = solve_light(samples.colour, albedo, samples.sh, weight, reference=fallback)
        residual = (samples.colour - albedo * shading_of(samples.sh, light)).norm(dim=-1)
        weight, sigma = tukey_weights(residual, valid)
    ok = samples.counts >= MIN_SAMPLES
    light = torch.where(ok[:, None, None], light, fallback.to(light))
    return LightFit(light=light, weight=weight * ok[:, None], sigma=sigma, ok=ok)


def solve_texture(
    samples: FaceSamples,
    mean: torch.Tensor,
    basis: torch.Tensor,
    shading: torch.Tensor,
    weight: torch.Tensor,
    *,
    prior: float,
) -> torch.Tensor:
    """Texture coefficients of a clip given every frame's shading (one linear solve).

    Minimises ``sum_n E_n + prior * |t|^2``, where E_n is frame n's weighted mean (over samples
    and channels) of the squared residual ``colour - (mean + sum_k t_k basis_k) * shading``:
    every frame counts once, however many pixels it has, and ``prior`` weighs the unit-variance
    code prior like one frame fitted to an RMS error of sqrt(prior).

    Args:
        samples: n frames' samples.
        mean: (n, P, 3) mean albedo at the samples.
        basis: (n, P, K, 3) texture basis at the samples.
        shading: (n, P, 3) shading at the samples.
        weight: (n, P) robust sample weights.
        prior: weight of ``|t|^2`` (> 0).

    Returns:
        (K,) coefficients.
    """
    k = basis.shape[2]
    frame_weight = weight / (3 * weight.sum(1, keepdim=True).clamp_min(1e-12))  # (n, P)
    design = (basis * shading[:, :, None]).permute(0, 1, 3, 2).reshape(-1, k)  # (n*P*3, K)
    target = (samples.colour - mean * shading).reshape(-1)  # (n*P*3,)
    w = frame_weight[..., None].expand(-1, -1, 3).reshape(-1)
    normal = design.T @ (design * w[:, None])
    rhs = design.T @ (target * w)
    eye = torch.eye(k, dtype=normal.dtype, device=normal.device)
    return torch.linalg.solve(normal + prior * eye, rhs)


@dataclass(frozen=True)
class TextureFit:
    """Texture coefficients of a clip and the lights of the frames they were estimated from.

    Attributes:
        texture: (K,) coefficients.
        light: :class:`LightFit` of those frames under the final albedo.
    """

    texture: torch.Tensor
    light: LightFit


def _joint_step(
    samples: FaceSamples,
    mean: torch.Tensor,
    basis: torch.Tensor,
    texture: torch.Tensor,
    light: torch.Tensor,
    weight: torch.Tensor,
    *,
    prior: float,
    reference: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Gauss-Newton step of texture and lights together (the lights eliminated by their
    Schur complement: they are independent per frame and channel).

    The objective is :func:`solve_texture`'s (every frame's weighted mean squared residual, plus
    ``prior * |t|^2``) plus :func:`solve_light`'s ridge of every light towards ``reference``.

    Args:
        samples: n frames; mean (n, P, 3) and basis (n, P, K, 3) at the samples; texture (K,);
            light (n, 9, 3); weight (n, P); reference (9, 3).

    Returns:
        the steps of the texture (K,) and the lights (n, 9, 3).
    """
    k = basis.shape[2]
    albedo = mean + torch.einsum("npkc,k->npc", basis, texture)
    shading = shading_of(samples.sh, light)
    residual = samples.colour - albedo * shading  # (n, P, 3)
    w = weight / (3 * weight.sum(1, keepdim=True).clamp_min(1e-12))  # (n, P)
    j_t = basis * shading[:, :, None]  # (n, P, K, 3): d prediction / d t
    j_l = albedo.transpose(1, 2)[..., None] * samples.sh[:, None]  # (n, 3, P, 9): / d light
    wj_l = j_l * w[:, None, :, None]
    a_tt = torch.einsum("npkc,np,nplc->kl", j_t, w, j_t)
    a_tt = a_tt + prior * torch.eye(k, dtype=a_tt.dtype, device=a_tt.device)
    b_t = torch.einsum("npkc,np,npc->k", j_t, w, residual) - prior * texture
    a_ll = wj_l.transpose(-1, -2) @ j_l  # (n, 3, 9, 9)
    ridge = LIGHT_RIDGE * a_ll.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)  # (n, 3)
    a_ll = a_ll + ridge[..., None, None] * torch.eye(9, dtype=a_ll.dtype, device=a_ll.device)
    a_lt = torch.einsum("ncpj,npkc->ncjk", wj_l, j_t)  # (n, 3, 9, K)
    b_l = (wj_l.transpose(-1, -2) @ residual.transpose(1, 2)[..., None])[..., 0]  # (n, 3, 9)
    b_l = b_l - ridge[..., None] * (light - reference.to(light)).transpose(1, 2)
    solved = torch.linalg.solve(a_ll, torch.cat([a_lt, b_l[..., None]], dim=-1))
    schur = a_tt - torch.einsum("ncjk,ncjl->kl", a_lt, solved[..., :k])
    d_t = torch.linalg.solve(schur, b_t - torch.einsum("ncjk,ncj->k", a_lt, solved[..., k]))
    d_l = solved[..., k] - solved[..., :k] @ d_t  # (n, 3, 9)
    return d_t, d_l.transpose(1, 2)


def estimate_texture(
    samples: FaceSamples,
    mean_map: torch.Tensor,
    basis_maps: torch.Tensor,
    *,
    prior: float,
    fallback: torch.Tensor,
    steps: int = JOINT_STEPS,
) -> TextureFit:
    """Texture coefficients and lights of a few frames (the bilinear problem solved jointly).

    Starts from the mean albedo (t = 0) and every frame's robust light under it; then ``steps``
    Gauss-Newton steps of texture and lights together (:func:`_joint_step`), each with Tukey
    weights from the current residuals. Alternating the two linear solves instead converges
    slowly along the ridge where a brighter albedo trades against a weaker light. The lights
    are finally solved once more under the final albedo (:func:`robust_light`).

    Args:
        samples: the frames' samples.
        mean_map: (3, Huv, Wuv) mean albedo.
        basis_maps: (K, 3, Huv, Wuv) texture basis (K may be 0: only the lights are solved).
        prior: :func:`solve_texture` prior.
        fallback: (9, 3) light of frames without enough samples, and the lights' reference.
        steps: Gauss-Newton steps.
    """
    k = basis_maps.shape[0]
    mean = sample_maps(mean_map, samples.uv)
    texture = mean.new_zeros(k)
    fit = robust_light(samples, mean, fallback=fallback)
    ok = fit.ok
    if k == 0 or not bool(ok.any()):
        return TextureFit(texture, fit)
    n, p = samples.valid.shape
    basis = sample_maps(basis_maps.flatten(0, 1), samples.uv).reshape(n, p, k, 3)[ok]
    used = FaceSamples(*(x[ok] for x in (samples.colour, samples.sh, samples.uv, samples.valid)))
    light, weight = fit.light[ok], fit.weight[ok]
    for _ in range(max(0, steps)):
        d_t, d_l = _joint_step(
            used, mean[ok], basis, texture, light, weight, prior=prior, reference=fallback
        )
        texture, light = texture + d_t, light + d_l
        albedo = mean[ok] + torch.einsum("npkc,k->npc", basis, texture)
        residual = (used.colour - albedo * shading_of(used.sh, light)).norm(dim=-1)
        weight, _ = tukey_weights(residual, used.valid)
    albedo = sample_maps(mean_map + torch.einsum("k,kchw->chw", texture, basis_maps), samples.uv)
    return TextureFit(texture, robust_light(samples, albedo, fallback=fallback))
