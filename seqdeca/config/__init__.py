"""Typed configuration: dataclass schema, YAML overrides, ``a.b=value`` command-line overrides."""

from seqdeca.config.loader import (
    ConfigError,
    config_to_yaml,
    given_keys,
    leaf_keys,
    load_config,
    save_config,
)
from seqdeca.config.schema import (
    AugmentationConfig,
    Config,
    CropConfig,
    DataConfig,
    DataSourceConfig,
    FaceModelConfig,
    LossConfig,
    ModelConfig,
    PrepareConfig,
    RenderConfig,
    RunConfig,
    TrackConfig,
)

__all__ = [
    "AugmentationConfig",
    "Config",
    "ConfigError",
    "CropConfig",
    "DataConfig",
    "DataSourceConfig",
    "FaceModelConfig",
    "LossConfig",
    "ModelConfig",
    "PrepareConfig",
    "RenderConfig",
    "RunConfig",
    "TrackConfig",
    "config_to_yaml",
    "given_keys",
    "leaf_keys",
    "load_config",
    "save_config",
]
