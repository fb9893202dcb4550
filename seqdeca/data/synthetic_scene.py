"""Scene parts of synthetic clips: photographic backgrounds, fast head turns, clip lengths.

Backgrounds (``synthetic.background: photo``) are random crops of photographs that ship with
scikit-image (no download): coffee, chelsea (a cat), rocket, hubble_deep_field,
immunohistochemistry, retina, the lower half of astronaut (below her face) and the grey textures
brick, grass and gravel (tinted). A crop covers 35-100 % of the photo's short side, may be
mirrored, and is resized to the frame. The same pool textures the occluders of
:mod:`seqdeca.data.synthetic_corrupt`.

Fast turns (``synthetic.fast_turns`` per second): the head turns to a random yaw (and a little
pitch) within the pose limits in 0.15-0.4 s, stays 0.5-2 s and turns back as fast, on top of the
slow pose curves.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["clip_length", "head_turns", "photo_background", "photo_pool"]


@functools.lru_cache(maxsize=1)
def photo_pool() -> tuple[np.ndarray, ...]:
    """The background photographs, (H, W, 3) uint8 RGB each (loaded once)."""
    from skimage import data

    colour = [
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
        data.retina(),
        data.astronaut()[260:],
    ]
    tints = ((1.0, 0.85, 0.7), (0.8, 0.95, 0.75), (0.85, 0.85, 1.0))
    grey = [
        (np.asarray(image, np.float32)[..., None] * np.asarray(tint, np.float32)).astype(np.uint8)
        for image, tint in zip((data.brick(), data.grass(), data.gravel()), tints)
    ]
    return tuple(np.ascontiguousarray(p[..., :3]) for p in colour + grey)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def photo_background(gen: torch.Generator, size: int) -> torch.Tensor:
    """(3, size, size) float [0, 1] random crop of a pool photograph."""
    pool = photo_pool()
    photo = pool[int(torch.randint(len(pool), (1,), generator=gen))]
    h, w = photo.shape[:2]
    u = torch.rand(4, generator=gen).tolist()
    side = max(16, int(min(h, w) * (0.35 + 0.65 * u[0])))
    top, left = int((h - side) * u[1]), int((w - side) * u[2])
    crop = photo[top : top + side, left : left + side]
    if u[3] < 0.5:
        crop = crop[:, ::-1]
    image = _resize(np.ascontiguousarray(crop), size)
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def head_turns(
    gen: torch.Generator,
    frames: int,
    fps: float,
    rate: float,
    limits: torch.Tensor,
    base: torch.Tensor,
) -> torch.Tensor:
    """(T, 3) pose offsets (radians, pitch/yaw/roll axis-angle) of fast head turns.

    Args:
        gen: the clip's generator.
        frames: T.
        fps: frames per second.
        rate: turns per second (Poisson).
        limits: (3,) pose limits, radians; a turn ends at a yaw within +-limits[1].
        base: (T, 3) the slow pose the turns are added to (a turn aims at an absolute yaw).
    """
    t = torch.arange(frames, dtype=torch.float32) / fps
    out = torch.zeros(frames, 3)
    count = int(torch.poisson(torch.tensor([rate * frames / fps]), generator=gen).item())
    for _ in range(count):
        u = torch.rand(5, generator=gen).tolist()
        start = u[0] * frames / fps - 0.5
        move, hold = 0.15 + 0.25 * u[1], 0.5 + 1.5 * u[2]
        up = 0.5 - 0.5 * torch.cos(math.pi * ((t - start) / move).clamp(0, 1))
        down = 0.5 - 0.5 * torch.cos(math.pi * ((t - start - move - hold) / move).clamp(0, 1))
        weight = up * (1 - down)
        k = int(torch.argmax(weight)) if weight.max() > 0 else 0
        target = torch.tensor([0.3 * (2 * u[3] - 1), 2 * u[4] - 1, 0.0]) * limits
        out += weight[:, None] * (target - base[k] - out[k])
    return out


def clip_length(seed: int, frames: int, min_frames: int) -> int:
    """Frames of a clip: ``frames``, or uniform in ``min_frames..frames`` when min_frames > 0.

    Drawn from a generator of its own (seeded by the clip's seed) so that the clip's other draws
    do not depend on it.
    """
    if min_frames <= 0 or min_frames >= frames:
        return frames
    gen = np.random.default_rng([seed & 0x7FFFFFFF, seed >> 31, 0x1E6])
    return int(gen.integers(min_frames, frames + 1))
