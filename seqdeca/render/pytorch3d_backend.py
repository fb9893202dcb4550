"""Optional adapter to pytorch3d's rasterizer, producing seqdeca :class:`Fragments`.

pytorch3d has no installable distribution in the package registries seqdeca supports; users who
build it themselves can select it with ``Renderer(..., backend="pytorch3d")``. It is imported
only when selected. Conventions bridged here: pytorch3d's NDC has +x LEFT and +y UP, scales the
longer image side to [-r, r] (r = aspect ratio), returns packed face indices (n * F + f) and
-1 depth on background; it also ignores faces behind z = 0, so depths are shifted positive.
"""

from __future__ import annotations

import importlib.util

import torch

from seqdeca.errors import UserError
from seqdeca.render.rasterizer import Fragments

_INSTALL_HINT = (
    "render backend 'pytorch3d' needs the pytorch3d package, which is not importable here; "
    "install it (https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md) or use "
    "backend='builtin'"
)


class Pytorch3dUnavailable(UserError, ImportError):
    """The pytorch3d backend was selected but pytorch3d cannot be imported (one-line message)."""


def is_available() -> bool:
    """Whether ``import pytorch3d`` can succeed."""
    return importlib.util.find_spec("pytorch3d") is not None


def require_pytorch3d() -> None:
    """Raise :class:`Pytorch3dUnavailable` (an ImportError) with a one-line hint if it is missing."""
    if not is_available():
        raise Pytorch3dUnavailable(_INSTALL_HINT)


def rasterize_pytorch3d(
    vertices_screen: torch.Tensor,
    faces: torch.Tensor,
    image_size: int | tuple[int, int],
    *,
    cull_backfaces: bool = False,
) -> Fragments:
    """Same contract as :func:`seqdeca.render.rasterizer.rasterize`, computed by pytorch3d.

    Args:
        vertices_screen: (N, V, 3) x, y normalised to [-1, 1] (y down), depth (smaller nearer).
        faces: (F, 3) int64.
        image_size: H or (H, W).
        cull_backfaces: passed to pytorch3d (its culling uses its own winding convention).

    Returns:
        :class:`Fragments` with (N, H, W) maps.
    """
    require_pytorch3d()
    from pytorch3d.renderer.mesh import rasterize_meshes
    from pytorch3d.structures import Meshes

    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    n, nf = vertices_screen.shape[0], faces.shape[0]
    with torch.no_grad():
        v = vertices_screen.detach().float().clone()
        v[..., :2] = -v[..., :2]
        if h > w:
            v[..., 1] = v[..., 1] * h / w
        elif w > h:
            v[..., 0] = v[..., 0] * w / h
        shift = 1.0 - v[..., 2].amin(dim=1, keepdim=True)  # (N, 1): every depth >= 1
        v[..., 2] = v[..., 2] + shift
        meshes = Meshes(verts=v, faces=faces.to(v.device).long()[None].expand(n, -1, -1))
        pix_to_face, zbuf, bary, _ = rasterize_meshes(
            meshes,
            image_size=(h, w),
            blur_radius=0.0,
            faces_per_pixel=1,
            bin_size=None,
            max_faces_per_bin=None,
            perspective_correct=False,
            cull_backfaces=cull_backfaces,
        )
        pix_to_face, zbuf, bary = pix_to_face[..., 0], zbuf[..., 0], bary[..., 0, :]
        covered = pix_to_face >= 0
        offsets = torch.arange(n, device=v.device)[:, None, None] * nf
        pix_to_face = torch.where(covered, pix_to_face - offsets, -1)
        zbuf = torch.where(covered, zbuf - shift[:, :, None], float("inf"))
        bary = bary * covered[..., None]
    return Fragments(pix_to_face=pix_to_face.long(), bary=bary.to(vertices_screen.dtype), zbuf=zbuf)
