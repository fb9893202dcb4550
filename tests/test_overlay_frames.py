"""tools/overlay_frames.py: one frame of each video, stacked; one-line errors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from seqdeca.io.video import VideoWriter
from tools import overlay_frames


def _clip(path, width: int, frames: int = 4):
    with VideoWriter(path, fps=25, size=(width, 32)) as writer:
        for i in range(frames):
            writer.write(np.full((32, width, 3), 40 * i, dtype=np.uint8))
    return path


def test_stacks_the_frame_of_each_video(tmp_path):
    a, b = _clip(tmp_path / "a.mp4", 64), _clip(tmp_path / "b.mp4", 32)
    out = tmp_path / "fig" / "stack.png"
    assert overlay_frames.main([str(out), str(a), str(b), "--frame", "2"]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (32 + 64, 64, 3)  # b scaled to a's width
    assert abs(float(image.mean()) - 80) < 6  # frame 2 of both is grey 80


def test_missing_frame_or_file_is_one_line(tmp_path, capsys):
    a = _clip(tmp_path / "a.mp4", 64)
    out = tmp_path / "stack.png"
    assert overlay_frames.main([str(out), str(a), "--frame", "9"]) == 2
    assert overlay_frames.main([str(out), str(tmp_path / "none.mp4")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
    assert "no frame 9" in errors[0] and "not found" in errors[1]
    assert not out.exists()
