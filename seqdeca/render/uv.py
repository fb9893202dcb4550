"""UV-space operations: world-to-UV maps, texture sampling, detail normals and dense detail meshes.

UV conventions (OBJ, as in :mod:`seqdeca.face_model.assets`): (u, v) in [0, 1], u to the right,
v = 1 at the TOP row of a UV image. A UV image of size (H, W) samples (u, v) at pixel centres:
pixel (i, j) holds u = (j + 0.5) / W, v = 1 - (i + 0.5) / H. Rasterizing in UV space places u at
normalised x = 2u - 1 and v at y = 1 - 2v (y down), which matches ``grid_sample`` with
``align_corners=False`` (:func:`uv_to_grid`), as in DECA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqdeca.geometry import vertex_normals
from seqdeca.render.rasterizer import Fragments, interpolate, rasterize


def uv_to_grid(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2) UV coordinates -> ``grid_sample`` coordinates (2u - 1, 1 - 2v) (y down)."""
    return torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1)


def uv_pixel_centres(
    size: int | tuple[int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(H, W, 2) UV coordinates (u, v) of the pixel centres of an H x W UV image."""
    h, w = (size, size) if isinstance(size, int) else size
    v = 1 - (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    u = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    return torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)


def rasterize_uv(
    verts_uvs: torch.Tensor, faces_uvs: torch.Tensor, uv_size: int | tuple[int, int]
) -> Fragments:
    """Rasterize a mesh's UV layout (the same for every mesh of a topology).

    Args:
        verts_uvs: (VT, 2) UV coordinates in [0, 1].
        faces_uvs: (F, 3) int64 indices into ``verts_uvs``; face f here is face f of the mesh.
        uv_size: H (square) or (H, W) of the UV image.

    Returns:
        :class:`Fragments` with N = 1; ``pix_to_face`` is -1 outside the layout. Overlapping UV
        faces (there should be none) resolve to the lowest face index.
    """
    grid = uv_to_grid(verts_uvs.to(torch.float64))
    screen = torch.cat([grid, torch.zeros_like(grid[:, :1])], dim=-1)[None]
    fragments = rasterize(screen, faces_uvs, uv_size)
    return Fragments(
        pix_to_face=fragments.pix_to_face,
        bary=fragments.bary.to(verts_uvs.dtype),
        zbuf=fragments.zbuf.to(verts_uvs.dtype),
    )


def world_to_uv(
    vertex_attrs: torch.Tensor, faces: torch.Tensor, uv_fragments: Fragments
) -> torch.Tensor:
    """Per-vertex attributes -> UV maps (DECA's ``world2uv``).

    Args:
        vertex_attrs: (N, V, C) per-vertex values (positions, normals, colours, ...).
        faces: (F, 3) vertex indices, face for face with the ``faces_uvs`` rasterized.
        uv_fragments: :func:`rasterize_uv` output (N = 1).

    Returns:
        (N, C, H, W), zeros outside the UV layout; differentiable with respect to the attributes.
    """
    n = vertex_attrs.shape[0]
    fr = uv_fragments
    expanded = Fragments(
        pix_to_face=fr.pix_to_face.expand(n, -1, -1),
        bary=fr.bary.expand(n, -1, -1, -1),
        zbuf=fr.zbuf.expand(n, -1, -1),
    )
    return interpolate(expanded, vertex_attrs, faces).permute(0, 3, 1, 2)


def sample_uv_texture(texture: torch.Tensor, uv_image: torch.Tensor) -> torch.Tensor:
    """Sample a UV texture at per-pixel UV coordinates (bilinear, ``align_corners=False``).

    Args:
        texture: (N, C, Ht, Wt) UV texture (row 0 = v 1).
        uv_image: (N, H, W, 2) UV coordinates (u, v) in [0, 1] per pixel.

    Returns:
        (N, C, H, W). Lookups within half a texel of the border (and beyond) clamp to the border
        texels; DECA pads with zeros there, which darkens UV seams.
    """
    grid = uv_to_grid(uv_image).to(texture.dtype)
    return F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grid_faces(h: int, w: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Two triangles per cell of an H x W vertex grid (vertex id = row * W + column).

    Triangles are counter-clockwise in UV (v up, i.e. row 0 at the top), so a grid laid over a
    UV image whose mesh faces are counter-clockwise in UV gets outward normals.

    Returns:
        (2 * (H - 1) * (W - 1), 3) int64.
    """
    r, c = torch.meshgrid(
        torch.arange(h - 1, device=device), torch.arange(w - 1, device=device), indexing="ij"
    )
    tl = (r * w + c).reshape(-1)  # top-left corner of each cell
    tr, bl, br = tl + 1, tl + w, tl + w + 1
    return torch.stack([torch.stack([tl, bl, tr], 1), torch.stack([tr, bl, br], 1)], 1).reshape(
        -1, 3
    )


def _as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(H, W), (1, H, W) or (N|1, 1, H, W) mask -> (N|1, 1, H, W) in the dtype of ``like``."""
    mask = mask.to(device=like.device, dtype=like.dtype)
    while mask.dim() < 4:
        mask = mask[None]
    return mask


def displacement_to_normal(
    uv_z: torch.Tensor,
    uv_vertices: torch.Tensor,
    uv_normals: torch.Tensor,
    uv_mask: torch.Tensor,
    fixed_displacement: torch.Tensor | None = None,
) -> torch.Tensor:
    """Detail normal map from a UV displacement map (DECA's ``displacement2normal``).

    The UV grid becomes a dense mesh: vertex (i, j) sits at ``uv_vertices + (uv_z * mask +
    fixed_displacement) * uv_normals``; its area-weighted vertex normals are the detail normals
    inside the mask, and the coarse normals are kept outside it.

    Args:
        uv_z: (N, 1, H, W) displacement along the normal, metres.
        uv_vertices: (N, 3, H, W) coarse positions in UV (``world_to_uv`` of the vertices).
        uv_normals: (N, 3, H, W) coarse unit normals in UV.
        uv_mask: (H, W) or (N|1, 1, H, W) face(-and-eye) mask in [0, 1].
        fixed_displacement: optional (H, W) displacement added everywhere (DECA's
            ``fixed_displacement_256.npy``).

    Returns:
        (N, 3, H, W) unit normals (coarse normals outside the mask, blended by its value).
    """
    n, _, h, w = uv_vertices.shape
    mask = _as_mask(uv_mask, uv_vertices)
    offset = uv_z * mask
    if fixed_displacement is not None:
        offset = offset + fixed_displacement.to(uv_vertices)
    dense = (uv_vertices + offset * uv_normals).flatten(2).transpose(1, 2)  # (N, H*W, 3)
    normals = vertex_normals(dense, grid_faces(h, w, device=dense.device))
    normals = normals.transpose(1, 2).reshape(n, 3, h, w)
    return normals * mask + uv_normals * (1 - mask)


@dataclass(frozen=True)
class DenseMesh:
    """A detailed mesh with one vertex per UV pixel inside a mask.

    Attributes:
        vertices: (N, P, 3) positions, metres.
        faces: (Fd, 3) int64, grid cells whose three corners are inside the mask.
        uvs: (P, 2) UV coordinates of the vertices (pixel centres).
        colors: (N, P, C) per-vertex texture values, or None.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    colors: torch.Tensor | None = None


def dense_detail_mesh(
    uv_vertices: torch.Tensor,
    uv_normals: torch.Tensor,
    uv_z: torch.Tensor,
    uv_mask: torch.Tensor,
    *,
    texture: torch.Tensor | None = None,
    fixed_displacement: torch.Tensor | None = None,
    threshold: float = 0.5,
) -> DenseMesh:
    """Displaced dense mesh over the UV pixels inside a mask, for exporting detailed meshes.

    Args:
        uv_vertices: (N, 3, H, W) coarse positions in UV.
        uv_normals: (N, 3, H, W) coarse unit normals in UV.
        uv_z: (N, 1, H, W) displacement along the normal, metres.
        uv_mask: (H, W) or (1, 1, H, W) mask shared by the batch; pixels above ``threshold``
            become vertices.
        texture: optional (N, C, H, W) UV texture sampled at the vertices.
        fixed_displacement: optional (H, W) added displacement.
        threshold: mask level that makes a pixel a vertex.

    Returns:
        :class:`DenseMesh`.
    """
    h, w = uv_vertices.shape[-2:]
    mask = _as_mask(uv_mask, uv_vertices)
    if mask.shape[0] != 1:
        raise ValueError("dense_detail_mesh needs one mask shared by the batch")
    offset = uv_z * mask
    if fixed_displacement is not None:
        offset = offset + fixed_displacement.to(uv_vertices)
    displaced = (uv_vertices + offset * uv_normals).flatten(2).transpose(1, 2)  # (N, H*W, 3)
    inside = mask.reshape(-1) > threshold
    keep = inside.nonzero().squeeze(1)
    new_id = torch.cumsum(inside.long(), 0) - 1
    faces = grid_faces(h, w, device=uv_vertices.device)
    faces = new_id[faces[inside[faces].all(1)]]
    uvs = uv_pixel_centres((h, w), device=uv_vertices.device, dtype=uv_vertices.dtype)
    colors = None
    if texture is not None:
        colors = texture.flatten(2).transpose(1, 2).index_select(1, keep)
    return DenseMesh(
        vertices=displaced.index_select(1, keep),
        faces=faces,
        uvs=uvs.reshape(-1, 2).index_select(0, keep),
        colors=colors,
    )
