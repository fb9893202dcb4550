"""Video files: streaming decoding (decord first, PyAV when decord cannot open a file) and
streaming MP4 writing with PyAV (H.264, yuv420p).

A :class:`VideoReader` never holds the whole video in memory: :meth:`VideoReader.chunks` yields
consecutive frames in small batches. Frames are RGB ``uint8`` arrays ``(n, H, W, 3)``, optionally
decoded at a reduced size (``max_side``) while :attr:`VideoReader.size` keeps reporting the
ORIGINAL frame size, so that coordinates measured on small frames can be scaled back. A
:class:`VideoWriter` sends frames to the encoder as they come.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from seqdeca.errors import UserError

__all__ = ["VideoError", "VideoReader", "VideoWriter", "scaled_size"]


class VideoError(UserError):
    """A video file is missing, unreadable or not a video (one-line message)."""


def _short(exc: BaseException) -> str:
    """The first line of an exception message without decord's "[time] file:line:" prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", text)[:100]


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The (width, height) of a frame shrunk so that its long side is at most ``max_side``.

    The aspect ratio is kept (sides rounded to even numbers, which every decoder accepts); a
    frame already small enough, or ``max_side=None``, keeps its size.
    """
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


class VideoReader:
    """Frame-accurate sequential reader of one video file.

    Args:
        path: the video file.
        max_side: decode frames so that their long side is at most this many pixels (None: the
            original size). ``size`` still reports the original size.
        backend: "auto" (decord, then PyAV), "decord" or "pyav".

    Attributes:
        path: the file.
        fps: frames per second (float).
        num_frames: number of frames.
        size: ORIGINAL (width, height) in pixels.
        decode_size: (width, height) of the frames this reader yields.
        backend: the backend in use ("decord" or "pyav").

    Raises:
        VideoError: the file is missing or no backend can read a video stream from it.
    """

    def __init__(
        self, path: str | Path, *, max_side: int | None = None, backend: str = "auto"
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video file not found: {self.path}")
        if backend not in ("auto", "decord", "pyav"):
            raise VideoError(f"unknown video backend {backend!r}: use auto, decord or pyav")
        self._decord = None
        errors = []
        if backend in ("auto", "decord"):
            try:
                self._open_decord(max_side)
            except Exception as exc:  # noqa: BLE001 - decord raises bare RuntimeError/DECORDError
                errors.append(f"decord: {_short(exc)}")
        if self._decord is None and backend in ("auto", "pyav"):
            try:
                self._open_pyav(max_side)
            except Exception as exc:  # noqa: BLE001 - PyAV raises many error classes
                errors.append(f"pyav: {_short(exc)}")
                self.backend = ""
        if not getattr(self, "backend", ""):
            raise VideoError(
                f"cannot read a video stream from {self.path} ({'; '.join(errors)}); "
                "check that it is a video file (mp4, avi, mov, ...)"
            )
        if self.num_frames <= 0:
            raise VideoError(f"video {self.path} has no frames")

    # -- opening --------------------------------------------------------------------------------

    def _open_decord(self, max_side: int | None) -> None:
        import decord

        probe = decord.VideoReader(str(self.path), ctx=decord.cpu(0))
        height, width = probe[0].shape[:2]
        self.fps = float(probe.get_avg_fps())
        self.num_frames = len(probe)
        self.size = (int(width), int(height))
        self.decode_size = scaled_size(self.size[0], self.size[1], max_side)
        if self.decode_size != self.size:
            dw, dh = self.decode_size
            del probe
            probe = decord.VideoReader(str(self.path), ctx=decord.cpu(0), width=dw, height=dh)
            # decord's scaler fails on some sizes only when a frame is read: check it now, so
            # that "auto" falls back to PyAV instead of failing in the middle of a video.
            if probe.get_batch([0]).shape[1:3] != (dh, dw):
                raise VideoError(f"decord decoded the wrong size instead of {(dh, dw)}")
        self._decord = probe
        self.backend = "decord"

    def _open_pyav(self, max_side: int | None) -> None:
        import av

        with av.open(str(self.path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            count = int(stream.frames or 0)
            if count <= 0:  # containers without a frame count: count the packets of the stream
                count = sum(1 for p in container.demux(stream) if p.size > 0)
        if not width or not height:
            raise VideoError("video stream without a frame size")
        self.fps = float(rate) if rate else math.nan
        self.num_frames = count
        self.size = (int(width), int(height))
        self.decode_size = scaled_size(self.size[0], self.size[1], max_side)
        self.backend = "pyav"

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_frames

    def chunks(
        self, chunk_size: int = 32, *, step: int = 1
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode the video in order, ``chunk_size`` frames at a time.

        Args:
            chunk_size: frames per yielded batch (the last one may be shorter).
            step: keep every ``step``-th frame (frame indices 0, step, 2*step, ...).

        Yields:
            (indices (n,) int64 frame indices, frames (n, H, W, 3) uint8 RGB at ``decode_size``).
        """
        if chunk_size < 1 or step < 1:
            raise ValueError("chunk_size and step must be >= 1")
        if self.backend == "decord":
            wanted = np.arange(0, self.num_frames, step, dtype=np.int64)
            for start in range(0, len(wanted), chunk_size):
                idx = wanted[start : start + chunk_size]
                yield idx, self._decord.get_batch(idx.tolist()).asnumpy()
            return
        yield from self._chunks_pyav(chunk_size, step)

    def _chunks_pyav(self, chunk_size: int, step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import av

        width, height = self.decode_size
        idx_buf: list[int] = []
        frame_buf: list[np.ndarray] = []
        with av.open(str(self.path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % step:
                    continue
                idx_buf.append(i)
                frame_buf.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                if len(idx_buf) == chunk_size:
                    yield np.asarray(idx_buf, dtype=np.int64), np.stack(frame_buf)
                    idx_buf, frame_buf = [], []
        if idx_buf:
            yield np.asarray(idx_buf, dtype=np.int64), np.stack(frame_buf)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames one at a time, (H, W, 3) uint8 RGB at ``decode_size``."""
        for _, frames in self.chunks():
            yield from frames

    def close(self) -> None:
        """Release the decoder (the reader cannot be used afterwards)."""
        self._decord = None

    def __enter__(self) -> VideoReader:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.size
        return (
            f"VideoReader({str(self.path)!r}, {self.num_frames} frames, {self.fps:g} fps, {w}x{h}, "
            f"backend={self.backend})"
        )


class VideoWriter:
    """Write RGB frames to an H.264 ``.mp4`` one chunk at a time (use as a context manager).

    Args:
        path: the file to write.
        fps: frames per second of the output (the source's, so that it plays in sync).
        size: (width, height) of every frame; odd sides are not allowed by yuv420p (pad first).
        crf: H.264 constant rate factor (lower = better quality, larger file).
        preset: x264 speed preset ("ultrafast" ... "veryslow").
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        size: tuple[int, int],
        crf: int = 23,
        preset: str = "veryfast",
    ) -> None:
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
