"""Lighting: DECA's 9-band spherical-harmonics shading and the directional lights of its shape view.

Spherical harmonics follow DECA's renderer exactly (checked against ``decalib/utils/renderer.py``):
the 9 bases of a unit normal n = (x, y, z) are

    1, x, y, z, x*y, x*z, y*z, x^2 - y^2, 3*z^2 - 1

each multiplied by a constant that folds the SH normalisation and the Lambertian kernel together
(:data:`SH_CONSTANTS`). The shading of colour channel c is ``sum_k light[k, c] * constant_k *
basis_k(n)``. Which space the normals live in is the caller's choice; DECA (and
:class:`seqdeca.render.Renderer`) uses model-space normals (y up, z towards the camera).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_PI = math.pi
#: DECA's per-basis SH constants, in the order of the bases in the module docstring.
SH_CONSTANTS: tuple[float, ...] = (
    1 / math.sqrt(4 * _PI),
    (2 * _PI / 3) * math.sqrt(3 / (4 * _PI)),
    (2 * _PI / 3) * math.sqrt(3 / (4 * _PI)),
    (2 * _PI / 3) * math.sqrt(3 / (4 * _PI)),
    (_PI / 4) * 3 * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * 3 * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * 3 * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * (3 / 2) * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * (1 / 2) * math.sqrt(5 / (4 * _PI)),
)

#: DECA's ``render_shape`` lights: directions (towards the lights, model space) ...
SHAPE_LIGHT_DIRECTIONS: tuple[tuple[float, float, float], ...] = (
    (-1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0),
    (-1.0, -1.0, 1.0),
    (1.0, -1.0, 1.0),
    (0.0, 0.0, 1.0),
)
#: ... and their RGB intensity.
SHAPE_LIGHT_INTENSITY = 1.7
#: Grey albedo of DECA's shape view (180 / 255).
SHAPE_GREY = 180.0 / 255.0


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 SH bases of DECA, constants included.

    Args:
        normals: (..., 3) normals (unit length for a physical result; not renormalised here).

    Returns:
        (..., 9).
    """
    x, y, z = normals.unbind(-1)
    basis = torch.stack(
        [torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], dim=-1
    )
    return basis * basis.new_tensor(SH_CONSTANTS)


def _is_image(normals: torch.Tensor) -> bool:
    """True for (N, 3, H, W) normal images, False for (N, P, 3) normals; raise otherwise."""
    if normals.dim() == 4 and normals.shape[1] == 3:
        return True
    if normals.dim() == 3 and normals.shape[-1] == 3:
        return False
    raise ValueError(f"normals must be (N, 3, H, W) or (N, P, 3), got {tuple(normals.shape)}")


def _channels_last(normals: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Accept (N, 3, H, W) or (N, P, 3); return (N, P, 3) and whether the input was an image."""
    if _is_image(normals):
        return normals.flatten(2).transpose(1, 2), True
    return normals, False


def sh_shading(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Shade normals with 9-band SH lighting (DECA's ``add_SHlight``).

    Args:
        normals: (N, 3, H, W) normal images or (N, P, 3) normals.
        light: (N, 9, 3) SH coefficients per RGB channel (DECA's 27-d light code reshaped).

    Returns:
        Shading in the layout of ``normals``: (N, 3, H, W) or (N, P, 3) (RGB, not clamped).
    """
    coeffs = light * light.new_tensor(SH_CONSTANTS)[:, None]  # constants folded in: (N, 9, 3)
    if _is_image(normals):
        x, y, z = normals[:, 0:1], normals[:, 1:2], normals[:, 2:3]  # (N, 1, H, W)
        coeffs = coeffs[..., None, None]  # (N, 9, 3, 1, 1)
    else:
        x, y, z = normals[..., 0:1], normals[..., 1:2], normals[..., 2:3]  # (N, P, 1)
        coeffs = coeffs[:, :, None, :]  # (N, 9, 1, 3)
    # Evaluated term by term (no (.., 9) basis tensor): sum_k coeff_k * basis_k.
    bases = (x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1)
    out = torch.addcmul(coeffs[:, 0], coeffs[:, 1], bases[0])
    for k in range(1, 8):
        out = out.addcmul_(coeffs[:, k + 1], bases[k])
    return out


def directional_shading(
    normals: torch.Tensor, directions: torch.Tensor, intensities: torch.Tensor
) -> torch.Tensor:
    """Lambertian shading by directional lights, averaged over the lights (DECA's shape view).

    Args:
        normals: (N, 3, H, W) or (N, P, 3) normals.
        directions: (N, L, 3) directions towards the lights (any length; normalised here).
        intensities: (N, L, 3) RGB intensity of every light.

    Returns:
        (N, 3, H, W) or (N, P, 3): ``mean_l clamp(n . d_l, 0, 1) * intensity_l``.
    """
    flat, image = _channels_last(normals)
    d = F.normalize(directions.to(flat.dtype), dim=-1)
    cosine = (flat @ d.transpose(1, 2)).clamp(0.0, 1.0)  # (N, P, L)
    shading = cosine @ intensities.to(flat.dtype) / directions.shape[1]
    if image:
        return shading.transpose(1, 2).reshape(normals.shape)
    return shading


def shape_lights(
    batch: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """DECA's five shape-view lights: directions (batch, 5, 3) and intensities (batch, 5, 3)."""
    d = torch.tensor(SHAPE_LIGHT_DIRECTIONS, device=device, dtype=dtype).expand(batch, -1, -1)
    return d, torch.full_like(d, SHAPE_LIGHT_INTENSITY)
