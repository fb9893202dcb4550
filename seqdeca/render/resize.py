"""Resizing of image-like tensors (images, masks, UV maps) with the package's interpolation modes.

One function, :func:`resize_maps`, for every (..., C, H, W) tensor that the model, the losses,
training and evaluation scale to another size (numpy images of the data generator are resized
elsewhere). The modes:

| mode | what | used for |
| --- | --- | --- |
| ``"bilinear"`` | bilinear, ``align_corners=False``; ``antialias=True`` low-pass filters first | images, renders, UV maps |
| ``"area_threshold"`` | area average, then ``> 0.5``: a {0, 1} mask | face masks scored at a render's size |
| ``"nearest"`` | nearest neighbour, computed in float32, returned in the input's dtype | class masks |

A tensor that already has the requested size is returned as it is (the same object), whatever
the mode.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["ResizeMode", "resize_maps"]

ResizeMode = Literal["bilinear", "area_threshold", "nearest"]


def resize_maps(
    x: torch.Tensor,
    size: tuple[int, int],
    *,
    mode: ResizeMode = "bilinear",
    antialias: bool = False,
) -> torch.Tensor:
    """Resize the last two dimensions of ``x`` to ``size``.

    Args:
        x: (..., C, H, W) maps: any number of leading dimensions (folded into one batch
            dimension for the interpolation), or (C, H, W).
        size: (H', W') target size.
        mode: see the module docstring.
        antialias: with ``"bilinear"`` only: low-pass filter before downsampling.

    Returns:
        (..., C, H', W'); ``x`` itself when its size already is ``size``. ``"area_threshold"``
        gives 0 / 1 in the dtype of ``x`` (which must be floating point).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if x.dim() < 3:
        raise ValueError(f"expected (..., C, H, W) maps, got {tuple(x.shape)}")
    if antialias and mode != "bilinear":
        raise ValueError(f"antialias applies to bilinear resizing only, not {mode!r}")
    lead, channels = x.shape[:-3], x.shape[-3]
    flat = x.reshape(-1, channels, *x.shape[-2:])  # (N, C, H, W)
    if mode == "bilinear":
        out = F.interpolate(
            flat, size=size, mode="bilinear", align_corners=False, antialias=antialias
        )
    elif mode == "area_threshold":
        out = (F.interpolate(flat, size=size, mode="area") > 0.5).to(x.dtype)
    elif mode == "nearest":
        out = F.interpolate(flat.float(), size=size, mode="nearest").to(x.dtype)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return out.reshape(*lead, channels, *size)
