"""Streaming MP4 writing with PyAV (H.264, yuv420p): frames go to the encoder as they come."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["VideoWriter"]


class VideoWriter:
    """Write RGB frames to an H.264 ``.mp4`` one chunk at a time (use as a context manager).

    Args:
        path: the file to write.
        fps: frames per second of the output (the source's, so that it plays in sync).
        size: (width, height) of every frame; odd sides are not allowed by yuv420p (pad first).
        crf: H.264 constant rate factor (lower = better quality, larger file).
        preset: x264 speed preset ("ultrafast" ... "veryslow").
    """

    def __init__(self, path: str | Path, *, fps: float, size: tuple[int, int], crf: int = 23,
                 preset: str = "veryfast") -> None:  # fmt: skip
        import av

        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"H.264 (yuv420p) needs even frame sides, got {width}x{height}")
        self.path = Path(path)
        self.size = (int(width), int(height))
        self.frames = 0
        rate = Fraction(fps).limit_denominator(1001) if fps and np.isfinite(fps) else Fraction(25)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}

    def write(self, frames: np.ndarray) -> None:
        """Encode (n, H, W, 3) uint8 RGB frames (or one (H, W, 3) frame)."""
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.size[1], self.size[0], 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames of {self.size[1]}x{self.size[0]}x3, got "
                f"{frames.shape[1:]} {frames.dtype}"
            )
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and close the file."""
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        return self.path

    def __enter__(self) -> VideoWriter:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
