"""Per-AU UV heatmaps: the spatial condition of the detail critic.

Every AU with a facial region gets Gaussian blobs at fixed UV positions; a frame's condition is
these maps weighted by its AU intensities, (N, K, H, W). The positions are the JAA-Net/EAC-Net AU
centres (docs/design.md, "AU regions"), placed on the face model's template and mapped to UV:

* A centre is an iBUG-68 landmark, optionally shifted vertically by a multiple of
  r = |landmark 39 - landmark 42| (inner eye corners) on the template. "Up" in the image is +y in
  model space, so a shift "down r/3" is -r/3 along y.
* An unshifted centre maps to UV through the landmark's own embedding (its face and barycentric
  coordinates applied to ``verts_uvs[faces_uvs]``), exactly.
* A shifted centre is generally off the surface. Choice: project it onto the template ALONG THE
  VIEWING AXIS z: among the faces whose (x, y) projection contains the point, take the one whose
  surface is nearest the camera (largest interpolated z), and use the point's 2D barycentric
  coordinates in that face. All shifted centres (brows, cheeks, nose sides, chin) are on the
  frontal part of the face, where this is the surface point seen straight from the front. If no
  face contains it, the nearest template vertex (3D) gives the UV (one of its UV copies).

Which AUs: the 15 of the 27 main AUs that have a centre (AU1, 2, 4, 6, 7, 9, 10, 12, 14, 15,
17, 23, 24, 25, 26), each with M = 2 points (left/right, or upper/lower lip for 23-25).
The other 12 (AU5, 11, 13, 16, 18, 19, 20, 22, 27, 32, 38, 39) keep their channel with an
all-zero map, so the channel index of every map is the AU's index among the 27 and the AU head's
output can be passed as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.face_model import FaceModelAssets, barycentric_points
from seqdeca.render.uv import uv_pixel_centres

# AU -> its centres: (iBUG-68 landmark, vertical shift in units of r, positive = up = +y).
AU_CENTRES: dict[str, tuple[tuple[int, float], ...]] = {
    "AU1": ((21, 1 / 2), (22, 1 / 2)),
    "AU2": ((18, 1 / 3), (25, 1 / 3)),
    "AU4": ((19, -1 / 3), (24, -1 / 3)),
    "AU6": ((41, -1.0), (46, -1.0)),
    "AU7": ((38, 0.0), (43, 0.0)),
    "AU9": ((32, 1 / 2), (34, 1 / 2)),
    "AU10": ((61, 0.0), (63, 0.0)),
    "AU12": ((48, 0.0), (54, 0.0)),
    "AU14": ((48, 0.0), (54, 0.0)),
    "AU15": ((48, 0.0), (54, 0.0)),
    "AU17": ((56, -1 / 2), (58, -1 / 2)),
    "AU23": ((51, 0.0), (57, 0.0)),
    "AU24": ((51, 0.0), (57, 0.0)),
    "AU25": ((51, 0.0), (57, 0.0)),
    "AU26": ((56, -1 / 2), (58, -1 / 2)),
}
# AUs whose two centres are a left/right pair (mirror images about the face midline).
BILATERAL_AUS: tuple[str, ...] = tuple(
    name for name in AU_CENTRES if name not in ("AU23", "AU24", "AU25")
)
_INNER_EYE_CORNERS = (39, 42)


def _check_assets(assets: FaceModelAssets) -> None:
    if assets.verts_uvs is None or assets.faces_uvs is None:
        raise ValueError(f"face model '{assets.name}' has no UV layout; AU heatmaps need one")
    if "ibug68" not in assets.landmarks:
        raise ValueError(f"face model '{assets.name}' has no 'ibug68' landmark set")


def _locate_along_z(
    points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-most face under each point, seen along z.

    Args:
        points: (P, 3); vertices: (V, 3); faces: (F, 3).

    Returns:
        face (P,) int64, bary (P, 3) 2D barycentrics in that face, found (P,) bool.
    """
    tri = vertices[faces]  # (F, 3 corners, 3 xyz)
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]  # (F, 2)
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    ok = det.abs() > 1e-12
    safe = torch.where(ok, det, torch.ones_like(det))
    d = points[:, None, :2] - a  # (P, F, 2)
    w1 = (d[..., 0] * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * d[..., 1]) / safe
    w2 = ((b[:, 0] - a[:, 0]) * d[..., 1] - d[..., 0] * (b[:, 1] - a[:, 1])) / safe
    bary = torch.stack([1 - w1 - w2, w1, w2], dim=-1)  # (P, F, 3)
    inside = ok & (bary >= -1e-9).all(dim=-1)
    z = torch.einsum("pfk,fk->pf", bary, tri[:, :, 2])
    z = torch.where(inside, z, torch.full_like(z, -torch.inf))
    face = z.argmax(dim=1)
    rows = torch.arange(points.shape[0])
    return face, bary[rows, face], inside.any(dim=1)


def _uv_of_nearest_vertex(
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    faces_uvs: torch.Tensor,
    verts_uvs: torch.Tensor,
) -> torch.Tensor:
    """(P, 3) -> (P, 2) UV of the nearest vertex (its first UV copy in face order)."""
    nearest = torch.cdist(points, vertices).argmin(dim=1)  # (P,)
    hits = (faces[None] == nearest[:, None, None]).flatten(1).float()  # (P, F*3)
    return verts_uvs[faces_uvs.flatten()[hits.argmax(dim=1)]]


def au_centres_model(
    assets: FaceModelAssets, au_names: Sequence[str] = MAIN_AU_NAMES
) -> tuple[torch.Tensor, torch.Tensor]:
    """AU centres on the template, in model space.

    Args:
        assets: a face model with an "ibug68" landmark set.
        au_names: the K AUs, in channel order (default: the 27 main AUs).

    Returns:
        centres (K, 2, 3) metres (zeros where absent) and present (K, 2) bool.
    """
    _check_assets(assets)
    emb = assets.landmarks["ibug68"]
    verts = torch.as_tensor(assets.v_template, dtype=torch.float64)
    faces = torch.as_tensor(assets.faces, dtype=torch.int64)
    lmk = barycentric_points(
        verts[None],
        faces,
        torch.as_tensor(emb.face_idx, dtype=torch.int64),
        torch.as_tensor(emb.bary, dtype=torch.float64),
    )[0]  # (68, 3)
    r = (lmk[_INNER_EYE_CORNERS[0]] - lmk[_INNER_EYE_CORNERS[1]]).norm()
    centres = torch.zeros(len(au_names), 2, 3, dtype=torch.float64)
    present = torch.zeros(len(au_names), 2, dtype=torch.bool)
    for k, name in enumerate(au_names):
        for m, (index, shift) in enumerate(AU_CENTRES.get(name, ())):
            centres[k, m] = lmk[index]
            centres[k, m, 1] += shift * r
            present[k, m] = True
    return centres, present


def au_centres_uv(
    assets: FaceModelAssets, au_names: Sequence[str] = MAIN_AU_NAMES
) -> tuple[torch.Tensor, torch.Tensor]:
    """AU centres in UV (see the module docstring for the mapping).

    Args:
        assets: a face model with a UV layout and an "ibug68" landmark set.
        au_names: the K AUs, in channel order (default: the 27 main AUs).

    Returns:
        centres (K, 2, 2) UV (u, v) in [0, 1] with v = 1 at the top (zeros where absent) and
        present (K, 2) bool.
    """
    _check_assets(assets)
    centres3d, present = au_centres_model(assets, au_names)
    emb = assets.landmarks["ibug68"]
    verts = torch.as_tensor(assets.v_template, dtype=torch.float64)
    faces = torch.as_tensor(assets.faces, dtype=torch.int64)
    verts_uvs = torch.as_tensor(assets.verts_uvs, dtype=torch.float64)
    faces_uvs = torch.as_tensor(assets.faces_uvs, dtype=torch.int64)
    # Exact UV of every landmark through its own embedding.
    lmk_uv = barycentric_points(
        verts_uvs[None],
        faces_uvs,
        torch.as_tensor(emb.face_idx, dtype=torch.int64),
        torch.as_tensor(emb.bary, dtype=torch.float64),
    )[0]  # (68, 2)
    # Shifted points: front-most face along z, else the nearest vertex.
    face, bary, found = _locate_along_z(centres3d.reshape(-1, 3), verts, faces)
    projected = torch.einsum("pk,pkc->pc", bary, verts_uvs[faces_uvs[face]])
    fallback = _uv_of_nearest_vertex(centres3d.reshape(-1, 3), verts, faces, faces_uvs, verts_uvs)
    projected = torch.where(found[:, None], projected, fallback).reshape(-1, 2, 2)

    centres = torch.zeros(len(au_names), 2, 2, dtype=torch.float64)
    for k, name in enumerate(au_names):
        for m, (index, shift) in enumerate(AU_CENTRES.get(name, ())):
            centres[k, m] = lmk_uv[index] if shift == 0 else projected[k, m]
    return centres.float(), present


class AUHeatmaps(nn.Module):
    """Gaussian AU blobs in UV, weighted by AU intensities.

    Args:
        centres_uv: (K, M, 2) UV centres (u, v), v = 1 at the top row.
        present: (K, M) bool, which centres exist (default: all); an AU with none has a zero map.
        size: H = W of the maps (the UV size of the detail renders).
        sigma: Gaussian standard deviation in UV units (a fraction of the map size).
    """

    def __init__(
        self,
        centres_uv: torch.Tensor,
        *,
        present: torch.Tensor | None = None,
        size: int = 256,
        sigma: float = 0.03,
    ) -> None:
        super().__init__()
        centres_uv = torch.as_tensor(centres_uv, dtype=torch.float32)
        if centres_uv.dim() != 3 or centres_uv.shape[-1] != 2:
            raise ValueError(f"centres_uv must be (K, M, 2), got {tuple(centres_uv.shape)}")
        if present is None:
            present = torch.ones(centres_uv.shape[:2], dtype=torch.bool)
        self.num_aus = centres_uv.shape[0]
        self.size = size
        self.sigma = sigma
        grid = uv_pixel_centres(size)  # (H, W, 2) u, v of every pixel centre
        d2 = (grid[None, None] - centres_uv[:, :, None, None]).square().sum(-1)  # (K, M, H, W)
        blobs = torch.exp(-d2 / (2 * sigma**2)) * present[:, :, None, None]
        # max, not sum: two nearby blobs of one AU never exceed 1.
        self.register_buffer("maps", blobs.amax(dim=1), persistent=False)  # (K, H, W)

    @classmethod
    def from_face_model(
        cls,
        assets: FaceModelAssets,
        *,
        au_names: Sequence[str] = MAIN_AU_NAMES,
        size: int = 256,
        sigma: float = 0.03,
    ) -> AUHeatmaps:
        """Heatmaps at :func:`au_centres_uv` of a face model (K = len(au_names))."""
        centres, present = au_centres_uv(assets, au_names)
        return cls(centres, present=present, size=size, sigma=sigma)

    def forward(self, intensities: torch.Tensor) -> torch.Tensor:
        """(N, K) AU intensities in [0, 1] -> (N, K, H, W) maps in [0, 1]."""
        if intensities.shape[-1] != self.num_aus:
            raise ValueError(
                f"expected (N, {self.num_aus}) intensities, got {tuple(intensities.shape)}"
            )
        return intensities[..., None, None] * self.maps.to(intensities.dtype)
