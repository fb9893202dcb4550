"""Collected results of one evaluated method and their summaries (plain floats for reports).

A :class:`MethodResult` holds, per clip, the (T,) metric series of
:func:`seqdeca.eval.clip_metrics.clip_series` plus the Aff-Wild2 AU probabilities and labels.
:func:`summarise` pools them: series by a NaN-aware mean over all frames of all clips (each clip
weighs by its frames), AU F1 over the frames of all clips together (as the ABAW challenge does),
AU flicker per clip then averaged over clips, and the cost as total time over predicted frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.eval import metrics as M

__all__ = ["ClipResult", "MethodResult", "nan_to_none", "summarise", "summarise_clip"]


@dataclass
class ClipResult:
    """One method on one clip.

    Attributes:
        series: (T,) float32 metric series by name.
        au_probabilities: (T, 12) Aff-Wild2 AU probabilities, or None.
        au_labels: (T, 12) labels (1 / 0 / -1 unknown).
        fps: the clip's frame rate.
        frames: frames predicted (the valid ones).
        seconds: prediction wall time.
    """

    series: dict[str, torch.Tensor]
    au_probabilities: torch.Tensor | None
    au_labels: torch.Tensor
    fps: float
    frames: int
    seconds: float


@dataclass
class MethodResult:
    """One evaluated method (a table row).

    Attributes:
        name: row name (checkpoint folder or stem, with "+per-frame"; "fit"; "input").
        description: modules and losses on/off, or how the row was made.
        kind: "network", "fit" or "reference".
        parameters: network parameter count, or None.
        clips: clip name -> :class:`ClipResult`, in evaluation order.
    """

    name: str
    description: str
    kind: str
    parameters: int | None = None
    clips: dict[str, ClipResult] = field(default_factory=dict)


def _nanmean(values: torch.Tensor) -> float:
    values = values[torch.isfinite(values)]
    return float(values.mean()) if values.numel() else math.nan


def _au_summary(probabilities: torch.Tensor | None, labels: torch.Tensor, fps: float) -> dict:
    if probabilities is None:
        return {}
    f1 = M.au_f1(probabilities, labels)
    flicker = M.au_flicker(probabilities, fps)
    return {
        "au_f1": {name: float(v) for name, v in zip(AFFWILD2_AU_NAMES, f1, strict=True)},
        "au_f1_mean": _nanmean(f1),
        "au_std": _nanmean(flicker["std"]),
        "au_flips_per_s": _nanmean(flicker["flips_per_s"]),
    }


def summarise_clip(clip: ClipResult) -> dict:
    """Per-clip means: every series, AU F1 / flicker, frames and ms/frame."""
    out: dict = {name: _nanmean(values) for name, values in clip.series.items()}
    out |= _au_summary(clip.au_probabilities, clip.au_labels, clip.fps)
    out["frames"] = clip.frames
    out["ms_per_frame"] = 1000 * clip.seconds / clip.frames if clip.frames else math.nan
    return out


def summarise(result: MethodResult) -> dict:
    """Overall numbers of a method (see the module docstring for the pooling).

    Returns:
        dict with every series name -> float, and when available "au_f1" (AU name -> float),
        "au_f1_mean", "au_std", "au_flips_per_s", plus "frames", "clips", "ms_per_frame",
        "parameters".
    """
    clips = list(result.clips.values())
    names = sorted({name for clip in clips for name in clip.series})
    out: dict = {}
    for name in names:
        pooled = [clip.series[name] for clip in clips if name in clip.series]
        out[name] = _nanmean(torch.cat(pooled))
    with_au = [clip for clip in clips if clip.au_probabilities is not None]
    if with_au:
        probabilities = torch.cat([clip.au_probabilities for clip in with_au])
        labels = torch.cat([clip.au_labels for clip in with_au])
        f1 = M.au_f1(probabilities, labels)
        out["au_f1"] = {name: float(v) for name, v in zip(AFFWILD2_AU_NAMES, f1, strict=True)}
        out["au_f1_mean"] = _nanmean(f1)
        per_clip = [_au_summary(c.au_probabilities, c.au_labels, c.fps) for c in with_au]
        out["au_std"] = _nanmean(torch.tensor([c["au_std"] for c in per_clip]))
        out["au_flips_per_s"] = _nanmean(torch.tensor([c["au_flips_per_s"] for c in per_clip]))
    frames = sum(clip.frames for clip in clips)
    seconds = sum(clip.seconds for clip in clips)
    out["frames"] = frames
    out["clips"] = len(clips)
    timed = frames and result.kind != "reference"
    out["ms_per_frame"] = 1000 * seconds / frames if timed else math.nan
    out["parameters"] = result.parameters
    return out


def nan_to_none(value):
    """Replace non-finite floats by None, recursively (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
