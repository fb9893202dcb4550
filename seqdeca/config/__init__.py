"""Typed configuration: dataclass schema, YAML overrides, ``a.b=value`` command-line overrides."""

from seqdeca.config.loader import ConfigError, config_to_yaml, leaf_keys, load_config, save_config
from seqdeca.config.schema import Config, FaceModelConfig, RenderConfig, RunConfig

__all__ = [
    "Config",
    "ConfigError",
    "FaceModelConfig",
    "RenderConfig",
    "RunConfig",
    "config_to_yaml",
    "leaf_keys",
    "load_config",
    "save_config",
]
