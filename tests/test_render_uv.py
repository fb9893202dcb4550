"""UV-space operations: world-to-UV round trips, texture sampling, detail normals, dense meshes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.testing import assert_close

from benchmarks.bench_render import head_batch, synthetic_head
from seqdeca.render import (
    Renderer,
    dense_detail_mesh,
    displacement_to_normal,
    rasterize_uv,
    sample_uv_texture,
    world_to_uv,
)
from seqdeca.render.uv import grid_faces, uv_pixel_centres


def _uv_grid_mesh(rows: int = 7, cols: int = 9):
    """A planar grid mesh whose UV layout is its own (x, y) rescaled to [0.1, 0.9]^2.

    Returns vertices (V, 3) with x = u, y = v, z = 0 (faces counter-clockwise seen from +z, and
    in UV), verts_uvs (V, 2) and faces (F, 3) (also the UV faces).
    """
    u = torch.linspace(0.1, 0.9, cols, dtype=torch.float64)
    v = torch.linspace(0.9, 0.1, rows, dtype=torch.float64)  # row 0 at the top
    uu, vv = torch.meshgrid(u, v, indexing="xy")
    uvs = torch.stack([uu, vv], -1).reshape(-1, 2)
    vertices = torch.cat([uvs, torch.zeros(len(uvs), 1, dtype=torch.float64)], dim=1)
    return vertices, uvs, grid_faces(rows, cols)


def test_world_to_uv_of_the_uv_coordinates_reproduces_the_uv_grid():
    _, uvs, faces = _uv_grid_mesh()
    fragments = rasterize_uv(uvs, faces, (40, 50))
    maps = world_to_uv(uvs[None], faces, fragments)  # (1, 2, 40, 50)
    centres = uv_pixel_centres((40, 50), dtype=torch.float64).permute(2, 0, 1)[None]
    m = fragments.mask[:, None].expand(-1, 2, -1, -1)
    assert_close(maps[m], centres[m])
    # The covered region is the layout [0.1, 0.9]^2: pixel centres inside it, nothing outside.
    inside = (centres >= 0.1) & (centres <= 0.9)
    assert torch.equal(m, inside.all(1, keepdim=True).expand(-1, 2, -1, -1))
    assert (maps[~m] == 0).all()


def test_world_to_uv_is_differentiable_and_batched():
    vertices, uvs, faces = _uv_grid_mesh()
    fragments = rasterize_uv(uvs, faces, 32)
    attrs = torch.randn(3, len(vertices), 4, dtype=torch.float64, requires_grad=True)
    maps = world_to_uv(attrs, faces, fragments)
    assert maps.shape == (3, 4, 32, 32)
    maps.sum().backward()
    assert attrs.grad.abs().sum() > 0


def test_texture_rendered_then_resampled_matches_the_vertex_colours():
    head = synthetic_head(rings=24, segments=20)
    renderer = Renderer(
        faces=head.faces,
        verts_uvs=head.verts_uvs,
        faces_uvs=head.faces_uvs,
        image_size=64,
        uv_size=128,
    )
    verts, cam = head_batch(head, 2)
    # Colours linear in position: the UV map holds a piecewise-linear field, which the screen
    # interpolation reproduces wherever bilinear sampling stays within one UV triangle.
    colours = (verts - verts.amin(1, keepdim=True)) / (
        verts.amax(1, keepdim=True) - verts.amin(1, keepdim=True)
    )
    texture = renderer.world2uv(colours)
    out = renderer(verts, cam, None, texture)
    from seqdeca.render import interpolate

    direct = interpolate(out.fragments, colours, head.faces).permute(0, 3, 1, 2)
    m = out.alpha.bool().expand(-1, 3, -1, -1)
    err = (out.albedo_image - direct)[m].abs()
    assert err.median() < 2e-3 and err.quantile(0.9) < 2e-2


def test_sample_uv_texture_orientation():
    texture = torch.zeros(1, 1, 4, 4)
    texture[0, 0, 0, 3] = 1.0  # top-right texel: u high, v high (v = 1 at the top row)
    uv = torch.tensor([[[[7 / 8, 7 / 8], [1 / 8, 1 / 8]]]])  # (1, 1, 2, 2)
    sampled = sample_uv_texture(texture, uv)
    assert_close(sampled[0, 0, 0], torch.tensor([1.0, 0.0]))


def _tilted_plane(h: int, w: int, slope: float = 0.0):
    """UV maps of the plane z = slope * x over the UV square: positions (1, 3, H, W), normals."""
    centres = uv_pixel_centres((h, w), dtype=torch.float64).permute(2, 0, 1)[None]  # (1, 2, H, W)
    pos = torch.cat([centres, slope * centres[:, :1]], dim=1)
    normal = F.normalize(torch.tensor([-slope, 0.0, 1.0], dtype=torch.float64), dim=0)
    return pos, normal.view(1, 3, 1, 1).expand(1, 3, h, w)


def test_zero_displacement_reproduces_the_coarse_normals():
    pos, normals = _tilted_plane(16, 20, slope=0.7)
    mask = torch.zeros(16, 20, dtype=torch.float64)
    mask[2:-2, 3:-3] = 1.0
    detail = displacement_to_normal(
        torch.zeros(1, 1, 16, 20, dtype=torch.float64), pos, normals, mask
    )
    assert_close(detail, normals)


def test_displacement_ramp_tilts_the_normals_exactly():
    pos, normals = _tilted_plane(16, 16, slope=0.0)
    mask = torch.ones(16, 16, dtype=torch.float64)
    u = pos[:, :1]
    detail = displacement_to_normal(0.5 * u, pos, normals, mask)  # surface z = 0.5 u
    expected = F.normalize(torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64), dim=0)
    assert_close(detail[0, :, 1:-1, 1:-1], expected.view(3, 1, 1).expand(3, 14, 14))
    fixed = 0.5 * u[0, 0]  # the same ramp as a fixed displacement
    zero = torch.zeros_like(u)
    assert_close(displacement_to_normal(zero, pos, normals, mask, fixed), detail)


def test_renderer_detail_normal_map_with_zero_displacement_is_close_to_coarse():
    head = synthetic_head(rings=40, segments=32)
    renderer = Renderer(
        faces=head.faces,
        verts_uvs=head.verts_uvs,
        faces_uvs=head.faces_uvs,
        image_size=32,
        uv_size=96,
    )
    verts, _ = head_batch(head, 1)
    from seqdeca.geometry import vertex_normals

    coarse = renderer.world2uv(vertex_normals(verts, head.faces))
    # An interior mask (away from the seam and the crown and neck rows).
    mask = torch.zeros(96, 96)
    mask[20:70, 10:86] = 1.0
    detail = renderer.detail_normal_map(torch.zeros(1, 1, 96, 96), verts, mask)
    # Compare away from uncovered UV pixels (the mouth slit): coverage eroded by 2 pixels.
    covered = (-F.max_pool2d(-renderer.uv_mask, 5, stride=1, padding=2))[0, 0].bool()
    inner = mask.bool() & covered
    assert inner.sum() > 2000
    cos = (detail * F.normalize(coarse, dim=1)).sum(1)[0][inner]
    assert cos.min() > 0.98


def test_dense_detail_mesh_keeps_the_masked_pixels_and_cells():
    pos, normals = _tilted_plane(10, 12)
    mask = torch.zeros(10, 12)
    mask[2:6, 3:8] = 1.0  # 4 x 5 pixels -> 3 x 4 cells -> 24 triangles
    uv_z = torch.full((1, 1, 10, 12), 0.01, dtype=torch.float64)
    texture = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    mesh = dense_detail_mesh(pos, normals, uv_z, mask, texture=texture)
    assert mesh.vertices.shape == (1, 20, 3) and mesh.faces.shape == (24, 3)
    assert_close(mesh.vertices[0, :, 2], torch.full((20,), 0.01, dtype=torch.float64))
    assert_close(mesh.vertices[0, :, :2], mesh.uvs.to(torch.float64))
    assert_close(mesh.colors[0], texture[0, :, 2:6, 3:8].reshape(3, -1).T)
    # Faces are counter-clockwise seen from the +z side (the normal side).
    tri = mesh.vertices[0][mesh.faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (n[:, 2] > 0).all()
