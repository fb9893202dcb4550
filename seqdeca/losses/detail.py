"""Detail-stage terms in UV space: photometric L1, z_reg, z_diff (shading smoothness), z_sym.

Inputs are UV maps ``(*lead, C, H, W)`` (usually ``(N, C, Huv, Wuv)``) with a mask
``(*lead or 1, 1, H, W)`` in [0, 1] (the UV face mask times the visibility of each texel, as
DECA's ``uv_vis_mask``); ``valid`` flags samples.

Facts from DECA's detail training (``decalib/trainer.py``, ``lossfunc.py``) and what differs:

* photometric: DECA takes ``mean(|uv_tex * mask - uv_gt * mask|)`` over all texels (and random
  face-region patches); here the masked L1 is normalised by the mask area.
* z_reg: ``mean(|uv_z|)`` over the whole map; same here (or within ``mask`` when given).
* z_diff (``shading_smooth_loss``): on the UV shading, horizontal neighbour differences
  ``s[..., 1:-1, 1:] - s[..., 1:-1, :-1]`` and vertical ``s[..., 1:, 1:-1] - s[..., :-1, 1:-1]``,
  loss ``mean(dx ** 2) + mean(dy ** 2)``; same here (masked means when ``mask`` is given).
* z_sym: ``sum(mask * |uv_z - flip_x(uv_z).detach()|)`` where DECA's mask is the NON-visible
  region, ``1 - erosion(uv_vis_mask)`` with a 5 x 5 square at UV 256 (:func:`invisible_mask`;
  everything outside the eroded visible face counts, so the hidden side copies its mirror),
  summed over the texels AND DECA's batch. ``loss.z_sym_region`` chooses here
  (:func:`symmetry_loss`): "face" (default), the masked MEAN over the UV face mask (every face
  texel pulled towards its mirror, visible or not); "invisible", DECA's mask and a SUM over the
  texels, averaged over valid frames: the same loss as DECA's with a weight of DECA's 5e-3 times
  DECA's batch size (as for the code regularisers of :mod:`seqdeca.losses.regularisers`). The
  visibility here is the detail stage's "uv_visible_mask" (face-and-eye mask times the texels
  facing the camera); DECA's ``uv_vis_mask`` also multiplies the input's face segmentation
  unwrapped to UV.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqdeca.losses.regularisers import expand_valid, weighted_mean

__all__ = [
    "CRITIC_REGIONS",
    "Z_SYM_REGIONS",
    "displacement_regulariser",
    "invisible_mask",
    "shading_smoothness",
    "symmetry_loss",
    "uv_photometric_loss",
]

#: ``loss.critic_region`` settings: the texels of the detail contrast the critic sees ("visible":
#: the visible face texels; "compared": also away from borders and albedo edges, where the detail
#: contrast loss compares; :func:`seqdeca.train.gan_steps.critic_views`).
CRITIC_REGIONS = ("visible", "compared")
#: ``loss.z_sym_region`` settings (see the module docstring).
Z_SYM_REGIONS = ("face", "invisible")
#: DECA's erosion of the visibility mask: a 5 x 5 square (radius 2) at UV size 256.
_EROSION_RADIUS_AT_256 = 2


def _map_weights(
    like: torch.Tensor, mask: torch.Tensor | None, valid: torch.Tensor | None
) -> torch.Tensor:
    """(*lead, 1, H, W) weights = mask x valid for a (*lead, C, H, W) map."""
    if like.dim() < 3:
        raise ValueError(f"expected (..., C, H, W) UV maps, got {tuple(like.shape)}")
    lead = like.shape[:-3]
    weights = expand_valid(valid, like[..., :1, :, :]) if valid is not None else None
    if mask is not None:
        mask = mask.to(like.dtype)
        if mask.dim() == 2:
            mask = mask[None]
        if mask.shape[-2:] != like.shape[-2:]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match UV map {tuple(like.shape)}")
        weights = mask if weights is None else weights * mask
    if weights is None:
        weights = like.new_ones(())
    return torch.broadcast_to(weights, (*lead, 1, *like.shape[-2:]))


def uv_photometric_loss(
    uv_texture: torch.Tensor,
    uv_target: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked L1 between the detail-shaded UV texture and the input unwrapped to UV.

    Args:
        uv_texture: (*lead, C, H, W) albedo x detail shading in UV (C = 3), or any map to
            compare (e.g. the one-channel detail contrast of ``loss.detail_contrast``).
        uv_target: (*lead, C, H, W) input image sampled into UV, or the map to compare with.
        mask: (*lead or 1, 1, H, W) UV face mask x visibility, in [0, 1].
        valid: (*lead) bool, or None.
    """
    if uv_texture.shape != uv_target.shape:
        raise ValueError(f"{tuple(uv_texture.shape)} != {tuple(uv_target.shape)}")
    weights = _map_weights(uv_texture, mask, valid)
    per_texel = (uv_texture - uv_target).abs().mean(dim=-3, keepdim=True)
    return weighted_mean(per_texel, weights)


def displacement_regulariser(
    uv_z: torch.Tensor, mask: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """z_reg: mean absolute displacement (metres).

    Args:
        uv_z: (*lead, 1, H, W) displacement map.
        mask: optional (*lead or 1, 1, H, W) region; None = the whole map, as DECA.
        valid: (*lead) bool, or None.
    """
    return weighted_mean(uv_z.abs(), _map_weights(uv_z, mask, valid))


def shading_smoothness(
    uv_shading: torch.Tensor, mask: torch.Tensor | None = None, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """z_diff: DECA's shading smoothness, squared neighbour differences of the UV shading.

    Args:
        uv_shading: (*lead, C, H, W) shading of the detail normals in UV (C = 1 or 3).
        mask: optional (*lead or 1, 1, H, W); a difference counts where both texels are in it.
        valid: (*lead) bool, or None.

    Returns:
        0-dim ``mean(dx ** 2) + mean(dy ** 2)`` (masked means when ``mask`` is given).
    """
    weights = _map_weights(uv_shading, mask, valid)
    dx = uv_shading[..., 1:-1, 1:] - uv_shading[..., 1:-1, :-1]
    dy = uv_shading[..., 1:, 1:-1] - uv_shading[..., :-1, 1:-1]
    wx = weights[..., 1:-1, 1:] * weights[..., 1:-1, :-1]
    wy = weights[..., 1:, 1:-1] * weights[..., :-1, 1:-1]
    return weighted_mean(dx.pow(2), wx) + weighted_mean(dy.pow(2), wy)


def symmetry_loss(
    uv_z: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    summed: bool = False,
) -> torch.Tensor:
    """z_sym: displacement vs its horizontal mirror in UV (the mirror is a fixed target).

    Args:
        uv_z: (*lead, 1, H, W) displacement map; the UV layout must be left-right symmetric
            about the vertical centre line (true of FLAME's and of the default model's).
        mask: (*lead or 1, 1, H, W) where to compare, in [0, 1] (the UV face mask, or DECA's
            :func:`invisible_mask`).
        valid: (*lead) bool, or None.
        summed: False: the masked mean over texels and valid samples; True (DECA): the masked
            SUM over the texels of each sample, averaged over valid samples.

    Returns:
        0-dim ``|uv_z - flip_x(uv_z).detach()|`` reduced as ``summed`` says (metres).
    """
    mirrored = torch.flip(uv_z, dims=[-1]).detach()
    error = (uv_z - mirrored).abs()
    if not summed:
        return weighted_mean(error, _map_weights(uv_z, mask, valid))
    per_sample = (error * _map_weights(uv_z, mask, None)).sum(dim=(-3, -2, -1))  # (*lead)
    return weighted_mean(per_sample, expand_valid(valid, per_sample))


def invisible_mask(visible: torch.Tensor) -> torch.Tensor:
    """DECA's z_sym region: the texels that are NOT visible, ``1 - erosion(visible)``.

    The erosion is by a square of side 2r + 1 with r = 2 at UV size 256 (DECA's 5 x 5), scaled
    with the map (at least 1), and counts texels beyond the border as not visible.

    Args:
        visible: (N, 1, H, W) visibility in {0, 1} (the detail stage's "uv_visible_mask": UV
            face-and-eye mask times camera-facing texels).

    Returns:
        (N, 1, H, W) in {0, 1}, 1 wherever the eroded visible region is not.
    """
    radius = max(1, round(_EROSION_RADIUS_AT_256 * visible.shape[-1] / 256))
    hidden = F.pad(1.0 - visible.float(), (radius,) * 4, value=1.0)
    return F.max_pool2d(hidden, kernel_size=2 * radius + 1, stride=1).to(visible.dtype)
