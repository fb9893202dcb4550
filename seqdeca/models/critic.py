"""Detail critic: a GANimation-style patch critic on UV detail renders (legacy ConditionalDiscriminator).

Input: the UV-space detail render (shading from the detail normals, 1 or 3 channels, and the UV
displacement, 1 channel) concatenated with the K per-AU UV heatmaps weighted by AU intensity
(:class:`seqdeca.models.au_heatmaps.AUHeatmaps`). Trunk: ``n_layers`` 4x4 stride-2 convolutions,
no normalisation (WGAN-GP penalises per-sample gradients, which batch statistics would couple),
LeakyReLU. Heads, as in GANimation:

* realism: a 3x3 convolution to one channel, a (N, 1, h, w) map of unbounded WGAN scores, one per
  patch, with h = w = uv_size / 2**n_layers;
* AU regression: a convolution whose kernel covers the whole last feature map (h x w), giving
  (N, K) unbounded AU estimates (trained with MSE against intensities in [0, 1]). It reads a
  second pass of the same trunk with the heatmap channels ZEROED: the heatmaps carry the
  intensities, so a head that saw them could regress the condition back without looking at the
  render and would teach the generator nothing. (GANimation's critic sees only the image.)

The critic's size is fixed by ``uv_size`` (the AU head's kernel size), as in GANimation.
"""

from __future__ import annotations

import torch
from torch import nn


class DetailCritic(nn.Module):
    """Patch critic with an AU regression head.

    Args:
        in_channels: channels of the detail render (shading 1 or 3 + displacement 1).
        num_aus: K, AU heatmap channels appended to the input and AU outputs.
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
        self.au_head = nn.Conv2d(channels, num_aus, kernel_size=self.final_size, bias=False)

    def forward(
        self, detail: torch.Tensor, au_maps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score UV detail renders under an AU condition.

        Args:
            detail: (N, in_channels, H, W) UV shading and displacement, H = W = uv_size.
            au_maps: (N, K, H, W) intensity-weighted AU heatmaps in [0, 1].

        Returns:
            realism (N, 1, h, w) patch scores and au (N, K) AU estimates, h = w = uv_size / 2**n_layers.
        """
        n, c, h, w = detail.shape
        if c != self.in_channels or (h, w) != (self.uv_size, self.uv_size):
            raise ValueError(
                f"expected detail (N, {self.in_channels}, {self.uv_size}, {self.uv_size}), "
                f"got {tuple(detail.shape)}"
            )
        if au_maps.shape != (n, self.num_aus, h, w):
            raise ValueError(
                f"expected AU maps {(n, self.num_aus, h, w)}, got {tuple(au_maps.shape)}"
            )
        conditioned = self.trunk(torch.cat([detail, au_maps.to(detail.dtype)], dim=1))
        image_only = self.trunk(
            torch.cat([detail, torch.zeros_like(au_maps, dtype=detail.dtype)], 1)
        )
        return self.realism_head(conditioned), self.au_head(image_only).flatten(1)
