"""Detail critic: a GANimation-style patch critic on UV detail renders (legacy ConditionalDiscriminator).

Input: the UV-space detail render, ONE channel (:data:`CRITIC_CHANNELS`: the local contrast of a
shading ratio, :func:`detail_contrast`; what real and fake samples are is explained in
:mod:`seqdeca.train.gan_steps`), concatenated with the K per-AU UV heatmaps weighted by AU intensity
(:class:`seqdeca.models.au_heatmaps.AUHeatmaps`). Trunk: ``n_layers`` 4x4 stride-2 convolutions,
no normalisation (WGAN-GP penalises per-sample gradients, which batch statistics would couple),
LeakyReLU. Heads, as in GANimation:

* realism: a 3x3 convolution to one channel, a (N, 1, h, w) map of unbounded scores (WGAN
  values, hinge scores or BCE logits: ``loss.gan_type``), one per patch, with
  h = w = uv_size / 2**n_layers;
* AU regression: a convolution whose kernel covers the whole last feature map (h x w), giving
  (N, K) unbounded AU estimates (trained with MSE against intensities in [0, 1]). It reads a
  second pass of the same trunk with the heatmap channels ZEROED: the heatmaps carry the
  intensities, so a head that saw them could regress the condition back without looking at the
  render and would teach the generator nothing. (GANimation's critic sees only the image.)

With ``num_aus`` = 0 (``model.critic_au: false``) the critic is unconditioned: no heatmap
channels, no AU head, one trunk pass. The critic's size is fixed by ``uv_size`` (the AU head's
kernel size), as in GANimation.

:class:`ConditionedDetailCritic` (the module the detail stage trains) wraps the critic with its
AU heatmaps and builds both critic inputs from the detail stage's outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from seqdeca.models.au_heatmaps import AUHeatmaps
from seqdeca.models.outputs import DetailOutput
from seqdeca.render.resize import resize_maps

CRITIC_CHANNELS = 1  # the critic's view of UV shading (detail_contrast), grey
#: ITU-R BT.601 luma weights (R, G, B).
LUMA = (0.299, 0.587, 0.114)
#: Lowest grey level divided by in the critic's shading ratios (albedo x shading of dark texels,
#: e.g. pupils, would otherwise turn image noise into large ratios).
RATIO_FLOOR = 0.05
#: Scale that separates detail from coarse shading in detail_contrast: Gaussian sigma as a
#: fraction of the UV side (4 texels of a 256 map, a few millimetres on a FLAME face).
DETAIL_SIGMA = 1 / 64
#: Texels left out of the detail contrast loss next to a border of the compared region (the
#: unwrapped photo there mixes in the background, the eyes or the mouth), as a fraction of the
#: UV side (3 texels of a 128 map), and where the albedo itself changes by more than
#: ALBEDO_EDGE of its local mean (eyebrows, lips, nostrils: resampled differently in the photo
#: and in UV), widened by one texel.
BORDER_MARGIN = 3 / 128
ALBEDO_EDGE = 0.1


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B*T, ...)."""
    return rearrange(x, "b t ... -> (b t) ...")


class DetailCritic(nn.Module):
    """Patch critic with an AU regression head (none when ``num_aus`` is 0).

    Args:
        in_channels: channels of the detail render (1 in the model: the shading contrast).
        num_aus: K, AU heatmap channels appended to the input and AU outputs; 0: an
            unconditioned critic without AU head.
        uv_size: H = W of the UV inputs; must be divisible by 2**n_layers.
        base: channels of the first convolution, doubled at every layer.
        n_layers: number of stride-2 convolutions.
        max_channels: cap on the channel doubling.
        negative_slope: LeakyReLU slope (GANimation uses 0.01).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_aus: int,
        uv_size: int = 256,
        base: int = 64,
        n_layers: int = 5,
        max_channels: int = 1024,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        if uv_size % 2**n_layers:
            raise ValueError(f"uv_size={uv_size} is not divisible by 2**n_layers={2**n_layers}")
        if num_aus < 0:
            raise ValueError(f"num_aus must be >= 0, got {num_aus}")
        self.in_channels = in_channels
        self.num_aus = num_aus
        self.uv_size = uv_size
        layers: list[nn.Module] = []
        channels = in_channels + num_aus
        for i in range(n_layers):
            out = min(base * 2**i, max_channels)
            layers += [
                nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1),
                nn.LeakyReLU(negative_slope),
            ]
            channels = out
        self.trunk = nn.Sequential(*layers)
        self.final_size = uv_size // 2**n_layers
        self.realism_head = nn.Conv2d(channels, 1, kernel_size=3, stride=1, padding=1, bias=False)
        # Kernel = the whole final map: one (N, K, 1, 1) output.
        self.au_head = (
            nn.Conv2d(channels, num_aus, kernel_size=self.final_size, bias=False)
            if num_aus > 0
            else None
        )

    def forward(
        self, detail: torch.Tensor, au_maps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score UV detail renders under an AU condition.

        Args:
            detail: (N, in_channels, H, W) UV detail render, H = W = uv_size.
            au_maps: (N, K, H, W) intensity-weighted AU heatmaps in [0, 1]; None (and ignored)
                when ``num_aus`` is 0.

        Returns:
            realism (N, 1, h, w) patch scores and au (N, K) AU estimates (None without AU head),
            h = w = uv_size / 2**n_layers.
        """
        n, c, h, w = detail.shape
        if c != self.in_channels or (h, w) != (self.uv_size, self.uv_size):
            raise ValueError(
                f"expected detail (N, {self.in_channels}, {self.uv_size}, {self.uv_size}), "
                f"got {tuple(detail.shape)}"
            )
        if self.au_head is None:
            return self.realism_head(self.trunk(detail)), None
        if au_maps is None or au_maps.shape != (n, self.num_aus, h, w):
            got = None if au_maps is None else tuple(au_maps.shape)
            raise ValueError(f"expected AU maps {(n, self.num_aus, h, w)}, got {got}")
        conditioned = self.trunk(torch.cat([detail, au_maps.to(detail.dtype)], dim=1))
        image_only = self.trunk(
            torch.cat([detail, torch.zeros_like(au_maps, dtype=detail.dtype)], 1)
        )
        return self.realism_head(conditioned), self.au_head(image_only).flatten(1)


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) ITU-R BT.601 grey level."""
    weights = rgb.new_tensor(LUMA).reshape(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) separable Gaussian blur (zero padding), kernel radius 3 sigma."""
    radius = max(1, round(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, K)
    x = F.conv2d(x, kernel, padding=(0, radius), groups=x.shape[1])
    return F.conv2d(x, kernel.transpose(-1, -2), padding=(radius, 0), groups=x.shape[1])


def detail_contrast(ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The detail critic's view of a shading ratio: its local contrast inside the mask.

    ``ratio / local_mean(ratio) - 1``, where the local mean is a Gaussian average over the mask's
    texels only (normalised convolution, sigma = :data:`DETAIL_SIGMA` x UV side), zero outside
    the mask. Smooth deviations (light intensity, colour and direction errors, albedo errors,
    coarse-geometry misfit) divide out; what varies within a few texels (wrinkles, folds) stays,
    as a relative change of brightness.

    Args:
        ratio: (N, 1, H, W) positive shading ratio (see :class:`ConditionedDetailCritic`).
        mask: (N, 1, H, W) in {0, 1}.

    Returns:
        (N, 1, H, W), 0 where the ratio is locally constant and outside the mask.
    """
    mask = mask.to(ratio.dtype)
    sigma = DETAIL_SIGMA * ratio.shape[-1]
    local = _gaussian_blur(ratio * mask, sigma) / _gaussian_blur(mask, sigma).clamp_min(1e-6)
    return (ratio / local.clamp_min(RATIO_FLOOR) - 1) * mask


def shading_contrast(
    shading: torch.Tensor, coarse_shading: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """:func:`detail_contrast` of the detail shading over the coarse shading (grey levels).

    Args:
        shading, coarse_shading: (N, 3, H, W) SH shading of the detail and of the coarse normals.
        mask: (N, 1, H, W) texels to compare (face x visible).

    Returns:
        (N, 1, H, W); 0 everywhere for a zero displacement.
    """
    ratio = _luma(shading) / _luma(coarse_shading).clamp_min(RATIO_FLOOR)
    return detail_contrast(ratio, mask)


def observed_contrast(
    uv_input: torch.Tensor,
    albedo: torch.Tensor | None,
    coarse_shading: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """:func:`detail_contrast` of the photo unwrapped to UV over the coarse render of the same
    texels (albedo x coarse shading, grey levels): the shading the coarse model leaves out.

    Args:
        uv_input: (N, 3, H, W) photo sampled into UV.
        albedo: (N, 3, h, w) UV albedo (resized to H x W), or None: the renderer's grey 0.5.
        coarse_shading: (N, 3, H, W) SH shading of the coarse normals.
        mask: (N, 1, H, W) texels to compare.

    Returns:
        (N, 1, H, W).
    """
    if albedo is None:
        coarse = coarse_shading * 0.5
    else:
        albedo = resize_maps(albedo, tuple(uv_input.shape[-2:]))
        coarse = coarse_shading * albedo
    ratio = _luma(uv_input) / _luma(coarse).clamp_min(RATIO_FLOOR)
    return detail_contrast(ratio, mask)


def contrast_loss_mask(seen: torch.Tensor, albedo: torch.Tensor | None) -> torch.Tensor:
    """The texels where the detail contrast of the photo can be compared with the generated one.

    ``seen`` eroded by :data:`BORDER_MARGIN`, minus the texels at albedo edges
    (:data:`ALBEDO_EDGE`). Measured on synthetic clips with the true coarse codes and detail,
    these are where the observed contrast differs most from the true detail's.

    Args:
        seen: (N, 1, H, W) UV face mask x visible texels, in [0, 1].
        albedo: (N, 3, h, w) UV albedo (resized to H x W), or None (no albedo edges).

    Returns:
        (N, 1, H, W) in {0, 1}.
    """
    inside = (seen > 0.5).to(seen.dtype)
    radius = max(1, round(BORDER_MARGIN * seen.shape[-1]))
    mask = -F.max_pool2d(-inside, 2 * radius + 1, stride=1, padding=radius)
    if albedo is not None:
        albedo = resize_maps(albedo, tuple(seen.shape[-2:]))
        edges = (detail_contrast(_luma(albedo), inside).abs() > ALBEDO_EDGE).to(seen.dtype)
        mask = mask * (1 - F.max_pool2d(edges, 3, stride=1, padding=1))
    return mask


class ConditionedDetailCritic(nn.Module):
    """The detail critic with its AU heatmap condition (the module handed to the optimizer).

    Args:
        critic: :class:`DetailCritic` with ``num_aus == heatmaps.num_aus`` (0 without heatmaps).
        heatmaps: per-AU UV heatmaps (``size == critic.uv_size``), or None: an unconditioned
            critic without AU head (``model.critic_au: false``).
    """

    def __init__(self, *, critic: DetailCritic, heatmaps: AUHeatmaps | None) -> None:
        super().__init__()
        if heatmaps is None:
            if critic.num_aus:
                raise ValueError(f"a critic with {critic.num_aus} AU channels needs heatmaps")
        elif critic.num_aus != heatmaps.num_aus or critic.uv_size != heatmaps.size:
            raise ValueError(
                f"critic ({critic.num_aus} AUs, UV {critic.uv_size}) and heatmaps "
                f"({heatmaps.num_aus} AUs, UV {heatmaps.size}) do not match"
            )
        self.critic = critic
        self.heatmaps = heatmaps

    @property
    def conditioned(self) -> bool:
        """True when the critic sees AU heatmaps and has an AU head."""
        return self.heatmaps is not None

    @staticmethod
    def detail_render(detail: DetailOutput) -> torch.Tensor:
        """(N, 1, Huv, Wuv) "fake" critic input: the generated detail's shading contrast.

        :func:`detail_contrast` of ``uv_shading / uv_coarse_shading`` (grey levels) of the
        detail stage's (B, T, ...) outputs: the shading of the detail normals relative to that
        of the coarse normals under the same light, within ``uv_visible_mask``; frames folded
        into N. Differentiable in ``uv_shading`` (the generator's adversarial term).
        """
        return shading_contrast(
            _fold(detail.uv_shading), _fold(detail.uv_coarse_shading), _fold(detail.uv_visible_mask)
        )

    @staticmethod
    def real_render(detail: DetailOutput, albedo: torch.Tensor | None) -> torch.Tensor:
        """(N, 1, Huv, Wuv) "real" critic input: the detail shading observed in the photo.

        :func:`detail_contrast` of ``uv_input / (albedo x uv_coarse_shading)`` (grey levels;
        albedo 0.5 without a texture space, ``albedo`` None): the photo relative to the coarse
        render of the same texels, i.e. the shading ratio the coarse model does not explain,
        within the same mask as :meth:`detail_render`, less ``detail.uv_path_offset`` when
        the model measured it (what the photo's render-and-unwrap path leaves in a face without
        detail, :mod:`seqdeca.models.detail_path`). Detached.

        Args:
            detail: the detail stage's (B, T, ...) outputs.
            albedo: (B, T, 3, Ht, Wt) UV albedo (``Decoded.albedo``), or None.
        """
        albedo = _fold(albedo).detach() if albedo is not None else None
        observed = observed_contrast(
            _fold(detail.uv_input).detach(),
            albedo,
            _fold(detail.uv_coarse_shading).detach(),
            _fold(detail.uv_visible_mask).detach(),
        )
        if detail.uv_path_offset is None:
            return observed
        return observed - _fold(detail.uv_path_offset).detach()

    def forward(
        self, detail_render: torch.Tensor, au_condition: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Score UV detail renders.

        Args:
            detail_render: (N, 1, Huv, Wuv), :meth:`detail_render` or :meth:`real_render`.
            au_condition: (N, K) AU intensities in [0, 1] (ignored, may be None, when the
                critic is not :attr:`conditioned`).

        Returns:
            {"realism": (N, 1, h, w) unbounded patch scores, "au": (N, K) AU estimates}; no
            "au" when the critic is not :attr:`conditioned`.
        """
        if self.heatmaps is None:
            return {"realism": self.critic(detail_render)[0]}
        if au_condition is None:
            raise ValueError("the AU-conditioned critic needs an au_condition")
        realism, au = self.critic(detail_render, self.heatmaps(au_condition))
        return {"realism": realism, "au": au}
