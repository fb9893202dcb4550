"""A UV texture map unwrapped from the frames of a clip (fit mode, ``inference.fit.texture:
extract``), accumulated frame by frame so that memory does not grow with the clip.

Every pixel of a frame's render that the mesh covers shows the nearest surface (the
rasterizer's z-buffer: what it shows is visible), at the UV coordinates the render interpolated.
There the frame's colour divided by its SH shading estimates the albedo, with the weight
``w = z^2`` (z: the unit normal's z, how squarely the surface faces the camera). Pixels outside
classes 1 and 2 of the 3-class mask (skin, eyes, brows, lips: the map should carry brows and
lips), facing less than ``MIN_FACING``, with a clipped channel or with shading below
``MIN_SHADING`` are left out.

Each frame's estimates are resampled into UV: splatted onto the 4 texels around their UV
coordinates with bilinear shares s, giving per texel the value ``v = sum(w s a) / sum(w s)``
and the frame's weight ``q = sum(w s) / sum(s)`` (at most 1: a frame counts at most once in a
texel, however densely its pixels cover the map).

Frames are then averaged per texel with robust weights, in frame order: a frame's value v is
compared with the texel's running mean m of the frames before it and its weight multiplied by
the Cauchy weight ``1 / (1 + (|v - m| / (CAUCHY_C * scale))^2)``, where ``scale`` is the running
RMS spread of the texel's values (at least ``MIN_SPREAD``), once the texel has ``GATE_AFTER``
frames of weight. A hand or hair over the face in some frames is thus down-weighted. What a
texel's first frames show sets the reference, so an occluder in the very first frames of a clip
is not caught; the weight never reaches 0, so such a texel is pulled back (slowly) as the later
frames agree with each other. The map is the robust
mean pulled towards the clip's model albedo by a prior weight ``FILL_WEIGHT`` (in frames):
texels no frame shows are the model albedo and rarely seen ones blend into it. The result
depends on the order of the frames, not on how they are batched or chunked. Only three running
sums per texel are kept (:class:`TextureAccumulator`).
"""

from __future__ import annotations

import torch

from seqdeca.inference.appearance import BRIGHTEST, DARKEST, MIN_FACING
from seqdeca.render.shading import sh_shading

__all__ = ["FILL_WEIGHT", "TextureAccumulator"]

#: Weight (in frames) of the model albedo in every texel of the map.
FILL_WEIGHT = 0.5
#: Shading below this is not divided by (dark, grazing or back-lit points carry no albedo).
MIN_SHADING = 0.05
#: Cauchy constant (95 % efficiency for Gaussian residuals) of the robust running mean.
CAUCHY_C = 2.385
#: Floor of a texel's spread (RGB norm), and the frames of weight before gating starts.
MIN_SPREAD = 0.05
GATE_AFTER = 1.0


class TextureAccumulator:
    """Robust running mean of per-frame albedo estimates in UV (module docstring).

    Args:
        fill: (3, Huv, Wuv) the clip's model albedo in [0, 1] (the prior of every texel).
    """

    def __init__(self, fill: torch.Tensor) -> None:
        self.fill = fill
        self.size = tuple(fill.shape[-2:])
        # per texel: sum of q * v (RGB), sum of q, sum of q * |v|^2
        self.totals = fill.new_zeros(fill.shape[-2] * fill.shape[-1], 5)
        self._scratch = torch.zeros_like(self.totals)  # one frame's splat
        self.frames = 0

    def add(
        self,
        *,
        normals: torch.Tensor,
        uv: torch.Tensor,
        alpha: torch.Tensor,
        images: torch.Tensor,
        classes: torch.Tensor,
        light: torch.Tensor,
    ) -> None:
        """Add n frames, in order (their renders: :class:`~seqdeca.render.RenderOutput`'s
        ``normal_image``, ``uv_image`` and ``alpha``).

        Args:
            normals: (n, 3, H, W) the render's interpolated model-space normals.
            uv: (n, H, W, 2) its UV coordinates.
            alpha: (n, 1, H, W) its coverage.
            images: (n, 3, H, W) the frames at the render size, RGB in [0, 1].
            classes: (n, H, W) uint8 3-class mask at the render size.
            light: (n, 9, 3) the frames' SH light.
        """
        normal = normals
        z = normal[:, 2]
        facing = (z > 0) & (z.square() > MIN_FACING**2 * normal.square().sum(1))
        use = (alpha[:, 0] > 0) & (classes > 0) & facing
        frame, row, col = use.nonzero(as_tuple=True)  # covered face pixels (K,)
        shading = sh_shading(normal, light).permute(0, 2, 3, 1)[frame, row, col]  # (K, 3)
        colour = images.permute(0, 2, 3, 1)[frame, row, col]
        normal = normal.permute(0, 2, 3, 1)[frame, row, col]
        ok = (shading.amin(-1) > MIN_SHADING) & (colour.amax(-1) < BRIGHTEST)
        ok &= colour.amin(-1) > DARKEST
        weight = normal[:, 2].square() / normal.square().sum(-1) * ok
        albedo = colour / shading.clamp_min(MIN_SHADING)
        uv = uv[frame, row, col]  # (K, 2)
        counts = torch.bincount(frame, minlength=images.shape[0]).tolist()
        for part in zip(*(x.split(counts) for x in (uv, weight, albedo))):  # frame by frame
            self._add_frame(*self._resample(*part))
        self.frames += images.shape[0]

    def _resample(
        self, uv: torch.Tensor, weight: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One frame's (K, 3) ``values`` with (K,) weights at (K, 2) UV points, resampled into
        UV (module docstring; texel (i, j) is centred at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H).

        Returns:
            the texels it reaches (M,) (flat indices), their values (M, 3) and weights (M,) in
            [0, 1].
        """
        h, w = self.size
        x = (uv[:, 0] * w - 0.5).clamp(0, w - 1.001)  # points beyond the outer texel centres
        y = ((1 - uv[:, 1]) * h - 0.5).clamp(0, h - 1.001)  # splat onto the outer texels
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        base = (y0 * w + x0).long()
        index = (base[None] + base.new_tensor([0, 1, w, w + 1])[:, None]).reshape(-1)
        shares = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        rows = torch.cat(
            [values * weight[:, None], weight[:, None], torch.ones_like(x)[:, None]], dim=1
        )  # (K, 5): w a, w, 1
        rows = (rows[None] * shares[..., None]).reshape(-1, 5)  # the 4 neighbours of each point
        self._scratch.zero_()
        self._scratch.index_add_(0, index, rows)
        texels = (self._scratch[:, 3] > 0).nonzero().squeeze(1)
        sums = self._scratch[texels]
        return texels, sums[:, :3] / sums[:, 3:4], sums[:, 3] / sums[:, 4]

    def _add_frame(self, texels: torch.Tensor, v: torch.Tensor, q: torch.Tensor) -> None:
        """Add one frame's resampled values (M, 3) with weights (M,) at ``texels``, robustly
        weighted against their running mean and spread (module docstring)."""
        t = self.totals[texels]
        count = t[:, 3]
        mean = t[:, :3] / count.clamp_min(1e-12)[:, None]
        spread = (t[:, 4] / count.clamp_min(1e-12) - mean.square().sum(-1)).clamp_min(0).sqrt()
        scale = CAUCHY_C * spread.clamp_min(MIN_SPREAD)
        robust = 1 / (1 + ((v - mean).square().sum(-1) / scale.square()))
        q = q * torch.where(count >= GATE_AFTER, robust, torch.ones_like(robust))
        self.totals.index_add_(
            0,
            texels,
            torch.cat([v * q[:, None], q[:, None], (v.square().sum(-1) * q)[:, None]], dim=1),
        )

    def texture(self) -> torch.Tensor:
        """(3, Huv, Wuv) the map so far: the robust mean pulled towards the model albedo."""
        fill = self.fill.reshape(3, -1).T
        out = (self.totals[:, :3] + FILL_WEIGHT * fill) / (self.totals[:, 3:4] + FILL_WEIGHT)
        return out.T.reshape(self.fill.shape)
