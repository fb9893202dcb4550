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
