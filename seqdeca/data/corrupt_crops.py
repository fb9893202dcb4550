"""On-the-fly corruption of training windows (``data.augmentation.corruption``).

The temporal model is worth its cost where a frame alone is unreliable: a hand over the mouth,
motion blur, sensor noise, a JPEG drop, a brightness flicker. This augmentation corrupts the
crops of a training window with the same kinds, rates and event lengths as the synthetic clips
(:mod:`seqdeca.data.synthetic_corrupt`; occluders flat-coloured here), the rates scaled by
``corruption`` (1: the realistic mix, about one frame in four). Only the network's input is
corrupted: the clean crops stay in the item as ``clean_images`` so that targets (the photometric
loss, the frozen per-frame encoder of ``loss.clean_consistency``) are taken from them, and the
landmark targets are the clean frames' own.
"""

from __future__ import annotations

import numpy as np
import torch

from seqdeca.config.schema import SyntheticCorruptionConfig
from seqdeca.data.synthetic_corrupt import REALISTIC_MIX, apply_corruptions, draw_corruptions
from seqdeca.geometry.camera import ndc_to_pixels

__all__ = ["corrupt_window", "corruption_rates"]


def corruption_rates(scale: float) -> SyntheticCorruptionConfig:
    """The realistic mix with every rate multiplied by ``scale`` (each capped at 0.95)."""
    if scale < 0:
        raise ValueError(f"corruption scale must be >= 0, got {scale}")
    return SyntheticCorruptionConfig(**{k: min(0.95, v * scale) for k, v in REALISTIC_MIX.items()})


def corrupt_window(
    images: torch.Tensor,
    landmarks68: torch.Tensor,
    rates: SyntheticCorruptionConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Corrupt the frames of one window.

    Args:
        images: (T, 3, H, W) float RGB in [0, 1] (not modified).
        landmarks68: (T, 68, 2) iBUG-68 landmarks, normalised [-1, 1] (occluders are placed on
            them; frames with unknown (NaN) landmarks get no occluder).
        rates: share of frames per kind (:func:`corruption_rates`).
        rng: the window's generator.

    Returns:
        (T, 3, H, W) float in [0, 1], quantised to 8 bits like the decoded crops.
    """
    t_count, _, h, w = images.shape
    draws = draw_corruptions(rng, t_count, rates)
    if not draws.corrupted().any():
        return images
    points = ndc_to_pixels(landmarks68.float(), (h, w)).numpy().astype(np.float64)
    unknown = ~np.isfinite(points).all(axis=(1, 2))
    if unknown.any():  # no landmarks: no place for an occluder; a face-sized stand-in for blur
        draws.occluder[unknown] = 0
        points[unknown] = _centred_face(h, w)
    frames = (images.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    corrupted, _ = apply_corruptions(frames, draws, points)
    return torch.from_numpy(corrupted).permute(0, 3, 1, 2).float() / 255.0


def _centred_face(h: int, w: int) -> np.ndarray:
    """(68, 2) points spanning the middle half of the crop (only their width is used)."""
    xs = np.linspace(w * 0.25, w * 0.75, 68)
    return np.stack([xs, np.full(68, h / 2.0)], axis=1)
