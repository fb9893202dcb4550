"""The face model built from a config: official FLAME files through configs/flame_deca.yaml."""

from __future__ import annotations

from pathlib import Path

import asset_factory as af
import pytest

from seqdeca.config import load_config
from seqdeca.face_model import AssetError
from seqdeca.face_model.from_config import face_model_from_config

ROOT = Path(__file__).resolve().parents[1]


def test_flame_config_loads_every_official_file(tmp_path, monkeypatch):
    paths, truth = af.write_flame_bundle(tmp_path)
    monkeypatch.setenv("SEQDECA_ASSETS", str(tmp_path))
    cfg = load_config(ROOT / "configs" / "flame_deca.yaml", ["face_model.n_expression=3"])
    cfg.face_model.mediapipe_embedding = str(paths["mediapipe_embedding"])
    model = face_model_from_config(cfg.face_model)
    assert model.num_expression == 3
    assert model.num_shape == min(
        cfg.face_model.n_shape, truth["model"]["shapedirs"].shape[2] - 100
    )
    assert model.has_dynamic_contour
    out = model(expression=model.v_template.new_zeros(2, 4, 3))
    assert out.vertices.shape == (2, 4, model.num_vertices, 3)
    assert out.landmarks68.shape == (2, 4, 68, 3)


def test_missing_flame_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQDECA_ASSETS", str(tmp_path / "nowhere"))
    cfg = load_config(ROOT / "configs" / "flame_deca.yaml")
    with pytest.raises(AssetError) as info:
        face_model_from_config(cfg.face_model)
    message = str(info.value)
    assert (
        "\n" not in message and "generic_model.pkl" in message and "flame.is.tue.mpg.de" in message
    )
