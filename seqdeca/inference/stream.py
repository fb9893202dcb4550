"""Streaming decode, tracking and THE crop for video2mesh, chunk by chunk with overlap.

The whole-clip computations of data preparation (gap interpolation, temporal smoothing of the
crop box, windows centred on each frame) only look a bounded number of frames away:

* gap filling at frame u uses raw landmarks in ``[u - G, u + G]``, ``G = track.max_gap + 1``;
* the smoothed box at u uses filled landmarks in ``[u - h, u + h]``, ``h = crop.smooth_frames // 2``;
* the window of frame t uses crops in ``[t - (W-1)//2, t + W//2]``.

So a chunk of frames ``[a, b)`` is computed from raw frames ``[a - M, b + M)`` with
``M = W//2 + h + G`` (clipped to the clip) and gives exactly the whole-clip results, whatever
the chunk size: :class:`ClipStream` keeps only that sliding buffer in memory.

Differences from :func:`seqdeca.prep.crop.crop_transforms` on a whole clip: frames without a
face (after gap filling) get NaN crop matrices instead of the box of the nearest valid frame
(that could be arbitrarily far away); they get no mesh anyway.

Several faces (``inference.faces`` other than "largest", :mod:`seqdeca.inference.faces`): every
frame's faces are associated into slots as they are tracked
(:class:`~seqdeca.prep.face_association.FaceAssociator`, causal, so it streams), and each slot
is gap-filled and cropped exactly like the one face: ``prepare(a, b, face=k)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from seqdeca.inference.background import ReadAhead
from seqdeca.inference.faces import LARGEST, FaceSelection
from seqdeca.io.video import VideoError, VideoReader
from seqdeca.prep.crop import crop_transforms, scale_matrix, warp_to_crop
from seqdeca.prep.face_association import FaceAssociator
from seqdeca.prep.tracking import (
    NUM_LANDMARKS,
    FaceTracker,
    interpolate_gaps,
    native_stderr_silenced,
)

__all__ = ["ChunkFrames", "ClipStream", "StreamSettings", "stream_margin"]

_TRACK_FACES = 3  # faces MediaPipe looks for at least; "largest" follows one


@dataclass(frozen=True)
class StreamSettings:
    """What :class:`ClipStream` needs: decoding, tracking, the crop and the chunk size.

    Attributes:
        chunk_frames: frames decoded, tracked and predicted at a time (below 1 counts as 1).
        max_side: frames are decoded downscaled so that their long side is at most this (pixels).
        max_gap: gaps without a face of up to this many frames are interpolated.
        min_detection_confidence: MediaPipe's face detection threshold, in [0, 1].
        crop_size: side of the square face crop, pixels.
        crop_scale: crop side over the landmark box size
            (:func:`~seqdeca.prep.crop.crop_transforms`).
        smooth_frames: temporal smoothing window of the crop box (odd; 1 = off).
        read_ahead: chunks decoded and tracked ahead in a background thread while the caller
            works on earlier ones (0: decoded and tracked on demand, in the caller's thread).
    """

    chunk_frames: int
    max_side: int
    max_gap: int
    min_detection_confidence: float
    crop_size: int
    crop_scale: float
    smooth_frames: int
    read_ahead: int = 0


def stream_margin(window: int, *, smooth_frames: int, max_gap: int) -> int:
    """M: raw frames needed on each side of a chunk (module docstring)."""
    return int(window) // 2 + max(int(smooth_frames), 1) // 2 + int(max_gap) + 1


@dataclass
class ChunkFrames:
    """Frames ``[start, start + n)`` of a clip with one face's final landmarks and crops.

    The rows ``own`` (relative) are the chunk's own frames; the others are context for the
    windows of its edge frames.

    Attributes:
        start: absolute index of row 0.
        own: slice of rows that belong to the chunk.
        frames: (n, h, w, 3) uint8 RGB at the decode size.
        landmarks: (n, 478, 3) float32 (x, y, z) in ORIGINAL-frame pixels, NaN where invalid.
        valid: (n,) bool, a face was tracked or interpolated.
        interpolated: (n,) bool, landmarks filled across a short gap.
        crop_from_frame: (n, 3, 3) float64 ORIGINAL pixels -> crop pixels; NaN where invalid.
        decoded_from_original: (3, 3) ORIGINAL pixels -> decode-size pixels.
        is_last: the chunk ends the clip.
    """

    start: int
    own: slice
    frames: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    interpolated: np.ndarray
    crop_from_frame: np.ndarray
    decoded_from_original: np.ndarray
    is_last: bool

    @property
    def indices(self) -> np.ndarray:
        """(n,) absolute frame indices of the rows."""
        return np.arange(self.start, self.start + len(self.valid))

    def crops(self, size: int) -> np.ndarray:
        """(n, size, size, 3) uint8 face crops (black for invalid rows)."""
        out = np.zeros((len(self.valid), size, size, 3), dtype=np.uint8)
        rows = np.flatnonzero(self.valid)
        if rows.size:
            mats = self.crop_from_frame[rows] @ np.linalg.inv(self.decoded_from_original)
            out[rows] = warp_to_crop(self.frames[rows], mats, size)
        return out


class ClipStream:
    """Decode, track and crop one video in a sliding buffer (see the module docstring).

    Args:
        path: the video.
        settings: decoding, tracking, crop and chunk size.
        window: W of the centred windows the chunks must serve.
        faces: which faces (:mod:`seqdeca.inference.faces`); default the largest one.

    Attributes:
        reader: the :class:`VideoReader` (original ``size``, ``fps``, ``num_frames``).
        timings: seconds spent in "decode" and "track" (in the read-ahead thread when there
            is one), and "wait_input": seconds the caller waited for decoded, tracked frames.
        end: number of frames of the clip once the decoder is exhausted, else None.
        slots: faces followed (1 for "largest"); ``prepare(..., face=k)`` for k < slots.

    Raises:
        VideoError: the file cannot be opened as a video.
    """

    def __init__(
        self, path, settings: StreamSettings, *, window: int, faces: FaceSelection = LARGEST
    ) -> None:
        self.settings = s = settings
        self.window = int(window)
        self.margin = stream_margin(window, smooth_frames=s.smooth_frames, max_gap=s.max_gap)
        with native_stderr_silenced():  # FFmpeg/decord print their own lines for bad files
            self.reader = VideoReader(path, max_side=s.max_side)
        w, h = self.reader.size
        dw, dh = self.reader.decode_size
        self.decoded_from_original = scale_matrix(dw / w, dh / h)
        self.timings = {"decode": 0.0, "track": 0.0, "wait_input": 0.0}
        self.end: int | None = None
        self.slots = faces.limit if faces.separate else 1
        self._tracker = FaceTracker(
            max_num_faces=max(_TRACK_FACES, self.slots),
            min_detection_confidence=s.min_detection_confidence,
        )
        self._associator = None
        if faces.separate:
            self._associator = FaceAssociator(max_faces=self.slots, max_gap=s.max_gap)
        self._tracking = False
        self._buf_start = 0
        self._frames: list[np.ndarray] = []
        self._points: list[np.ndarray] = []  # (slots, 478, 3) per frame
        self._found: list[np.ndarray] = []  # (slots,) bool per frame
        self._stacked: tuple[int, int, np.ndarray] | None = None  # frames shared by the faces
        self._ahead = ReadAhead(self._tracked_chunks(), depth=s.read_ahead, name="decode-track")

    # -- buffer ---------------------------------------------------------------------------------

    @property
    def decoded(self) -> int:
        """Frames decoded and tracked so far."""
        return self._buf_start + len(self._found)

    @property
    def unassigned(self) -> int:
        """Detections left out so far: faces (once per frame) that matched no followed face
        while every slot was taken."""
        return 0 if self._associator is None else self._associator.unassigned

    def __enter__(self) -> ClipStream:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self._ahead.close()  # the thread stops before the tracker and the reader close
        self._tracker.close()
        self.reader.close()

    def ensure(self, until: int) -> None:
        """Decode and track until ``until`` frames are known or the clip ends."""
        while self.end is None and self.decoded < until:
            item = next(self._ahead, None)
            self.timings["wait_input"] = self._ahead.waited
            if item is None:
                self._finish()
                return
            frames, points, found = item
            self._frames.extend(frames)
            self._points.extend(points)
            self._found.extend(found)

    def _tracked_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Decode and track the clip chunk by chunk: (frames, landmarks, found) per chunk.

        Runs in the read-ahead thread when ``read_ahead`` > 0, touching only the reader, the
        tracker and the face associator; the decoder's and MediaPipe's own messages to fd 2 are
        silenced while they run, which also silences the process's other writes to fd 2 then.
        """
        chunks, done = self.reader.chunks(max(1, self.settings.chunk_frames)), 0
        while True:
            tic = time.perf_counter()
            try:
                with native_stderr_silenced():
                    item = next(chunks, None)
            except Exception as exc:  # noqa: BLE001 - decoders raise many types mid-stream
                text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
                raise VideoError(
                    f"decoding failed after {done} frames of {self.reader.path} "
                    f"({type(exc).__name__}: {text}); the file is damaged or truncated"
                ) from None
            self.timings["decode"] += time.perf_counter() - tic
            if item is None:
                return
            _, frames = item
            tic = time.perf_counter()
            # MediaPipe's graph threads print start-up chatter to fd 2 until the first frame is
            # through: start the graph and track under one silence.
            with native_stderr_silenced():
                if not self._tracking:
                    self._tracker.__enter__()
                    self._tracking = True
                points, found = self._track(frames)
            self.timings["track"] += time.perf_counter() - tic
            done += len(frames)
            yield frames, points, found

    def _track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, slots, 478, 3) landmarks and (n, slots) found flags of the next frames."""
        if self._associator is None:  # the one face FaceTracker follows
            points, found = self._tracker.track_frames(frames, self.reader.size)
            return points[:, None], found[:, None]
        rows = [
            self._associator.update(self._tracker.detect(frame, self.reader.size))
            for frame in frames
        ]
        if not rows:
            return np.zeros((0, self.slots, NUM_LANDMARKS, 3)), np.zeros((0, self.slots), bool)
        return np.stack([p for p, _ in rows]), np.stack([f for _, f in rows])

    def _finish(self) -> None:
        self.end = self.decoded
        expected = self.reader.num_frames
        if self.end == 0:
            raise VideoError(f"no frame could be decoded from {self.reader.path}")
        if self.end < expected:
            raise VideoError(
                f"{self.reader.path} is truncated: decoded {self.end} of {expected} frames"
            )

    def drop_before(self, index: int) -> None:
        """Forget buffered frames before absolute ``index``."""
        k = min(max(0, index - self._buf_start), len(self._found))
        del self._frames[:k], self._points[:k], self._found[:k]
        self._buf_start += k
        self._stacked = None

    def _frames_between(self, lo: int, hi: int) -> np.ndarray:
        """(hi - lo, h, w, 3) buffered frames, stacked once for every face of a chunk."""
        if self._stacked is None or self._stacked[:2] != (lo, hi):
            frames = np.stack(self._frames[lo - self._buf_start : hi - self._buf_start])
            self._stacked = (lo, hi, frames)
        return self._stacked[2]

    # -- chunks ---------------------------------------------------------------------------------

    def prepare(self, a: int, b: int, *, face: int = 0) -> ChunkFrames:
        """The frames ``[a, b)`` of face ``face`` with context rows ``[a - W//2 .. b + W//2)``.

        ``ensure(b + margin)`` must have been called; frames before ``a - margin`` may have
        been dropped. The faces of one range share the ``frames`` array (do not modify it).
        """
        if not 0 <= face < self.slots:
            raise IndexError(f"face {face} of a stream that follows {self.slots}")
        end = self.end if self.end is not None else self.decoded
        b = min(b, end)
        lo, hi = max(0, a - self.margin), min(end, b + self.margin)
        if lo < self._buf_start or hi > self.decoded:
            raise RuntimeError(f"frames [{lo}, {hi}) are not buffered")
        rows = slice(lo - self._buf_start, hi - self._buf_start)
        raw = np.zeros((0, NUM_LANDMARKS, 3), np.float32)
        if hi > lo:
            raw = np.stack([p[face] for p in self._points[rows]])
        found = np.asarray([f[face] for f in self._found[rows]], dtype=bool)
        points, valid, interp = interpolate_gaps(raw, found, self.settings.max_gap)
        mats = np.full((hi - lo, 3, 3), np.nan)
        if valid.any():
            s = self.settings
            mats = crop_transforms(
                points, valid, size=s.crop_size, scale=s.crop_scale, smooth_frames=s.smooth_frames
            )
            mats[~valid] = np.nan
        wh = self.window // 2
        c_lo, c_hi = max(0, a - wh), min(end, b + wh)
        keep = slice(c_lo - lo, c_hi - lo)
        frames = self._frames_between(c_lo, c_hi)
        return ChunkFrames(
            start=c_lo,
            own=slice(a - c_lo, b - c_lo),
            frames=frames,
            landmarks=points[keep],
            valid=valid[keep],
            interpolated=interp[keep],
            crop_from_frame=mats[keep],
            decoded_from_original=self.decoded_from_original,
            is_last=self.end is not None and b >= self.end,
        )

    def chunks(self) -> Iterator[tuple[int, int]]:
        """The chunk ranges ``(a, b)`` in order, decoding ahead as needed (``ensure`` done)."""
        size = max(1, self.settings.chunk_frames)
        a = 0
        while True:
            self.ensure(a + size + self.margin)
            end = self.end if self.end is not None else self.decoded
            if a >= end:
                return
            b = min(a + size, end)
            yield a, b
            self.drop_before(b - self.margin)
            a = b
