"""Window-consistent augmentation: ONE random draw per window, applied to every frame.

A window of T frames gets one horizontal flip decision, one rotation, one scale, one shift and
one colour jitter; images, landmarks and masks go through the same affine map so that they stay
consistent (masks with nearest-neighbour sampling). There are no 90-degree rotations, and nothing
is done at evaluation (the dataset simply does not call :func:`augment_window`).

Geometry is done in normalised image coordinates (x right, y DOWN, [-1, 1] over the crop, the
``pixels_to_ndc`` convention): a point ``p`` maps to ``A @ p + b``. A horizontal flip mirrors x
and RE-INDEXES the landmarks, because the subject's left eye becomes the image's right eye:
``flipped[i] = mirror(points[perm[i]])``. The MediaPipe permutation is derived once from the
bundled face model's template (mirror x about the mid-plane, then a symmetric optimal matching of
the mirrored vertices to the originals); the iBUG-68 one is the standard table.

Randomness comes from a ``torch.Generator`` the caller seeds (the dataset seeds it from
``(seed, epoch, index)``), so results do not depend on DataLoader workers or processes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seqdeca.config.schema import AugmentationConfig
from seqdeca.prep.landmark_sets import MEDIAPIPE105

__all__ = [
    "IBUG68_FLIP",
    "WindowAugmentation",
    "augment_window",
    "draw_augmentation",
    "mediapipe_flip_permutation",
]

# Standard iBUG-68 left/right permutation (0-based): flipped point i takes point IBUG68_FLIP[i].
IBUG68_FLIP = np.array(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 16, -1))  # brows 17-26
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes 36-47
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip 48-59
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lip 60-67
    dtype=np.int64,
)


@functools.lru_cache(maxsize=1)
def mediapipe_flip_permutation() -> np.ndarray:
    """(478,) int64 involution: MediaPipe point i of a mirrored face is point perm[i].

    Derived from the bundled default model's template (MediaPipe topology): mirror x about the
    median x, then match mirrored vertices to template vertices with a symmetric cost
    ``|mirror(v_i) - v_j| + |mirror(v_j) - v_i|`` by optimal assignment (a bijection; the
    symmetric cost makes it an involution on this template, which a test checks).

    Raises:
        AssetError: if the bundled model is missing.
    """
    from scipy.optimize import linear_sum_assignment

    from seqdeca.face_model.default import load_default_assets

    vertices = load_default_assets().v_template.astype(np.float64)
    mirrored = vertices.copy()
    mirrored[:, 0] = 2 * np.median(vertices[:, 0]) - mirrored[:, 0]
    cost = np.linalg.norm(mirrored[:, None] - vertices[None], axis=-1)
    _, perm = linear_sum_assignment(cost + cost.T)
    return perm.astype(np.int64)


def flip_permutation(num_points: int) -> np.ndarray:
    """The flip permutation of a landmark set: 478 (MediaPipe), 105 (FLAME's MediaPipe subset
    ``MEDIAPIPE105``, as written for FLAME synthetic clips), 68 (iBUG) or 0 points."""
    if num_points == 478:
        return mediapipe_flip_permutation()
    if num_points == 68:
        return IBUG68_FLIP
    if num_points == 105:
        perm = mediapipe_flip_permutation()
        position = {int(v): i for i, v in enumerate(MEDIAPIPE105)}
        return np.array([position[int(perm[v])] for v in MEDIAPIPE105], dtype=np.int64)
    if num_points == 0:
        return np.zeros(0, dtype=np.int64)
    raise ValueError(f"no flip permutation for a set of {num_points} landmarks (478, 105, 68)")


@dataclass(frozen=True)
class WindowAugmentation:
    """One window's draw.

    Attributes:
        flip: mirror horizontally (with landmark re-indexing).
        angle: in-plane rotation, radians (positive turns the image content clockwise on screen,
            since y points down).
        scale: zoom factor (> 1 enlarges the face).
        shift: (2,) translation in normalised units (fraction of the half-size).
        brightness, contrast, saturation: multiplicative factors around 1.
    """

    flip: bool = False
    angle: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

    def matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The affine map in normalised coordinates: ``p' = A @ p + b``; A (2, 2), b (2,)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        a = torch.tensor([[c, -s], [s, c]], dtype=torch.float64) * self.scale
        if self.flip:
            a = a @ torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        return a, torch.tensor(self.shift, dtype=torch.float64)


def _uniform(gen: torch.Generator, amplitude: float) -> float:
    """A draw in [-amplitude, amplitude]."""
    return float((torch.rand((), generator=gen, dtype=torch.float64) * 2 - 1) * amplitude)


def draw_augmentation(cfg: AugmentationConfig, gen: torch.Generator) -> WindowAugmentation:
    """Draw one window's parameters from ``cfg`` with ``gen`` (always the same number of draws)."""
    flip = bool(torch.rand((), generator=gen, dtype=torch.float64) < cfg.flip_prob)
    angle = math.radians(_uniform(gen, cfg.max_rotation_deg))
    scale = 1.0 + _uniform(gen, cfg.scale_jitter)
    # shift_jitter is a fraction of the crop size; normalised units span 2 over the crop.
    shift = (2 * _uniform(gen, cfg.shift_jitter), 2 * _uniform(gen, cfg.shift_jitter))
    jitter = [1.0 + _uniform(gen, cfg.color_jitter) for _ in range(3)]
    return WindowAugmentation(
        flip=flip,
        angle=angle,
        scale=scale,
        shift=shift,
        brightness=jitter[0],
        contrast=jitter[1],
        saturation=jitter[2],
    )


def transform_points(points: torch.Tensor, aug: WindowAugmentation) -> torch.Tensor:
    """Apply the window's map to normalised landmarks, re-indexing them on a flip.

    Args:
        points: (T, L, 2) normalised coordinates (NaN rows stay NaN); L = 478 or 68 to flip.

    Returns:
        (T, L, 2) transformed points.
    """
    a, b = aug.matrix()
    out = points.to(torch.float64) @ a.T + b
    if aug.flip:
        out = out[:, torch.from_numpy(flip_permutation(points.shape[1]))]
    return out.to(points.dtype)


def _warp(images: torch.Tensor, aug: WindowAugmentation, mode: str) -> torch.Tensor:
    """Resample (T, C, H, W) images so that content at p moves to A p + b (zeros outside)."""
    a, b = aug.matrix()
    inv = torch.linalg.inv(a)
    theta = torch.cat([inv, (-inv @ b)[:, None]], dim=1).to(torch.float32)
    theta = theta.expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _color(images: torch.Tensor, aug: WindowAugmentation) -> torch.Tensor:
    """Brightness, contrast and saturation on (T, 3, H, W) RGB in [0, 1]."""
    weights = images.new_tensor([0.299, 0.587, 0.114])[None, :, None, None]
    out = images * aug.brightness
    grey_mean = (out * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    out = (out - grey_mean) * aug.contrast + grey_mean
    grey = (out * weights).sum(1, keepdim=True)
    out = (out - grey) * aug.saturation + grey
    return out.clamp(0, 1)


def augment_window(
    sample: dict[str, torch.Tensor], aug: WindowAugmentation
) -> dict[str, torch.Tensor]:
    """Apply one draw to every frame of a window sample (a new dict; other keys are kept).

    Args:
        sample: ``images`` (T, 3, H, W) float [0, 1], ``masks`` (T, H, W) uint8,
            ``landmarks`` (T, 478, 2) and ``landmarks68`` (T, 68, 2) normalised coordinates.
        aug: the window's draw.

    Returns:
        The augmented sample, same shapes and dtypes.
    """
    out = dict(sample)
    out["images"] = _color(_warp(sample["images"], aug, "bilinear"), aug)
    masks = sample["masks"][:, None].to(torch.float32)
    out["masks"] = _warp(masks, aug, "nearest")[:, 0].round().to(torch.uint8)
    for key in ("landmarks", "landmarks68"):
        if key in sample:
            out[key] = transform_points(sample[key], aug)
    return out
