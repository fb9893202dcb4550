"""MediaPipe face-mesh tracking: 478 landmarks per frame in original-frame pixels.

MediaPipe 0.10.14's classic ``solutions.face_mesh`` graph ships its models inside the wheel and
runs offline. With ``refine_landmarks=True`` it returns 478 points: the 468 face-mesh vertices
plus 10 iris points (468-472 the subject's right iris, 473-477 the left one; centres 468 and 473).

Landmark convention of this module: ``(x_px, y_px, z)`` with x, y continuous pixel coordinates of
the ORIGINAL frame (x right, y down) and z MediaPipe's relative depth scaled like x (``z * width``,
smaller = nearer the camera, roughly zero at the face centre). Frames where no face is found have
``valid = False`` and NaN landmarks.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqdeca.io.video import VideoError, VideoReader

__all__ = [
    "NUM_LANDMARKS",
    "FaceTracker",
    "TrackResult",
    "interpolate_gaps",
    "native_stderr_silenced",
    "track_video",
    "visible_stderr",
]

NUM_LANDMARKS = 478


@dataclass
class TrackResult:
    """Tracked landmarks of one video.

    Attributes:
        landmarks: (T, 478, 3) float32 (x_px, y_px, z) in original-frame pixels; NaN where invalid.
        valid: (T,) bool, a face was found in the frame (or the frame lies in a short gap that
            was linearly interpolated, see ``interpolated``).
        fps: frames per second of the video.
        size: original (width, height) in pixels.
        interpolated: (T,) bool, the frame's landmarks were interpolated across a short gap
            (a subset of ``valid``); all False when no gap filling was asked for.
    """

    landmarks: np.ndarray
    valid: np.ndarray
    fps: float
    size: tuple[int, int]
    interpolated: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.interpolated is None:
            self.interpolated = np.zeros(self.valid.shape, dtype=bool)
        self.interpolated = np.asarray(self.interpolated, dtype=bool)
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.landmarks.ndim != 3 or self.landmarks.shape[2] != 3:
            raise ValueError(f"landmarks must be (T, P, 3), got {self.landmarks.shape}")
        if (
            self.valid.shape != self.landmarks.shape[:1]
            or self.interpolated.shape != self.valid.shape
        ):
            raise ValueError(
                f"valid and interpolated must be ({self.landmarks.shape[0]},), got "
                f"{self.valid.shape} and {self.interpolated.shape}"
            )

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write the result as an ``.npz`` (keys landmarks, valid, fps, size, interpolated)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            landmarks=self.landmarks,
            valid=self.valid,
            fps=np.float64(self.fps),
            size=np.asarray(self.size, dtype=np.int64),
            interpolated=self.interpolated,
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrackResult:
        """Read an ``.npz`` written by :meth:`save`."""
        try:
            with np.load(path) as z:
                interpolated = z["interpolated"] if "interpolated" in z.files else None
                return cls(
                    landmarks=z["landmarks"],
                    valid=z["valid"],
                    fps=float(z["fps"]),
                    size=tuple(z["size"].tolist()),
                    interpolated=interpolated,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise VideoError(
                f"{path} is not a tracking result .npz ({exc}); delete it and re-track"
            ) from None


_stderr_state = threading.Condition()  # guards the three counters below
_silenced_depth = 0  # threads inside native_stderr_silenced
_visible_writers = 0  # threads inside visible_stderr
_saved_stderr: int | None = None  # the real fd 2 while silenced
_warnings_lock = threading.Lock()  # FaceTracker._candidates changes the warning filters


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send the C++ side's stderr (file descriptor 2) to /dev/null for a while.

    MediaPipe's graph prints TensorFlow Lite and absl start-up chatter ("Created TensorFlow Lite
    XNNPACK delegate", "Feedback manager requires ...") straight to fd 2 when the graph starts;
    no environment variable of 0.10.14 turns it off. Python exceptions are unaffected.

    Safe to use from several threads at once: fd 2 is restored when the last one leaves. It
    silences every thread's writes to fd 2 meanwhile, so lines that must be seen are written
    inside :func:`visible_stderr`, which waits for the silence to end and holds new ones off.
    """
    global _silenced_depth, _saved_stderr
    with _stderr_state:
        _stderr_state.wait_for(lambda: _visible_writers == 0)
        if _silenced_depth == 0:
            sys.stderr.flush()
            _saved_stderr = os.dup(2)
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
        _silenced_depth += 1
    try:
        yield
    finally:
        with _stderr_state:
            _silenced_depth -= 1
            if _silenced_depth == 0 and _saved_stderr is not None:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = None
            _stderr_state.notify_all()


@contextlib.contextmanager
def visible_stderr() -> Iterator[None]:
    """Write to stderr inside this block: no thread's :func:`native_stderr_silenced` is active
    meanwhile (it waits for them to end). Keep the block short and do not silence inside it."""
    global _visible_writers
    with _stderr_state:
        _stderr_state.wait_for(lambda: _silenced_depth == 0)
        _visible_writers += 1
    try:
        yield
    finally:
        with _stderr_state:
            _visible_writers -= 1
            sys.stderr.flush()
            _stderr_state.notify_all()


class FaceTracker:
    """A MediaPipe face-mesh graph in tracking mode (use as a context manager).

    Args:
        max_num_faces: faces MediaPipe looks for. With more than one, the tracker follows the face
            nearest to the one it returned last (the largest face on the first detection).
        min_detection_confidence: MediaPipe's face-detection threshold.
        min_tracking_confidence: MediaPipe's landmark-tracking threshold.
        static_image_mode: detect on every frame instead of tracking (for unrelated images).
        face_side: which face to start with when several are found: "" (the largest, most
            central one), "left" or "right" (the leftmost / rightmost in the IMAGE, as in
            Aff-Wild2's ``name_left`` / ``name_right`` two-person videos).

    Example:
        >>> with FaceTracker() as tracker:
        ...     points, ok = tracker.process(frame_rgb, original_size=(1920, 1080))
    """

    def __init__(
        self,
        *,
        max_num_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        static_image_mode: bool = False,
        face_side: str | None = None,
    ) -> None:
        if face_side not in (None, "", "left", "right"):
            raise ValueError(f"face_side must be '', 'left' or 'right', got {face_side!r}")
        self.max_num_faces = int(max_num_faces)
        self.face_side = face_side or ""
        self._kwargs = {
            "static_image_mode": static_image_mode,
            "max_num_faces": self.max_num_faces,
            "refine_landmarks": True,
            "min_detection_confidence": min_detection_confidence,
            "min_tracking_confidence": min_tracking_confidence,
        }
        self._graph = None
        self._started = False
        self._last_centre: np.ndarray | None = None

    def __enter__(self) -> FaceTracker:  # noqa: PYI034 - Self needs Python 3.11
        from mediapipe.python.solutions.face_mesh import FaceMesh

        with native_stderr_silenced():
            self._graph = FaceMesh(**self._kwargs)
        self._started = False
        self._last_centre = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graph."""
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def process(
        self, frame: np.ndarray, original_size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, bool]:
        """Landmarks of one frame (frames must come in temporal order in tracking mode).

        Args:
            frame: (H, W, 3) uint8 RGB, possibly downscaled from the original video.
            original_size: (width, height) the landmarks are expressed in; default the frame's.

        Returns:
            ((478, 3) float32 (x_px, y_px, z) in original pixels, NaN if no face; found flag).
        """
        width, height = original_size or (frame.shape[1], frame.shape[0])
        candidates = self._candidates(frame)
        if not candidates:
            return np.full((NUM_LANDMARKS, 3), np.nan, dtype=np.float32), False
        chosen = self._choose(candidates)
        self._last_centre = chosen[:, :2].mean(0)
        # Normalised [0, 1] image coordinates -> original pixels; z is normalised like x.
        return chosen * np.array([width, height, width], dtype=np.float32), True

    def detect(
        self, frame: np.ndarray, original_size: tuple[int, int] | None = None
    ) -> list[np.ndarray]:
        """Every face of one frame, in MediaPipe's order (not stable from frame to frame; see
        :mod:`seqdeca.prep.face_association` to follow several faces).

        Args:
            frame: (H, W, 3) uint8 RGB, possibly downscaled from the original video.
            original_size: (width, height) the landmarks are expressed in; default the frame's.

        Returns:
            Up to ``max_num_faces`` arrays (478, 3) float32 (x_px, y_px, z) in original pixels.
        """
        width, height = original_size or (frame.shape[1], frame.shape[0])
        scale = np.array([width, height, width], dtype=np.float32)
        return [c * scale for c in self._candidates(frame)]

    def _candidates(self, frame: np.ndarray) -> list[np.ndarray]:
        """MediaPipe's faces of one frame, (478, 3) normalised [0, 1] coordinates each."""
        if self._graph is None:
            raise RuntimeError("FaceTracker.process outside its `with` block")
        try:
            # protobuf 4 deprecation noise inside mediapipe; the filters are process-wide, so
            # trackers of several threads take turns (or one would restore the others' filters)
            with _warnings_lock, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*GetPrototype.*")
                if self._started:
                    result = self._graph.process(np.ascontiguousarray(frame))
                else:  # the graph starts (and prints its start-up chatter) on the first frame
                    with native_stderr_silenced():
                        result = self._graph.process(np.ascontiguousarray(frame))
                    self._started = True
        except (RuntimeError, ValueError):  # a frame MediaPipe rejects counts as "no face"
            return []
        faces = result.multi_face_landmarks or []
        candidates = [
            np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32) for f in faces
        ]
        return [c for c in candidates if c.shape == (NUM_LANDMARKS, 3) and np.isfinite(c).all()]

    def _choose(self, candidates: list[np.ndarray]) -> np.ndarray:
        """The face nearest the previous one, else the largest and most central one.

        Coordinates are normalised to [0, 1]. Without a previous face the score is the face's
        size (square root of its box area) minus half its distance to the image centre, so a
        large face wins and, between faces of similar size, the central one.
        """
        if len(candidates) == 1:
            return candidates[0]
        centres = [c[:, :2].mean(0) for c in candidates]
        if self._last_centre is not None:
            dist = [np.linalg.norm(centre - self._last_centre) for centre in centres]
            return candidates[int(np.argmin(dist))]
        if self.face_side:
            x = [centre[0] for centre in centres]
            return candidates[int(np.argmin(x) if self.face_side == "left" else np.argmax(x))]
        score = [
            np.sqrt(np.prod(c[:, :2].max(0) - c[:, :2].min(0))) - 0.5 * np.linalg.norm(centre - 0.5)
            for c, centre in zip(candidates, centres)
        ]
        return candidates[int(np.argmax(score))]

    def track_frames(
        self, frames: Iterable[np.ndarray], original_size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track an iterable of (H, W, 3) uint8 RGB frames -> ((T, 478, 3) float32, (T,) bool)."""
        points, valid = [], []
        for frame in frames:
            p, ok = self.process(frame, original_size)
            points.append(p)
            valid.append(ok)
        if not points:
            return np.zeros((0, NUM_LANDMARKS, 3), np.float32), np.zeros((0,), bool)
        return np.stack(points), np.asarray(valid, dtype=bool)


def interpolate_gaps(
    landmarks: np.ndarray, valid: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill short runs of frames without a face by linear interpolation.

    A run of at most ``max_gap`` invalid frames with a valid frame on BOTH sides is filled by
    interpolating every coordinate linearly between the two neighbours; longer runs, and runs at
    the start or end of the clip, stay invalid (NaN).

    Args:
        landmarks: (T, P, C) float landmarks, NaN where invalid.
        valid: (T,) bool.
        max_gap: longest run of invalid frames that is filled (0 = none).

    Returns:
        (landmarks (T, P, C) float32, valid (T,) bool, interpolated (T,) bool) -- new arrays;
        ``valid`` includes the filled frames, ``interpolated`` marks them.
    """
    points = np.array(landmarks, dtype=np.float32, copy=True)
    valid = np.asarray(valid, dtype=bool).copy()
    interpolated = np.zeros_like(valid)
    known = np.flatnonzero(valid)
    for a, b in itertools.pairwise(known):
        gap = int(b - a - 1)
        if gap < 1 or gap > max_gap:
            continue
        w = (np.arange(1, gap + 1, dtype=np.float32) / (gap + 1))[:, None, None]
        points[a + 1 : b] = (1 - w) * points[a] + w * points[b]
        interpolated[a + 1 : b] = True
    valid |= interpolated
    points[~valid] = np.nan
    return points, valid, interpolated


def track_video(
    path: str | Path,
    *,
    max_side: int = 960,
    max_num_faces: int = 1,
    min_detection_confidence: float = 0.5,
    min_tracking_confidence: float = 0.5,
    chunk_size: int = 32,
    max_gap: int = 0,
) -> TrackResult:
    """Track every frame of a video with MediaPipe's face mesh.

    Frames are decoded at reduced size (long side ``max_side`` pixels, for speed: MediaPipe's
    models work on 192-256 px crops anyway) and the landmarks are scaled back to the original
    frame size. With several faces in view, one face is followed through the clip (see
    :class:`FaceTracker`).

    Args:
        path: the video file.
        max_side: long side of the frames given to MediaPipe, pixels.
        max_num_faces: see :class:`FaceTracker` (use 2-3 for clips that may show several people).
        min_detection_confidence: see :class:`FaceTracker`.
        min_tracking_confidence: see :class:`FaceTracker`.
        chunk_size: frames decoded at a time.
        max_gap: runs of up to this many frames without a face are interpolated
            (:func:`interpolate_gaps`); 0 leaves every such frame invalid.

    Returns:
        A :class:`TrackResult` with T = number of frames of the video.

    Raises:
        VideoError: the file cannot be read.
    """
    with (
        VideoReader(path, max_side=max_side) as reader,
        FaceTracker(
            max_num_faces=max_num_faces,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        ) as tracker,
    ):
        parts = [
            tracker.track_frames(frames, reader.size) for _, frames in reader.chunks(chunk_size)
        ]
        if not parts:
            raise VideoError(f"no frame could be decoded from {path}")
        landmarks = np.concatenate([p[0] for p in parts])
        valid = np.concatenate([p[1] for p in parts])
        landmarks, valid, interpolated = interpolate_gaps(landmarks, valid, max_gap)
        return TrackResult(
            landmarks=landmarks,
            valid=valid,
            fps=reader.fps,
            size=reader.size,
            interpolated=interpolated,
        )
