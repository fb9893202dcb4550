"""The typed configuration schema: the single source of truth for every setting.

YAML files in ``configs/`` hold only overrides of these defaults. A path may be written as
``${oc.env:SEQDECA_ASSETS}/generic_model.pkl`` (OmegaConf's environment resolver) so that no
committed file names one machine's disks. Sections are added by the issues that need them; every
key here is read somewhere in the code (``tests/test_config.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FaceModelConfig:
    """Which face model to use and its side files (empty string = not given).

    ``path`` empty selects the bundled default model; otherwise a FLAME ``generic_model.pkl``
    (2020 or 2023) or a seqdeca ``.npz``. The side files are DECA's and FLAME's official assets.
    """

    path: str = ""
    landmark_embedding: str = ""  # DECA landmark_embedding.npy
    mediapipe_embedding: str = ""  # FLAME mediapipe_landmark_embedding.npz
    head_template: str = ""  # DECA head_template.obj (UV layout)
    uv_face_mask: str = ""  # DECA uv_face_mask.png
    uv_face_eye_mask: str = ""  # DECA uv_face_eye_mask.png
    fixed_displacement: str = ""  # DECA fixed_displacement_256.npy
    texture: str = ""  # FLAME_albedo_from_BFM.npz or FLAME_texture.npz
    n_shape: int = 100  # identity components used (truncated to what the model has)
    n_expression: int = 50
    n_texture: int = 50


@dataclass
class RenderConfig:
    """Renderer settings."""

    image_size: int = 224
    uv_size: int = 256
    backend: str = "builtin"  # "builtin" (pure PyTorch) or "pytorch3d" (if the user installed it)


@dataclass
class RunConfig:
    """Where a run writes and how it is seeded."""

    output_dir: str = "outputs/run"
    seed: int = 0
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...


@dataclass
class Config:
    """The whole configuration of a seqdeca run."""

    face_model: FaceModelConfig = field(default_factory=FaceModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    run: RunConfig = field(default_factory=RunConfig)
