"""Ground-truth detail of synthetic clips: AU-driven wrinkles and static fine skin detail in UV.

With ``synthetic.detail.scale > 0`` (``tools/make_synthetic_data.py --detail``) every frame t is
rendered with a UV displacement map (metres along the coarse normal, row 0 = v 1 as in
:mod:`seqdeca.render.uv`) shaded through the renderer's own detail path
(:meth:`~seqdeca.render.renderer.Renderer.detail_normal_map`, then the renderer's shading with
those normals), the path the model's detail stage shades its predicted displacement with:

    D_t(u, v) = sum_k I_t[k] * B_k(u, v) + S(u, v)

* ``I_t``: the frame's AU intensities in [0, 1] (gt.npz ``au_intensity``, so the detail needs
  ``synthetic.expression: au``); ``B_k``: the wrinkles AU k drives (:data:`WRINKLE_REGIONS`):
  horizontal forehead lines (AU1 centre, AU2 sides), vertical glabella lines (AU4), crow's feet
  fanning from the outer eye corners (AU6), oblique nose lines (AU9), nasolabial folds with the
  cheek bulge beside them (AU12) and a dimpled chin (AU17). Zero AUs leave only ``S``.
* ``S``: static per-identity fine detail: band-limited noise (64 plane waves, 2-24 mm
  wavelength, 1/f amplitudes) and pores (pits where 32 plane waves of 1.2-2.2 mm add up high).

**Placement.** Patterns live in frontal template coordinates: an affine fit of the template's
(x, y) metres (y up) against UV over the front of the face maps every UV point to "frontal
metres", and the anchors are the AU centres of :func:`seqdeca.models.au_heatmaps.au_centres_uv`
(those of the critic's heatmaps) in those coordinates, offset in units of r, the template's
inner-eye-corner distance. Bilateral patterns are mirrored about the midline (the mean x of the
centres); each side draws its own variation. Per identity (the clip's seed) every pattern draws
a depth gain (0.75-1.25), its spacing, orientation and phase (:data:`_DRAWS`), so no two
identities share wrinkles. A pattern's support (where it is non-zero) does not depend on the
draws: :func:`detail_region_masks` are these supports within the skin.

**Depth at intensity 1, peak to valley** (x gain x ``synthetic.detail.scale``): forehead 2.4 mm,
glabella 2.5 mm, crow's feet 1.8 mm, nose 1.5 mm, nasolabial 4 mm, chin 1.5 mm; static noise
0.1 mm RMS and pores 0.15 mm deep (x ``synthetic.detail.static``). Deep for skin, on purpose:
the clips' light is mostly ambient, and these depths (slopes up to about 1 at 3-10 mm spacing)
change a 224 px render of the face by 5-18 grey levels (90th percentile over a region) where
shallower ones would vanish under JPEG; still within the detail generator's +-10 mm (at most
about 5 mm). :func:`seqdeca.vis.detail_check.detail_check_picture` shows them.

**The record** (gt.npz, float32, small; the maps are regenerated, never stored):

| key | shape | contents |
| --- | --- | --- |
| detail_centres | (7, 2, 2) | UV of the AU centres of :data:`CENTRE_AUS`, two per AU |
| detail_frame | (2, 3) | affine (u, v, 1) -> frontal template (x, y) metres |
| detail_unit | (1,) | r, metres |
| detail_wrinkles | (6, 2, 6) | per pattern and side: gain, spacing, angle, phase, a, b |
| detail_amplitude | (8,) | six pattern depths, noise RMS, pore depth, metres |
| detail_waves | (64, 4) | noise waves: kx, ky (cycles per metre), phase (cycles), weight |
| detail_pores | (32, 3) | pore waves: kx, ky, phase |

**Any UV size.** A map of side S is the mean of the continuous pattern over each texel (k x k
samples, k = ceil(256 / S)), so a 64 map is the 256 one averaged, not an aliased sampling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.config.schema import SyntheticDetailConfig
from seqdeca.errors import UserError
from seqdeca.face_model.assets import FaceModelAssets, LandmarkEmbedding
from seqdeca.face_model.landmarks import barycentric_points
from seqdeca.face_model.layer import FaceModel
from seqdeca.geometry import vertex_normals
from seqdeca.render.renderer import Renderer
from seqdeca.render.uv import rasterize_uv

__all__ = [
    "CENTRE_AUS",
    "DETAIL_KEYS",
    "WRINKLE_REGIONS",
    "DetailLayout",
    "DetailParams",
    "clip_detail_params",
    "detail_displacement_maps",
    "detail_ground_truth",
    "detail_layout",
    "detail_normal_maps",
    "detail_region_masks",
    "draw_detail_params",
    "pattern_maps",
]

#: The six wrinkle patterns and the AUs that drive them (the evaluation's region names).
WRINKLE_REGIONS: dict[str, tuple[str, ...]] = {
    "forehead": ("AU1", "AU2"),
    "glabella": ("AU4",),
    "crows_feet": ("AU6",),
    "nose": ("AU9",),
    "nasolabial": ("AU12",),
    "chin": ("AU17",),
}
#: The AUs whose centres place the patterns (and the only ones that drive detail).
CENTRE_AUS: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU17")
#: The gt.npz keys of the detail record.
DETAIL_KEYS: tuple[str, ...] = (
    "detail_centres",
    "detail_frame",
    "detail_unit",
    "detail_wrinkles",
    "detail_amplitude",
    "detail_waves",
    "detail_pores",
)

_PATTERNS = tuple(WRINKLE_REGIONS)
_DEPTH = {
    "forehead": 2.4e-3,
    "glabella": 2.5e-3,
    "crows_feet": 1.8e-3,
    "nose": 1.5e-3,
    "nasolabial": 4.0e-3,
    "chin": 1.5e-3,
}
_NOISE_RMS, _PORE_DEPTH = 0.1e-3, 0.15e-3  # metres
_NOISE_WAVELENGTH, _PORE_WAVELENGTH = (2e-3, 24e-3), (1.2e-3, 2.2e-3)  # metres
_WAVES, _PORE_WAVES = 64, 32
_PORE_LEVEL = 1.3  # pores where the unit-variance pore noise exceeds this
_FINE = 256  # maps are evaluated at >= this many samples per side, then averaged
_DETAIL_STREAM = 0xDE7A  # mixed into the detail generator's seed
_CHUNK = 16  # frames per detail-normal computation
# Per pattern, the uniform ranges of the six draws of each side (see the module docstring):
# forehead (side 0): gain, spacing, tilt (rad), phase, arch, -; glabella: gain, spacing, tilt,
# -, width, -; crows_feet: gain, spacing, turn (rad), phase, bend, -; nose: gain, spacing, turn,
# phase, -, -; nasolabial: gain, width, -, -, bulge, -; chin (side 0): gain, spacing, angle,
# three phases.
_DRAWS: dict[str, tuple[tuple[float, float], ...]] = {
    "forehead": ((0.75, 1.25), (0.85, 1.2), (-0.05, 0.05), (0, 1), (-0.08, 0.12), (0, 0)),
    "glabella": ((0.75, 1.25), (0.8, 1.2), (0.04, 0.24), (0, 0), (0.8, 1.2), (0, 0)),
    "crows_feet": ((0.75, 1.25), (0.85, 1.2), (-0.15, 0.15), (0, 1), (-0.3, 0.3), (0, 0)),
    "nose": ((0.75, 1.25), (0.85, 1.2), (-0.15, 0.15), (0, 1), (0, 0), (0, 0)),
    "nasolabial": ((0.75, 1.25), (0.8, 1.25), (0, 0), (0, 0), (0.6, 1.4), (0, 0)),
    "chin": ((0.75, 1.25), (0.85, 1.2), (0, math.pi / 3), (0, 1), (0, 1), (0, 1)),
}


@dataclass(frozen=True)
class DetailLayout:
    """Where the patterns go on one face model's UV layout (the same for every identity).

    Attributes:
        centres: (7, 2, 2) UV (u, v) of the centres of :data:`CENTRE_AUS`, two per AU.
        frame: (2, 3) affine map of (u, v, 1) to frontal template metres (x right, y up).
        unit: r, the template's inner-eye-corner distance, metres.
    """

    centres: np.ndarray
    frame: np.ndarray
    unit: float


@dataclass(frozen=True)
class DetailParams:
    """One identity's detail: the layout plus its draws (the gt.npz record, see the module).

    Attributes:
        layout: the face model's :class:`DetailLayout`.
        wrinkles: (6, 2, 6) draws per pattern (:data:`WRINKLE_REGIONS` order) and side.
        amplitude: (8,) metres: the six pattern depths, the noise RMS and the pore depth.
        waves: (64, 4) noise plane waves: kx, ky cycles per metre, phase cycles, weight.
        pores: (32, 3) pore plane waves: kx, ky, phase.
    """

    layout: DetailLayout
    wrinkles: np.ndarray
    amplitude: np.ndarray
    waves: np.ndarray
    pores: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The gt.npz arrays (:data:`DETAIL_KEYS`), float32."""
        values = (
            self.layout.centres,
            self.layout.frame,
            [self.layout.unit],
            self.wrinkles,
            self.amplitude,
            self.waves,
            self.pores,
        )
        return {k: np.asarray(v, np.float32) for k, v in zip(DETAIL_KEYS, values)}

    @classmethod
    def from_arrays(cls, gt: Mapping[str, np.ndarray]) -> DetailParams:
        """The record back from gt.npz arrays (:data:`DETAIL_KEYS`)."""
        missing = [k for k in DETAIL_KEYS if k not in gt]
        if missing:
            raise UserError(
                f"no detail record in gt.npz (missing {missing}): write the clips "
                "with tools/make_synthetic_data.py --detail"
            )
        a = {k: np.asarray(gt[k], np.float64) for k in DETAIL_KEYS}
        layout = DetailLayout(a["detail_centres"], a["detail_frame"], float(a["detail_unit"][0]))
        return cls(
            layout,
            a["detail_wrinkles"],
            a["detail_amplitude"],
            a["detail_waves"],
            a["detail_pores"],
        )


# ------------------------------------------------------------------------------------ layout


def _assets_of(source: FaceModelAssets | FaceModel) -> FaceModelAssets:
    """The UV layout and iBUG-68 embedding of a face model as assets (bases left empty)."""
    if isinstance(source, FaceModelAssets):
        assets = source
    else:
        names = source._landmark_buffers.get("ibug68")  # the layer keeps embeddings as buffers
        landmarks = {}
        if names is not None:
            landmarks["ibug68"] = LandmarkEmbedding(*(getattr(source, n).numpy() for n in names))
        arr = {
            k: getattr(source, k).numpy()
            for k in ("v_template", "faces", "posedirs", "j_regressor", "lbs_weights", "parents")
        }
        empty = np.zeros((source.num_vertices, 3, 0), np.float32)
        assets = FaceModelAssets(
            name=source.name,
            shapedirs=empty,
            exprdirs=empty,
            landmarks=landmarks,
            verts_uvs=None if source.verts_uvs is None else source.verts_uvs.numpy(),
            faces_uvs=None if source.faces_uvs is None else source.faces_uvs.numpy(),
            **arr,
        )
    if assets.verts_uvs is None or "ibug68" not in assets.landmarks:
        raise UserError(
            f"face model '{assets.name}' has no UV layout or iBUG-68 landmarks: "
            "synthetic detail needs both (set face_model.head_template and "
            "face_model.landmark_embedding)"
        )
    return assets


def detail_layout(source: FaceModelAssets | FaceModel) -> DetailLayout:
    """The :class:`DetailLayout` of a face model (assets or the layer)."""
    from seqdeca.models.au_heatmaps import au_centres_uv  # imports the networks: only when used

    assets = _assets_of(source)
    centres, _ = au_centres_uv(assets, CENTRE_AUS)  # every one of CENTRE_AUS has two
    verts = torch.as_tensor(assets.v_template, dtype=torch.float64)
    faces = torch.as_tensor(assets.faces, dtype=torch.int64)
    emb = assets.landmarks["ibug68"]
    lmk = barycentric_points(
        verts[None],
        faces,
        torch.as_tensor(emb.face_idx),
        torch.as_tensor(emb.bary, dtype=torch.float64),
    )[0]
    unit = float((lmk[39] - lmk[42]).norm())
    # Affine fit of (x, y) on (u, v, 1) over face corners facing the camera inside the centres' box.
    uv = np.asarray(assets.verts_uvs, np.float64)[np.asarray(assets.faces_uvs).reshape(-1)]
    xyz = verts.numpy()[assets.faces.reshape(-1)]
    normal_z = vertex_normals(verts[None], faces)[0, :, 2].numpy()[assets.faces.reshape(-1)]
    flat = centres.double().reshape(-1, 2).numpy()
    lo, hi = flat.min(0), flat.max(0)
    lo, hi = lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo)
    keep = (uv >= lo).all(1) & (uv <= hi).all(1) & (normal_z > 0.3)
    design = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
    for _ in range(2):  # refit without the corners far off the first fit (e.g. other UV islands)
        frame = np.linalg.lstsq(design[keep], xyz[keep, :2], rcond=None)[0].T  # (2, 3)
        error = np.linalg.norm(design @ frame.T - xyz[:, :2], axis=1)
        keep &= error <= 3 * np.median(error[keep]) + 1e-9
    return DetailLayout(centres.double().numpy(), frame, unit)


# ---------------------------------------------------------------------------------- patterns


def _window(t: np.ndarray, lo: float, hi: float, taper: float) -> np.ndarray:
    """Raised-cosine window: 1 on [lo + taper, hi - taper], falling to 0 at lo and at hi."""
    rise = np.clip((t - lo) / taper, 0, 1)
    fall = np.clip((hi - t) / taper, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))


def _furrow(s: np.ndarray) -> np.ndarray:
    """Zero-mean furrows of period 1: valleys (-5/8) at integer s, peak to valley 1."""
    return 3 / 8 - ((1 + np.cos(2 * np.pi * s)) / 2) ** 2


@dataclass(frozen=True)
class _Geometry:
    """Frontal metres of the sample grid and the AU centres."""

    x: np.ndarray  # (H, W) metres, x right
    y: np.ndarray  # (H, W) metres, y up
    centres: np.ndarray  # (7, 2, 2) metres
    midline: float  # x of the face's vertical midline
    r: float

    def pair(self, au: str) -> np.ndarray:
        """(2, 2) the AU's two centres (x, y)."""
        return self.centres[CENTRE_AUS.index(au)]

    def sides(self, au: str) -> list[tuple[float, np.ndarray]]:
        """[(outward sign, centre (2,))] of the AU's centres, left (-1) first."""
        pair = self.pair(au)
        order = np.argsort(pair[:, 0])
        return [(-1.0, pair[order[0]]), (1.0, pair[order[1]])]


# A pattern function takes the geometry and its (2, 6) draws (one row per side) and returns
# its (AU, unit-depth map) terms and its support (H, W) bool, which ignores the draws.
Terms = list[tuple[str, np.ndarray]]


def _forehead(g: _Geometry, d: np.ndarray) -> tuple[Terms, np.ndarray]:
    """Horizontal lines over the forehead: AU1 in the middle, AU2 at the sides."""
    gain, spacing, tilt, phase, arch, _ = d[0]
    r, au1, au2 = g.r, g.pair("AU1"), g.pair("AU2")
    lateral = float(np.abs(au2[:, 0] - g.midline).mean())
    x = g.x - g.midline
    t = np.clip(np.abs(x) / lateral, 0, 1)
    # the lines follow the brows: from the AU1 height in the middle to the AU2 height at the sides
    y = g.y - au1[:, 1].mean() - (au2[:, 1].mean() - au1[:, 1].mean()) * t * t * (3 - 2 * t)
    xr, yr = x * math.cos(tilt) + y * math.sin(tilt), y * math.cos(tilt) - x * math.sin(tilt)
    lines = gain * _furrow((yr - arch * xr**2 / r) / (0.3 * r * spacing) + phase)
    vertical = _window(y, -0.3 * r, 1.4 * r, 0.3 * r)  # from just above the brows
    centre = _window(x, -0.8 * lateral, 0.8 * lateral, 0.5 * lateral)
    sides = _window(np.abs(x), 0.3 * lateral, 1.4 * lateral, 0.45 * lateral)
    terms = [("AU1", lines * vertical * centre), ("AU2", lines * vertical * sides)]
    return terms, (vertical > 0) & (np.abs(x) < 1.4 * lateral)


def _glabella(g: _Geometry, d: np.ndarray) -> tuple[Terms, np.ndarray]:
    """Two vertical grooves between the brows (AU4), one per side, spreading upwards."""
    r = g.r
    y = g.y - g.pair("AU1")[:, 1].mean() + 0.6 * r  # between the inner brows, a little below
    vertical = _window(y, -0.45 * r, 0.4 * r, 0.25 * r)
    total = np.zeros_like(y)
    for m, (sign, _) in enumerate(g.sides("AU4")):
        gain, spacing, tilt, _, width, _ = d[m]
        xs = sign * (g.x - g.midline)  # outward from the midline on this side
        off = xs - 0.16 * r * spacing - math.tan(tilt) * y  # lines spread upwards
        groove = -np.exp(-0.5 * (off / (0.05 * r * width)) ** 2)
        total += gain * groove * _window(xs, -0.05 * r, 0.55 * r, 0.15 * r)
    return [("AU4", total * vertical)], (vertical > 0) & (np.abs(g.x - g.midline) < 0.55 * r)


def _crows_feet(g: _Geometry, d: np.ndarray) -> tuple[Terms, np.ndarray]:
    """Lines fanning out from each outer eye corner (AU6)."""
    r = g.r
    total, support = np.zeros_like(g.x), np.zeros(g.x.shape, bool)
    for m, (sign, centre) in enumerate(g.sides("AU6")):
        gain, spacing, turn, phase, bend, _ = d[m]
        # the outer eye corner: 0.25 r out from and 1.1 r above the cheek centre
        xs = sign * (g.x - centre[0]) - 0.25 * r
        y = g.y - centre[1] - 1.1 * r
        rho, psi = np.hypot(xs, y), np.arctan2(y, xs)  # psi = 0 points away from the face
        env = _window(rho, 0.15 * r, 0.8 * r, 0.25 * r) * _window(psi, -0.9, 0.9, 0.35)
        total += gain * env * _furrow((psi - turn - bend * rho / r) / (0.24 * spacing) + phase)
        support |= env > 0
    return [("AU6", total)], support


def _nose(g: _Geometry, d: np.ndarray) -> tuple[Terms, np.ndarray]:
    """Oblique lines on each side of the nasal bridge (AU9)."""
    r = g.r
    total, support = np.zeros_like(g.x), np.zeros(g.x.shape, bool)
    for m, (sign, centre) in enumerate(g.sides("AU9")):
        gain, spacing, turn, phase, _, _ = d[m]
        xs = sign * (g.x - centre[0]) - 0.1 * r
        y = g.y - centre[1] - 0.45 * r  # the sides of the nasal bridge
        beta = -0.9 + turn  # the lines run down and outwards
        across = y * math.cos(beta) - xs * math.sin(beta)
        env = _window(np.hypot(xs / (0.34 * r), y / (0.3 * r)), -1, 1, 0.5)
        total += gain * env * _furrow(across / (0.11 * r * spacing) + phase)
        support |= env > 0
    return [("AU9", total)], support


def _nasolabial(g: _Geometry, d: np.ndarray) -> tuple[Terms, np.ndarray]:
    """A fold from each nose wing to beside the mouth corner, cheek bulge outside it (AU12)."""
    r = g.r
    total, support = np.zeros_like(g.x), np.zeros(g.x.shape, bool)
    for m, ((sign, nose), (_, mouth)) in enumerate(zip(g.sides("AU9"), g.sides("AU12"))):
        gain, width, _, _, bulge, _ = d[m]
        start = nose + np.array([sign * 0.3 * r, -0.3 * r])  # above the nose wing
        end = mouth + np.array([sign * 0.2 * r, -0.35 * r])  # beside and below the mouth corner
        length = float(np.linalg.norm(end - start))
        tx, ty = (end - start) / length
        nx, ny = (-ty, tx) if -ty * sign > 0 else (ty, -tx)  # the normal pointing outwards
        dx, dy = g.x - start[0], g.y - start[1]
        t, n = (dx * tx + dy * ty) / length, dx * nx + dy * ny
        arc = 4 * t * (1 - t)  # the fold bows outwards
        w = 0.07 * r * width
        off = n - 0.12 * r * bulge * arc
        cheek = 0.4 * np.exp(-0.5 * ((off - 1.8 * w) / (1.3 * w)) ** 2)  # the bulge beside it
        profile = cheek - np.exp(-0.5 * (off / w) ** 2)
        across = _window(n - 0.12 * r * arc, -0.4 * r, 0.45 * r, 0.15 * r)
        env = _window(t, -0.05, 1.1, 0.25) * across
        total += gain * env * (1 - 0.4 * np.clip(t, 0, 1)) * profile  # deepest by the nose
        support |= env > 0
    return [("AU12", total)], support


def _chin(g: _Geometry, d: np.ndarray) -> tuple[Terms, np.ndarray]:
    """Dimples over the chin (AU17): pits where three plane waves 120 degrees apart add up."""
    r = g.r
    gain, spacing, angle, *phases = d[0]
    x, y = g.x - g.midline, g.y - g.pair("AU17")[:, 1].mean() - 0.05 * r
    waves = sum(
        np.cos(2 * np.pi * ((x * math.cos(a) + y * math.sin(a)) / (0.13 * r * spacing) + p))
        for a, p in zip(angle + 2 * np.pi * np.arange(3) / 3, phases)
    )
    dimples = -np.clip((waves / 3 - 0.2) / 0.8, 0, 1)
    env = _window(np.hypot(x / (0.6 * r), y / (0.38 * r)), -1, 1, 0.5)
    return [("AU17", gain * env * dimples)], env > 0


_PATTERN_FUNCTIONS = {
    "forehead": _forehead,
    "glabella": _glabella,
    "crows_feet": _crows_feet,
    "nose": _nose,
    "nasolabial": _nasolabial,
    "chin": _chin,
}


def _geometry(layout: DetailLayout, uv_size: int) -> tuple[_Geometry, int]:
    """Frontal metres of the k x k samples of every texel of a uv_size map, and k."""
    if uv_size < 1:
        raise ValueError(f"uv_size must be >= 1, got {uv_size}")
    k = max(1, math.ceil(_FINE / uv_size))
    n = uv_size * k
    centres = np.arange(n, dtype=np.float64) + 0.5
    u, v = np.meshgrid(centres / n, 1 - centres / n, indexing="xy")  # row 0 = v 1
    frame = np.asarray(layout.frame, np.float64)
    x = frame[0, 0] * u + frame[0, 1] * v + frame[0, 2]
    y = frame[1, 0] * u + frame[1, 1] * v + frame[1, 2]
    c = np.asarray(layout.centres, np.float64)
    metric = c @ frame[:, :2].T + frame[:, 2]  # (7, 2, 2)
    midline = float(metric[..., 0].mean())
    return _Geometry(x, y, metric, midline, float(layout.unit)), k


def _pool(fine: np.ndarray, k: int) -> np.ndarray:
    """(..., n, n) -> (..., n / k, n / k) means of k x k blocks."""
    *lead, n, _ = fine.shape
    return fine.reshape(*lead, n // k, k, n // k, k).mean(axis=(-3, -1))


def _static(params: DetailParams, g: _Geometry) -> np.ndarray:
    """(H, W) metres: band-limited noise plus pores."""
    noise = np.zeros_like(g.x)
    for kx, ky, phase, weight in params.waves:
        noise += weight * np.cos(2 * np.pi * (kx * g.x + ky * g.y + phase))
    pore = np.zeros_like(g.x)
    for kx, ky, phase in params.pores:
        pore += np.cos(2 * np.pi * (kx * g.x + ky * g.y + phase))
    pore /= math.sqrt(len(params.pores) / 2)  # unit variance
    pits = -np.clip((pore - _PORE_LEVEL) / 1.5, 0, 1)
    return params.amplitude[6] * noise + params.amplitude[7] * pits


def _basis(params: DetailParams, uv_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(7, H, W) wrinkles per AU of :data:`CENTRE_AUS` at intensity 1 and (H, W) static, metres."""
    g, k = _geometry(params.layout, uv_size)
    basis = np.zeros((len(CENTRE_AUS), *g.x.shape))
    for p, name in enumerate(_PATTERNS):
        terms, _ = _PATTERN_FUNCTIONS[name](g, params.wrinkles[p])
        for au, term in terms:
            basis[CENTRE_AUS.index(au)] += params.amplitude[p] * term
    return _pool(basis, k), _pool(_static(params, g), k)


# -------------------------------------------------------------------------------- public API


def draw_detail_params(
    layout: DetailLayout, rng: np.random.Generator, *, scale: float = 1.0, static: float = 1.0
) -> DetailParams:
    """One identity's draws (see the module docstring for the ranges and depths).

    Args:
        layout: the face model's layout.
        rng: the identity's generator.
        scale: gain on every depth (``synthetic.detail.scale``).
        static: extra gain on the static detail (``synthetic.detail.static``).
    """
    lo = np.array([[lo for lo, _ in _DRAWS[name]] for name in _PATTERNS])  # (6, 6)
    hi = np.array([[hi for _, hi in _DRAWS[name]] for name in _PATTERNS])
    wrinkles = lo[:, None] + (hi - lo)[:, None] * rng.random((len(_PATTERNS), 2, 6))
    wavelength = np.exp(rng.uniform(*np.log(_NOISE_WAVELENGTH), _WAVES))
    direction = rng.uniform(0, 2 * np.pi, _WAVES)
    weight = wavelength / np.sqrt((wavelength**2).sum() / 2)  # 1/f amplitudes, unit RMS
    waves = np.stack(
        [
            np.cos(direction) / wavelength,
            np.sin(direction) / wavelength,
            rng.random(_WAVES),
            weight,
        ],
        axis=1,
    )
    pore_length = rng.uniform(*_PORE_WAVELENGTH, _PORE_WAVES)
    pore_direction = rng.uniform(0, 2 * np.pi, _PORE_WAVES)
    pores = np.stack(
        [
            np.cos(pore_direction) / pore_length,
            np.sin(pore_direction) / pore_length,
            rng.random(_PORE_WAVES),
        ],
        axis=1,
    )
    amplitude = (
        np.array([*(_DEPTH[name] for name in _PATTERNS), _NOISE_RMS * static, _PORE_DEPTH * static])
        * scale
    )
    return DetailParams(layout, wrinkles, amplitude, waves, pores)


def clip_detail_params(
    model: FaceModel, *, seed: int, settings: SyntheticDetailConfig
) -> DetailParams:
    """The detail of clip ``seed``, from a generator of its own (the clip's other draws do not
    depend on it), exactly as stored: :meth:`DetailParams.arrays` round trip (float32)."""
    from seqdeca.data.dataset import mixed_seed

    rng = np.random.default_rng(mixed_seed(seed, settings.seed, _DETAIL_STREAM))
    params = draw_detail_params(
        detail_layout(model), rng, scale=settings.scale, static=settings.static
    )
    return DetailParams.from_arrays(params.arrays())


def detail_displacement_maps(
    params: DetailParams | Mapping[str, np.ndarray],
    au_intensity: np.ndarray | torch.Tensor,
    uv_size: int,
) -> np.ndarray:
    """The ground-truth displacement of every frame.

    Args:
        params: a :class:`DetailParams` or gt.npz arrays holding :data:`DETAIL_KEYS`.
        au_intensity: (T, 27) AU intensities in [0, 1] (:data:`seqdeca.au_names.MAIN_AU_NAMES`).
        uv_size: side of the maps, texels (any; see the module docstring).

    Returns:
        (T, uv_size, uv_size) float32 metres along the coarse normal, row 0 = v 1.
    """
    if not isinstance(params, DetailParams):
        params = DetailParams.from_arrays(params)
    intensity = np.asarray(au_intensity, np.float64)
    if intensity.ndim != 2 or intensity.shape[1] != len(MAIN_AU_NAMES):
        raise ValueError(f"au_intensity must be (T, {len(MAIN_AU_NAMES)}), got {intensity.shape}")
    basis, static = _basis(params, uv_size)
    drive = intensity[:, [MAIN_AU_NAMES.index(au) for au in CENTRE_AUS]]  # (T, 7)
    maps = np.einsum("tk,khw->thw", drive, basis) + static
    return maps.astype(np.float32)


def detail_ground_truth(gt: Mapping[str, np.ndarray], uv_size: int) -> np.ndarray:
    """(T, uv_size, uv_size) float32 displacement, metres, from a clip's gt.npz arrays."""
    if "au_intensity" not in gt:
        raise UserError(
            "gt.npz has no au_intensity: detail clips are written with synthetic.expression=au"
        )
    return detail_displacement_maps(gt, gt["au_intensity"], uv_size)


def pattern_maps(
    params: DetailParams | Mapping[str, np.ndarray], uv_size: int
) -> dict[str, np.ndarray]:
    """Each pattern alone with its AUs at intensity 1: name -> (H, W) float32 metres."""
    if not isinstance(params, DetailParams):
        params = DetailParams.from_arrays(params)
    g, k = _geometry(params.layout, uv_size)
    out = {}
    for p, name in enumerate(_PATTERNS):
        terms, _ = _PATTERN_FUNCTIONS[name](g, params.wrinkles[p])
        out[name] = _pool(params.amplitude[p] * sum(t for _, t in terms), k).astype(np.float32)
    return out


def _skin_mask(source: FaceModelAssets | FaceModel, uv_size: int) -> np.ndarray:
    """(H, W) bool skin texels: uv_face_mask, else uv_face_eye_mask, else the UV coverage."""
    for key in ("uv_face_mask", "uv_face_eye_mask"):
        mask = getattr(source, key)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.float32)[None, None]
            mask = F.interpolate(
                mask, size=(uv_size, uv_size), mode="bilinear", align_corners=False
            )
            return mask[0, 0].numpy() > 0.5
    verts_uvs = torch.as_tensor(source.verts_uvs, dtype=torch.float32)
    faces_uvs = torch.as_tensor(source.faces_uvs, dtype=torch.int64)
    return (rasterize_uv(verts_uvs, faces_uvs, uv_size).pix_to_face[0] >= 0).numpy()


def detail_region_masks(source: FaceModelAssets | FaceModel, uv_size: int) -> dict[str, np.ndarray]:
    """Where each wrinkle pattern lives: name -> (uv_size, uv_size) bool, within the skin.

    A texel is in a region when any of its samples is in the pattern's support (both sides for
    the bilateral ones) and the face model's skin mask covers it. The supports do not depend on
    the identity, so one set of masks serves every clip of the model.
    """
    g, k = _geometry(detail_layout(source), uv_size)
    nominal = np.array([[(lo + hi) / 2 for lo, hi in _DRAWS[n]] for n in _PATTERNS])
    skin = _skin_mask(source, uv_size)
    out = {}
    for p, name in enumerate(_PATTERNS):
        _, support = _PATTERN_FUNCTIONS[name](g, np.repeat(nominal[p][None], 2, axis=0))
        out[name] = support.reshape(uv_size, k, uv_size, k).any(axis=(1, 3)) & skin
    return out


def detail_normal_maps(
    model: FaceModel, vertices: torch.Tensor, displacement: torch.Tensor
) -> torch.Tensor:
    """Detail normals of a displacement through the renderer's detail path, as the model's
    detail stage makes them (face-and-eye mask and fixed displacement resized bilinearly).

    Args:
        model: the face model (UV layout, masks).
        vertices: (T, V, 3) posed coarse vertices, metres.
        displacement: (T, H, W) metres (H = W: the UV size of the normals).

    Returns:
        (T, 3, H, W) unit normals in UV, for ``Renderer.forward(detail_normals=...)``.
    """
    size = displacement.shape[-1]
    renderer = Renderer(
        faces=model.faces,
        verts_uvs=model.verts_uvs,
        faces_uvs=model.faces_uvs,
        image_size=size,
        uv_size=size,
    )

    def resized(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or tuple(x.shape[-2:]) == (size, size):
            return x
        return F.interpolate(
            x[None, None], size=(size, size), mode="bilinear", align_corners=False
        )[0, 0]

    mask = model.uv_face_eye_mask if model.uv_face_eye_mask is not None else model.uv_face_mask
    mask = renderer.uv_mask[0, 0] if mask is None else resized(mask)
    fixed = resized(model.fixed_displacement)
    with torch.no_grad():
        return torch.cat(
            [
                renderer.detail_normal_map(
                    displacement[i : i + _CHUNK, None].float(),
                    vertices[i : i + _CHUNK],
                    mask,
                    fixed,
                )
                for i in range(0, len(displacement), _CHUNK)
            ]
        )
