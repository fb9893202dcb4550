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
class CropConfig:
    """The ONE face crop shared by data preparation and inference (DECA-style box)."""

    size: int = 224  # output crop, pixels (square)
    scale: float = 1.25  # crop side = scale * 1.1 * mean(landmark box width, height), as DECA
    smooth_frames: int = 9  # temporal smoothing window of box centre/size (odd; 1 = off)


@dataclass
class TrackConfig:
    """MediaPipe face tracking."""

    max_side: int = 960  # frames are downscaled so that the long side is at most this
    max_gap: int = 5  # frames without a face up to this long are interpolated, longer = invalid
    min_detection_confidence: float = 0.5


@dataclass
class PrepareConfig:
    """Dataset preparation into prepared clip folders (tools/prepare_data.py)."""

    jpeg_quality: int = 95
    chunk_frames: int = 64  # frames decoded and processed at a time (memory bound)


@dataclass
class AugmentationConfig:
    """Window-consistent augmentation (the same draw for every frame of a window)."""

    flip_prob: float = 0.5
    max_rotation_deg: float = 15.0
    scale_jitter: float = 0.1  # relative
    shift_jitter: float = 0.05  # fraction of the crop size
    color_jitter: float = 0.1  # brightness/contrast/saturation amplitude


@dataclass
class DataSourceConfig:
    """One folder of prepared clips and its share of the training mix."""

    root: str = ""
    weight: float = 1.0
    manifest: str = ""  # optional split manifest (clip ids, one per line); empty = every clip


@dataclass
class DataConfig:
    """Prepared data and window sampling."""

    sources: list[DataSourceConfig] = field(default_factory=list)
    window: int = 3  # T, consecutive valid frames per sample
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    batch_size: int = 4
    num_workers: int = 0


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
    crop: CropConfig = field(default_factory=CropConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
