"""The openings of a face mesh (boundary loops that are not a part's outer border), the cones
behind them, and what fit mode paints through them."""

from __future__ import annotations

import numpy as np
import torch

from seqdeca.face_model.default import load_default_assets
from seqdeca.geometry.openings import MeshOpenings, boundary_loops, opening_loops
from seqdeca.inference.opening_colours import OpeningColours
from seqdeca.render.openings import (
    RINGS,
    cell_openings,
    facing_shading,
    fill_openings,
    opening_cells,
)
from seqdeca.render.renderer import Renderer


def _grid_with_hole(n: int = 6, hole: tuple[int, int] = (2, 4)) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid of quads in the z = 0 plane (x, y in [-0.05, 0.05] m, counter-clockwise
    seen from +z), without the quads [hole[0], hole[1])^2, plus a separate triangle (an island)."""
    xs = np.linspace(-0.05, 0.05, n + 1)
    vertices = [(x, y, 0.0) for y in xs for x in xs]
    faces = []
    for i in range(n):
        for j in range(n):
            if hole[0] <= i < hole[1] and hole[0] <= j < hole[1]:
                continue
            a, b, c, d = i * (n + 1) + j, i * (n + 1) + j + 1, (i + 1) * (n + 1) + j, 0
            d = c + 1
            faces += [(a, b, d), (a, d, c)]
    base = len(vertices)
    vertices += [(0.2, 0.2, 0.0), (0.21, 0.2, 0.0), (0.2, 0.21, 0.0)]
    faces.append((base, base + 1, base + 2))
    return np.asarray(vertices, np.float32), np.asarray(faces, np.int64)


def _is_cycle(loop: np.ndarray, faces: np.ndarray) -> bool:
    edges = {
        frozenset(e) for f in faces.tolist() for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))
    }
    return all(frozenset((a, b)) in edges for a, b in zip(loop, np.roll(loop, -1), strict=True))


def test_loops_of_a_grid_with_a_hole_and_an_island():
    vertices, faces = _grid_with_hole()
    loops = boundary_loops(faces)
    assert sorted(len(loop) for loop in loops) == [3, 8, 24]  # island, hole, outer border
    assert all(_is_cycle(loop, faces) for loop in loops)
    (hole,) = opening_loops(faces)  # the outer border and the island's rim are not openings
    assert len(hole) == 8
    centre = vertices[hole].mean(0)
    np.testing.assert_allclose(centre[:2], 0.0, atol=1e-7)  # the middle of the grid
    apex = MeshOpenings(faces, len(vertices)).apexes(torch.from_numpy(vertices)[None])[0, 0]
    torch.testing.assert_close(apex, torch.tensor([0.0, 0.0, -0.015]))  # behind: faces wind +z


def test_a_closed_mesh_has_no_openings():
    faces = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])  # a tetrahedron
    openings = MeshOpenings(faces, 4)
    assert boundary_loops(faces) == [] and len(openings) == 0
    assert openings.closed(torch.rand(2, 4, 3)).shape == (2, 4, 3)
    colours = OpeningColours(cell_openings(openings))
    assert colours.colours().shape == (0, 3)


def test_the_bundled_model_has_two_eyes_and_a_mouth():
    assets = load_default_assets()
    faces = np.asarray(assets.faces)
    openings = MeshOpenings(faces, len(assets.v_template))
    assert sorted(len(loop) for loop in openings.loops) == [16, 16, 20]
    assert all(_is_cycle(loop, faces) for loop in openings.loops)
    template = torch.as_tensor(np.asarray(assets.v_template), dtype=torch.float32)[None]
    rims = torch.stack([template[0, loop].mean(0) for loop in openings.loops])
    mouth = int(np.argmax([len(loop) for loop in openings.loops]))
    assert float(rims[mouth, 1]) < float(rims[:, 1].max()) - 0.03  # the mouth lies below the eyes
    apexes = openings.apexes(template)[0]
    assert torch.allclose((apexes - rims).norm(dim=-1), torch.tensor(0.015), atol=1e-6)
    assert bool((apexes[:, 2] < rims[:, 2]).all())  # behind the openings (the face looks to +z)
    closed = openings.closed(template)
    assert closed.shape == (1, len(assets.v_template) + 3, 3)
    assert int(openings.cones.max()) == closed.shape[1] - 1


def _renderer(faces: np.ndarray, size: int = 32) -> Renderer:
    return Renderer(
        faces=torch.from_numpy(faces),
        verts_uvs=torch.zeros(1, 2),
        faces_uvs=torch.zeros_like(torch.from_numpy(faces)),
        image_size=size,
        uv_size=8,
    )


def test_opening_cells_mark_the_pixels_seen_through_the_hole_only():
    vertices, faces = _grid_with_hole()
    vertices = torch.from_numpy(vertices)[None]
    openings = MeshOpenings(faces, vertices.shape[1])
    renderer = _renderer(faces)
    cam = torch.tensor([[15.0, 0.0, 0.0]])  # the grid fills three quarters of the image
    _, fragments = renderer.rasterize(vertices, cam)
    alpha = (fragments.pix_to_face >= 0).float()[:, None]
    cells = opening_cells(renderer, openings, vertices, cam, alpha)
    assert cells.shape == (1, 32, 32)
    owner = cell_openings(openings)
    assert len(owner) == len(openings.cones) * RINGS and int(owner.max()) == 0
    assert int(cells[0, 16, 16]) % RINGS == RINGS - 1  # the middle of the hole: the inner ring
    assert int(cells[0, 16, 8]) == -1 and float(alpha[0, 0, 16, 8]) == 1  # the grid itself
    assert int(cells[0, 1, 1]) == -1 and float(alpha[0, 0, 1, 1]) == 0  # outside the grid
    hole = cells[0] >= 0
    assert 20 < int(hole.sum()) < 120  # about the hole's 1/9 of the grid's ~570 pixels
    rings = torch.bincount(cells[0][hole] % RINGS, minlength=RINGS)
    assert bool((rings > 0).all())  # every ring is seen
    # and nothing where the face covers, even if a cone lies beneath
    assert not bool(((cells >= 0) & (alpha[:, 0] > 0)).any())


def test_cell_colours_are_the_mean_albedo_seen_and_fill_paints_them_back():
    n, size = 3, 8
    owner = torch.tensor([0, 0, 1])  # cells 0 and 1 in opening 0, cell 2 in opening 1
    cells = torch.full((n, size, size), -1)
    cells[:, :2, :2], cells[:, :2, 2:4], cells[:, 4:, 4:] = 0, 1, 2
    light = torch.zeros(n, 9, 3)
    light[:, 0] = torch.tensor([1.0, 2.0, 3.0])  # ambient only
    shade = facing_shading(light)
    dark = torch.tensor([0.1, 0.15, 0.2])
    bright = 5 * dark
    images = (dark[:, None, None] * shade[0][:, None, None]).expand(n, 3, size, size).clone()
    images[:, :, :2, 2:4] *= 5  # cell 1: bright
    classes = torch.ones(n, size, size, dtype=torch.uint8)
    classes[:, 4:, 4:] = 0  # opening 1 lies outside the face mask: never learnt
    colours = OpeningColours(owner)
    colours.add(cells, images, classes, light, keep=torch.tensor([True, True, False]))
    torch.testing.assert_close(colours.opening_means()[0], (dark + bright) / 2)
    # 4 pixels in each of 2 frames, shrunk towards the opening's mean by 4 pixels' worth
    got = colours.colours()
    torch.testing.assert_close(got[0], (8 * dark + 4 * (dark + bright) / 2) / 12)
    torch.testing.assert_close(got[1], (8 * bright + 4 * (dark + bright) / 2) / 12)
    torch.testing.assert_close(got[2], torch.zeros(3))  # never seen: black
    render = torch.full((n, 3, size, size), 0.5)
    exact = torch.stack([dark, bright, torch.zeros(3)])
    filled = fill_openings(render, cells, exact, light)
    torch.testing.assert_close(filled[:, :, :2, :4], images[:, :, :2, :4])
    assert bool((filled[:, :, 2:4] == 0.5).all())  # other pixels untouched
