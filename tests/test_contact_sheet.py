"""tools/show_prepared.py and seqdeca.vis.contact_sheet on a tiny prepared clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prepared_factory import make_prepared_clip

from seqdeca.vis.contact_sheet import (
    BORDER,
    INVALID_COLOUR,
    LABEL_HEIGHT,
    LANDMARK_COLOUR,
    PAD,
    TITLE_HEIGHT,
    sheet_shape,
)

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "show_prepared.py"
VALID = [True, True, False, True, True, True]  # frame 2 has no face


def _show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def _tile_origin(slot: int, column: int, tile: int) -> tuple[int, int]:
    """(y, x) of the top-left pixel of tile ``column`` in row 0 (frame slot 0..)."""
    return TITLE_HEIGHT + LABEL_HEIGHT + PAD, PAD + (2 * slot + column) * (tile + PAD)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_prepared_clip(tmp_path_factory.mktemp("prep"), "tiny", VALID)


def test_sheet_size_landmarks_and_invalid_mark(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    result = _show(clip, "--out", out, "--frames", "6", "--columns", "6")
    assert result.returncode == 0, result.stderr
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape[:2] == sheet_shape(6, 6, 224)
    # Frame 0 (slot 0): the 68 landmarks are drawn in the landmark colour at their positions.
    y0, x0 = _tile_origin(0, 0, 224)
    points = np.load(clip / "landmarks68.npy")[0]
    hits = [
        tuple(sheet[y0 + int(y), x0 + int(x)]) == LANDMARK_COLOUR
        for x, y in points
        if 0 <= x < 224 and 0 <= y < 224
    ]
    assert len(hits) > 50 and all(hits)
    # Frame 2 (slot 2) is invalid: both its tiles have a red border; frame 1's tiles do not.
    for column in (0, 1):
        y, x = _tile_origin(2, column, 224)
        assert tuple(sheet[y + BORDER // 2, x + 100]) == INVALID_COLOUR
        assert tuple(sheet[y + 100, x + BORDER // 2]) == INVALID_COLOUR
        y, x = _tile_origin(1, column, 224)
        assert tuple(sheet[y + BORDER // 2, x + 100]) != INVALID_COLOUR
    # The mask tile of a valid frame is tinted where class 2 is (yellow: red + green > blue).
    y, x = _tile_origin(0, 1, 224)
    r, g, b = sheet[y + 100, x + 110].astype(int)
    assert r > b + 40 and g > b + 40


def test_default_output_and_small_tiles(clip: Path) -> None:
    result = _show(clip, "--frames", "4", "--tile", "96", "--columns", "2")
    assert result.returncode == 0, result.stderr
    out = clip.parent / "tiny_sheet.png"
    assert out.is_file()
    assert Image.open(out).size[::-1] == sheet_shape(4, 2, 96)


def test_help() -> None:
    result = _show("--help")
    assert result.returncode == 0 and "CLIP_DIR" in result.stdout


def test_not_a_prepared_clip(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    result = _show(tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "not a prepared clip" in lines[0]
