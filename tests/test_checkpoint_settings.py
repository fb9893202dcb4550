"""Inference honours the checkpoint: its trained windows and its crop, unless the caller says
otherwise explicitly; windows it was not trained on are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqdeca.config import config_to_yaml, given_keys, load_config
from seqdeca.errors import UserError
from seqdeca.inference.checkpoint import load_model
from seqdeca.inference.demo import make_demo_clip
from seqdeca.inference.settings import (
    FIT_WINDOW,
    inference_config,
    network_window,
    trained_windows,
)
from seqdeca.models.from_config import build_model
from seqdeca.train.state import export_inference_checkpoint
from tools import video2mesh as video2mesh_tool

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"


def _export(folder: Path, overrides: list[str]) -> Path:
    torch.manual_seed(0)
    cfg = load_config(TINY, overrides)
    model = build_model(cfg, load_checkpoints=False)
    return export_inference_checkpoint(
        folder / "model.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=1,
    )


@pytest.fixture(scope="module")
def ranged(tmp_path_factory) -> Path:
    """A tiny export trained on windows 3..5 with a 64 px crop of scale 1.4."""
    folder = tmp_path_factory.mktemp("ranged")
    return _export(folder, ["data.window=5", "data.min_window=3", "crop.size=64", "crop.scale=1.4"])


def test_given_keys_are_what_files_and_overrides_set(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("_base_: " + str(TINY) + "\ncrop:\n  scale: 1.3\n")
    keys = given_keys([extra], ["inference.window=5", "face_model.path=${oc.env:NOPE}/x.pkl"])
    assert {"crop.scale", "inference.window", "model.backbone", "face_model.path"} <= keys
    assert "crop.size" not in keys and "data.window" not in keys


def test_trained_windows_and_the_default_window(ranged):
    loaded = load_model(ranged)
    assert trained_windows(loaded) == [3, 5]
    assert network_window(loaded) == 5
    assert network_window(loaded, 3) == 3
    for bad in (7, 4):
        with pytest.raises(UserError) as err:
            network_window(loaded, bad)
        assert "\n" not in str(err.value)


def test_old_even_window_checkpoints_run_at_an_odd_window(tmp_path):
    loaded = load_model(_export(tmp_path, ["data.window=2"]))
    assert trained_windows(loaded) == [2] and network_window(loaded) == 1


def test_crop_comes_from_the_checkpoint_unless_given(ranged):
    loaded = load_model(ranged)
    caller = load_config(TINY)
    resolved = inference_config(caller, loaded)
    assert (resolved.crop.size, resolved.crop.scale) == (64, 1.4)
    assert resolved.inference.window == 5
    caller = load_config(TINY, ["crop.scale=1.25"])
    resolved = inference_config(caller, loaded, explicit=given_keys(TINY, ["crop.scale=1.25"]))
    assert (resolved.crop.size, resolved.crop.scale) == (64, 1.25)
    assert inference_config(load_config(TINY), None).inference.window == FIT_WINDOW


def test_video2mesh_runs_at_the_trained_window_and_refuses_longer(ranged, tmp_path, capsys):
    clip = make_demo_clip(tmp_path / "short.mp4", frames=5, size=192)
    out = tmp_path / "out"
    code = video2mesh_tool.main(
        [
            str(clip),
            "--checkpoint",
            str(ranged),
            "--out",
            str(out),
            "--no-video",
            "inference.chunk_frames=4",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "short" / "summary.json").read_text())
    assert (summary["window"], summary["crop_size"]) == (5, 64)
    capsys.readouterr()
    code = video2mesh_tool.main(
        [
            str(clip),
            "--checkpoint",
            str(ranged),
            "--out",
            str(tmp_path / "long"),
            "inference.window=7",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "longer than any window" in err
    assert not (tmp_path / "long" / "short").exists()
