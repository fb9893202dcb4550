"""Build the renderer for a face model from the ``render`` config section."""

from __future__ import annotations

from seqdeca.config.schema import RenderConfig
from seqdeca.face_model.layer import FaceModel
from seqdeca.render.renderer import Renderer


def renderer_from_config(cfg: RenderConfig, face_model: FaceModel) -> Renderer:
    """A :class:`Renderer` for ``face_model``'s topology and UV layout."""
    if face_model.verts_uvs is None:
        raise ValueError(
            f"face model '{face_model.name}' has no UV layout; give face_model.head_template"
        )
    return Renderer(
        faces=face_model.faces,
        verts_uvs=face_model.verts_uvs,
        faces_uvs=face_model.faces_uvs,
        image_size=cfg.image_size,
        uv_size=cfg.uv_size,
        backend=cfg.backend,
    )
