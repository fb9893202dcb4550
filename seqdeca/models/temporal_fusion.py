"""Temporal fusion of per-frame features over a window (legacy "BiViT").

A transformer with FULL (bidirectional) attention over every token of every frame of a window.
Per frame t the tokens are::

    [ global feature (1) | AU tokens (K = 27) | coarse codes (1) ]      -> P = K + 2 tokens

each projected to ``dim`` and given a learned token-type embedding (one per position in the
frame: global, AU 1..K, codes) plus a learned frame (time) embedding for t. The window is
flattened to ``T * P`` tokens (einops), so any token attends to any token of any valid frame.

The frame's global-token output predicts a RESIDUAL on the coarse encoder's per-frame expression,
jaw pose and light (as SPECTRE does for expression and jaw). The last linear layer is zero
initialised, so an untrained model returns exactly the per-frame codes and training starts from
the per-frame answer. The AU-token outputs (B, T, K, dim) feed :class:`seqdeca.models.au_head.AUHead`.

With ``code_mixing=True`` the per-frame outputs also steer a direct pull of each frame's codes
towards its neighbours' (:class:`~seqdeca.models.code_mixing.CodeMixing`), added to the residual.

With ``use_au_tokens=False`` (the ablation without AU tokens) a frame has only its global and code
tokens (P = 2); the AU head then reads the frame's own projected AU tokens, unfused.

Invalid (padding) frames are removed from the keys of every attention (their inputs cannot
change the valid frames' outputs); their outputs are the unchanged per-frame codes and zero AU
tokens. T = 1 is the per-frame model; any 1 <= T <= ``max_frames`` works at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from seqdeca.models.code_mixing import CodeMixing

LIGHT_SHAPE = (9, 3)  # 9 SH coefficients x RGB
JAW_DIM = 3  # jaw axis-angle; DECA's pose code (6) = global 3 + jaw 3


@dataclass
class FusionOutput:
    """Fused per-frame codes of a window (time is dim 1).

    Attributes:
        expression: (B, T, E) expression coefficients.
        jaw_pose: (B, T, 3) jaw axis-angle (radians).
        pose: (B, T, 6) DECA pose code: the input global pose (unchanged) + the fused jaw pose.
        light: (B, T, 9, 3) SH lighting coefficients.
        au_tokens: (B, T, K, dim) fused AU tokens (zeros on invalid frames).
        residual: (B, T, E + 3 + 27) the raw residual added to the per-frame codes (zeros on
            invalid frames; for regularisation).
    """

    expression: torch.Tensor
    jaw_pose: torch.Tensor
    pose: torch.Tensor
    light: torch.Tensor
    au_tokens: torch.Tensor
    residual: torch.Tensor


class TemporalFusion(nn.Module):
    """Window transformer giving per-frame residuals on expression, jaw pose and light.

    Args:
        n_expression: E, number of expression coefficients of the coarse codes.
        feature_dim: size of the coarse encoder's global feature (2048 for ResNet-50).
        au_dim: size of an AU token of the AU net (512 in OpenGraphAU).
        num_aus: K, AU tokens per frame (27).
        code_dim: size of the per-frame code token, E + 3 (jaw) + 27 (light); derived from
            ``n_expression`` when None, checked when given.
        dim: transformer width.
        depth: number of transformer layers.
        heads: attention heads (must divide ``dim``).
        mlp_ratio: feed-forward width / ``dim``.
        max_frames: the longest window (size of the frame embedding table).
        dropout: dropout inside the transformer layers.
        use_au_tokens: feed the AU tokens to the transformer (False: global and code tokens
            only; the AU head gets the per-frame projected AU tokens).
        code_mixing: add :class:`~seqdeca.models.code_mixing.CodeMixing` (the other frames'
            codes, weighted by the transformer) to the residual.
    """

    def __init__(
        self,
        *,
        n_expression: int,
        feature_dim: int = 2048,
        au_dim: int = 512,
        num_aus: int = 27,
        code_dim: int | None = None,
        dim: int = 256,
        depth: int = 4,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        max_frames: int = 32,
        dropout: float = 0.0,
        use_au_tokens: bool = True,
        code_mixing: bool = False,
    ) -> None:
        super().__init__()
        expected = n_expression + JAW_DIM + LIGHT_SHAPE[0] * LIGHT_SHAPE[1]
        if code_dim is not None and code_dim != expected:
            raise ValueError(
                f"code_dim={code_dim} but expression {n_expression} + jaw 3 + light 27 = {expected}"
            )
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.n_expression = n_expression
        self.num_aus = num_aus
        self.code_dim = expected
        self.dim = dim
        self.max_frames = max_frames
        self.use_au_tokens = use_au_tokens
        self.tokens_per_frame = num_aus + 2 if use_au_tokens else 2

        self.global_proj = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, dim))
        self.au_proj = nn.Sequential(nn.LayerNorm(au_dim), nn.Linear(au_dim, dim))
        self.code_proj = nn.Linear(expected, dim)
        self.frame_embedding = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        self.type_embedding = nn.Parameter(torch.randn(self.tokens_per_frame, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=int(dim * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.residual_head = nn.Linear(dim, expected)
        nn.init.zeros_(self.residual_head.weight)  # untrained model = per-frame codes
        nn.init.zeros_(self.residual_head.bias)
        self.code_mixing = CodeMixing(dim, max_frames) if code_mixing else None

    @property
    def au_token_dim(self) -> int:
        """Channel size of the fused AU tokens (``dim``)."""
        return self.dim

    def forward(
        self,
        global_features: torch.Tensor,
        au_tokens: torch.Tensor,
        codes: dict[str, torch.Tensor],
        valid: torch.Tensor | None = None,
    ) -> FusionOutput:
        """Fuse a window of per-frame features and codes.

        Args:
            global_features: (B, T, feature_dim) coarse encoder global features.
            au_tokens: (B, T, K, au_dim) AU net node tokens.
            codes: per-frame coarse codes: "expression" (B, T, E), "pose" (B, T, 6) = global 3 +
                jaw 3 (axis-angle, radians), "light" (B, T, 9, 3).
            valid: (B, T) bool, False for padding frames; None = all valid.

        Returns:
            :class:`FusionOutput` (B, T, ...).
        """
        b, t = global_features.shape[:2]
        if not 1 <= t <= self.max_frames:
            raise ValueError(f"window of T={t} frames; this model takes 1..{self.max_frames}")
        per_frame = self._code_vector(codes)  # (B, T, code_dim)
        if valid is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=global_features.device)
        valid = valid.to(device=global_features.device, dtype=torch.bool)

        au = self.au_proj(au_tokens)  # (B, T, K, dim)
        parts = [self.global_proj(global_features)[:, :, None]]  # (B, T, 1, dim)
        parts += [au] if self.use_au_tokens else []
        parts += [self.code_proj(per_frame)[:, :, None]]  # (B, T, 1, dim)
        tokens = torch.cat(parts, dim=2)  # (B, T, P, dim)
        tokens = tokens + self.type_embedding + self.frame_embedding[:t, None]
        # Padding frames are dropped from the keys; a clip with no valid frame keeps all keys
        # (its outputs are discarded below) so that softmax never sees an all -inf row.
        ignore = ~valid & valid.any(dim=1, keepdim=True)
        ignore = repeat(ignore, "b t -> b (t p)", p=self.tokens_per_frame)
        flat = rearrange(tokens, "b t p d -> b (t p) d")  # full space-time attention
        flat = self.transformer(flat, src_key_padding_mask=ignore)
        out = rearrange(flat, "b (t p) d -> b t p d", t=t)

        keep = valid[..., None]  # (B, T, 1)
        residual = self.residual_head(out[:, :, 0])
        if self.code_mixing is not None:
            residual = residual + self.code_mixing(out[:, :, 0], per_frame, valid)
        residual = torch.where(keep, residual, 0.0)
        fused = per_frame + residual
        e = self.n_expression
        jaw = fused[..., e : e + JAW_DIM]
        fused_au = out[:, :, 1 : 1 + self.num_aus] if self.use_au_tokens else au
        fused_au = torch.where(keep[..., None], fused_au, 0.0)
        return FusionOutput(
            expression=fused[..., :e],
            jaw_pose=jaw,
            pose=torch.cat([codes["pose"][..., :3], jaw], dim=-1),
            light=fused[..., e + JAW_DIM :].reshape(b, t, *LIGHT_SHAPE),
            au_tokens=fused_au,
            residual=residual,
        )

    def forward_frames(
        self,
        global_features: torch.Tensor,
        au_tokens: torch.Tensor,
        codes: dict[str, torch.Tensor],
    ) -> FusionOutput:
        """The per-frame path: N independent images as N windows of T = 1.

        Args:
            global_features: (N, feature_dim); au_tokens: (N, K, au_dim); codes: "expression"
                (N, E), "pose" (N, 6), "light" (N, 9, 3).

        Returns:
            :class:`FusionOutput` with B = N, T = 1.
        """
        return self(
            global_features[:, None],
            au_tokens[:, None],
            {name: value[:, None] for name, value in codes.items()},
        )

    def _code_vector(self, codes: dict[str, torch.Tensor]) -> torch.Tensor:
        """Codes dict -> (B, T, E + 3 + 27) = [expression, jaw pose, light flattened]."""
        missing = {"expression", "pose", "light"} - set(codes)
        if missing:
            raise KeyError(f"codes lack {sorted(missing)}; got {sorted(codes)}")
        expression, pose, light = codes["expression"], codes["pose"], codes["light"]
        if expression.shape[-1] != self.n_expression or pose.shape[-1] != 6:
            raise ValueError(
                f"expected expression (..., {self.n_expression}) and pose (..., 6), got "
                f"{tuple(expression.shape)} and {tuple(pose.shape)}"
            )
        light = rearrange(light, "b t s c -> b t (s c)")
        return torch.cat([expression, pose[..., 3:6], light], dim=-1)
