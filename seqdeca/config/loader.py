"""Load, merge, override and save configs.

Order of precedence (later wins): schema defaults < each YAML file (a file may name the files it
builds on with ``_base_: other.yaml`` or a list, relative to itself) < ``a.b=value`` overrides.
Unknown keys and wrongly typed values raise :class:`ConfigError` with one line and a hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from seqdeca.config.schema import Config
from seqdeca.errors import UserError


class ConfigError(UserError):
    """A config file or override does not fit the schema."""


def leaf_keys(schema: type | object = Config, prefix: str = "") -> list[str]:
    """Dotted names of every leaf setting of a dataclass schema, e.g. ``render.image_size``."""
    out: list[str] = []
    for f in fields(schema):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        name = f"{prefix}{f.name}"
        out.extend(leaf_keys(type(default), name + ".") if is_dataclass(default) else [name])
    return out


def _hint(bad_key: str) -> str:
    keys = leaf_keys()
    names = keys + sorted({k.rsplit(".", 1)[0] for k in keys})
    close = difflib.get_close_matches(bad_key, names, n=1, cutoff=0.6)
    if not close:  # right name in the wrong section, e.g. 'run.image_size'
        leaf = bad_key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:1]
    return f"; did you mean '{close[0]}'?" if close else ""


def _merge(base: DictConfig, other: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        if isinstance(exc, ConfigKeyError):
            raise ConfigError(f"unknown config key '{key}' in {source}{_hint(str(key))}") from None
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"bad value for '{key}' in {source}: {msg}") from None


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[DictConfig, str]]:
    """A YAML file and, before it, the files named in its ``_base_`` key (recursively)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} includes itself through _base_")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - YAML syntax errors have many types
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    bases = node.pop("_base_", None)
    bases = [] if bases is None else [bases] if isinstance(bases, str) else list(bases)
    out: list[tuple[DictConfig, str]] = []
    for base in bases:
        out.extend(_read_yaml(path.parent / str(base), (*seen, path)))
    out.append((node, str(path)))
    return out


def load_config(
    files: str | Path | Sequence[str | Path] | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Build a typed :class:`Config` from defaults, YAML files and ``a.b=value`` overrides."""
    if files is None:
        files = []
    elif isinstance(files, (str, Path)):
        files = [files]
    cfg: DictConfig = OmegaConf.structured(Config)
    for file in files:
        for node, source in _read_yaml(Path(file)):
            cfg = _merge(cfg, node, source)
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
    if overrides:
        cfg = _merge(cfg, OmegaConf.from_dotlist(overrides), "command-line overrides")
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve config: {str(exc).splitlines()[0]}") from None


def _node_keys(node: object, prefix: str = "") -> set[str]:
    """Dotted keys of every leaf (and list) of a parsed YAML / dotlist node (unresolved)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, dict):
        return {prefix[:-1]} if prefix else set()
    out: set[str] = set()
    for key, value in node.items():
        out |= _node_keys(value, f"{prefix}{key}.")
    return out


def given_keys(
    files: str | Path | Sequence[str | Path] | None = None, overrides: Iterable[str] = ()
) -> frozenset[str]:
    """The dotted keys that YAML files (with their ``_base_`` files) and overrides set.

    What a caller asked for on purpose, as opposed to a schema default: inference, for one,
    takes a checkpoint's own crop unless the caller set a ``crop`` key (see
    :func:`seqdeca.inference.settings.inference_config`). Takes the arguments of
    :func:`load_config`; call that first, which checks them.
    """
    if files is None:
        files = []
    elif isinstance(files, (str, Path)):
        files = [files]
    keys: set[str] = set()
    for file in files:
        for node, _ in _read_yaml(Path(file)):
            keys |= _node_keys(node)
    overrides = [item for item in overrides if "=" in item]
    if overrides:
        keys |= _node_keys(OmegaConf.from_dotlist(overrides))
    return frozenset(keys)


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (what is saved with every run and checkpoint)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg), resolve=True)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config_to_yaml(cfg))
    tmp.replace(path)
    return path
