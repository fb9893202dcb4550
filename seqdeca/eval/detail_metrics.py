"""Metrics of the detail stage: displacement and detail-normal errors, and AU controllability.

Pure functions on tensors (no file I/O, no config); a caller with a model passes its detail
generator as a callable. Conventions:

* UV maps follow :mod:`seqdeca.render.uv` (row 0 = v 1). A displacement map is ``(N, H, W)`` or
  ``(N, 1, H, W)``, the offset along the coarse normal in the face model's units: METRES for
  every seqdeca face model (FLAME and the bundled one). Errors are reported in MILLIMETRES, as
  :func:`seqdeca.eval.metrics.vertex_error_mm` does for vertices; wrinkle energies in mm^2.
* Masks are ``(H, W)``: ``face_mask`` (where a metric averages; a float mask counts where it is
  > 0.5) and ``regions``, a dict ``name -> (H, W) bool``, e.g. the six wrinkle patterns of the
  synthetic detail clips. A region's metric averages over ``region & face_mask``: outside the
  face mask a displacement has no effect on the render (``displacement_to_normal`` multiplies it
  by the mask).
* Per-frame errors are ``(N,)`` float tensors, NaN where the mask is empty or an input is NaN;
  pool them with ``torch.nanmean`` as :mod:`seqdeca.eval.clip_metrics` pools its series.
* High-pass displacement (what "wrinkles" means here): ``d - G_sigma * d``, a separable Gaussian
  blur with replicate padding, sigma = :data:`HIGHPASS_SIGMA` x W texels, at least 1 texel (4
  texels of a 256 map, a few millimetres on a face; the scale the detail critic separates detail
  from coarse shading at). The wrinkle energy of a region is the mean of its square.

AU controllability (:func:`au_controllability`): with the latent codes fixed, each pattern's AU
channels are swept together from 0 to 1 (the other channels held at a base condition) and the
wrinkle energy of every region is measured at each step. Scores per pattern, averaged over the
latents:

* ``controllability``: Pearson correlation of the commanded intensity with the energy in the
  pattern's own region, in [-1, 1] (0 where the energy does not change, see :data:`FLAT_RTOL`).
* ``change``: energy contrast ``(E(1) - E(0)) / (E(1) + E(0))`` in the own region, in [-1, 1]
  (how much, not only how monotonically, the energy follows the AU).
* ``leakage``: mean over the OTHER regions of |energy contrast|, in [0, 1]; a clean generator
  has it near 0 while ``change`` is large. ``leakage_correlation``: mean over the other regions
  of |correlation|. The correlation ignores how large a change is, so any global effect of an
  AU (the generator's FiLM conditioning is spatially uniform) drives it towards 1; read it with
  ``leakage``. The high-pass reaches 3 sigma, so wrinkles within 3 sigma of a region's border
  count a little in the neighbouring region too.
* ``controllability_shuffled`` (the chance level): the same own-region correlation for the model
  fed shuffled conditions, ``generate(z, c[:, perm])``, with ``perm`` a random permutation of the
  K channels under which no pattern's channel reads a channel of the same pattern (so sweeping
  a pattern's AUs drives some other AU's channel, never its own). Averaged over ``shuffles``
  such permutations.
* ``gain`` and ``gain_shuffled``: the wrinkle energy the sweep ADDS in the own region,
  ``E(1) - E(0)`` in mm^2, for the pattern's own AUs and for the shuffled channels. The
  correlations ignore how large a change is: for a generator linear in its condition, any AU
  map with energy in a region (e.g. faint texel noise) gives a correlation near 0.96 with its
  intensity (the energy grows as its square), so ``controllability`` and its shuffled level
  both saturate there. ``gain`` above ``gain_shuffled`` says that a pattern's own AUs add more
  wrinkles in its region than other AUs do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqdeca.data.synthetic_detail import WRINKLE_REGIONS
from seqdeca.geometry import vertex_normals
from seqdeca.render.renderer import Renderer
from seqdeca.render.uv import displacement_to_normal

__all__ = [
    "DETAIL_PATTERN_AUS",
    "FLAT_RTOL",
    "HIGHPASS_SIGMA",
    "MM_PER_METRE",
    "AUControllability",
    "Generate",
    "au_channels",
    "au_controllability",
    "au_sweep",
    "coarse_uv_geometry",
    "detail_normal_error",
    "displacement_error",
    "highpass",
    "highpass_sigma",
    "shuffled_permutation",
    "wrinkle_energy",
]

MM_PER_METRE = 1000.0
#: High-pass Gaussian sigma as a fraction of the UV map's width (4 texels of a 256 map).
HIGHPASS_SIGMA = 1 / 64
#: A region's energy counts as unchanged by a sweep (correlation 0) when its standard deviation
#: over the sweep is at most this fraction of its mean (float noise of a generator that ignores
#: the condition must not turn into a random correlation).
FLAT_RTOL = 1e-5
#: The AUs that drive each wrinkle pattern of the synthetic detail clips.
DETAIL_PATTERN_AUS: dict[str, tuple[str, ...]] = WRINKLE_REGIONS

#: ``generate(latent (N, D), au_condition (N, K)) -> (N, 1, H, W)`` displacement, metres.
Generate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- masks and maps


def _maps(x: torch.Tensor, name: str) -> torch.Tensor:
    """(N, H, W) or (N, 1, H, W) -> (N, H, W)."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 3:
        return x
    raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W), got {tuple(x.shape)}")


def _bool_mask(mask: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """(H, W) bool, or float counted where > 0.5 -> (H, W) bool; checks the size."""
    if tuple(mask.shape) != tuple(size):
        raise ValueError(f"{name} is {tuple(mask.shape)}, the maps are {tuple(size)}")
    return mask if mask.dtype == torch.bool else mask > 0.5


def _masked_means(
    values: torch.Tensor,
    face_mask: torch.Tensor,
    regions: Mapping[str, torch.Tensor] | None,
    key: str,
) -> dict[str, torch.Tensor]:
    """(N, H, W) values -> {key: (N,) mean in the face mask, key/region: (N,) in region & face}."""
    size = tuple(values.shape[-2:])
    face = _bool_mask(face_mask, size, "face_mask").to(values.device)
    masks = {key: face}
    for name, region in (regions or {}).items():
        masks[f"{key}/{name}"] = _bool_mask(region, size, f"region {name!r}").to(face.device) & face
    out = {}
    for name, mask in masks.items():
        picked = values[:, mask]  # (N, P)
        if picked.shape[1] == 0:
            out[name] = torch.full(values.shape[:1], float("nan"), device=values.device)
        else:
            out[name] = picked.float().mean(-1)
    return out


# ---------------------------------------------------------------------------------- errors


def displacement_error(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    face_mask: torch.Tensor,
    regions: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean absolute displacement error per frame, in millimetres.

    Only the generated displacement is compared (a fixed displacement, added to both sides by the
    renderer, cancels).

    Args:
        pred: (N, H, W) or (N, 1, H, W) predicted displacement, metres.
        gt: same shape, the true displacement, metres.
        face_mask: (H, W) bool UV face mask (float: counted where > 0.5).
        regions: optional name -> (H, W) bool region masks (intersected with ``face_mask``).

    Returns:
        ``{"displacement_error": (N,), "displacement_error/<region>": (N,), ...}``: mean of
        ``1000 |pred - gt|`` over the mask's texels (mm); NaN for an empty mask.
    """
    pred, gt = _maps(pred, "pred"), _maps(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
    diff = (pred - gt).abs() * MM_PER_METRE
    return _masked_means(diff, face_mask, regions, "displacement_error")


def coarse_uv_geometry(
    renderer: Renderer, vertices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The coarse mesh in UV, as :meth:`Renderer.detail_normal_map` builds it (no gradient).

    Args:
        renderer: the renderer of the face model (its UV size is the maps').
        vertices: (N, V, 3) coarse model-space vertices, metres.

    Returns:
        uv_vertices (N, 3, Huv, Wuv) positions, metres, and uv_normals (N, 3, Huv, Wuv)
        interpolated vertex normals; zeros outside the UV layout.
    """
    with torch.no_grad():
        uv_vertices = renderer.world2uv(vertices)
        uv_normals = renderer.world2uv(vertex_normals(vertices, renderer.faces))
    return uv_vertices, uv_normals


def _angle_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) x2 -> (N, H, W) angle between the vectors, degrees (atan2: exact near 0)."""
    cross = torch.linalg.cross(a, b, dim=1).norm(dim=1)
    dot = (a * b).sum(dim=1)
    return torch.rad2deg(torch.atan2(cross, dot))


def detail_normal_error(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    uv_vertices: torch.Tensor,
    uv_normals: torch.Tensor,
    face_mask: torch.Tensor,
    regions: Mapping[str, torch.Tensor] | None = None,
    detail_mask: torch.Tensor | None = None,
    fixed_displacement: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Mean angle between predicted and true detail normals per frame, in degrees.

    Both displacement maps go through the renderer's own path,
    :func:`seqdeca.render.uv.displacement_to_normal` (the dense UV-grid mesh of
    :meth:`Renderer.detail_normal_map`), on the SAME coarse surface, so only the detail is scored.
    Use the true coarse mesh where there is one (:func:`coarse_uv_geometry` of the ground-truth
    vertices). No UV-space approximation is involved.

    Args:
        pred: (N, H, W) or (N, 1, H, W) predicted displacement, metres.
        gt: same shape, the true displacement, metres.
        uv_vertices: (N|1, 3, H, W) coarse positions in UV, metres.
        uv_normals: (N|1, 3, H, W) coarse normals in UV.
        face_mask: (H, W) bool UV face mask where the angle is averaged (float: > 0.5).
        regions: optional name -> (H, W) bool region masks (intersected with ``face_mask``).
        detail_mask: (H, W) mask in [0, 1] the displacement is applied in (the model's
            ``uv_detail_mask``, DECA's face-and-eye mask); default ``face_mask``.
        fixed_displacement: optional (H, W) fixed displacement, metres, added on both sides.

    Returns:
        ``{"detail_normal_error": (N,), "detail_normal_error/<region>": (N,), ...}`` degrees in
        [0, 180]; NaN for an empty mask.
    """
    pred, gt = _maps(pred, "pred"), _maps(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
    n = pred.shape[0]
    if tuple(uv_vertices.shape[-2:]) != tuple(pred.shape[-2:]):
        raise ValueError(
            f"uv_vertices {tuple(uv_vertices.shape)} do not match the maps {tuple(pred.shape)}"
        )
    mask = (face_mask if detail_mask is None else detail_mask).to(uv_vertices.dtype)
    uv_vertices = uv_vertices.expand(n, -1, -1, -1)
    uv_normals = uv_normals.expand(n, -1, -1, -1)
    both = torch.cat([pred, gt])[:, None].to(uv_vertices.dtype)  # (2N, 1, H, W)
    normals = displacement_to_normal(
        both,
        uv_vertices.repeat(2, 1, 1, 1),
        uv_normals.repeat(2, 1, 1, 1),
        mask,
        fixed_displacement,
    )
    angle = _angle_degrees(normals[:n], normals[n:])
    return _masked_means(angle, face_mask, regions, "detail_normal_error")


# ------------------------------------------------------------------------ wrinkle energy


def highpass_sigma(width: int) -> float:
    """Default high-pass sigma in texels of a UV map ``width`` texels wide (at least 1)."""
    return max(1.0, HIGHPASS_SIGMA * width)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(2r + 1,) normalised Gaussian, radius r = ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def highpass(displacement: torch.Tensor, *, sigma: float | None = None) -> torch.Tensor:
    """Displacement minus its Gaussian blur: the wrinkle part of a UV map.

    Args:
        displacement: (N, H, W) or (N, 1, H, W), any units.
        sigma: Gaussian sigma in texels; None: :func:`highpass_sigma` of the width.

    Returns:
        (N, H, W) in the units of the input; zero for a map that is linear in u and v away from
        the border (replicate padding keeps a constant map at zero everywhere).
    """
    x = _maps(displacement, "displacement")[:, None].float()  # (N, 1, H, W)
    sigma = highpass_sigma(x.shape[-1]) if sigma is None else float(sigma)
    kernel = _gaussian_kernel(sigma, x.dtype, x.device)
    r = kernel.shape[0] // 2
    blurred = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))
    return (x - blurred)[:, 0]


def _region_stack(
    regions: Mapping[str, torch.Tensor], size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """name -> (H, W) masks -> (R, H*W) float weights summing to 1 per region (0 if empty)."""
    masks = [_bool_mask(m, size, f"region {k!r}") for k, m in regions.items()]
    stack = torch.stack(masks).flatten(1).float().to(device)
    return stack / stack.sum(-1, keepdim=True).clamp(min=1)


def wrinkle_energy(
    displacement: torch.Tensor,
    regions: Mapping[str, torch.Tensor],
    *,
    sigma: float | None = None,
) -> torch.Tensor:
    """Mean squared high-pass displacement in each region.

    Args:
        displacement: (N, H, W) or (N, 1, H, W), metres.
        regions: name -> (H, W) bool masks (R of them, in dict order).
        sigma: high-pass sigma in texels (None: :func:`highpass_sigma`).

    Returns:
        (N, R) energies in mm^2 (0 for an empty region).
    """
    hp = highpass(displacement, sigma=sigma) * MM_PER_METRE  # (N, H, W) mm
    weights = _region_stack(regions, tuple(hp.shape[-2:]), hp.device)  # (R, H*W)
    return hp.flatten(1).square() @ weights.T


# ------------------------------------------------------------------- AU controllability


def au_channels(
    pattern_aus: Mapping[str, Sequence[str]], au_names: Sequence[str]
) -> dict[str, tuple[int, ...]]:
    """Pattern -> channel indices of its AUs in a condition whose channels are ``au_names``.

    AUs missing from ``au_names`` are dropped, and so is a pattern left with none (e.g. "nose"
    (AU9) and "chin" (AU17) with Aff-Wild2's 12 AUs).

    Args:
        pattern_aus: e.g. :data:`DETAIL_PATTERN_AUS`.
        au_names: the K channel names (``SeqDECA.au_condition_names``).
    """
    out = {}
    for pattern, aus in pattern_aus.items():
        channels = tuple(au_names.index(au) for au in aus if au in au_names)
        if channels:
            out[pattern] = channels
    return out


def shuffled_permutation(
    au_dim: int, groups: Sequence[Sequence[int]], *, generator: torch.Generator
) -> torch.Tensor:
    """A random permutation of K channels that maps no channel of a group into the same group.

    Used as ``condition[:, perm]``: channel k of the shuffled condition reads channel perm[k],
    so a sweep of a group's channels never reaches the group's own channels.

    Args:
        au_dim: K.
        groups: channel index groups (the patterns' AUs).
        generator: random source (seeded by the caller).

    Returns:
        (K,) int64 permutation.
    """
    for _ in range(10_000):
        perm = torch.randperm(au_dim, generator=generator)
        if all(int(perm[k]) not in group for group in groups for k in group):
            return perm
    raise ValueError(f"no permutation of {au_dim} channels keeps every group off itself: {groups}")


def _sweep_maps(
    generate: Generate,
    latent: torch.Tensor,
    base: torch.Tensor,
    channels: Sequence[int],
    intensities: torch.Tensor,
) -> Iterator[torch.Tensor]:
    """Yield the (N, 1, H, W) displacement at each intensity (channels set, the rest = base)."""
    for s in intensities.tolist():
        condition = base.clone()
        condition[:, list(channels)] = s
        yield generate(latent, condition)


def au_sweep(
    generate: Generate,
    latent: torch.Tensor,
    channels: Sequence[int],
    *,
    base_condition: torch.Tensor,
    steps: int = 5,
) -> torch.Tensor:
    """Displacements of a sweep of some AU channels from 0 to 1 with the latent codes fixed.

    Args:
        generate: ``(N, D), (N, K) -> (N, 1, H, W)`` (a module in eval mode).
        latent: (N, D) fixed generator input.
        channels: the swept condition channels (set together).
        base_condition: (N, K) value of the other channels.
        steps: S intensities ``linspace(0, 1, S)``.

    Returns:
        (S, N, H, W) displacement, units of ``generate``.
    """
    intensities = torch.linspace(0, 1, steps)
    with torch.no_grad():
        maps = _sweep_maps(generate, latent, base_condition.to(latent), channels, intensities)
        return torch.stack([_maps(m, "generated displacement") for m in maps])


def _base_condition(
    latent: torch.Tensor, base_condition: torch.Tensor | None, au_dim: int | None
) -> torch.Tensor:
    """(N, K) base condition on the latent's device: the given one, else zeros of ``au_dim``."""
    n = latent.shape[0]
    if base_condition is None:
        if au_dim is None:
            raise ValueError("give base_condition (N, K) or au_dim K")
        return latent.new_zeros(n, au_dim)
    if base_condition.dim() != 2 or base_condition.shape[0] != n:
        raise ValueError(f"base_condition must be ({n}, K), got {tuple(base_condition.shape)}")
    return base_condition.to(latent)


def _sweep_energy(
    generate: Generate,
    latent: torch.Tensor,
    base: torch.Tensor,
    channels: Sequence[int],
    intensities: torch.Tensor,
    weights: torch.Tensor,
    sigma: float | None,
) -> torch.Tensor:
    """(S, N, R) wrinkle energy (mm^2) of every region at every step of one sweep."""
    energies = []
    for displacement in _sweep_maps(generate, latent, base, channels, intensities):
        hp = highpass(displacement, sigma=sigma) * MM_PER_METRE  # (N, H, W)
        if hp[0].numel() != weights.shape[1]:
            raise ValueError(f"generated maps are {tuple(hp.shape[-2:])}; resize the region masks")
        energies.append(hp.flatten(1).square() @ weights.T.to(hp))
    return torch.stack(energies)


def _flat(energy: torch.Tensor) -> torch.Tensor:
    """(S, N, R) -> (N, R) True where the energy is constant over the sweep (FLAT_RTOL)."""
    return energy.std(0, unbiased=False) <= FLAT_RTOL * energy.abs().mean(0)


def _pearson(intensities: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """(S,), (S, N, R) -> (N, R) correlation over the sweep; 0 where the energy is flat."""
    x = (intensities - intensities.mean()).to(energy)[:, None, None]
    y = energy - energy.mean(0)
    corr = (x * y).sum(0) / (x.norm() * y.norm(dim=0)).clamp_min(1e-30)
    return torch.where(_flat(energy), torch.zeros_like(corr), corr)


def _contrast(energy: torch.Tensor) -> torch.Tensor:
    """(S, N, R) -> (N, R) ``(E_last - E_first) / (E_last + E_first)``; 0 where flat or zero."""
    first, last = energy[0], energy[-1]
    total = last + first
    contrast = (last - first) / total.clamp_min(1e-30)
    return torch.where(_flat(energy) | (total <= 0), torch.zeros_like(contrast), contrast)


def _mean(values: torch.Tensor) -> float:
    """Mean of a tensor as a float (NaN when empty)."""
    return float(values.mean()) if values.numel() else float("nan")


@dataclass(frozen=True)
class AUControllability:
    """Result of :func:`au_controllability` (scores defined in the module docstring).

    Attributes:
        patterns: the P swept patterns, in order.
        regions: the R measured regions, in order (the patterns among them).
        intensities: (S,) commanded intensities, ``linspace(0, 1, S)``.
        energy: (P, S, R) wrinkle energy in mm^2, mean over the latents: sweeping pattern p, at
            intensity s, measured in region r.
        controllability: pattern -> mean own-region correlation, [-1, 1].
        change: pattern -> mean own-region energy contrast, [-1, 1].
        leakage: pattern -> mean |energy contrast| in the other regions, [0, 1] (NaN if none).
        leakage_correlation: pattern -> mean |correlation| in the other regions, [0, 1].
        controllability_shuffled: pattern -> own-region correlation with shuffled conditions.
        gain: pattern -> mean own-region energy added by the sweep, ``E(1) - E(0)``, mm^2.
        gain_shuffled: pattern -> the same with shuffled conditions.
        permutations: (shuffles, K) int64 channel permutations of the shuffled model.
    """

    patterns: tuple[str, ...]
    regions: tuple[str, ...]
    intensities: torch.Tensor
    energy: torch.Tensor
    controllability: dict[str, float]
    change: dict[str, float]
    leakage: dict[str, float]
    leakage_correlation: dict[str, float]
    controllability_shuffled: dict[str, float]
    gain: dict[str, float]
    gain_shuffled: dict[str, float]
    permutations: torch.Tensor

    _SCORES = (
        "controllability",
        "change",
        "leakage",
        "leakage_correlation",
        "controllability_shuffled",
        "gain",
        "gain_shuffled",
    )

    def metrics(self) -> dict[str, float]:
        """Flat floats: ``"<score>/<pattern>"`` for every score and pattern, and
        ``"<score>_mean"``, the mean over the patterns of the finite values (NaN if none)."""
        out: dict[str, float] = {}
        for score in self._SCORES:
            values: dict[str, float] = getattr(self, score)
            out |= {f"{score}/{p}": values[p] for p in self.patterns}
            finite = [v for v in values.values() if math.isfinite(v)]
            out[f"{score}_mean"] = sum(finite) / len(finite) if finite else float("nan")
        return out


def _shuffled_level(
    generate: Generate,
    latent: torch.Tensor,
    base: torch.Tensor,
    au_of_region: Mapping[str, Sequence[int]],
    own: Mapping[str, int],
    intensities: torch.Tensor,
    weights: torch.Tensor,
    sigma: float | None,
    perms: torch.Tensor,
) -> tuple[dict[str, float], dict[str, float]]:
    """Pattern -> own-region correlation and own-region energy gain of the model fed
    ``condition[:, perm]``, each the mean over perms."""
    levels: dict[str, list[float]] = {p: [] for p in au_of_region}
    gains: dict[str, list[float]] = {p: [] for p in au_of_region}
    for perm in perms:

        def shuffled(z: torch.Tensor, c: torch.Tensor, perm: torch.Tensor = perm) -> torch.Tensor:
            return generate(z, c[:, perm.to(c.device)])

        for pattern, channels in au_of_region.items():
            energy = _sweep_energy(shuffled, latent, base, channels, intensities, weights, sigma)
            levels[pattern].append(_mean(_pearson(intensities, energy)[:, own[pattern]]))
            gains[pattern].append(_mean((energy[-1] - energy[0])[:, own[pattern]]))
    mean = {p: sum(v) / len(v) for p, v in levels.items()}
    return mean, {p: sum(v) / len(v) for p, v in gains.items()}


def _sweep_scores(
    energy: Mapping[str, torch.Tensor],
    intensities: torch.Tensor,
    own: Mapping[str, int],
    n_regions: int,
) -> dict[str, dict[str, float]]:
    """Pattern -> (S, N, R) sweep energies -> score -> pattern -> value (all but the shuffled)."""
    scores: dict[str, dict[str, float]] = {
        k: {} for k in ("controllability", "change", "leakage", "leakage_correlation", "gain")
    }
    for pattern, e in energy.items():
        i = own[pattern]
        corr, contrast = _pearson(intensities, e), _contrast(e)  # (N, R) each
        others = [j for j in range(n_regions) if j != i]
        scores["controllability"][pattern] = _mean(corr[:, i])
        scores["change"][pattern] = _mean(contrast[:, i])
        scores["leakage"][pattern] = _mean(contrast[:, others].abs())
        scores["leakage_correlation"][pattern] = _mean(corr[:, others].abs())
        scores["gain"][pattern] = _mean((e[-1] - e[0])[:, i])
    return scores


def au_controllability(
    generate: Generate,
    latent: torch.Tensor,
    regions: Mapping[str, torch.Tensor],
    au_of_region: Mapping[str, Sequence[int]],
    *,
    base_condition: torch.Tensor | None = None,
    au_dim: int | None = None,
    steps: int = 5,
    shuffles: int = 1,
    sigma: float | None = None,
    seed: int = 0,
) -> AUControllability:
    """How well each pattern's AUs control the wrinkles of its own region, and only those.

    For every pattern, its AU channels are swept together over ``linspace(0, 1, steps)`` with
    the latent codes fixed and the other channels at ``base_condition``; the wrinkle energy
    (:func:`wrinkle_energy`) of every region is measured at each step. Scores as in the module
    docstring. Costs ``P * steps * (1 + shuffles)`` calls of ``generate`` on N rows.

    Args:
        generate: ``(N, D) latent, (N, K) condition -> (N, 1, H, W)`` displacement, metres;
            deterministic (a module in EVAL mode: BatchNorm in training mode mixes the batch),
            e.g. ``model.detail_generator``.
        latent: (N, D) fixed latent codes (e.g. :func:`seqdeca.models.detail.detail_latent`
            of N frames).
        regions: name -> (H, W) bool masks of the generator's output size; every pattern of
            ``au_of_region`` must be one of them, the others count for leakage only.
        au_of_region: pattern -> its AU channel indices in the condition (:func:`au_channels`).
        base_condition: (N, K) the other channels (e.g. the frames' own AU intensities); None:
            zeros of ``au_dim``.
        au_dim: K, needed only without ``base_condition``.
        steps: S >= 3 intensities.
        shuffles: number of random channel permutations averaged for the chance level (>= 1).
        sigma: high-pass sigma in texels (None: :func:`highpass_sigma`).
        seed: seed of the permutations.

    Returns:
        :class:`AUControllability`.
    """
    if steps < 3 or shuffles < 1:
        raise ValueError(f"need steps >= 3 and shuffles >= 1, got {steps} and {shuffles}")
    missing = [p for p in au_of_region if p not in regions]
    if missing:
        raise ValueError(f"patterns {missing} have no region mask; regions: {list(regions)}")
    base = _base_condition(latent, base_condition, au_dim)
    names = tuple(regions)
    own = {p: names.index(p) for p in au_of_region}
    size = tuple(next(iter(regions.values())).shape)
    weights = _region_stack(regions, size, latent.device)
    intensities = torch.linspace(0, 1, steps)
    generator = torch.Generator().manual_seed(seed)
    groups = [tuple(c) for c in au_of_region.values()]
    perms = torch.stack(
        [shuffled_permutation(base.shape[1], groups, generator=generator) for _ in range(shuffles)]
    )
    args = (intensities, weights, sigma)
    with torch.no_grad():
        energy = {
            p: _sweep_energy(generate, latent, base, c, *args) for p, c in au_of_region.items()
        }
        shuffled, shuffled_gain = _shuffled_level(
            generate, latent, base, au_of_region, own, *args, perms
        )
    scores = _sweep_scores(energy, intensities, own, len(names))
    scores["controllability_shuffled"] = shuffled
    scores["gain_shuffled"] = shuffled_gain
    return AUControllability(
        patterns=tuple(au_of_region),
        regions=names,
        intensities=intensities,
        energy=torch.stack([e.mean(1) for e in energy.values()]).float().cpu(),
        permutations=perms,
        **scores,
    )
