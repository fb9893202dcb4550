"""Temporal smoothness of the fused per-frame codes within a window.

A finite-difference penalty over time (dimension 1 of ``(B, T, D)``): the first difference
``c[t] - c[t-1]`` penalises velocity, the second ``c[t+1] - 2 c[t] + c[t-1]`` acceleration (it
leaves constant-speed motion free). A difference is used only when every frame it touches is
valid, so gaps in a window never create fake jumps. Not a DECA term (DECA is per image); SPECTRE
smooths through its temporal convolution instead.
"""

from __future__ import annotations

import torch

from seqdeca.losses.regularisers import weighted_mean

__all__ = ["binomial_smooth", "temporal_smoothness"]


def _difference(codes: torch.Tensor, valid: torch.Tensor, order: int):
    """(B, T, D), (B, T) -> (B, T-order, D) differences and (B, T-order) usable flags."""
    if order == 1:
        diff = codes[:, 1:] - codes[:, :-1]
        usable = valid[:, 1:] & valid[:, :-1]
    elif order == 2:
        diff = codes[:, 2:] - 2 * codes[:, 1:-1] + codes[:, :-2]
        usable = valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]
    else:
        raise ValueError(f"difference order must be 1 or 2, got {order}")
    return diff, usable


def temporal_smoothness(
    codes: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    orders: tuple[int, ...] = (1,),
) -> torch.Tensor:
    """Mean squared finite difference of codes over time, summed over the requested orders.

    Args:
        codes: (B, T, D) per-frame codes (e.g. expression, jaw pose and light concatenated).
        valid: (B, T) bool, or None (all valid).
        orders: difference orders to include, each 1 or 2.

    Returns:
        0-dim ``sum_order mean over usable (b, t) of mean_d diff ** 2``; 0 (still connected to
        the graph) when T is too short or no difference is usable.
    """
    if codes.dim() != 3:
        raise ValueError(f"expected (B, T, D) codes, got {tuple(codes.shape)}")
    if not orders or any(order not in (1, 2) for order in orders):
        raise ValueError(f"orders must be a non-empty tuple of 1 and/or 2, got {orders}")
    b, t, _ = codes.shape
    if valid is None:
        valid = torch.ones(b, t, dtype=torch.bool, device=codes.device)
    if tuple(valid.shape) != (b, t):
        raise ValueError(f"valid {tuple(valid.shape)} does not match codes (B, T) = {(b, t)}")
    valid = valid.bool()
    total = codes.sum() * 0
    for order in orders:
        if t <= order:
            continue
        diff, usable = _difference(codes, valid, order)
        total = total + weighted_mean(diff.pow(2).mean(-1), usable.to(codes.dtype))
    return total


def binomial_smooth(codes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Codes averaged over each frame and its valid neighbours with weights 1-2-1 (renormalised
    where a neighbour is missing or invalid); invalid frames are returned unchanged.

    Args:
        codes: (B, T, D).
        valid: (B, T) bool.

    Returns:
        (B, T, D).
    """
    w = valid.to(codes.dtype)[..., None]  # (B, T, 1)
    pad = torch.nn.functional.pad
    summed = (
        2 * codes * w + pad(codes * w, (0, 0, 1, 0))[:, :-1] + pad(codes * w, (0, 0, 0, 1))[:, 1:]
    )
    weight = 2 * w + pad(w, (0, 0, 1, 0))[:, :-1] + pad(w, (0, 0, 0, 1))[:, 1:]
    smoothed = summed / weight.clamp_min(1e-12)
    return torch.where(valid[..., None], smoothed, codes)
