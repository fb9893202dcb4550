"""The renderer: rasterize, interpolate, texture and light a batch of meshes (DECA's ``SRenderY``).

What it does, in DECA's order: project the model-space vertices with the weak-perspective camera,
rasterize, interpolate UV coordinates and MODEL-SPACE vertex normals (as DECA does: the SH light
lives in the frame of the posed mesh, y up, z towards the camera), sample the albedo UV map,
shade with 9-band SH lighting, and composite over a background with the coverage mask.
Gradients flow to vertices (through barycentrics and normals), camera, light and albedo; the
coverage mask itself (the silhouette) is discrete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from seqdeca.geometry import project_weak_perspective, vertex_normals
from seqdeca.render.rasterizer import CoveredPixels, Fragments, rasterize, weighted_corners
from seqdeca.render.shading import SHAPE_GREY, directional_shading, sh_shading, shape_lights
from seqdeca.render.uv import (
    displacement_to_normal,
    rasterize_uv,
    sample_uv_texture,
    uv_to_grid,
    world_to_uv,
)

BACKENDS = ("builtin", "pytorch3d")
#: DECA's ``pos_mask`` threshold on the screen-space normal z (camera-facing pixels).
FACING_THRESHOLD = -0.05
#: DECA's ``render_shape`` keeps pixels whose screen-space normal z is below this.
SHAPE_FACING_THRESHOLD = 0.15


def get_rasterizer(backend: str) -> Callable[..., Fragments]:
    """The rasterize function of a backend: "builtin" (default) or "pytorch3d" (if installed)."""
    if backend == "builtin":
        return rasterize
    if backend == "pytorch3d":
        from seqdeca.render.pytorch3d_backend import rasterize_pytorch3d, require_pytorch3d

        require_pytorch3d()
        return rasterize_pytorch3d
    raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")


@dataclass(frozen=True)
class RenderOutput:
    """Everything :meth:`Renderer.forward` computes.

    Attributes:
        image: (N, 3, H, W) shaded albedo composited over the background, RGB (not clamped;
            in [0, 1] for sensible albedo and light).
        alpha: (N, 1, H, W) coverage, 1 where a face covers the pixel centre, else 0 (no grad).
        albedo_image: (N, 3, H, W) albedo sampled from the UV map, composited like ``image``.
        shading: (N, 3, H, W) SH shading (ones when no light is given).
        normal_image: (N, 3, H, W) the normals used for shading: interpolated model-space vertex
            normals (not renormalised, as DECA), or the sampled detail normal map; zero outside.
        uv_image: (N, H, W, 2) interpolated UV coordinates (u, v); zero outside.
        pos_mask: (N, 1, H, W) 1 where the surface faces the camera: screen-space normal z
            < -0.05 as in DECA, i.e. interpolated model-space normal z > 0.05.
        fragments: the rasterizer output (``pix_to_face`` (N, H, W), ...).
        vertices_screen: (N, V, 3) projected vertices (normalised x, y (y down), depth).
    """

    image: torch.Tensor
    alpha: torch.Tensor
    albedo_image: torch.Tensor
    shading: torch.Tensor
    normal_image: torch.Tensor
    uv_image: torch.Tensor
    pos_mask: torch.Tensor
    fragments: Fragments
    vertices_screen: torch.Tensor

    @property
    def pix_to_face(self) -> torch.Tensor:
        """(N, H, W) int64 face index per pixel, -1 on background."""
        return self.fragments.pix_to_face

    @property
    def grid(self) -> torch.Tensor:
        """(N, H, W, 2) ``grid_sample`` coordinates of ``uv_image`` (DECA's ``grid``)."""
        return uv_to_grid(self.uv_image)


def _composite(
    image: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor | None
) -> torch.Tensor:
    """``image * alpha + background * (1 - alpha)``; black background when None."""
    if background is None:
        return image * alpha
    return image * alpha + background.to(image) * (1 - alpha)


class Renderer(nn.Module):
    """Differentiable mesh renderer for one mesh topology with a UV layout.

    Args:
        faces: (F, 3) int64 vertex indices (counter-clockwise seen from outside).
        verts_uvs: (VT, 2) UV coordinates in [0, 1] (v = 1 at the top of the UV image).
        faces_uvs: (F, 3) int64 indices into ``verts_uvs``.
        image_size: rendered image size, H or (H, W).
        uv_size: UV map size, H or (H, W) (256 in DECA).
        backend: "builtin" (pure PyTorch, default) or "pytorch3d" (only if it is installed).

    All tensors are non-persistent buffers (rebuilt from the face model, never checkpointed); the
    module follows ``.to(device)`` like any other and never moves itself.
    """

    def __init__(
        self,
        *,
        faces: torch.Tensor,
        verts_uvs: torch.Tensor,
        faces_uvs: torch.Tensor,
        image_size: int | tuple[int, int] = 224,
        uv_size: int | tuple[int, int] = 256,
        backend: str = "builtin",
    ) -> None:
        super().__init__()
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.uv_size = (uv_size, uv_size) if isinstance(uv_size, int) else uv_size
        self.backend = backend
        self._rasterize = get_rasterizer(backend)
        faces = torch.as_tensor(faces, dtype=torch.int64)
        verts_uvs = torch.as_tensor(verts_uvs, dtype=torch.float32)
        faces_uvs = torch.as_tensor(faces_uvs, dtype=torch.int64)
        if faces.shape != faces_uvs.shape:
            raise ValueError(
                f"faces {tuple(faces.shape)} and faces_uvs {tuple(faces_uvs.shape)} differ"
            )
        uv_fragments = rasterize_uv(verts_uvs, faces_uvs, self.uv_size)
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("verts_uvs", verts_uvs, persistent=False)
        self.register_buffer("faces_uvs", faces_uvs, persistent=False)
        self.register_buffer("face_uvs", verts_uvs[faces_uvs][None], persistent=False)
        self.register_buffer("uv_pix_to_face", uv_fragments.pix_to_face, persistent=False)
        self.register_buffer("uv_bary", uv_fragments.bary, persistent=False)

    @property
    def uv_fragments(self) -> Fragments:
        """The rasterized UV layout (N = 1)."""
        zbuf = torch.zeros_like(self.uv_bary[..., 0])
        return Fragments(pix_to_face=self.uv_pix_to_face, bary=self.uv_bary, zbuf=zbuf)

    @property
    def uv_mask(self) -> torch.Tensor:
        """(1, 1, Huv, Wuv) 1 where the UV layout covers the pixel, else 0."""
        return (self.uv_pix_to_face >= 0).to(self.uv_bary.dtype)[:, None]

    def world2uv(self, vertex_attrs: torch.Tensor) -> torch.Tensor:
        """Per-vertex attributes (N, V, C) -> UV maps (N, C, Huv, Wuv), zeros outside the layout."""
        return world_to_uv(vertex_attrs, self.faces, self.uv_fragments)

    def _interpolate(
        self, vertices: torch.Tensor, screen: torch.Tensor, fragments: Fragments
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Interpolate model-space normals and UVs at the covered pixels.

        Returns:
            normal image (N, 3, H, W), facing (N, 1, H, W) = screen-space normal z (detached),
            UV image (N, H, W, 2); the first and last are differentiable in the vertices.
        """
        px = CoveredPixels.of(fragments.pix_to_face)
        ids = px.corner_ids(self.faces, vertices.shape[1])
        bary = px.barycentrics(screen, ids)  # (K, 3)
        normals = weighted_corners(bary, px.gather(vertex_normals(vertices, self.faces), ids))
        uvs = self.face_uvs[0].to(bary.dtype).index_select(0, px.face)  # (K, 3, 2)
        uvs = weighted_corners(bary, uvs)
        # The weak-perspective projection maps (x, y, z) to s * (x, -y, -z) + t, so screen-space
        # normals are (nx, -ny, -nz) of the model-space ones.
        values = px.scatter(torch.cat([normals, -normals[:, 2:].detach()], dim=1))
        channels_first = values.permute(0, 3, 1, 2)
        return channels_first[:, :3], channels_first[:, 3:], px.scatter(uvs)

    def rasterize(
        self,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        image_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, Fragments]:
        """Project (N, V, 3) model-space vertices with cam (N, 3) and rasterize them.

        Args:
            image_size: (H, W) to rasterize at; None: this renderer's ``image_size``
                (:meth:`shade` works at either).

        Returns:
            screen vertices (N, V, 3) and :class:`Fragments` at that size.
        """
        screen = project_weak_perspective(vertices, cam)
        return screen, self._rasterize(screen, self.faces, image_size or self.image_size)

    def rasterize_faces(
        self, vertices: torch.Tensor, cam: torch.Tensor, faces: torch.Tensor
    ) -> Fragments:
        """Rasterize other triangles at this renderer's size: (N, V', 3) model-space vertices
        with cam (N, 3) and their (F', 3) int64 faces (e.g. the cones behind a mesh's openings,
        :mod:`seqdeca.render.openings`)."""
        screen = project_weak_perspective(vertices, cam)
        return self._rasterize(screen, faces.to(vertices.device), self.image_size)

    def forward(
        self,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        light: torch.Tensor | None = None,
        albedo: torch.Tensor | None = None,
        detail_normals: torch.Tensor | None = None,
        background: torch.Tensor | None = None,
    ) -> RenderOutput:
        """Render textured, SH-lit meshes.

        Args:
            vertices: (N, V, 3) posed model-space vertices, metres.
            cam: (N, 3) weak-perspective camera (s, tx, ty).
            light: (N, 9, 3) SH coefficients, or None for unlit albedo (shading = 1).
            albedo: (N, 3, Huv, Wuv) albedo UV map in [0, 1], or None for a constant 0.5 grey
                (what DECA uses without a texture model).
            detail_normals: (N, 3, Huv, Wuv) detail normal UV map (see
                :meth:`detail_normal_map`), or None to shade with the coarse normals.
            background: (N, 3, H, W) image behind the face, or None for black.

        Returns:
            :class:`RenderOutput`.
        """
        screen, fragments = self.rasterize(vertices, cam)
        return self.shade(vertices, screen, fragments, light, albedo, detail_normals, background)

    def shade(
        self,
        vertices: torch.Tensor,
        screen: torch.Tensor,
        fragments: Fragments,
        light: torch.Tensor | None = None,
        albedo: torch.Tensor | None = None,
        detail_normals: torch.Tensor | None = None,
        background: torch.Tensor | None = None,
    ) -> RenderOutput:
        """Everything :meth:`forward` does after rasterization (arguments as there).

        Args:
            vertices: (N, V, 3) model-space vertices.
            screen: (N, V, 3) their projection (from :meth:`rasterize`).
            fragments: :meth:`rasterize` output for ``screen``.
        """
        normal_image, facing, uv_image = self._interpolate(vertices, screen, fragments)
        alpha = fragments.mask[:, None].to(normal_image.dtype)
        if detail_normals is not None:
            normal_image = sample_uv_texture(detail_normals, uv_image) * alpha
        if albedo is None:
            albedo_image = torch.full_like(normal_image, 0.5)
        else:
            albedo_image = sample_uv_texture(albedo, uv_image)
        if light is None:
            shading = torch.ones_like(normal_image)
        else:
            shading = sh_shading(normal_image, light)
        return RenderOutput(
            image=_composite(albedo_image * shading, alpha, background),
            alpha=alpha,
            albedo_image=_composite(albedo_image, alpha, background),
            shading=shading,
            normal_image=normal_image,
            uv_image=uv_image,
            pos_mask=(facing < FACING_THRESHOLD).to(alpha.dtype),
            fragments=fragments,
            vertices_screen=screen,
        )

    def render_shape(
        self,
        vertices: torch.Tensor,
        cam: torch.Tensor,
        *,
        background: torch.Tensor | None = None,
        detail_normals: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Grey shape images under DECA's five directional lights, for visualisation.

        Args:
            vertices: (N, V, 3) model-space vertices, metres.
            cam: (N, 3) weak-perspective camera.
            background: (N, 3, H, W) image to draw over, or None for black.
            detail_normals: optional (N, 3, Huv, Wuv) detail normal map to shade with.

        Returns:
            (N, 3, H, W) in [0, 1]; only pixels facing the camera are drawn (as DECA).
        """
        with torch.no_grad():
            screen, fragments = self.rasterize(vertices, cam)
            normal_image, facing, uv_image = self._interpolate(vertices, screen, fragments)
            alpha = fragments.mask[:, None].to(normal_image.dtype)
            if detail_normals is not None:
                normal_image = sample_uv_texture(detail_normals, uv_image) * alpha
            directions, intensities = shape_lights(
                vertices.shape[0], device=vertices.device, dtype=normal_image.dtype
            )
            shading = directional_shading(normal_image, directions, intensities)
            alpha = alpha * (facing < SHAPE_FACING_THRESHOLD).to(alpha.dtype)
            return _composite((SHAPE_GREY * shading).clamp(0, 1), alpha, background)

    def shape_from(
        self, out: RenderOutput, *, background: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`render_shape` of the meshes of an existing render, without rasterizing again.

        Args:
            out: a :meth:`forward` / :meth:`shade` output rendered WITHOUT detail normals (its
                normal image then holds the coarse normals that decide which pixels face the
                camera).
            background: (N, 3, H, W) image to draw over, or None for black.

        Returns:
            (N, 3, H, W) in [0, 1], equal to ``render_shape`` of the same vertices and camera.
        """
        with torch.no_grad():
            normal_image = out.normal_image
            directions, intensities = shape_lights(
                normal_image.shape[0], device=normal_image.device, dtype=normal_image.dtype
            )
            shading = directional_shading(normal_image, directions, intensities)
            facing = -normal_image[:, 2:3]  # the screen-space normal z (see _interpolate)
            alpha = out.alpha * (facing < SHAPE_FACING_THRESHOLD).to(out.alpha.dtype)
            return _composite((SHAPE_GREY * shading).clamp(0, 1), alpha, background)

    def detail_normal_map(
        self,
        uv_z: torch.Tensor,
        vertices: torch.Tensor,
        uv_mask: torch.Tensor,
        fixed_displacement: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DECA's ``displacement2normal`` for coarse vertices: detail normals in UV.

        Args:
            uv_z: (N, 1, Huv, Wuv) displacement map, metres.
            vertices: (N, V, 3) coarse model-space vertices (detached here, as DECA).
            uv_mask: (Huv, Wuv) or (1, 1, Huv, Wuv) face-and-eye mask.
            fixed_displacement: optional (Huv, Wuv) fixed displacement.

        Returns:
            (N, 3, Huv, Wuv) unit detail normals (coarse normals outside the mask).
        """
        with torch.no_grad():
            uv_vertices = self.world2uv(vertices)
            uv_normals = self.world2uv(vertex_normals(vertices, self.faces))
        return displacement_to_normal(uv_z, uv_vertices, uv_normals, uv_mask, fixed_displacement)
