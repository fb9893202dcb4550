"""A SPECTRE-style temporal convolution: the anchor's temporal model inside seqdeca.

SPECTRE keeps a per-frame encoder frozen and runs a 1D convolution over time on per-frame
features; its output is a RESIDUAL on the per-frame expression and jaw pose, from a last layer
that starts at zero (so training starts at the per-frame answer). :class:`TemporalConv` does that
over seqdeca's per-frame inputs and has :class:`~seqdeca.models.temporal_fusion.TemporalFusion`'s
interface, so it is a ``model.temporal`` choice (``"conv"``) trained and evaluated like the
transformer:

* input per frame t: ``[global feature (F) | per-frame codes (E + 3 + 27)]`` -> Linear -> ``dim``;
* ``depth`` blocks of Conv1d(dim, dim, kernel, "same" zero padding) + GELU over time, each with a
  skip connection;
* a zero-initialised Linear -> residual on expression and jaw (light is left unchanged, as in
  SPECTRE, whose light comes from the frozen encoder).

It never sees the AU tokens: the AU head reads each frame's own projected AU tokens (as the
transformer without AU tokens does). Invalid (padding) frames enter the convolution as zeros and
keep their per-frame codes.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from seqdeca.models.temporal_fusion import JAW_DIM, LIGHT_SHAPE, FusionOutput

__all__ = ["TemporalConv"]


class TemporalConv(nn.Module):
    """Temporal 1D convolution giving per-frame residuals on expression and jaw pose.

    Args:
        n_expression: E, number of expression coefficients of the coarse codes.
        feature_dim: size of the coarse encoder's global feature (2048 for ResNet-50).
        au_dim: size of an AU token of the AU net (512).
        num_aus: K, AU tokens per frame (27).
        dim: channels of the convolution.
        depth: number of convolution blocks.
        kernel: temporal kernel size (odd; SPECTRE: 5).
        max_frames: the longest window accepted (for the same checks as the transformer).
    """

    def __init__(
        self,
        *,
        n_expression: int,
        feature_dim: int = 2048,
        au_dim: int = 512,
        num_aus: int = 27,
        dim: int = 256,
        depth: int = 2,
        kernel: int = 5,
        max_frames: int = 32,
    ) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel={kernel} must be odd")
        self.n_expression = n_expression
        self.num_aus = num_aus
        self.code_dim = n_expression + JAW_DIM + LIGHT_SHAPE[0] * LIGHT_SHAPE[1]
        self.dim = dim
        self.max_frames = max_frames
        self.kernel = kernel
        self.in_proj = nn.Sequential(
            nn.LayerNorm(feature_dim + self.code_dim), nn.Linear(feature_dim + self.code_dim, dim)
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, kernel, padding=kernel // 2), nn.GELU())
            for _ in range(depth)
        )
        self.residual_head = nn.Linear(dim, n_expression + JAW_DIM)
        nn.init.zeros_(self.residual_head.weight)  # untrained model = per-frame codes
        nn.init.zeros_(self.residual_head.bias)
        self.au_proj = nn.Sequential(nn.LayerNorm(au_dim), nn.Linear(au_dim, dim))

    @property
    def au_token_dim(self) -> int:
        """Channel size of the AU tokens given to the AU head (``dim``)."""
        return self.dim

    def forward(
        self,
        global_features: torch.Tensor,
        au_tokens: torch.Tensor,
        codes: dict[str, torch.Tensor],
        valid: torch.Tensor | None = None,
    ) -> FusionOutput:
        """Convolve a window of per-frame features over time.

        Args:
            global_features: (B, T, feature_dim) coarse encoder global features.
            au_tokens: (B, T, K, au_dim) AU net node tokens (projected per frame, not fused).
            codes: "expression" (B, T, E), "pose" (B, T, 6) = global 3 + jaw 3 (axis-angle),
                "light" (B, T, 9, 3).
            valid: (B, T) bool, False for padding frames; None = all valid.

        Returns:
            :class:`FusionOutput` (B, T, ...); ``residual`` (B, T, E + 30) is zero on the light.
        """
        b, t = global_features.shape[:2]
        if not 1 <= t <= self.max_frames:
            raise ValueError(f"window of T={t} frames; this model takes 1..{self.max_frames}")
        e = self.n_expression
        expression, pose, light = codes["expression"], codes["pose"], codes["light"]
        per_frame = torch.cat([expression, pose[..., 3:6], light.flatten(-2)], dim=-1)
        if valid is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=global_features.device)
        keep = valid.to(device=global_features.device, dtype=torch.bool)[..., None]  # (B, T, 1)
        x = self.in_proj(torch.cat([global_features, per_frame], dim=-1))  # (B, T, dim)
        x = torch.where(keep, x, 0.0)
        x = rearrange(x, "b t d -> b d t")
        for block in self.blocks:
            x = x + block(x)  # (B, dim, T), same length
        x = rearrange(x, "b d t -> b t d")
        delta = torch.where(keep, self.residual_head(x), 0.0)  # (B, T, E + 3)
        residual = torch.cat([delta, torch.zeros_like(per_frame[..., e + JAW_DIM :])], dim=-1)
        jaw = pose[..., 3:6] + delta[..., e:]
        fused_au = torch.where(keep[..., None], self.au_proj(au_tokens), 0.0)
        return FusionOutput(
            expression=expression + delta[..., :e],
            jaw_pose=jaw,
            pose=torch.cat([pose[..., :3], jaw], dim=-1),
            light=light,
            au_tokens=fused_au,
            residual=residual,
        )
