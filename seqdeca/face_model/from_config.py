"""Build the face-model layer from the ``face_model`` config section (the only reader of it)."""

from __future__ import annotations

from seqdeca.config.schema import FaceModelConfig
from seqdeca.face_model.assets import FaceModelAssets
from seqdeca.face_model.flame_io import load_face_model
from seqdeca.face_model.layer import FaceModel


def face_model_assets_from_config(cfg: FaceModelConfig) -> FaceModelAssets:
    """The configured model's assets: bundled default, seqdeca ``.npz`` or FLAME ``.pkl``."""
    side_files = {
        "landmark_embedding": cfg.landmark_embedding,
        "mediapipe_embedding": cfg.mediapipe_embedding,
        "head_template": cfg.head_template,
        "uv_face_mask": cfg.uv_face_mask,
        "uv_face_eye_mask": cfg.uv_face_eye_mask,
        "fixed_displacement": cfg.fixed_displacement,
        "texture": cfg.texture,
    }
    if cfg.path.lower().endswith(".pkl"):
        side_files["n_texture"] = cfg.n_texture  # avoids reading the whole texture basis
    return load_face_model(cfg.path or None, **side_files)


def face_model_from_config(cfg: FaceModelConfig) -> FaceModel:
    """The face-model layer for the configured assets.

    Component counts are capped at what the model has, so the same config works with FLAME
    (300 identity / 100 expression) and with the bundled model (a few of each).
    """
    assets = face_model_assets_from_config(cfg)
    return FaceModel(
        assets,
        n_shape=min(cfg.n_shape, assets.num_shape),
        n_expression=min(cfg.n_expression, assets.num_expression),
        n_texture=min(cfg.n_texture, assets.num_texture),
    )
