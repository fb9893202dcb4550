"""A picture that shows whether the synthetic ground-truth detail is visible in rendered frames.

:func:`detail_check_picture` renders one random identity from the front at a few intensities of
the AUs that drive wrinkles, without and with its detail (:mod:`seqdeca.data.synthetic_detail`),
through the same renderer calls as the synthetic clips. Columns: coarse normals (no detail
path), the detail, the difference from a zero displacement through the same detail path (what
the ground truth alone changes; the path itself shades a little differently from the coarse
normals: faceted dense-grid normals) and a grey shape render of the detail normals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.config.schema import SyntheticDetailConfig
from seqdeca.data.synthetic_au import au_expression_map
from seqdeca.data.synthetic_detail import (
    CENTRE_AUS,
    clip_detail_params,
    detail_displacement_maps,
    detail_normal_maps,
)
from seqdeca.face_model.layer import FaceModel, FlameParams
from seqdeca.render.renderer import Renderer
from seqdeca.vis.grid import draw_text, image_grid, save_png, to_uint8

__all__ = ["detail_check_picture"]

_COLUMNS = ("coarse normals", "detail", "|detail - flat detail| x4", "detail shape")


def _frontal_light(frames: int) -> torch.Tensor:
    """(T, 9, 3) the synthetic clips' mean SH light (ambient plus a light from above-front)."""
    light = torch.zeros(frames, 9, 3)
    light[:, 0] = 2.6
    light[:, 1:4] = torch.tensor([0.0, 0.1, 0.35])[:, None]
    return light


def detail_check_picture(
    model: FaceModel,
    *,
    seed: int = 0,
    image_size: int = 224,
    uv_size: int = 256,
    intensities: Sequence[float] = (0.0, 0.5, 1.0),
    yaw_degrees: float = 15.0,
    path: str | Path | None = None,
) -> np.ndarray:
    """One identity, rows = intensities of every wrinkle AU, columns = :data:`_COLUMNS`.

    Args:
        model: the face model (UV layout, iBUG-68 landmarks, texture model if any).
        seed: the identity (as a clip seed: shape, texture and detail draws).
        image_size: rendered side, pixels (the synthetic crop is 224).
        uv_size: UV side of the displacement (``synthetic.detail.uv_size``).
        intensities: AU intensities in [0, 1], one row each (expression from the AU map too).
        yaw_degrees: head turn, so that the side of the face shows.
        path: optional PNG to write.

    Returns:
        (H', W', 3) uint8 picture.
    """
    gen = torch.Generator().manual_seed(seed)
    t = len(intensities)
    au = torch.zeros(t, len(MAIN_AU_NAMES))
    au[:, [MAIN_AU_NAMES.index(name) for name in CENTRE_AUS]] = torch.tensor(intensities)[:, None]
    expression, jaw = au_expression_map(model).codes(au)
    shape = torch.randn(1, model.num_shape, generator=gen).expand(t, -1)
    pose = torch.tensor([0.0, math.radians(yaw_degrees), 0.0]).expand(t, -1)
    params = FlameParams(
        shape=shape,
        expression=expression,
        global_pose=pose,
        jaw_pose=torch.cat([jaw[:, None], torch.zeros(t, 2)], dim=-1),
    )
    renderer = Renderer(
        faces=model.faces,
        verts_uvs=model.verts_uvs,
        faces_uvs=model.faces_uvs,
        image_size=image_size,
        uv_size=uv_size,
    )
    with torch.no_grad():
        vertices = model(params).vertices
        lo, hi = vertices[0, :, :2].amin(0), vertices[0, :, :2].amax(0)
        cam = torch.cat([(1.6 / (hi - lo).max())[None], -(lo + hi) / 2]).expand(t, -1)
        albedo = None
        if model.texture_mean is not None:
            texture = torch.randn(1, model.num_texture, generator=gen).expand(t, -1)
            albedo = model.albedo(texture).clamp(0, 1)
        detail = clip_detail_params(
            model, seed=seed, settings=SyntheticDetailConfig(scale=1.0, uv_size=uv_size)
        )
        displacement = torch.from_numpy(detail_displacement_maps(detail, au.numpy(), uv_size))
        normals = detail_normal_maps(model, vertices, displacement)
        flat = detail_normal_maps(model, vertices, torch.zeros_like(displacement))
        light = _frontal_light(t)
        plain = renderer(vertices, cam, light=light, albedo=albedo).image.clamp(0, 1)
        shaded, flat_shaded = (
            renderer(vertices, cam, light=light, albedo=albedo, detail_normals=n).image.clamp(0, 1)
            for n in (normals, flat)
        )
        shape_image = renderer.render_shape(vertices, cam, detail_normals=normals)
    rows = [
        [
            draw_text(to_uint8(plain[i]), f"AUs {level:.2f}"),
            shaded[i],
            ((shaded[i] - flat_shaded[i]).abs() * 4).clamp(0, 1),
            shape_image[i],
        ]
        for i, level in enumerate(intensities)
    ]
    picture = image_grid(rows, labels=[*_COLUMNS])
    if path is not None:
        save_png(picture, path)
    return picture
