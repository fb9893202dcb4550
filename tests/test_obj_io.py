"""OBJ/MTL/PNG export round trips."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seqdeca.errors import UserError
from seqdeca.io import read_obj, write_obj


def _mesh(rng):
    vertices = rng.normal(size=(12, 3)).astype(np.float32)
    faces = rng.integers(0, 12, size=(20, 3))
    uvs = rng.uniform(size=(15, 2)).astype(np.float32)
    fuv = rng.integers(0, 15, size=(20, 3))
    return vertices, faces, uvs, fuv


def test_round_trip_with_texture(tmp_path):
    rng = np.random.default_rng(0)
    vertices, faces, uvs, fuv = _mesh(rng)
    texture = rng.uniform(size=(3, 8, 16)).astype(np.float32)
    path = write_obj(
        tmp_path / "m.obj", vertices, faces, verts_uvs=uvs, faces_uvs=fuv, texture=texture
    )
    mesh = read_obj(path)
    np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.verts_uvs, uvs, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces_uvs, fuv)
    assert "map_Kd m.png" in (tmp_path / "m.mtl").read_text()
    png = np.asarray(Image.open(tmp_path / "m.png"))
    assert png.shape == (8, 16, 3)
    np.testing.assert_allclose(png / 255.0, texture.transpose(1, 2, 0), atol=1 / 255)
    assert not list(tmp_path.glob("*.tmp"))


def test_round_trip_plain_and_coloured(tmp_path):
    rng = np.random.default_rng(1)
    vertices, faces, _, _ = _mesh(rng)
    colors = rng.uniform(size=(12, 3))
    mesh = read_obj(write_obj(tmp_path / "c.obj", vertices, faces, vertex_colors=colors))
    np.testing.assert_allclose(mesh.vertex_colors, colors, atol=1e-4)
    assert mesh.verts_uvs is None
    normals = rng.normal(size=(12, 3))
    mesh = read_obj(write_obj(tmp_path / "n.obj", vertices, faces, normals=normals))
    np.testing.assert_array_equal(mesh.faces, faces)


def test_quads_are_fan_triangulated(tmp_path):
    path = tmp_path / "q.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    np.testing.assert_array_equal(read_obj(path).faces, [[0, 1, 2], [0, 2, 3]])


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_obj(tmp_path / "missing.obj")
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 zero 0\n")
    with pytest.raises(UserError, match="not a readable OBJ"):
        read_obj(bad)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError, match="no vertices or no faces"):
        read_obj(empty)


def test_dense_detail_mesh_exports_and_round_trips(tmp_path):
    """The bundled model's dense detail mesh (one vertex per UV pixel) as a textured OBJ."""
    import torch

    from seqdeca.face_model import FaceModel, load_face_model
    from seqdeca.geometry import vertex_normals
    from seqdeca.render import Renderer, dense_detail_mesh

    model = FaceModel(load_face_model())
    renderer = Renderer(
        faces=model.faces,
        verts_uvs=model.verts_uvs,
        faces_uvs=model.faces_uvs,
        image_size=32,
        uv_size=48,
    )
    vertices = model(expression=torch.zeros(1, model.num_expression)).vertices
    uv_vertices = renderer.world2uv(vertices)
    uv_normals = renderer.world2uv(vertex_normals(vertices, model.faces))
    uv_z = 1e-3 * torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    mask = renderer.uv_mask
    dense = dense_detail_mesh(uv_vertices, uv_normals, uv_z, mask, texture=uv_vertices.abs())
    assert dense.faces.shape[0] > 1000
    texture = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(1)).numpy()
    path = write_obj(
        tmp_path / "detail.obj",
        dense.vertices[0].numpy(),
        dense.faces.numpy(),
        verts_uvs=dense.uvs.numpy(),
        faces_uvs=dense.faces.numpy(),
        texture=texture,
    )
    mesh = read_obj(path)
    np.testing.assert_allclose(mesh.vertices, dense.vertices[0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, dense.faces.numpy())
    np.testing.assert_allclose(mesh.verts_uvs, dense.uvs.numpy(), atol=1e-6)
    # Displaced vertices sit within the displacement range of the coarse surface.
    inside = mask.reshape(-1) > 0.5
    coarse = uv_vertices.flatten(2).transpose(1, 2)[0, inside]
    offset = (dense.vertices[0] - coarse).norm(dim=-1)
    assert float(offset.max()) <= 1e-3 + 1e-6
