"""A z-buffered triangle rasterizer in plain PyTorch (CPU and CUDA), and attribute interpolation.

Conventions (those of :mod:`seqdeca.geometry.camera`):

* Screen-space vertices are ``(x, y, z)`` with x, y normalised to [-1, 1] over the image, y DOWN,
  and z a depth where SMALLER is NEARER (``project_weak_perspective`` output).
* Pixel (row i, column j) is sampled at its centre, the continuous pixel position
  ``(j + 0.5, i + 0.5)``, with ``u = (x + 1) * W / 2`` and ``v = (y + 1) * H / 2``.
* No back-face culling by default (DECA's pytorch3d setup does none); a triangle covers a pixel
  centre when its three edge functions have the sign of its area (either winding). With
  ``cull_backfaces=True`` only triangles that are counter-clockwise in model space (y up) are kept,
  which are clockwise in these y-down pixel coordinates.
* Tie rule: edges are inclusive, and every edge function is evaluated in the same way by both
  triangles that share the edge (from its lower-indexed vertex), so shared edges never leave holes.
  Where several triangles cover a pixel the nearest wins, and exact depth ties go to the lowest face
  index. The result is deterministic and independent of the order of evaluation.
* Depth is interpolated linearly in screen space, which is exact for DECA's orthographic camera.

How it is fast without a custom kernel: faces are grouped by the size of their pixel bounding
box (rounded up to a few size classes); every group evaluates its faces' edge functions and
depth planes on a fixed grid of candidate pixels at once, laid out (grid row, grid column, face)
so that every operation runs over contiguous runs of faces, into reused buffers. The depth test
is one ``scatter_reduce('amin')`` per group over a 64-bit key that packs the depth (shifted to be
positive, as float32 bits: high 32 bits) and the face index (low 32 bits), so the nearest depth
and the lowest face index among equal depths come out of one order-independent reduction.
Depths are therefore compared in float32, also for float64 input (which is otherwise set up and
interpolated in float64).

Rasterization is discrete and carries no gradient. :func:`interpolate` and
:func:`pixel_barycentrics` recompute barycentric coordinates from the vertex positions at the
pixel centres of the winning faces, so interpolated attributes are differentiable with respect to
vertex positions and attributes (not across silhouettes or occlusion boundaries).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqdeca.geometry import ndc_to_pixels

# Pixel-bbox size classes: a face whose bbox is w x h pixels is evaluated on a grid of the next
# class sizes. Few classes mean few (large) operations; padding costs less than more groups.
_SIZE_CLASSES = (2, 4, 8, 16, 32, 64, 128, 256, 512)
# Candidates (faces x grid pixels) evaluated per chunk; bounds the memory of a call.
_CHUNK_CANDIDATES = 1 << 20
# Outside candidates get this added to their (positive, shifted) depth; anything at or above
# _BACKGROUND in the depth buffer is background.
_OUTSIDE = 1e38
_BACKGROUND = 5e37
# Faces whose depth plane is this steep (near edge-on slivers) cannot be depth-tested reliably in
# float32 and are skipped (they cover no pixel centre in practice).
_MAX_SLOPE = 1e30


@dataclass(frozen=True)
class Fragments:
    """Output of :func:`rasterize`: the nearest face at every pixel centre.

    Attributes:
        pix_to_face: (N, H, W) int64 index into the (F,) faces of the nearest face, -1 where no
            face covers the pixel centre (background). Indices are per mesh, not packed.
        bary: (N, H, W, 3) float barycentric coordinates of the pixel centre in that face (rows
            sum to 1; zeros on background). Not differentiable; see :func:`pixel_barycentrics`.
        zbuf: (N, H, W) depth of the nearest face (smaller is nearer), +inf on background.
    """

    pix_to_face: torch.Tensor
    bary: torch.Tensor
    zbuf: torch.Tensor

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.pix_to_face.shape[1]), int(self.pix_to_face.shape[2])

    @property
    def mask(self) -> torch.Tensor:
        """(N, H, W) bool, True where a face covers the pixel."""
        return self.pix_to_face >= 0


def _size_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    return int(image_size[0]), int(image_size[1])


def to_pixels(vertices_screen: torch.Tensor, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Normalised screen coordinates (N, P, 3) -> continuous pixels (x, y) and depth (N, P, 3)."""
    xy = ndc_to_pixels(vertices_screen[..., :2], _size_hw(image_size))
    return torch.cat([xy, vertices_screen[..., 2:3]], dim=-1)


# The per-face float table of _face_setup, one ROW per parameter and one column per face.
# Every edge function and the depth are affine in the pixel position:
# f(px, py) = a * px + b + c * py + d. Rows 0-3 hold a for edges 0, 1, 2 and the depth, rows 4-7
# b, rows 8-11 c, rows 12-15 d; rows 16, 17 the bbox origin (first pixel column, first row).
_TABLE = 18
_JMIN, _IMIN = 16, 17


def _pixel_bbox(corner: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding box of the pixel centres (j + 0.5, i + 0.5) that faces can cover.

    Args:
        corner: (N, xyz, 3 corners, F) pixel coordinates.

    Returns:
        first (N, 2, F) first column and row (float, clipped to the image), and size (N, 2, F)
        int64 (bbox width, height; <= 0 when no pixel centre can be covered).
    """
    lo, hi = corner[:, :2].amin(2), corner[:, :2].amax(2)  # (N, xy, F)
    first = (lo - 0.5).ceil_().clamp_(min=0)
    last = torch.minimum((hi - 0.5).floor_(), hi.new_tensor([w - 1, h - 1])[:, None])
    return first, (last - first).long().add_(1)


def _face_setup(
    verts: torch.Tensor, faces: torch.Tensor, h: int, w: int, zoff: float, cull: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rasterization parameters of the N*F faces of a batch.

    Args:
        verts: (N, V, 3) pixel x, y and depth, in the compute dtype.
        faces: (F, 3) int64.
        zoff: depth offset subtracted from every depth (see :func:`_depth_offset`).

    Returns:
        ftab (18, N*F) parameters (layout above; column n*F + f is face f of mesh n), the ids
        (M,) of the faces that can cover a pixel centre, and their bbox widths and heights (M,).
    """
    n, nf = verts.shape[0], faces.shape[0]
    vt = verts.transpose(1, 2).contiguous()  # (N, xyz, V): per-face values become rows
    corner = vt.index_select(2, faces.T.reshape(-1)).view(n, 3, 3, nf)  # (N, xyz, corner, F)
    d1, d2 = corner[:, :, 1] - corner[:, :, 0], corner[:, :, 2] - corner[:, :, 0]
    normal = torch.linalg.cross(d1, d2, dim=1)  # (N, 3, F)
    area2 = normal[:, 2]  # twice the signed pixel area, < 0 for front-facing faces
    # Edge k runs from corner k+1 to corner k+2: E_k = (px - xa) * dy - (py - ya) * dx, signed
    # so that E_k >= 0 inside, i.e. E_k = a px + b + c py + d with a = -dy s, c = dx s, b = -xa a,
    # d = -ya c, s = sign(area). The base point (xa, ya) is the edge's lower-indexed vertex, and
    # the two faces sharing an edge see (dx, dy) with exactly opposite signs, so they compute the
    # same numbers up to an exact sign flip: coverage is watertight.
    xy = corner[:, :2]  # (N, xy, corner, F)
    start, end = xy[:, :, [1, 2, 0]], xy[:, :, [2, 0, 1]]  # (N, xy, edge, F)
    swap = faces[:, [1, 2, 0]].T > faces[:, [2, 0, 1]].T  # (edge, F): end has the lower index
    base = torch.where(swap, end, start)
    delta = end - start
    s = torch.sign(area2)[:, None]  # (N, 1, F)
    a = delta[:, 1] * s.neg()
    c = delta[:, 0] * s
    xa, ya = base[:, 0], base[:, 1]
    # Depth plane: z = z0 - zoff + zdx * (px - x0) + zdy * (py - y0), (zdx, zdy) = -normal_xy / nz.
    inv = -1.0 / torch.where(area2 == 0, torch.ones_like(area2), area2)
    zdx, zdy = normal[:, 0] * inv, normal[:, 1] * inv  # (N, F)
    x0, y0 = corner[:, 0, 0], corner[:, 1, 0]
    first, size = _pixel_bbox(corner, h, w)
    ftab = torch.cat(
        [
            a,
            zdx[:, None],
            -xa * a,
            ((corner[:, 2, 0] - zoff) - x0 * zdx)[:, None],
            c,
            zdy[:, None],
            -ya * c,
            (-y0 * zdy)[:, None],
            first,
        ],
        dim=1,
    )  # (N, 18, F)
    ftab = ftab.transpose(0, 1).reshape(_TABLE, n * nf)
    valid = (area2 != 0) & torch.isfinite(area2) & (size > 0).all(1)
    valid &= (zdx.abs() + zdy.abs()) < _MAX_SLOPE / max(h, w)
    if cull:
        valid &= area2 < 0
    keep = valid.view(-1).nonzero().squeeze(1)
    size = size.transpose(0, 1).reshape(2, -1).index_select(1, keep)
    return ftab, keep, size[0], size[1]


class _Candidates:
    """Flat buffers that collect the candidates of many groups until one depth test (a flush).

    Attributes:
        plane: (4, capacity) the three edge functions and the depth of every candidate.
        face: (capacity,) int32 per-mesh face index; pixel: (capacity,) int64 flat pixel index.
        key: (capacity,) int64 scratch for the packed depth-test keys.
        used: number of candidates collected since the last flush.
    """

    def __init__(self, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        self.plane = torch.empty(4, capacity, dtype=dtype, device=device)
        self.face = torch.empty(capacity, dtype=torch.int32, device=device)
        self.pixel = torch.empty(capacity, dtype=torch.int64, device=device)
        self.key = torch.empty(capacity, dtype=torch.int64, device=device)
        self.used = 0

    @property
    def capacity(self) -> int:
        return self.face.shape[0]

    def take(self, gh: int, gw: int, m: int) -> tuple[torch.Tensor, ...]:
        """Views (4, gh, gw, m), (gh, gw, m), (gh, gw, m) for the next group's candidates."""
        a, b = self.used, self.used + gh * gw * m
        self.used = b
        shape = (gh, gw, m)
        return (
            self.plane[:, a:b].view(4, *shape),
            self.face[a:b].view(shape),
            self.pixel[a:b].view(shape),
        )

    def flush(self, buf: torch.Tensor) -> None:
        """Depth-test the collected candidates into ``buf`` (N*H*W,) of packed int64 keys."""
        n = self.used
        if n == 0:
            return
        plane = self.plane[:, :n]
        outside = torch.amin(plane[:3], dim=0).lt_(0)  # (n,) 1.0 outside the face, 0.0 inside
        depth = plane[3].clamp_(min=1e-30).add_(outside, alpha=_OUTSIDE)
        depth32 = depth if depth.dtype == torch.float32 else depth.float()
        # Positive float32 bits order like the floats: key = depth bits (high) | face index (low).
        key = self.key[:n].copy_(depth32.view(torch.int32))
        key.bitwise_left_shift_(32).bitwise_or_(self.face[:n])
        buf.scatter_reduce_(0, self.pixel[:n], key, "amin")
        self.used = 0


def _add_group(
    tab: torch.Tensor,
    ids: torch.Tensor,
    nf: int,
    gh: int,
    gw: int,
    h: int,
    w: int,
    cand: _Candidates,
) -> None:
    """Evaluate m faces whose bbox fits gh x gw on their candidate grids into ``cand``.

    Candidates are laid out (gh, gw, m), faces innermost, so every big operation runs over
    contiguous runs of m values.

    Args:
        tab: (18, m) the faces' parameter columns; ids: (m,) their ids n * F + f.
    """
    m = tab.shape[1]
    cols = tab[_JMIN] + torch.arange(gw, device=tab.device, dtype=tab.dtype)[:, None]  # (gw, m)
    rows = tab[_IMIN] + torch.arange(gh, device=tab.device, dtype=tab.dtype)[:, None]  # (gh, m)
    # Column and row terms of the three edge functions and the depth: (4, gw, m), (4, gh, m).
    col_term = torch.addcmul(tab[4:8, None], tab[0:4, None], cols + 0.5)
    row_term = torch.addcmul(tab[12:16, None], tab[8:12, None], rows + 0.5)
    # Candidates beyond the image border are never inside.
    col_term[0].masked_fill_(cols >= w, float("-inf"))
    row_term[0].masked_fill_(rows >= h, float("-inf"))
    plane, face, pixel = cand.take(gh, gw, m)
    torch.add(col_term[:, None], row_term[:, :, None], out=plane)
    face.copy_((ids % nf).to(torch.int32).expand(gh, gw, m))
    first_pixel = torch.div(ids, nf, rounding_mode="floor") * (h * w)
    row_start = first_pixel + rows.clamp(max=h - 1).long() * w  # (gh, m)
    torch.add(row_start[:, None], cols.clamp(max=w - 1).long(), out=pixel)


def _rasterize_all_groups(
    ftab: torch.Tensor,
    ids: torch.Tensor,
    bw: torch.Tensor,
    bh: torch.Tensor,
    nf: int,
    h: int,
    w: int,
    buf: torch.Tensor,
) -> None:
    """Bucket faces by bbox size class, evaluate every bucket, depth-test in bounded chunks."""
    classes = torch.tensor(_SIZE_CLASSES, device=bw.device)
    nc, largest = len(_SIZE_CLASSES), _SIZE_CLASSES[-1]
    # Bboxes beyond the largest class (huge triangles, rare) share one exact grid (key -1).
    big = (bw > largest) | (bh > largest)
    cw = torch.searchsorted(classes, bw.clamp(max=largest))
    ch = torch.searchsorted(classes, bh.clamp(max=largest))
    group, order = torch.sort(torch.where(big, -1, cw * nc + ch), stable=True)
    ids = ids.index_select(0, order)
    tab = ftab.index_select(1, ids)  # (18, M) in group order: groups are column slices
    keys, counts = torch.unique_consecutive(group, return_counts=True)
    sizes = [
        (int(bh.max()), int(bw.max())) if k < 0 else (_SIZE_CLASSES[k % nc], _SIZE_CLASSES[k // nc])
        for k in keys.tolist()
    ]
    steps = [max(1, _CHUNK_CANDIDATES // (gh * gw)) for gh, gw in sizes]
    total = sum(c * gh * gw for c, (gh, gw) in zip(counts.tolist(), sizes))
    capacity = max(
        [min(total, _CHUNK_CANDIDATES)]
        + [st * gh * gw for st, (gh, gw) in zip(steps, sizes) if st == 1]
    )
    cand = _Candidates(capacity, ftab.dtype, ftab.device)
    start = 0
    for count, step, (gh, gw) in zip(counts.tolist(), steps, sizes):
        for s in range(start, start + count, step):
            e = min(s + step, start + count)
            if cand.used + (e - s) * gh * gw > cand.capacity:
                cand.flush(buf)
            _add_group(tab[:, s:e], ids[s:e], nf, gh, gw, h, w, cand)
        start += count
    cand.flush(buf)


def _depth_offset(z: torch.Tensor) -> float:
    """A constant that makes every depth of the batch (and rounding around it) positive."""
    finite = z[torch.isfinite(z)]
    if finite.numel() == 0:
        return 0.0
    lo, hi = float(finite.min()), float(finite.max())
    return lo - (hi - lo) - 1.0


def rasterize(
    vertices_screen: torch.Tensor,
    faces: torch.Tensor,
    image_size: int | tuple[int, int],
    *,
    cull_backfaces: bool = False,
) -> Fragments:
    """Rasterize a batch of meshes that share one topology.

    Args:
        vertices_screen: (N, V, 3) x, y normalised to [-1, 1] (y down), z depth (smaller is
            nearer), float32 or float64 (see the module docstring). No gradient flows.
        faces: (F, 3) int64 vertex indices (F < 2**31).
        image_size: H (square) or (H, W) in pixels.
        cull_backfaces: drop faces that are clockwise in model space (see the module docstring).

    Returns:
        :class:`Fragments` with (N, H, W) maps.
    """
    h, w = _size_hw(image_size)
    n = vertices_screen.shape[0]
    with torch.no_grad():
        dtype = torch.float64 if vertices_screen.dtype == torch.float64 else torch.float32
        verts = to_pixels(vertices_screen.detach().to(dtype), (h, w))
        faces = faces.to(device=verts.device, dtype=torch.int64)
        zoff = _depth_offset(verts[..., 2])
        ftab, ids, bw, bh = _face_setup(verts, faces, h, w, zoff, cull_backfaces)
        buf = torch.full((n * h * w,), torch.iinfo(torch.int64).max, device=verts.device)
        if ids.numel() > 0:
            _rasterize_all_groups(ftab, ids, bw, bh, faces.shape[0], h, w, buf)
        background = torch.tensor(_BACKGROUND, dtype=torch.float32).view(torch.int32).item()
        covered = buf < (background << 32)
        pix_to_face = torch.where(covered, buf & 0xFFFFFFFF, -1).view(n, h, w)
        # Barycentrics and depth of the covered pixel centres in their winning faces.
        px = CoveredPixels.of(pix_to_face)
        tri = px.gather(verts, px.corner_ids(faces, verts.shape[1]))  # (K, 3, 3)
        bary = _barycentric(tri[..., :2], px.centres(tri.dtype))
        depth = (bary * tri[..., 2]).sum(-1, keepdim=True)
        zbuf = px.scatter(depth, fill=float("inf"))[..., 0]
        bary = px.scatter(bary.to(vertices_screen.dtype))
    return Fragments(pix_to_face=pix_to_face, bary=bary, zbuf=zbuf)


def _barycentric(tri: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Barycentric coordinates (..., 3) of points p (..., 2) in triangles tri (..., 3, 2).

    Differentiable; degenerate triangles give zeros.
    """
    d1 = tri[..., 1, :] - tri[..., 0, :]
    d2 = tri[..., 2, :] - tri[..., 0, :]
    q = p - tri[..., 0, :]
    area2 = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    ok = area2 != 0
    inv = 1.0 / torch.where(ok, area2, torch.ones_like(area2))
    b1 = (q[..., 0] * d2[..., 1] - q[..., 1] * d2[..., 0]) * inv
    b2 = (d1[..., 0] * q[..., 1] - d1[..., 1] * q[..., 0]) * inv
    bary = torch.stack([1 - b1 - b2, b1, b2], dim=-1)
    return bary * ok[..., None]


def weighted_corners(bary: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Barycentric combination: bary (K, 3) and corner values (K, 3, C) -> (K, C)."""
    out = values[:, 0] * bary[:, 0:1]
    out = torch.addcmul(out, values[:, 1], bary[:, 1:2])
    return torch.addcmul(out, values[:, 2], bary[:, 2:3])


@dataclass(frozen=True)
class CoveredPixels:
    """The K covered pixels of (N, H, W) fragments as flat lists, to work on covered pixels only.

    Attributes:
        index: (K,) int64 flat index into N*H*W, increasing.
        image: (K,) int64 image (mesh) index n of each pixel.
        face: (K,) int64 per-mesh index of each pixel's face.
        shape: (N, H, W).
    """

    index: torch.Tensor
    image: torch.Tensor
    face: torch.Tensor
    shape: tuple[int, int, int]

    @staticmethod
    def of(pix_to_face: torch.Tensor) -> CoveredPixels:
        """From (N, H, W) ``pix_to_face``."""
        n, h, w = pix_to_face.shape
        flat = pix_to_face.reshape(-1)
        index = (flat >= 0).nonzero().squeeze(1)
        image = torch.div(index, h * w, rounding_mode="floor")
        return CoveredPixels(index, image, flat.index_select(0, index), (n, h, w))

    def corner_ids(self, faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
        """(K, 3) flat ids n * V + v of the corners of every pixel's face (faces (F, 3))."""
        faces = faces.to(device=self.face.device, dtype=torch.int64)
        return faces.index_select(0, self.face) + (self.image * num_vertices)[:, None]

    def centres(self, dtype: torch.dtype) -> torch.Tensor:
        """(K, 2) continuous pixel centres (j + 0.5, i + 0.5)."""
        _, h, w = self.shape
        r = self.index % (h * w)
        col = (r % w).to(dtype) + 0.5
        row = torch.div(r, w, rounding_mode="floor").to(dtype) + 0.5
        return torch.stack([col, row], dim=1)

    @staticmethod
    def gather(values: torch.Tensor, corner_ids: torch.Tensor) -> torch.Tensor:
        """Per-vertex values (N, V, C) at corner ids (K, 3) -> (K, 3, C) (differentiable)."""
        c = values.shape[-1]
        return values.reshape(-1, c).index_select(0, corner_ids.reshape(-1)).view(-1, 3, c)

    def scatter(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Values (K, C) -> (N, H, W, C) with ``fill`` elsewhere (differentiable in values)."""
        n, h, w = self.shape
        out = values.new_full((n * h * w, values.shape[-1]), fill)
        return out.index_copy(0, self.index, values).view(n, h, w, -1)

    def barycentrics(self, vertices_screen: torch.Tensor, corner_ids: torch.Tensor) -> torch.Tensor:
        """(K, 3) barycentrics of the pixel centres, differentiable in vertices_screen (N, V, 3)."""
        xy = to_pixels(vertices_screen, self.shape[1:])[..., :2]
        return _barycentric(self.gather(xy, corner_ids), self.centres(xy.dtype))


def pixel_barycentrics(
    fragments: Fragments, vertices_screen: torch.Tensor, faces: torch.Tensor
) -> torch.Tensor:
    """Differentiable barycentric coordinates of every pixel centre in its winning face.

    Args:
        fragments: from :func:`rasterize` of the same vertices.
        vertices_screen: (N, V, 3) normalised screen vertices (may require grad).
        faces: (F, 3).

    Returns:
        (N, H, W, 3), zeros on background; equal to ``fragments.bary`` up to rounding.
    """
    px = CoveredPixels.of(fragments.pix_to_face)
    ids = px.corner_ids(faces, vertices_screen.shape[1])
    return px.scatter(px.barycentrics(vertices_screen, ids))


def interpolate_face_attributes(
    fragments: Fragments, face_attrs: torch.Tensor, bary: torch.Tensor | None = None
) -> torch.Tensor:
    """Interpolate per-face-corner attributes at every pixel.

    Args:
        fragments: rasterizer output with (N, H, W) maps.
        face_attrs: (N, F, 3, C), or (1, F, 3, C) shared by the batch, values at the three
            corners of every face.
        bary: optional (N, H, W, 3) barycentrics (e.g. from :func:`pixel_barycentrics`, to be
            differentiable with respect to vertex positions); default ``fragments.bary``.

    Returns:
        (N, H, W, C), zeros on background.
    """
    bary = fragments.bary if bary is None else bary
    nf, c = face_attrs.shape[1], face_attrs.shape[-1]
    px = CoveredPixels.of(fragments.pix_to_face)
    face = px.face if face_attrs.shape[0] == 1 else px.face + px.image * nf
    corners = face_attrs.reshape(-1, 3, c).index_select(0, face)  # (K, 3, C)
    b = bary.reshape(-1, 3).index_select(0, px.index).to(corners.dtype)
    return px.scatter(weighted_corners(b, corners))


def interpolate(
    fragments: Fragments,
    vertex_attrs: torch.Tensor,
    faces: torch.Tensor,
    vertices_screen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Interpolate per-vertex attributes at every pixel.

    Args:
        fragments: rasterizer output with (N, H, W) maps.
        vertex_attrs: (N, V, C) attributes.
        faces: (F, 3).
        vertices_screen: (N, V, 3) the rasterized screen vertices. When given, barycentrics are
            recomputed from them, so the result is differentiable with respect to vertex
            positions as well as attributes; when None, ``fragments.bary`` is used.

    Returns:
        (N, H, W, C), zeros on background.
    """
    px = CoveredPixels.of(fragments.pix_to_face)
    ids = px.corner_ids(faces, vertex_attrs.shape[1])
    if vertices_screen is None:
        bary = fragments.bary.reshape(-1, 3).index_select(0, px.index)
    else:
        bary = px.barycentrics(vertices_screen, ids)
    values = weighted_corners(bary.to(vertex_attrs.dtype), px.gather(vertex_attrs, ids))
    return px.scatter(values)
