"""The openings of a face mesh (eyes, mouth) and the cones that close them from behind.

A face model without eyeballs or a mouth interior has holes: its *boundary loops* (chains of
edges that belong to one triangle only). In each connected part of the mesh the longest loop is
the part's outer border (the neck, the edge of the face mask, the rim of a separate iris disc);
the others are its openings. :class:`MeshOpenings` closes each
opening with a cone whose apex lies behind it, inside the head, so that a renderer can draw what
is seen through the opening (:mod:`seqdeca.render.openings`). The cones are never part of the
written meshes.
"""

from __future__ import annotations

import numpy as np
import torch

# How far behind its opening (metres, into the head) a cone's apex lies: deep
# enough that the face's surface hides every part of a cone outside its opening, shallow
# enough that the apex of an eye does not come out through the temple in a profile view.
CONE_DEPTH = 0.015


def boundary_loops(faces: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """The boundary loops of a triangle mesh (chains of the edges that belong to one face only),
    each an ordered array of vertex indices following the faces' winding. Every such edge is in
    exactly one loop; where two loops touch at a vertex, the walk takes that vertex's edges in
    the order they were found.

    Args:
        faces: (F, 3) vertex indices.

    Returns:
        The loops, longest first (a closed mesh has none).
    """
    faces = np.asarray(faces, np.int64)
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # directed, as the faces wind
    key = np.minimum(edges[:, 0], edges[:, 1]) * (faces.max() + 1) + np.maximum(
        edges[:, 0], edges[:, 1]
    )
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    border = edges[counts[inverse] == 1]
    following: dict[int, list[int]] = {}
    for a, b in border.tolist():
        following.setdefault(a, []).append(b)
    loops = []
    for start in sorted(following):
        while following.get(start):
            loop, at = [start], following[start].pop()
            while at != start and following.get(at):
                loop.append(at)
                at = following[at].pop()
            loops.append(np.asarray(loop, np.int64))
    return sorted(loops, key=len, reverse=True)


def _components(faces: np.ndarray) -> np.ndarray:
    """(V,) the connected part of each vertex (vertices that share faces), by union-find."""
    parent = np.arange(faces.max() + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, c in faces.tolist():
        ra, rb, rc = root(a), root(b), root(c)
        parent[rb] = ra
        parent[root(rc)] = ra
    return np.array([root(i) for i in range(len(parent))])


def opening_loops(faces: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """The openings of a mesh: in each connected part, every boundary loop but the longest
    (:func:`boundary_loops`; ordered by the first vertex of each loop)."""
    faces = np.asarray(faces, np.int64)
    part = _components(faces)
    seen: set[int] = set()
    openings = []
    for loop in boundary_loops(faces):  # longest first: the first of each part is its border
        if part[loop[0]] in seen:
            openings.append(loop)
        seen.add(int(part[loop[0]]))
    return sorted(openings, key=lambda loop: int(loop[0]))


class MeshOpenings:
    """The openings of one topology (:func:`opening_loops`) and their cones.

    Args:
        faces: (F, 3) the topology's vertex indices.
        num_vertices: V, the topology's vertex count (apex k is vertex V + k of the cones).

    Attributes:
        loops: the openings' vertex loops.
        cones: (C, 3) int64 triangles joining each loop edge to its opening's apex (vertex
            index V + k for opening k), wound like the faces around them.
        cone_opening: (C,) int64 the opening of each cone triangle.
    """

    def __init__(self, faces: np.ndarray | torch.Tensor, num_vertices: int) -> None:
        self.loops = opening_loops(faces)
        self.num_vertices = int(num_vertices)
        triangles, owner = [], []
        for k, loop in enumerate(self.loops):
            nxt = np.roll(loop, -1)
            # the hole's own winding is the reverse of its border's faces
            triangles.append(np.stack([nxt, loop, np.full_like(loop, num_vertices + k)], 1))
            owner.append(np.full(len(loop), k))
        self.cones = torch.from_numpy(np.concatenate(triangles) if triangles else np.zeros((0, 3)))
        self.cones = self.cones.long()
        self.cone_opening = torch.from_numpy(np.concatenate(owner) if owner else np.zeros(0)).long()
        self._loop_index = [torch.from_numpy(loop) for loop in self.loops]

    def __len__(self) -> int:
        """K, the number of openings."""
        return len(self.loops)

    def apexes(self, vertices: torch.Tensor, depth: float = CONE_DEPTH) -> torch.Tensor:
        """(N, K, 3) each opening's apex: its loop's centroid moved ``depth`` metres into the
        head, along the loop's area vector (its rim is wound clockwise seen from outside, the
        faces around it being counter-clockwise), for meshes (N, V, 3)."""
        apexes = [vertices.new_zeros(vertices.shape[0], 0, 3)]  # (N, 0, 3): K may be 0
        for idx in self._loop_index:
            rim = vertices[:, idx.to(vertices.device)]  # (N, L, 3)
            centre = rim.mean(1, keepdim=True)
            area = torch.linalg.cross(rim - centre, rim.roll(-1, 1) - centre).sum(1)  # (N, 3)
            inward = area / area.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            apexes.append((centre[:, 0] + depth * inward)[:, None])
        return torch.cat(apexes, 1)

    def closed(self, vertices: torch.Tensor) -> torch.Tensor:
        """(N, V + K, 3) the vertices followed by the apexes (the vertices of :attr:`cones`)."""
        return torch.cat([vertices, self.apexes(vertices)], 1)
