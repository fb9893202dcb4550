"""Code mixing: a direct path from the other frames' codes to a frame's fused codes.

The window transformer (:class:`~seqdeca.models.temporal_fusion.TemporalFusion`) predicts a
residual on each frame's codes from its global-token output. To smooth or to repair a frame from
its neighbours it would have to carry the neighbours' code values, small numbers in a stream of
image features, through every layer and out of a zero-initialised head: on the temporal
experiment's tuning clips it did not learn that in 1000 steps, even when its only loss asked for
the codes averaged 1-2-1 over time (docs/temporal_evidence.md).

:class:`CodeMixing` gives it the path directly. For frame t of a window::

    a[t, s] = softmax over the other valid frames s of  q(h_t) . k(h_s) / sqrt(key_dim) + b[s - t]
    mix[t]  = g(h_t) * sum_s a[t, s] (c_s - c_t)

with ``h`` the transformer's per-frame outputs, ``c`` the per-frame codes, ``b`` a learned bias
per frame offset and ``g`` a gate, zero at initialisation (so an untrained model still returns
the per-frame codes). The transformer decides how much of each neighbour to take (a corrupted
neighbour can be ignored, a corrupted frame replaced); a fixed filter would take the same share
of every neighbour. The gate is a zero-initialised linear layer times ``gate_scale``: with Adam a
parameter moves by about the learning rate per step, and the gate needs to reach about 0.5 (the
1-2-1 average of three frames) within a few hundred steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CodeMixing"]


class CodeMixing(nn.Module):
    """Attention-weighted pull of every frame's codes towards the other frames' codes.

    Args:
        dim: size of the per-frame token outputs ``h``.
        max_frames: the longest window (size of the frame-offset bias table: 2 max_frames - 1).
        key_dim: size of the query and key projections.
        gate_scale: multiplier of the zero-initialised gate layer.
    """

    def __init__(
        self, dim: int, max_frames: int, *, key_dim: int = 32, gate_scale: float = 10.0
    ) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.key_dim = key_dim
        self.gate_scale = gate_scale
        self.query = nn.Linear(dim, key_dim)
        self.key = nn.Linear(dim, key_dim)
        self.offset_bias = nn.Parameter(torch.zeros(2 * max_frames - 1))
        self.gate = nn.Linear(dim, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(
        self, tokens: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """The mixing term to add to the per-frame codes.

        Args:
            tokens: (B, T, dim) per-frame outputs of the transformer.
            codes: (B, T, D) per-frame codes.
            valid: (B, T) bool.

        Returns:
            (B, T, D): ``g_t * sum_s a[t, s] (c_s - c_t)``; zero on invalid frames and on frames
            with no other valid frame in their window.
        """
        t = tokens.shape[1]
        q, k = self.query(tokens), self.key(tokens)
        logits = torch.einsum("btk,bsk->bts", q, k) / math.sqrt(self.key_dim)
        steps = torch.arange(t, device=tokens.device)
        offsets = steps[None, :] - steps[:, None] + self.max_frames - 1  # (T, T): s - t
        logits = logits + self.offset_bias[offsets]
        others = valid[:, None, :] & ~torch.eye(t, dtype=torch.bool, device=tokens.device)
        logits = logits.masked_fill(~others, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1) * others  # rows without another frame: all 0
        neighbours = torch.einsum("bts,bsd->btd", weights, codes)
        share = weights.sum(-1, keepdim=True)  # 1, or 0 where there is no other valid frame
        mix = self.gate_scale * self.gate(tokens) * (neighbours - share * codes)
        return torch.where(valid[..., None], mix, 0.0)
