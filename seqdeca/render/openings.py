"""What a render shows through a face mesh's openings (eyes, mouth without a mesh behind them).

:func:`opening_cells` rasterizes the cones of :class:`~seqdeca.geometry.openings.MeshOpenings`
and keeps them only where the face itself does not cover the pixel: the cones lie behind the
face, so this is a depth test that the face always wins. Each cone triangle (one edge of an
opening's rim joined to its apex) is cut into ``RINGS`` bands from the rim to the apex; a *cell*
is one band of one triangle, so the cells of an opening form a coarse polar grid over it (the
corners of an eye and its middle, the lips' edge of the mouth and its inside are different
cells). :func:`fill_openings` paints each pixel with its cell's colour under the frame's light.
"""

from __future__ import annotations

import torch

from seqdeca.geometry.openings import MeshOpenings
from seqdeca.render.renderer import Renderer
from seqdeca.render.shading import sh_shading

__all__ = ["RINGS", "cell_openings", "facing_shading", "fill_openings", "opening_cells"]

RINGS = 3  # bands of a cone triangle, rim to apex


def cell_openings(openings: MeshOpenings) -> torch.Tensor:
    """(C,) int64 the opening of each cell (C = cone triangles x :data:`RINGS`)."""
    return openings.cone_opening.repeat_interleave(RINGS)


def opening_cells(
    renderer: Renderer,
    openings: MeshOpenings,
    vertices: torch.Tensor,
    cam: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """(N, H, W) int64 the cell each pixel looks into, -1 where none or where the face covers.

    Args:
        renderer: a renderer of the face's topology (its size is the result's).
        openings: the topology's openings.
        vertices: (N, V, 3) model-space meshes; cam: (N, 3).
        alpha: (N, 1, H, W) the face's own coverage at that size.
    """
    if not len(openings):
        return torch.full_like(alpha[:, 0], -1, dtype=torch.int64)
    fragments = renderer.rasterize_faces(openings.closed(vertices.detach()), cam, openings.cones)
    hit = fragments.pix_to_face
    towards_apex = fragments.bary[..., 2].clamp(0, 1)  # 0 on the rim, 1 at the apex
    ring = (towards_apex * RINGS).long().clamp_max(RINGS - 1)
    return torch.where((hit >= 0) & (alpha[:, 0] <= 0), hit * RINGS + ring, -1)


def facing_shading(light: torch.Tensor) -> torch.Tensor:
    """(n, 3) the SH shading (n, 9, 3) of a surface facing the camera (model-space normal
    (0, 0, 1)): how the light scales what is seen through an opening."""
    normal = light.new_tensor([0.0, 0.0, 1.0]).expand(light.shape[0], 1, 3)
    return sh_shading(normal, light)[:, 0]


def fill_openings(
    image: torch.Tensor, cells: torch.Tensor, colours: torch.Tensor, light: torch.Tensor
) -> torch.Tensor:
    """Paint the pixels that look into an opening.

    Args:
        image: (n, 3, H, W) a render.
        cells: (n, H, W) :func:`opening_cells` at its size.
        colours: (C, 3) each cell's albedo.
        light: (n, 9, 3) the frames' SH light (:func:`facing_shading`).

    Returns:
        (n, 3, H, W) the render with colour_c x facing shading where the pixel looks into
        cell c.
    """
    if not colours.shape[0]:
        return image
    shade = facing_shading(light)[:, :, None, None]  # (n, 3, 1, 1)
    values = colours.to(image)[cells.clamp_min(0)].permute(0, 3, 1, 2) * shade
    return torch.where(cells[:, None] >= 0, values, image)
