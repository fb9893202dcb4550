"""AU terms: the AU head against labels and proxies, and AU consistency of render and input.

Every AU value here is a PROBABILITY / intensity in [0, 1]: the AU head ends with its own
sigmoid, and the AU net's outputs are cosine similarities that are already probabilities
(OpenGraphAU). No function here applies a sigmoid; the label term is a binary cross-entropy on
probabilities (clamped away from 0 and 1 for finite logs), not ``BCEWithLogits``.

Labels (``WindowBatch.au``, Aff-Wild2's 12 AUs) are 0 / 1 with -1 = missing; proxies
(``WindowBatch.au_proxy``) are intensities in [0, 1] with NaN = missing. The caller selects the
head outputs that match (``AUHead.affwild2`` for labels; the proxy AUs for proxies).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqdeca.losses.regularisers import expand_valid, weighted_mean

__all__ = [
    "AU_SUPERVISION_MODES",
    "au_consistency_loss",
    "au_label_loss",
    "au_proxy_loss",
    "au_supervision_loss",
]

AU_SUPERVISION_MODES = ("both", "labels", "proxies")
_EPS = 1e-6


def _check_pair(pred: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"AU predictions {tuple(pred.shape)} do not match {what} {tuple(target.shape)}"
        )


def au_label_loss(
    pred: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of AU probabilities against 0/1 labels, ignoring -1.

    Args:
        pred: (*lead, K) AU probabilities in [0, 1] (e.g. (B, T, 12)).
        labels: (*lead, K) 0 or 1; any negative value (-1) = missing.
        valid: (*lead) bool per frame, or None.

    Returns:
        0-dim mean BCE over labelled entries of valid frames (0 when there are none).
    """
    _check_pair(pred, labels, "labels")
    known = labels >= 0
    weights = expand_valid(valid, pred) * known.to(pred.dtype)
    target = torch.where(known, labels.to(pred.dtype), torch.zeros_like(pred)).clamp(0, 1)
    prob = pred.clamp(_EPS, 1 - _EPS)
    bce = F.binary_cross_entropy(prob, target, reduction="none")
    return weighted_mean(bce, weights)


def au_proxy_loss(
    pred: torch.Tensor,
    proxy: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    kind: str = "l1",
) -> torch.Tensor:
    """L1 or MSE of AU intensities against proxy intensities, ignoring NaN.

    Args:
        pred: (*lead, P) predicted intensities in [0, 1], aligned with the proxies.
        proxy: (*lead, P) proxy intensities in [0, 1]; NaN = missing.
        valid: (*lead) bool, or None.
        kind: "l1" or "mse".
    """
    _check_pair(pred, proxy, "proxies")
    if kind not in ("l1", "mse"):
        raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
    known = torch.isfinite(proxy)
    weights = expand_valid(valid, pred) * known.to(pred.dtype)
    target = torch.where(known, proxy.to(pred.dtype), pred.detach())
    error = (pred - target).abs() if kind == "l1" else (pred - target).pow(2)
    return weighted_mean(error, weights)


def au_supervision_loss(
    *,
    label_pred: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    proxy_pred: torch.Tensor | None = None,
    proxies: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    mode: str = "both",
    proxy_kind: str = "l1",
) -> torch.Tensor:
    """The ``au_label`` term: label BCE plus proxy error (either one by ``mode``).

    Args:
        label_pred / labels: see :func:`au_label_loss` (both or neither).
        proxy_pred / proxies: see :func:`au_proxy_loss` (both or neither).
        valid: (*lead) bool, or None.
        mode: "both" (sum of what is given), "labels" or "proxies".
        proxy_kind: "l1" or "mse" for the proxy part.
    """
    if mode not in AU_SUPERVISION_MODES:
        raise ValueError(f"mode must be one of {AU_SUPERVISION_MODES}, got {mode!r}")
    parts = []
    if mode in ("both", "labels") and label_pred is not None and labels is not None:
        parts.append(au_label_loss(label_pred, labels, valid))
    if mode in ("both", "proxies") and proxy_pred is not None and proxies is not None:
        parts.append(au_proxy_loss(proxy_pred, proxies, valid, kind=proxy_kind))
    if not parts:
        raise ValueError(f"au_supervision_loss(mode={mode!r}) got no predictions with targets")
    return torch.stack(parts).sum()


def au_consistency_loss(
    render_probs: torch.Tensor,
    input_probs: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    detach_input: bool = True,
) -> torch.Tensor:
    """L1 between AU-net probabilities on the render and on the input image (``au_render``).

    Args:
        render_probs: (*lead, K) AU net probabilities of the rendered face, in [0, 1].
        input_probs: (*lead, K) AU net probabilities of the input image, in [0, 1].
        valid: (*lead) bool, or None.
        detach_input: treat the input's AUs as a fixed target (default).
    """
    _check_pair(render_probs, input_probs, "input AU probabilities")
    target = input_probs.detach() if detach_input else input_probs
    weights = expand_valid(valid, render_probs)
    return weighted_mean((render_probs - target).abs(), weights)
