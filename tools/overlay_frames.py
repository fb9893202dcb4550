"""One frame of each overlay video, stacked into a picture (the docs' video2mesh figures).

    python tools/overlay_frames.py OUT.png outputs/v2m/clip_a/overlay.mp4 ... [--frame 20]

Every video must have the frame (a missing file, a bad video or too short a clip: one line on
stderr, exit code 2, nothing written). Videos of different widths are scaled to the first one's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from seqdeca.cli import run_main
from seqdeca.errors import UserError
from seqdeca.io.video import VideoReader

__all__ = ["main", "overlay_frame"]


def overlay_frame(path: Path, index: int) -> np.ndarray:
    """(H, W, 3) uint8 frame ``index`` of the video at ``path``."""
    if not path.is_file():
        raise UserError(f"{path}: not found")
    with VideoReader(path) as reader:
        for i, frame in enumerate(reader):
            if i == index:
                return frame
    raise UserError(f"{path}: has no frame {index}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("videos", nargs="+", help="overlay.mp4 files, top to bottom")
    parser.add_argument("--frame", type=int, default=20, help="frame index (default 20)")
    args = parser.parse_args(argv)

    def job() -> int:
        frames = [overlay_frame(Path(v), args.frame) for v in args.videos]
        width = frames[0].shape[1]
        rows = []
        for frame in frames:
            if frame.shape[1] != width:
                height = round(frame.shape[0] * width / frame.shape[1])
                frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.LANCZOS))
            rows.append(frame)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(out)
        print(f"{out}: frame {args.frame} of {len(rows)} videos")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
