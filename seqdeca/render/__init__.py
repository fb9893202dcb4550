"""Pure-PyTorch rendering: rasterizer, SH shading, UV-space operations, the renderer, pasting.

Modules: ``rasterizer`` (z-buffered rasterizer, :class:`Fragments`, differentiable interpolation),
``shading`` (DECA's SH lighting and shape-view lights), ``uv`` (world-to-UV, texture sampling,
detail normals, dense meshes), ``renderer`` (:class:`Renderer`, :class:`RenderOutput`), ``paste``
(renders back into video frames), ``resize`` (:func:`resize_maps`, the package's one resize of
images, masks and UV maps), ``pytorch3d_backend`` (optional). The render-cost benchmark
and its synthetic FLAME-sized head are ``benchmarks/bench_render.py``, outside the package.
"""

from seqdeca.render.paste import paste_into_frame
from seqdeca.render.rasterizer import (
    Fragments,
    interpolate,
    interpolate_face_attributes,
    pixel_barycentrics,
    rasterize,
)
from seqdeca.render.renderer import Renderer, RenderOutput, get_rasterizer
from seqdeca.render.resize import resize_maps
from seqdeca.render.shading import SH_CONSTANTS, directional_shading, sh_basis, sh_shading
from seqdeca.render.uv import (
    DenseMesh,
    dense_detail_mesh,
    displacement_to_normal,
    rasterize_uv,
    sample_uv_texture,
    uv_to_grid,
    world_to_uv,
)

__all__ = [
    "SH_CONSTANTS",
    "DenseMesh",
    "Fragments",
    "RenderOutput",
    "Renderer",
    "dense_detail_mesh",
    "directional_shading",
    "displacement_to_normal",
    "get_rasterizer",
    "interpolate",
    "interpolate_face_attributes",
    "paste_into_frame",
    "pixel_barycentrics",
    "rasterize",
    "rasterize_uv",
    "resize_maps",
    "sample_uv_texture",
    "sh_basis",
    "sh_shading",
    "uv_to_grid",
    "world_to_uv",
]
