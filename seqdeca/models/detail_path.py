"""The photo's path to the detail stage's UV maps, and what it does to a face without detail.

The detail contrast the critic and ``loss.detail_contrast`` read from the photo
(:func:`~seqdeca.models.critic.observed_contrast`) comes from an image: the face rendered at the
photo's size, then sampled back into UV through the coarse mesh. The generated detail's contrast
(:func:`~seqdeca.models.critic.shading_contrast`) is shaded in UV directly. The round trip alone
leaves texel-scale patterns (at the silhouette, the eyes, the nose and the mouth) that no
displacement in UV can produce, and on synthetic clips with the true coarse codes they are as
large as the wrinkles themselves (docs/detail_evidence.md, "Does a contrast on the photo's own
path fix it?").

:func:`flat_path_offset` measures that pattern for each frame: the contrast of the frame
re-rendered with NO detail (its coarse codes, albedo and light, over the photo) and unwrapped
like the photo, less the zero displacement's contrast shaded in UV. Subtracting it from the
photo's contrast (``model.detail_path_offset``) leaves, for a photo the coarse model explains
exactly, the contrast its detail adds; a zero displacement then matches a detail-free photo.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from seqdeca.models.critic import observed_contrast, shading_contrast
from seqdeca.render.rasterizer import Fragments
from seqdeca.render.renderer import Renderer
from seqdeca.render.shading import sh_shading

__all__ = ["PhotoPath", "flat_path_offset", "path_contrast", "photo_path"]


class PhotoPath(NamedTuple):
    """The frames' coarse meshes rasterized at the photo's size (no gradient).

    screen: (N, V, 3) projected vertices; fragments: their rasterization at the photo's H x W;
    uv_screen: (N, S, S, 2) where each texel samples the frame, in [-1, 1] (as the detail stage
    unwraps the photo).
    """

    screen: torch.Tensor
    fragments: Fragments
    uv_screen: torch.Tensor


def photo_path(
    renderer: Renderer, vertices: torch.Tensor, cam: torch.Tensor, image_size: tuple[int, int]
) -> PhotoPath:
    """Rasterize (N, V, 3) vertices with cam (N, 3) at ``image_size`` (H, W), at the renderer's
    UV size."""
    with torch.no_grad():
        screen, fragments = renderer.rasterize(vertices, cam, image_size)
        uv_screen = renderer.world2uv(screen)[:, :2].permute(0, 2, 3, 1)
    return PhotoPath(screen, fragments, uv_screen)


def path_contrast(
    renderer: Renderer,
    path: PhotoPath,
    *,
    vertices: torch.Tensor,
    light: torch.Tensor,
    texture: torch.Tensor | None,
    normals: torch.Tensor,
    photo: torch.Tensor,
    albedo: torch.Tensor | None,
    coarse_shading: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The detail contrast the photo would show had it been rendered with these detail normals.

    The frames are shaded with ``normals`` (their albedo and light, over ``photo`` as the
    background, clipped to [0, 1]), unwrapped to UV as the photo is, and read as
    :func:`~seqdeca.models.critic.observed_contrast` reads the photo.

    Args:
        vertices: (N, V, 3) coarse vertices; light: (N, 9, 3) SH light.
        texture: (N, 3, Ht, Wt) UV albedo to render with, in [0, 1], or None (grey).
        normals: (N, 3, S, S) detail normals in UV (``Renderer.detail_normal_map``).
        photo: (N, 3, H, W) the frames at the path's size, RGB in [0, 1].
        albedo, coarse_shading, mask: as :func:`~seqdeca.models.critic.observed_contrast`
            (the same ones as for the photo's own contrast).

    Returns:
        (N, 1, S, S).
    """
    rendered = renderer.shade(
        vertices, path.screen, path.fragments, light, texture, normals, background=photo
    )
    image = rendered.image.clamp(0, 1)
    unwrapped = F.grid_sample(image, path.uv_screen, mode="bilinear", align_corners=False)
    return observed_contrast(unwrapped, albedo, coarse_shading, mask)


def flat_path_offset(
    renderer: Renderer,
    path: PhotoPath,
    *,
    vertices: torch.Tensor,
    light: torch.Tensor,
    texture: torch.Tensor | None,
    photo: torch.Tensor,
    albedo: torch.Tensor | None,
    coarse_shading: torch.Tensor,
    mask: torch.Tensor,
    uv_mask: torch.Tensor,
    fixed_displacement: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, 1, S, S) what the photo's path adds to the contrast of a face without detail: its
    :func:`path_contrast` at a zero displacement less the zero displacement's contrast shaded in
    UV (not exactly 0: the detail normals of a flat map are not the coarse normals). No gradient.

    Args:
        uv_mask: (S, S) face-and-eye UV mask; fixed_displacement: the face model's, or None.
        Others: as :func:`path_contrast`.
    """
    with torch.no_grad():
        flat = torch.zeros_like(mask)
        normals = renderer.detail_normal_map(flat, vertices, uv_mask, fixed_displacement)
        on_path = path_contrast(
            renderer,
            path,
            vertices=vertices,
            light=light,
            texture=texture,
            normals=normals,
            photo=photo,
            albedo=albedo,
            coarse_shading=coarse_shading,
            mask=mask,
        )
        in_uv = shading_contrast(sh_shading(normals, light), coarse_shading, mask)
        return on_path - in_uv
