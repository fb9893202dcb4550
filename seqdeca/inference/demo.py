"""The default input of ``make demo`` and of the tests: a short face clip made at run time.

scikit-image ships the astronaut photograph (Eileen Collins, public domain) with every install,
so a fresh clone can run video2mesh without downloading anything: the face is framed and moved
by a small, smooth zoom / shift / rotation per frame and encoded as an H.264 MP4.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from seqdeca.io.video import VideoWriter

__all__ = ["make_demo_clip"]

# Face region of skimage.data.astronaut() (512 x 512): centre and side of the framing, pixels.
_FACE_CENTRE = (215.0, 135.0)
_FACE_SIDE = 300.0


def make_demo_clip(
    path: str | Path,
    *,
    frames: int = 50,
    fps: float = 25.0,
    size: int = 320,
    blank: tuple[int, int] | None = None,
) -> Path:
    """Write a clip of the astronaut's face moving slowly.

    Args:
        path: the ``.mp4`` to write.
        frames: number of frames.
        fps: frames per second.
        size: frame side in pixels (square, even).
        blank: optional (start, stop) frame range replaced by a grey frame (no face), to test
            frames without a face.

    Returns:
        ``path``.
    """
    import cv2
    from skimage.data import astronaut

    image = astronaut()  # (512, 512, 3) uint8 RGB
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        phase = 2 * math.pi * t / max(frames, 1)
        zoom = size / _FACE_SIDE * (1.0 + 0.08 * math.sin(phase))
        angle = 6.0 * math.sin(0.7 * phase)
        cx = _FACE_CENTRE[0] + 12 * math.sin(phase)
        cy = _FACE_CENTRE[1] + 8 * math.cos(phase)
        m = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
        m[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
        out[t] = cv2.warpAffine(
            image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    if blank is not None:
        out[blank[0] : blank[1]] = 128
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps, size=(size, size), crf=18) as writer:
        writer.write(out)
    return path
