"""A picture of a face model: textured and grey renders of its main modes of variation.

This is what ``make demo`` shows until video2mesh exists, and the picture in the docs
(``tools/render_face_model.py --out docs/images``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from seqdeca.config import Config, save_config
from seqdeca.face_model.from_config import face_model_from_config
from seqdeca.face_model.layer import FaceModel
from seqdeca.io.obj import write_obj
from seqdeca.render.from_config import renderer_from_config
from seqdeca.render.renderer import Renderer
from seqdeca.vis.grid import image_grid, save_png


def studio_light(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A soft frontal SH light (N, 9, 3): ambient plus light from the front and slightly above."""
    light = torch.zeros(n, 9, 3, dtype=dtype)
    light[:, 0] = 2.6  # times the band-0 constant 0.282: about 0.73 ambient
    light[:, 3] = 0.35  # z: towards the camera
    light[:, 2] = 0.12  # y: from above
    return light


def framing_camera(vertices: torch.Tensor, fill: float = 0.85) -> torch.Tensor:
    """A weak-perspective camera (N, 3) centring each mesh so that it fills ``fill`` of the view."""
    lo, hi = vertices[..., :2].amin(1), vertices[..., :2].amax(1)
    scale = 2 * fill / (hi - lo).amax(-1)
    return torch.cat([scale[:, None], -(lo + hi) / 2], dim=-1)


def _variations(model: FaceModel) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Named parameter sets: neutral, identity and expression extremes, jaw and eyes."""
    z = model.v_template.new_zeros
    out: list[tuple[str, dict[str, torch.Tensor]]] = [("neutral", {})]
    for k in range(min(2, model.num_shape)):
        for sign in (-2.0, 2.0):
            shape = z(model.num_shape)
            shape[k] = sign
            out.append((f"id{k}{'+' if sign > 0 else '-'}", {"shape": shape}))
    for k in range(min(3, model.num_expression)):
        for sign in (-2.0, 2.0):
            exp = z(model.num_expression)
            exp[k] = sign
            out.append((f"exp{k}{'+' if sign > 0 else '-'}", {"expression": exp}))
    out.append(("jaw open", {"jaw_pose": torch.tensor([0.25, 0.0, 0.0])}))
    out.append(("eyes left", {"eye_pose": torch.tensor([0.0, 0.35, 0.0, 0.0, 0.35, 0.0])}))
    out.append(("yaw 30", {"global_pose": torch.tensor([0.0, 0.52, 0.0])}))
    return out


def _width(model: FaceModel, key: str) -> int:
    return {"shape": model.num_shape, "expression": model.num_expression, "eye_pose": 6}.get(key, 3)


@torch.no_grad()
def face_model_sheet(model: FaceModel, renderer: Renderer) -> tuple[np.ndarray, list[str]]:
    """Render every variation textured (top row) and as grey shape (bottom row).

    Returns:
        The grid image (H', W', 3) uint8 and the column labels.
    """
    variations = _variations(model)
    names = [name for name, _ in variations]
    n = len(variations)
    keys = ("shape", "expression", "global_pose", "jaw_pose", "eye_pose")
    params = {
        key: torch.stack(
            [v.get(key, model.v_template.new_zeros(_width(model, key))) for _, v in variations]
        )
        for key in keys
    }
    vertices = model(**params).vertices
    cam = framing_camera(model(shape=params["shape"]).vertices)
    albedo = None
    if model.texture_mean is not None:
        albedo = model.texture_mean.expand(n, -1, -1, -1)
    textured = renderer(vertices, cam, light=studio_light(n), albedo=albedo).image
    shape = renderer.render_shape(vertices, cam)
    per_row = 7  # two blocks of (textured row, shape row) keep the picture readable
    rows = []
    for start in range(0, n, per_row):
        rows += [list(textured[start : start + per_row]), list(shape[start : start + per_row])]
    labels = [" / ".join(names[i::per_row]) for i in range(min(per_row, n))]
    return image_grid(rows, labels=labels), names


def write_face_model_demo(cfg: Config, out_dir: str | Path) -> dict:
    """Write ``face_model.png`` (the sheet), ``neutral.obj`` (+ MTL/PNG) and the config."""
    out = Path(out_dir)
    torch.manual_seed(cfg.run.seed)
    model = face_model_from_config(cfg.face_model).to(cfg.run.device)
    renderer = renderer_from_config(cfg.render, model).to(cfg.run.device)
    sheet, names = face_model_sheet(model, renderer)
    save_png(sheet, out / "face_model.png")
    texture = None if model.texture_mean is None else model.texture_mean.cpu().numpy()
    write_obj(
        out / "neutral.obj",
        model.v_template.cpu().numpy(),
        model.faces.cpu().numpy(),
        verts_uvs=model.verts_uvs.cpu().numpy(),
        faces_uvs=model.faces_uvs.cpu().numpy(),
        texture=texture,
    )
    save_config(cfg, out / "config.yaml")
    summary = {
        "model": model.name,
        "vertices": model.num_vertices,
        "faces": int(model.faces.shape[0]),
        "identity_components": model.num_shape,
        "expression_components": model.num_expression,
        "columns": names,
        "files": ["face_model.png", "neutral.obj", "config.yaml"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
