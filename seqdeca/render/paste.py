"""Paste renders of a face crop back into the original video frames.

The data pipeline stores, per frame, the 3x3 matrix ``crop_from_frame`` that maps ORIGINAL-frame
continuous pixel coordinates (homogeneous, pixel (i, j) centred at (j + 0.5, i + 0.5)) to CROP
pixel coordinates (same convention). Pasting samples the render at the crop position of every
frame pixel centre, so the matrix itself is the warp (no inversion needed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_to_crop_grid(
    crop_from_frame: torch.Tensor, frame_size: tuple[int, int], crop_size: tuple[int, int]
) -> torch.Tensor:
    """``grid_sample`` grid that looks up, for every frame pixel, its position in the crop.

    Args:
        crop_from_frame: (N, 3, 3) frame pixels -> crop pixels (homogeneous, may be projective).
        frame_size: (H, W) of the frames.
        crop_size: (h, w) of the crop / render.

    Returns:
        (N, H, W, 2) normalised crop coordinates for ``align_corners=False``.
    """
    fh, fw = frame_size
    ch, cw = crop_size
    m = crop_from_frame if crop_from_frame.is_floating_point() else crop_from_frame.float()
    ys = torch.arange(fh, device=m.device, dtype=m.dtype) + 0.5
    xs = torch.arange(fw, device=m.device, dtype=m.dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # (H*W, 3)
    crop = points @ m.transpose(1, 2)  # (N, H*W, 3)
    crop = crop[..., :2] / crop[..., 2:]
    grid = crop / crop.new_tensor([cw / 2, ch / 2]) - 1
    return grid.view(-1, fh, fw, 2)


def paste_into_frame(
    render: torch.Tensor,
    alpha: torch.Tensor,
    frames: torch.Tensor,
    crop_from_frame: torch.Tensor,
) -> torch.Tensor:
    """Warp crop renders back into their frames and alpha-composite them over the frames.

    Args:
        render: (N, 3, h, w) rendered crops, RGB in [0, 1] (premultiplied or not: only the
            pixels under ``alpha`` are used).
        alpha: (N, 1, h, w) render coverage in [0, 1].
        frames: (N, 3, H, W) original frames, RGB in [0, 1].
        crop_from_frame: (N, 3, 3) frame pixel -> crop pixel matrices.

    Returns:
        (N, 3, H, W) ``frame * (1 - a) + render * a`` with render and alpha warped bilinearly
        (outside the crop a = 0). Differentiable with respect to render and alpha.
    """
    h, w = render.shape[-2:]
    grid = frame_to_crop_grid(crop_from_frame, frames.shape[-2:], (h, w)).to(render.dtype)
    # Premultiply so that bilinear weights at the silhouette mix colour and coverage alike.
    layers = torch.cat([render * alpha, alpha], dim=1)
    warped = F.grid_sample(layers, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    colour, a = warped[:, :3], warped[:, 3:]
    return frames * (1 - a) + colour
