"""Rasterizer, interpolation, shading, renderer and paste against analytic cases and a slow reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import seqdeca.render.rasterizer as raster_module
from benchmarks.bench_render import head_batch, synthetic_head
from seqdeca.geometry import pixels_to_ndc
from seqdeca.render import (
    SH_CONSTANTS,
    Renderer,
    interpolate,
    interpolate_face_attributes,
    paste_into_frame,
    pixel_barycentrics,
    rasterize,
    sh_shading,
)
from seqdeca.render.pytorch3d_backend import is_available as pytorch3d_available


def _screen(pixels_xy: list[list[float]], z: list[float], size: tuple[int, int]) -> torch.Tensor:
    """Pixel-space corners and depths -> (1, V, 3) normalised screen vertices (float64)."""
    xy = pixels_to_ndc(torch.tensor(pixels_xy, dtype=torch.float64), size)
    return torch.cat([xy, torch.tensor(z, dtype=torch.float64)[:, None]], dim=-1)[None]


def reference_rasterize(vertices_screen: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]):
    """Slow reference: every pixel centre against every face, in float64, nearest then lowest id."""
    h, w = size
    v = raster_module.to_pixels(vertices_screen.double(), size)
    tri = v[:, faces]  # (N, F, 3, 3)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5,
        torch.arange(w, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    p = torch.stack([xs, ys], -1).reshape(1, -1, 1, 2)
    a, b, c = (tri[:, None, :, k, :2] for k in range(3))

    def cross(o, s, t):
        return (s[..., 0] - o[..., 0]) * (t[..., 1] - o[..., 1]) - (s[..., 1] - o[..., 1]) * (
            t[..., 0] - o[..., 0]
        )

    area = cross(a, b, c)
    w0, w1, w2 = cross(b, c, p) / area, cross(c, a, p) / area, cross(a, b, p) / area
    bary = torch.stack([w0, w1, w2], -1)  # (N, P, F, 3)
    inside = (bary >= 0).all(-1) & (area != 0)
    z = torch.where(inside, (bary * tri[:, None, :, :, 2]).sum(-1), math.inf)
    zmin, face = z.min(-1)  # min returns the first (lowest) index among equal values
    face = torch.where(torch.isfinite(zmin), face, -1)
    n = vertices_screen.shape[0]
    chosen = bary.gather(2, face.clamp(min=0)[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]
    return face.view(n, h, w), chosen.view(n, h, w, 3), zmin.view(n, h, w)


def _random_mesh(seed: int, n: int = 2, v: int = 40, f: int = 60, spread: float = 1.3):
    g = torch.Generator().manual_seed(seed)
    verts = (torch.rand(n, v, 3, generator=g, dtype=torch.float64) * 2 - 1) * spread
    faces = torch.stack([torch.randperm(v, generator=g)[:3] for _ in range(f)])
    return verts, faces


# --------------------------------------------------------------------------- rasterizer


def test_rectangle_covers_exactly_its_pixel_centres():
    size = (12, 14)
    # Rectangle x in [3, 9], y in [2, 6] (pixel units), split along a diagonal that no centre hits.
    verts = _screen([[3, 2], [9, 2], [9, 6], [3, 6]], [0.0] * 4, size)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    fragments = rasterize(verts, faces, size)
    expected = torch.zeros(1, *size, dtype=torch.bool)
    expected[:, 2:6, 3:9] = True
    assert torch.equal(fragments.mask, expected)
    assert int(fragments.mask.sum()) == 6 * 4  # = area
    # Each triangle alone covers exactly its own pixels: they are disjoint and their union is all.
    alone = [rasterize(verts, faces[k : k + 1], size).mask for k in range(2)]
    assert not (alone[0] & alone[1]).any()
    assert torch.equal(alone[0] | alone[1], expected)
    assert torch.equal(fragments.pix_to_face == 1, alone[1])


def test_depth_of_a_plane_is_exact_and_background_is_inf():
    size = (10, 10)
    corners = [[1.0, 1.5], [9.2, 0.7], [4.0, 9.3]]
    plane = [0.3 + 0.01 * x - 0.02 * y for x, y in corners]
    fragments = rasterize(_screen(corners, plane, size), torch.tensor([[0, 1, 2]]), size)
    ys, xs = torch.meshgrid(torch.arange(10) + 0.5, torch.arange(10) + 0.5, indexing="ij")
    expected = (0.3 + 0.01 * xs - 0.02 * ys).to(torch.float64)
    m = fragments.mask[0]
    assert m.sum() > 20
    assert_close(fragments.zbuf[0][m], expected[m])
    assert torch.isinf(fragments.zbuf[0][~m]).all()
    assert_close(fragments.bary.sum(-1)[0][m], torch.ones(int(m.sum()), dtype=torch.float64))


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_nearer_triangle_wins_whatever_the_face_order(order):
    size = (16, 16)
    corners = [[1, 1], [15, 2], [3, 15], [2, 3], [14, 1], [14, 14]]
    depth = [0.5, 0.5, 0.5, 0.2, 0.2, 0.2]  # the second triangle is nearer
    verts = _screen(corners, depth, size)
    tris = [[0, 1, 2], [3, 4, 5]]
    faces = torch.tensor([tris[k] for k in order])
    fragments = rasterize(verts, faces, size)
    near_alone = rasterize(verts, torch.tensor([tris[1]]), size).mask
    near_id = order.index(1)
    assert torch.equal(fragments.pix_to_face == near_id, near_alone)
    assert_close(fragments.zbuf[near_alone], torch.full_like(fragments.zbuf[near_alone], 0.2))


def test_equal_depth_goes_to_lowest_face_index_and_shared_edges_leave_no_holes():
    size = (8, 8)  # pixel <-> normalised conversions are exact at this size
    # A square with corners on pixel centres, fanned around its centre: many centres lie exactly
    # on the square's edges and on the shared diagonals.
    c = [[0.5, 0.5], [7.5, 0.5], [7.5, 7.5], [0.5, 7.5], [4.0, 4.0]]
    verts = _screen(c, [0.0] * 5, size)
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    fragments = rasterize(verts, faces, size)
    assert fragments.mask.all()  # inclusive edges: all 64 centres, no holes on the diagonals
    ref_face, _, _ = reference_rasterize(verts, faces, size)
    assert torch.equal(fragments.pix_to_face, ref_face)
    p2f = fragments.pix_to_face[0]
    assert p2f[1, 1] == 0 and p2f[1, 6] == 0 and p2f[6, 6] == 1 and p2f[6, 1] == 2  # diagonals
    assert p2f[3, 0] == 3 and p2f[7, 3] == 2


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_matches_slow_reference_on_random_meshes(seed):
    size = [(17, 23), (32, 32), (9, 40)][seed % 3]
    verts, faces = _random_mesh(seed)
    fragments = rasterize(verts, faces, size)
    ref_face, ref_bary, ref_z = reference_rasterize(verts, faces, size)
    differ = fragments.pix_to_face != ref_face
    # Only exact depth ties may differ (there are none in random meshes).
    assert int(differ.sum()) == 0
    m = ref_face >= 0
    assert m.sum() > 50
    assert_close(fragments.bary[m], ref_bary[m])
    assert_close(fragments.zbuf[m], ref_z[m])


def test_float32_and_chunked_and_huge_triangles_agree_with_reference(monkeypatch):
    size = (20, 600)  # a triangle spanning > 512 columns takes the exact-grid path
    verts, faces = _random_mesh(11, n=3, v=30, f=40, spread=1.1)
    big = _screen([[-5, 1], [610, 4], [300, 19]], [0.9, 0.9, 0.9], size).expand(3, -1, -1)
    verts = torch.cat([verts, big], dim=1)
    faces = torch.cat([faces, torch.tensor([[30, 31, 32]])])
    ref_face, _, _ = reference_rasterize(verts, faces, size)
    monkeypatch.setattr(raster_module, "_CHUNK_CANDIDATES", 64)
    fragments = rasterize(verts.float(), faces, size)
    assert fragments.bary.dtype == torch.float32
    assert (fragments.pix_to_face != ref_face).float().mean() < 1e-3  # float32 rounding only
    assert (ref_face == 40).any()


def test_cull_backfaces_keeps_faces_counter_clockwise_in_model_space():
    size = (8, 8)
    # Counter-clockwise with y up is clockwise in y-down pixels: front-facing.
    front = _screen([[1, 7], [7, 7], [4, 1]], [0.0] * 3, size)
    faces = torch.tensor([[0, 1, 2]])
    assert rasterize(front, faces, size, cull_backfaces=True).mask.any()
    assert not rasterize(front, faces.flip(1), size, cull_backfaces=True).mask.any()
    assert rasterize(front, faces.flip(1), size).mask.any()  # no culling by default


def test_empty_degenerate_and_non_finite_faces_cover_nothing():
    size = (6, 7)
    outside = _screen([[-9, -9], [-2, -9], [-5, -1]], [0.0] * 3, size)
    fragments = rasterize(outside, torch.tensor([[0, 1, 2]]), size)
    assert (fragments.pix_to_face == -1).all() and torch.isinf(fragments.zbuf).all()
    assert (fragments.bary == 0).all()
    no_faces = rasterize(outside, torch.zeros(0, 3, dtype=torch.int64), size)
    assert (no_faces.pix_to_face == -1).all()
    exact = (8, 8)  # exact pixel <-> normalised conversions: collinear stays collinear
    bad = _screen([[0, 0], [6, 0], [3, 6], [1, 1], [5, 5], [0, 6]], [0.0] * 6, exact)
    bad[0, 5, 2] = float("nan")
    faces = torch.tensor([[3, 4, 4], [0, 3, 4], [0, 1, 5]])  # repeated vertex, collinear, NaN
    assert (rasterize(bad, faces, exact).pix_to_face == -1).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    verts, faces = _random_mesh(3, n=2, v=60, f=100)
    cpu = rasterize(verts.float(), faces, (48, 64))
    gpu = rasterize(verts.float().cuda(), faces.cuda(), (48, 64))
    assert (gpu.pix_to_face.cpu() != cpu.pix_to_face).float().mean() < 1e-3


# --------------------------------------------------------------------------- interpolation


def test_interpolating_a_linear_function_of_the_screen_position_is_exact():
    head = synthetic_head(rings=12, segments=10)
    verts, cam = head_batch(head, 2)
    from seqdeca.geometry import project_weak_perspective

    screen = project_weak_perspective(verts.double(), cam.double())
    size = (40, 36)
    fragments = rasterize(screen, head.faces, size)
    px = raster_module.to_pixels(screen, size)
    attrs = torch.stack([2 * px[..., 0] - 3 * px[..., 1] + 1, px[..., 2] * 5], dim=-1)
    values = interpolate(fragments, attrs, head.faces, screen)
    ys, xs = torch.meshgrid(torch.arange(40) + 0.5, torch.arange(36) + 0.5, indexing="ij")
    m = fragments.mask
    expected = (2 * xs - 3 * ys + 1).double().expand(2, -1, -1)
    assert_close(values[..., 0][m], expected[m])
    assert_close(values[..., 1][m], 5 * fragments.zbuf[m])
    assert (values[~m] == 0).all()


def test_interpolated_attributes_have_correct_gradients_wrt_vertices_and_attributes():
    verts, faces = _random_mesh(5, n=1, v=12, f=10, spread=1.0)
    size = (12, 12)
    fragments = rasterize(verts, faces, size)
    assert fragments.mask.sum() > 10
    attrs = torch.randn(1, 12, 2, dtype=torch.float64, requires_grad=True)
    verts = verts.clone().requires_grad_(True)

    def f(v, a):  # fragments fixed: the smooth part of rendering
        return interpolate(fragments, a, faces, v)

    assert torch.autograd.gradcheck(f, (verts, attrs), eps=1e-6, atol=1e-5)
    f(verts, attrs).sum().backward()
    assert verts.grad[..., :2].abs().sum() > 0 and attrs.grad.abs().sum() > 0
    bary = pixel_barycentrics(fragments, verts.detach(), faces)
    assert_close(bary, fragments.bary)


def test_face_attribute_interpolation_matches_vertex_interpolation():
    verts, faces = _random_mesh(9, n=2, v=20, f=25)
    fragments = rasterize(verts, faces, (16, 18))
    attrs = torch.randn(2, 20, 3, dtype=torch.float64)
    by_vertex = interpolate(fragments, attrs, faces)
    assert_close(interpolate_face_attributes(fragments, attrs[:, faces]), by_vertex)
    shared = interpolate_face_attributes(fragments, attrs[:1, faces])
    m = fragments.mask[1]
    assert_close(shared[1][m], interpolate(fragments, attrs[:1].expand(2, -1, -1), faces)[1][m])


# --------------------------------------------------------------------------- shading


def test_sh_constant_band_gives_a_constant_and_layouts_agree():
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 5, 7), dim=1)
    light = torch.zeros(2, 9, 3)
    light[:, 0] = torch.tensor([1.0, 2.0, 3.0])
    shading = sh_shading(normals, light)
    expected = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) / math.sqrt(4 * math.pi)
    assert_close(shading, expected.expand(2, 3, 5, 7))
    light = torch.randn(2, 9, 3)
    flat = sh_shading(normals.flatten(2).transpose(1, 2), light)
    assert_close(flat.transpose(1, 2).reshape(2, 3, 5, 7), sh_shading(normals, light))


def test_sh_bases_and_constants_match_deca():
    n = torch.nn.functional.normalize(torch.randn(1, 50, 3, dtype=torch.float64), dim=-1)
    x, y, z = n[0].unbind(-1)
    pi = math.pi
    c = [
        1 / math.sqrt(4 * pi),
        2 * pi / 3 * math.sqrt(3 / (4 * pi)),
        pi / 4 * 3 * math.sqrt(5 / (12 * pi)),
        pi / 4 * 1.5 * math.sqrt(5 / (12 * pi)),
        pi / 4 * 0.5 * math.sqrt(5 / (4 * pi)),
    ]
    assert_close(
        torch.tensor(SH_CONSTANTS, dtype=torch.float64),
        torch.tensor([c[0], c[1], c[1], c[1], c[2], c[2], c[2], c[3], c[4]], dtype=torch.float64),
    )
    bases = [torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1]
    for k in range(9):
        light = torch.zeros(1, 9, 3, dtype=torch.float64)
        light[0, k] = 1.0
        assert_close(sh_shading(n, light)[0, :, 0], SH_CONSTANTS[k] * bases[k])


# --------------------------------------------------------------------------- renderer


@pytest.fixture(scope="module")
def small_head():
    head = synthetic_head(rings=20, segments=16)
    renderer = Renderer(
        faces=head.faces,
        verts_uvs=head.verts_uvs,
        faces_uvs=head.faces_uvs,
        image_size=48,
        uv_size=64,
    )
    return head, renderer


def test_renderer_outputs_shapes_and_constant_light(small_head):
    head, renderer = small_head
    verts, cam = head_batch(head, 2)
    light = torch.zeros(2, 9, 3)
    light[:, 0] = math.sqrt(4 * math.pi)  # shading exactly 1
    albedo = torch.full((2, 3, 64, 64), 0.6)
    out = renderer(verts, cam, light, albedo)
    assert out.image.shape == (2, 3, 48, 48) and out.alpha.shape == (2, 1, 48, 48)
    assert out.uv_image.shape == (2, 48, 48, 2) and out.pix_to_face.shape == (2, 48, 48)
    inside = out.alpha.bool().expand(-1, 3, -1, -1)
    assert 0.2 < out.alpha.mean() < 0.8
    assert_close(out.image[inside], torch.full_like(out.image[inside], 0.6))
    assert (out.image[~inside] == 0).all()
    assert out.pos_mask.sum() > 0.3 * out.alpha.sum()
    assert renderer.state_dict() == {}  # buffers are rebuilt from the face model


def test_renderer_gradients_reach_vertices_camera_light_and_albedo(small_head):
    head, renderer = small_head
    verts, cam = head_batch(head, 2)
    verts, cam = verts.requires_grad_(True), cam.requires_grad_(True)
    light = torch.randn(2, 9, 3, requires_grad=True)
    albedo = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = renderer(verts, cam, light, albedo)
    (out.image * torch.rand_like(out.image)).sum().backward()
    for t in (verts, cam, light, albedo):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_albedo_is_sampled_at_the_interpolated_uv(small_head):
    head, renderer = small_head
    verts, cam = head_batch(head, 1)
    # A texture that is linear in (u, v): bilinear sampling reproduces it exactly inside.
    uv = torch.stack(
        torch.meshgrid(
            (torch.arange(64) + 0.5) / 64, 1 - (torch.arange(64) + 0.5) / 64, indexing="xy"
        ),
        0,
    )
    texture = torch.cat([uv, (0.5 * uv[0] + 0.25 * uv[1])[None]])[None]
    out = renderer(verts, cam, None, texture)
    u, v = out.uv_image[..., 0], out.uv_image[..., 1]
    m = out.alpha[:, 0].bool() & (u > 1 / 64) & (u < 63 / 64) & (v > 1 / 64) & (v < 63 / 64)
    assert m.sum() > 100
    assert_close(out.albedo_image[:, 0][m], u[m], atol=1e-5, rtol=0)
    assert_close(out.albedo_image[:, 1][m], v[m], atol=1e-5, rtol=0)


def test_render_shape_is_grey_and_only_where_facing(small_head):
    head, renderer = small_head
    verts, cam = head_batch(head, 2)
    shape = renderer.render_shape(verts, cam)
    assert shape.shape == (2, 3, 48, 48)
    assert shape.min() >= 0 and shape.max() <= 1 and shape.max() > 0.3
    assert_close(shape[:, 0], shape[:, 1])
    background = torch.ones(2, 3, 48, 48)
    over = renderer.render_shape(verts, cam, background=background)
    assert (over[shape.sum(1, keepdim=True).expand(-1, 3, -1, -1) == 0] == 1).all()


def test_backend_selection():
    head = synthetic_head(rings=6, segments=6)
    kwargs = {"faces": head.faces, "verts_uvs": head.verts_uvs, "faces_uvs": head.faces_uvs}
    with pytest.raises(ValueError, match="unknown render backend"):
        Renderer(**kwargs, backend="opengl")
    if not pytorch3d_available():
        with pytest.raises(ImportError, match="pytorch3d") as info:
            Renderer(**kwargs, backend="pytorch3d")
        assert "\n" not in str(info.value)


@pytest.mark.skipif(not pytorch3d_available(), reason="pytorch3d is not installed")
def test_pytorch3d_backend_matches_builtin():
    from seqdeca.render.pytorch3d_backend import rasterize_pytorch3d

    verts, faces = _random_mesh(7, n=2, v=60, f=80, spread=0.9)
    ours = rasterize(verts.float(), faces, (32, 40))
    theirs = rasterize_pytorch3d(verts.float(), faces, (32, 40))
    assert (ours.pix_to_face != theirs.pix_to_face).float().mean() < 0.01
    m = ours.mask & theirs.mask
    assert_close(ours.zbuf[m], theirs.zbuf[m], atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- paste


def test_paste_with_identity_puts_the_render_in_place():
    g = torch.Generator().manual_seed(0)
    render, frames = torch.rand(2, 3, 8, 10, generator=g), torch.rand(2, 3, 8, 10, generator=g)
    alpha = (torch.rand(2, 1, 8, 10, generator=g) > 0.5).float()
    out = paste_into_frame(render, alpha, frames, torch.eye(3).expand(2, 3, 3))
    assert_close(out, frames * (1 - alpha) + render * alpha)


def test_paste_with_a_crop_offset_and_scale():
    render = torch.rand(1, 3, 4, 4)
    alpha = torch.ones(1, 1, 4, 4)
    frames = torch.zeros(1, 3, 20, 20)
    # The crop is the frame region x in [6, 14), y in [2, 10) downscaled by 2.
    crop_from_frame = torch.tensor([[[0.5, 0.0, -3.0], [0.0, 0.5, -1.0], [0.0, 0.0, 1.0]]])
    out = paste_into_frame(render, alpha, frames, crop_from_frame)
    # Bilinear support reaches half a crop pixel (one frame pixel) beyond the crop.
    assert (out[:, :, :, :5] == 0).all() and (out[:, :, 11:] == 0).all()
    assert (out[:, :, :, 15:] == 0).all() and (out[:, :, :1] == 0).all()
    # Frame pixel centre (7.5, 3.5) maps to crop (0.75, 0.75): between crop pixels 0 and 1.
    w = torch.tensor([0.75, 0.25])
    expected = (w[:, None] * w[None, :] * render[0, :, :2, :2]).sum((-1, -2))
    assert_close(out[0, :, 3, 7], expected)
