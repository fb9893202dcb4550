"""Command-line tools: --help works, jobs run, user errors are one line with exit code 2."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import asset_factory as af
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted((ROOT / "tools").glob("*.py"))


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("tool", TOOLS, ids=[t.stem for t in TOOLS])
def test_help(tool):
    result = subprocess.run(
        [sys.executable, str(tool), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_render_face_model_with_flame_files(tmp_path, monkeypatch, capsys):
    af.write_flame_bundle(tmp_path / "assets")
    monkeypatch.setenv("SEQDECA_ASSETS", str(tmp_path / "assets"))
    tool = _load_tool("render_face_model")
    out = tmp_path / "out"
    code = tool.main(
        [
            "--out",
            str(out),
            "--config",
            str(ROOT / "configs" / "flame_deca.yaml"),
            "render.image_size=48",
            "render.uv_size=32",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "flame" and summary["vertices"] == 30
    for name in ("face_model.png", "neutral.obj", "neutral.mtl", "neutral.png", "config.yaml"):
        assert (out / name).is_file(), name
    assert "image_size: 48" in (out / "config.yaml").read_text()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["render.imagesize=3"], "did you mean 'render.image_size'"),
        (["face_model.path=/nonexistent/generic_model.pkl"], "generic_model.pkl"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
        (["render.backend=pytorch3d"], "pytorch3d"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, args, expected):
    tool = _load_tool("render_face_model")
    code = tool.main(["--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and expected in err
    assert not (tmp_path / "out" / "summary.json").exists()
