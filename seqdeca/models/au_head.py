"""AU regression head: per-frame AU intensities from the fused AU tokens.

Reads the K = 27 fused AU tokens of :class:`seqdeca.models.temporal_fusion.TemporalFusion`
(one token per main AU, in OpenGraphAU's order) and gives one intensity in [0, 1] per AU; its
output is the detail stage's condition (:mod:`seqdeca.models.au_heatmaps`). Aff-Wild2's 12 AUs
are a fixed selection of the 27 (``AFFWILD2_TO_MAIN`` of :mod:`seqdeca.au_names`).

Unlike the AU net's 41 outputs (cosine similarities, already probabilities, never sigmoided),
this head is our own regression layer: a per-AU linear read-out followed by a sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

from seqdeca.au_names import AFFWILD2_MAIN_INDICES, MAIN_AU_NAMES


def select_affwild2(intensities: torch.Tensor) -> torch.Tensor:
    """(..., 27) main-AU values -> (..., 12) Aff-Wild2 AUs in ``au_names.AFFWILD2_AU_NAMES`` order."""
    if intensities.shape[-1] != len(MAIN_AU_NAMES):
        raise ValueError(f"expected (..., 27) main-AU values, got {tuple(intensities.shape)}")
    index = torch.tensor(AFFWILD2_MAIN_INDICES, device=intensities.device)
    return intensities.index_select(-1, index)


class AUHead(nn.Module):
    """Per-AU linear read-out of AU tokens, squashed to [0, 1].

    Args:
        token_dim: C, channel size of an AU token (``TemporalFusion.au_token_dim``).
        num_aus: K, AU tokens (and outputs) per frame; 27 for the main AUs.
        hidden: width of the small MLP shared by all tokens before the per-AU read-out;
            0 = no MLP (LayerNorm then per-AU linear only).
    """

    def __init__(self, *, token_dim: int, num_aus: int = 27, hidden: int = 0) -> None:
        super().__init__()
        self.num_aus = num_aus
        self.norm = nn.LayerNorm(token_dim)
        self.mlp: nn.Module = (
            nn.Sequential(nn.Linear(token_dim, hidden), nn.GELU()) if hidden else nn.Identity()
        )
        width = hidden or token_dim
        # One linear unit per AU: AU k reads only token k.
        self.weight = nn.Parameter(torch.randn(num_aus, width) * width**-0.5)
        self.bias = nn.Parameter(torch.zeros(num_aus))

    def forward(self, au_tokens: torch.Tensor) -> torch.Tensor:
        """AU intensities.

        Args:
            au_tokens: (..., K, C) fused AU tokens, e.g. (B, T, K, C).

        Returns:
            (..., K) intensities in [0, 1].
        """
        if au_tokens.shape[-2] != self.num_aus:
            raise ValueError(
                f"expected (..., {self.num_aus}, C) tokens, got {tuple(au_tokens.shape)}"
            )
        hidden = self.mlp(self.norm(au_tokens))
        logits = torch.einsum("...kc,kc->...k", hidden, self.weight) + self.bias
        return torch.sigmoid(logits)

    def affwild2(self, au_tokens: torch.Tensor) -> torch.Tensor:
        """(..., 27, C) tokens -> (..., 12) Aff-Wild2 AU intensities in [0, 1]."""
        return select_affwild2(self(au_tokens))
