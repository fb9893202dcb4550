"""How well the detail stage's AU condition reads the true AU intensities, per wrinkle pattern.

The detail generator draws a pattern's wrinkles from its AUs' channels of the condition (the AU
head's intensities, or the truth under ``train.detail_condition=ground_truth``). A condition that
does not follow the truth on new faces can only draw wrinkles where there are none, whatever the
generator learned, so the detail experiment reports it beside the errors.

Per frame (:func:`condition_series`), a pattern's condition is the mean of its AUs' channels and
its truth the mean of the same AUs' true intensities. Pooled over the frames of every clip
(:func:`condition_correlation`):

* ``condition_correlation/<pattern>``: Pearson correlation of the two, in [-1, 1] (NaN where
  either does not vary); ``condition_correlation_mean`` is their mean;
* ``au_condition/<pattern>`` and ``au_truth/<pattern>`` pool (as every per-frame series does) to
  the mean condition and the mean truth: a condition that reads too much or too little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from seqdeca.au_names import MAIN_AU_NAMES

__all__ = ["CONDITION_KEY", "TRUTH_KEY", "condition_correlation", "condition_series"]

#: Per-frame series keys (``<key>/<pattern>``).
CONDITION_KEY, TRUTH_KEY = "au_condition", "au_truth"


def condition_series(
    condition: torch.Tensor,
    truth: torch.Tensor,
    condition_names: Sequence[str],
    pattern_aus: Mapping[str, Sequence[str]],
) -> dict[str, torch.Tensor]:
    """Per-frame condition and truth of each pattern.

    Args:
        condition: (N, K) the generator's AU condition, channels named by ``condition_names``.
        truth: (N, 27) true intensities in :data:`seqdeca.au_names.MAIN_AU_NAMES` order.
        condition_names: the K channel names (``SeqDECA.au_condition_names``).
        pattern_aus: pattern -> its AUs (``DETAIL_PATTERN_AUS``); AUs the condition lacks are
            left out, and a pattern left with none is skipped.

    Returns:
        ``{"au_condition/<pattern>": (N,), "au_truth/<pattern>": (N,)}`` float tensors.
    """
    if condition.shape[-1] != len(condition_names) or truth.shape[-1] != len(MAIN_AU_NAMES):
        raise ValueError(
            f"expected (N, {len(condition_names)}) condition and (N, {len(MAIN_AU_NAMES)}) "
            f"truth, got {tuple(condition.shape)} and {tuple(truth.shape)}"
        )
    out = {}
    for pattern, aus in pattern_aus.items():
        kept = [au for au in aus if au in condition_names]
        if not kept:
            continue
        own = [condition_names.index(au) for au in kept]
        true = [MAIN_AU_NAMES.index(au) for au in kept]
        out[f"{CONDITION_KEY}/{pattern}"] = condition[:, own].float().mean(1)
        out[f"{TRUTH_KEY}/{pattern}"] = truth[:, true].float().mean(1)
    return out


def condition_correlation(series: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """Correlation of condition and truth per pattern over every frame of ``series`` (per-clip
    dicts holding :func:`condition_series` keys; frames with a NaN on either side are left out).

    Returns:
        ``{"condition_correlation/<pattern>": r, "condition_correlation_mean": mean r}``; empty
        when no series holds a condition.
    """
    prefix = f"{CONDITION_KEY}/"
    patterns = sorted({k[len(prefix) :] for s in series for k in s if k.startswith(prefix)})
    out = {}
    for pattern in patterns:
        pairs = [s for s in series if f"{prefix}{pattern}" in s]
        a = torch.cat([s[f"{prefix}{pattern}"] for s in pairs]).double().numpy()
        b = torch.cat([s[f"{TRUTH_KEY}/{pattern}"] for s in pairs]).double().numpy()
        finite = np.isfinite(a) & np.isfinite(b)
        a, b = a[finite], b[finite]
        spread = a.std() * b.std() if len(a) > 1 else 0.0
        r = float(((a - a.mean()) * (b - b.mean())).mean() / spread) if spread > 0 else np.nan
        out[f"condition_correlation/{pattern}"] = r
    values = [v for v in out.values() if np.isfinite(v)]
    if values:
        out["condition_correlation_mean"] = float(np.mean(values))
    return out
