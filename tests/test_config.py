"""The config system: every YAML loads, unknown keys fail with a hint, every key is read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqdeca.config import Config, ConfigError, config_to_yaml, leaf_keys, load_config, save_config

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _assets_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQDECA_ASSETS", str(tmp_path / "assets"))


@pytest.mark.parametrize("path", YAMLS, ids=[p.name for p in YAMLS])
def test_every_config_file_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_configs_exist():
    assert any(p.name == "base.yaml" for p in YAMLS)


def test_env_interpolation_resolves(tmp_path):
    cfg = load_config(ROOT / "configs" / "flame_deca.yaml")
    assert cfg.face_model.path == str(tmp_path / "assets" / "generic_model.pkl")


def test_precedence_defaults_then_files_then_overrides(tmp_path):
    base = tmp_path / "a.yaml"
    base.write_text("render:\n  image_size: 128\n  uv_size: 32\n")
    child = tmp_path / "b.yaml"
    child.write_text("_base_: a.yaml\nrender:\n  image_size: 96\n")
    cfg = load_config(child, ["run.seed=7"])
    assert (cfg.render.image_size, cfg.render.uv_size, cfg.run.seed) == (96, 32, 7)
    assert cfg.render.backend == "builtin"  # schema default untouched
    cfg = load_config([child], ["render.image_size=64"])
    assert cfg.render.image_size == 64


def test_unknown_key_fails_with_hint(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("render:\n  imagesize: 128\n")
    with pytest.raises(ConfigError, match=r"render\.imagesize.*did you mean 'render\.image_size'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="did you mean 'render'"):
        load_config(None, ["rnder.image_size=3"])


def test_bad_value_and_bad_override_fail():
    with pytest.raises(ConfigError, match="render.image_size"):
        load_config(None, ["render.image_size=big"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["render.image_size"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")


def test_base_cycle_is_an_error(tmp_path):
    (tmp_path / "x.yaml").write_text("_base_: y.yaml\n")
    (tmp_path / "y.yaml").write_text("_base_: x.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "x.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs" / "tiny_cpu.yaml", ["run.seed=11"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert "seed: 11" in config_to_yaml(again)


def _section_class(section: str) -> str:
    return "".join(part.title() for part in section.split("_")) + "Config"


def test_every_key_is_read_somewhere():
    """Each leaf setting is read as an attribute in a file that handles its section."""
    files = [
        p.read_text()
        for folder in ("seqdeca", "tools")
        for p in (ROOT / folder).rglob("*.py")
        if "config" not in p.relative_to(ROOT).parts[:2]
    ]
    unread = []
    for key in leaf_keys():
        section, leaf = key.rsplit(".", 1)
        section = section.rsplit(".", 1)[-1]
        handlers = [t for t in files if _section_class(section) in t or f".{section}" in t]
        if not any(re.search(r"\." + re.escape(leaf) + r"\b", t) for t in handlers):
            unread.append(key)
    assert not unread, f"config keys never read by the code: {unread}"
