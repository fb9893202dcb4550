"""DECA's weak-perspective camera and the image coordinate conventions.

Conventions (written once, used everywhere):

* Model space: metres, x to the right of the image, y up, z towards the camera (FLAME).
* ``cam = (s, tx, ty)``: ``xy = s * (X[:, :2] + t)``, then y is flipped so that normalised
  image coordinates have y DOWN, in [-1, 1] over the image. Depth is ``-s * Z`` (also flipped),
  so a smaller depth is nearer to the camera, as in DECA's use of pytorch3d.
* Pixel coordinates are continuous: ``u = (x + 1) * W / 2``; the centre of pixel (i, j) is
  (j + 0.5, i + 0.5). DECA's ``kpt / 224 * 2 - 1`` is ``pixels_to_ndc`` at 224.
"""

from __future__ import annotations

import torch


def project_weak_perspective(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Project model-space points with a weak-perspective camera.

    Args:
        points: (N, P, 3) points in metres.
        cam: (N, 3) camera ``(scale, tx, ty)``.

    Returns:
        (N, P, 3): x, y in normalised image coordinates (y down) and depth (smaller is nearer).
    """
    s = cam[:, None, 0:1]
    xy = s * (points[..., :2] + cam[:, None, 1:3])
    z = s * points[..., 2:3]
    return torch.cat([xy[..., 0:1], -xy[..., 1:2], -z], dim=-1)


def ndc_to_pixels(xy: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Normalised image coordinates (..., 2) in [-1, 1] -> continuous pixels (..., 2)."""
    h, w = (size, size) if isinstance(size, int) else size
    scale = xy.new_tensor([w / 2, h / 2])
    return (xy + 1) * scale


def pixels_to_ndc(uv: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Continuous pixel coordinates (..., 2) -> normalised image coordinates in [-1, 1]."""
    h, w = (size, size) if isinstance(size, int) else size
    scale = uv.new_tensor([w / 2, h / 2])
    return uv / scale - 1
