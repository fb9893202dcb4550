"""FLAME-format face model: the asset container, loaders, LBS layer and landmarks; the animated
glTF rig of a clip is :mod:`seqdeca.face_model.gltf_rig` (import it directly: it needs pygltflib).

Typical use::

    from seqdeca.face_model import FaceModel, FlameParams, load_face_model

    model = FaceModel(load_face_model(cfg.face_model.path), n_shape=100, n_expression=50)
    out = model(FlameParams(shape=shape, expression=exp, global_pose=rot, jaw_pose=jaw))
    out.vertices  # (B, T, V, 3) when the parameters are (B, T, ...)
"""

from seqdeca.face_model.assets import (
    JOINT_NAMES,
    AssetError,
    DynamicContour,
    FaceModelAssets,
    LandmarkEmbedding,
    load_assets,
    save_assets,
)
from seqdeca.face_model.default import DEFAULT_MODEL_PATH, load_default_assets
from seqdeca.face_model.flame_io import (
    load_face_model,
    load_flame,
    read_deca_landmark_embedding,
    read_fixed_displacement,
    read_flame_pickle,
    read_mediapipe_embedding,
    read_obj_uv,
    read_texture_space,
    read_uv_mask,
)
from seqdeca.face_model.landmarks import barycentric_points
from seqdeca.face_model.layer import FaceModel, FlameOutput, FlameParams, deca_pose_to_params

__all__ = [
    "DEFAULT_MODEL_PATH",
    "JOINT_NAMES",
    "AssetError",
    "DynamicContour",
    "FaceModel",
    "FaceModelAssets",
    "FlameOutput",
    "FlameParams",
    "LandmarkEmbedding",
    "barycentric_points",
    "deca_pose_to_params",
    "load_assets",
    "load_default_assets",
    "load_face_model",
    "load_flame",
    "read_deca_landmark_embedding",
    "read_fixed_displacement",
    "read_flame_pickle",
    "read_mediapipe_embedding",
    "read_obj_uv",
    "read_texture_space",
    "read_uv_mask",
    "save_assets",
]
