"""Prepare one clip (a video file or a folder of frames) into a prepared clip folder.

Layout of ``<out_root>/<dataset>/<clip_id>/`` (see ``docs/data.md``): ``frames/%06d.jpg`` and
``masks/%06d.png`` (one per SOURCE frame), ``landmarks.npy`` (T, 478, 3), ``landmarks68.npy``
(T, 68, 2), ``valid.npy`` (T,), ``transforms.npy`` (T, 3, 3) crop_from_frame, ``au.npy``
(T, 12), ``au_proxy.npy`` (T, P) and ``meta.json``.

Two streaming passes, never the whole video in memory: (1) decode at ``track.max_side`` and
track one face with MediaPipe, fill short gaps, compute the smoothed crops; (2) decode again (at
the smallest size that still gives the crop at least its output resolution), warp and write.
The folder is built under a hidden temporary name and renamed at the end, so a clip folder exists
only when complete; an existing folder is skipped. Bad input never raises: it gives a "failed"
:class:`ClipReport` with a one-line reason and leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.config.schema import Config
from seqdeca.io.video import VideoReader, scaled_size
from seqdeca.prep.au_proxy import au_proxies
from seqdeca.prep.crop import (
    apply_transform,
    crop_transforms,
    matrix_scale,
    scale_matrix,
    warp_to_crop,
)
from seqdeca.prep.landmark_sets import mediapipe_to_ibug68
from seqdeca.prep.masks import region_masks
from seqdeca.prep.tracking import FaceTracker, interpolate_gaps

__all__ = ["ClipReport", "ClipSource", "FrameFolder", "prepare_clip"]

_MIN_SIDE = 64  # smallest frame side accepted, pixels
_MAX_ASPECT = 4.0  # most elongated frame accepted
_TRACK_FACES = 3  # faces MediaPipe looks for; one is followed (seqdeca.prep.tracking)


@dataclass
class ClipSource:
    """One clip to prepare: a video file OR a folder of frames, plus its labels.

    Attributes:
        dataset: "mead", "affwild2" or "videos" (the sub-folder of the output root).
        clip_id: filesystem-safe clip id (the clip folder's name).
        video: the video file (None when ``frames_dir`` is given).
        frames_dir: a folder of ``{n:05d}.jpg`` frames (Aff-Wild2 ``cropped_aligned``): file n is
            frame n - 1 (numbering starts at 1; a folder that has ``00000.jpg`` starts at 0);
            missing numbers are frames without a face (written black and invalid). T is the
            larger of the last image's frame index + 1 and the number of label rows.
        subject, emotion, level, view: metadata copied into meta.json (empty / None = unknown).
        face_side: "left" / "right" to start tracking on the leftmost / rightmost face of the
            image (two-person videos), None for the largest, most central face.
        au_labels: (N, 12) AU labels in :data:`AFFWILD2_AU_NAMES` order (-1 = unknown), row t =
            frame t (annotation line t + 1 after the header), or None. Rows beyond the video's
            T frames are dropped; missing rows are written as -1.
    """

    dataset: str
    clip_id: str
    video: Path | None = None
    frames_dir: Path | None = None
    subject: str = ""
    emotion: str = ""
    level: int | None = None
    view: str = ""
    au_labels: np.ndarray | None = None
    face_side: str | None = None


@dataclass
class ClipReport:
    """Outcome of :func:`prepare_clip`.

    Attributes:
        dataset, clip_id: the clip.
        status: "done", "skipped" (the folder already existed) or "failed".
        reason: one line saying why it failed (empty otherwise).
        frames: frames written (T).
        valid_frames: frames with a tracked or interpolated face.
        seconds: wall time.
        path: the clip folder (None when failed).
        timings: seconds spent per stage ("decode", "track", "warp_write").
    """

    dataset: str
    clip_id: str
    status: str
    reason: str = ""
    frames: int = 0
    valid_frames: int = 0
    seconds: float = 0.0
    path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


class PrepareError(Exception):
    """Bad input found while preparing a clip (becomes a "failed" report)."""


class FrameFolder:
    """A folder of numbered JPEG frames read like a :class:`VideoReader` (missing = black).

    Args:
        folder: the folder with ``{n:05d}.jpg`` files.
        num_frames: T at least (e.g. the length of the label file); never fewer frames than up
            to the last image.
        max_side: decode size limit as in :class:`VideoReader`.
    """

    def __init__(
        self, folder: Path, *, num_frames: int | None = None, max_side: int | None = None
    ) -> None:
        import cv2

        self.path = Path(folder)
        if not self.path.is_dir():
            raise PrepareError(f"frame folder not found: {self.path}")
        stems = [f.stem for f in self.path.glob("*.jpg") if f.stem.isdigit()]
        numbers = sorted(int(stem) for stem in stems)
        if not numbers:
            raise PrepareError(f"no numbered .jpg frames in {self.path}")
        self._first = 0 if numbers[0] == 0 else 1
        self.present = {n - self._first for n in numbers}
        self._width = min(len(stem) for stem in stems)  # zero-padded width (5 in Aff-Wild2)
        self.num_frames = max(max(self.present) + 1, int(num_frames or 0))
        first = cv2.imread(str(self._file(min(self.present))))
        if first is None:
            raise PrepareError(f"cannot decode {self._file(min(self.present))}")
        self.size = (int(first.shape[1]), int(first.shape[0]))
        self.decode_size = scaled_size(*self.size, max_side)
        self.fps = math.nan

    def _file(self, t: int) -> Path:
        return self.path / f"{t + self._first:0{self._width}d}.jpg"

    def chunks(self, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(indices (n,), frames (n, h, w, 3) uint8 RGB) at ``decode_size``; missing = black."""
        import cv2

        w, h = self.decode_size
        for start in range(0, self.num_frames, chunk_size):
            idx = np.arange(start, min(start + chunk_size, self.num_frames))
            out = np.zeros((len(idx), h, w, 3), dtype=np.uint8)
            for k, t in enumerate(idx):
                img = cv2.imread(str(self._file(int(t)))) if t in self.present else None
                if img is not None:
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                    out[k] = img[..., ::-1]
            yield idx, out

    def close(self) -> None:
        """Nothing to release (interface of VideoReader)."""


def _open(source: ClipSource, max_side: int | None) -> VideoReader | FrameFolder:
    """A chunked frame reader for the source (checks resolution and rotation)."""
    if source.frames_dir is not None:
        n = None if source.au_labels is None else len(source.au_labels)
        reader = FrameFolder(Path(source.frames_dir), num_frames=n, max_side=max_side)
    elif source.video is not None:
        reader = VideoReader(source.video, max_side=max_side)
    else:
        raise PrepareError("the source names neither a video nor a frame folder")
    w, h = reader.size
    if min(w, h) < _MIN_SIDE or max(w, h) / min(w, h) > _MAX_ASPECT:
        raise PrepareError(f"unsupported resolution {w}x{h} (need >= {_MIN_SIDE} px, aspect <= 4)")
    return reader


def _check_rotation(video: Path) -> None:
    """Refuse videos whose display matrix rotates them (decoders return unrotated frames)."""
    import av

    if not video.is_file():
        raise PrepareError(f"video file not found: {video}")
    if video.stat().st_size == 0:
        raise PrepareError(f"empty video file (0 bytes): {video}")
    try:
        with av.open(str(video)) as container:
            frame = next(container.decode(video=0), None)
    except (av.FFmpegError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise PrepareError(f"cannot read a video stream from {video} ({why})") from None
    if frame is None:
        raise PrepareError(f"no decodable frame in {video}")
    rotation = int(getattr(frame, "rotation", 0) or 0)
    if rotation % 360:
        raise PrepareError(f"rotated video ({rotation} deg) in {video}: re-encode it upright")


def _track(source: ClipSource, cfg: Config, timings: dict[str, float]):
    """Pass 1: landmarks (T, 478, 3) original px, valid, interpolated, size, fps, T."""
    reader = _open(source, cfg.track.max_side)
    parts, valid = [], []
    try:
        with FaceTracker(
            max_num_faces=_TRACK_FACES,
            face_side=source.face_side,
            min_detection_confidence=cfg.track.min_detection_confidence,
        ) as tracker:
            tic = time.perf_counter()
            for _, frames in reader.chunks(cfg.prepare.chunk_frames):
                timings["decode"] += time.perf_counter() - tic
                tic = time.perf_counter()
                pts, ok = tracker.track_frames(frames, reader.size)
                parts.append(pts)
                valid.append(ok)
                timings["track"] += time.perf_counter() - tic
                tic = time.perf_counter()
    finally:
        reader.close()
    count = sum(len(v) for v in valid)
    if count != reader.num_frames:
        raise PrepareError(f"decoded {count} of {reader.num_frames} frames (truncated file?)")
    landmarks, ok = np.concatenate(parts), np.concatenate(valid)
    if not ok.any():
        raise PrepareError("no face found in any frame")
    landmarks, ok, interp = interpolate_gaps(landmarks, ok, cfg.track.max_gap)
    if isinstance(reader, FrameFolder):  # frames without an image stay invalid
        missing = np.ones(len(ok), bool)
        missing[list(reader.present)] = False
        ok &= ~missing
        interp &= ~missing
        landmarks[missing] = np.nan
    return landmarks, ok, interp, reader.size, reader.fps, count


def _warp_decode_side(size: tuple[int, int], crops: np.ndarray, crop_size: int) -> int | None:
    """Long side to decode at in pass 2 so that every crop is still downsampled (None = full)."""
    shrink = float(np.max(matrix_scale(crops)))  # crop px per frame px, largest over the clip
    side = max(size) * min(1.0, 1.25 * shrink)
    return None if side >= max(size) else max(_MIN_SIDE, math.ceil(side))


def _write_frames(
    source: ClipSource,
    cfg: Config,
    full_size: tuple[int, int],
    crops: np.ndarray,
    landmarks_crop: np.ndarray,
    tmp: Path,
    timings: dict[str, float],
) -> int:
    """Pass 2: decode again, warp to crops, write frames/*.jpg and masks/*.png; returns T."""
    import cv2

    size = cfg.crop.size
    (tmp / "frames").mkdir()
    (tmp / "masks").mkdir()
    reader = _open(source, _warp_decode_side(full_size, crops, size))
    sx, sy = reader.size[0] / reader.decode_size[0], reader.size[1] / reader.decode_size[1]
    original_from_decoded = scale_matrix(sx, sy)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(cfg.prepare.jpeg_quality)]
    written = 0
    try:
        tic = time.perf_counter()
        for idx, frames in reader.chunks(cfg.prepare.chunk_frames):
            timings["decode"] += time.perf_counter() - tic
            tic = time.perf_counter()
            if idx[-1] >= len(crops):
                raise PrepareError("the second decoding pass returned more frames than the first")
            images = warp_to_crop(frames, crops[idx] @ original_from_decoded, size)
            for t, image in zip(idx, images):
                name = f"{int(t):06d}"
                ok = cv2.imwrite(str(tmp / "frames" / f"{name}.jpg"), image[..., ::-1], jpeg)
                mask = region_masks(landmarks_crop[t], size)
                ok &= cv2.imwrite(
                    str(tmp / "masks" / f"{name}.png"), mask, [cv2.IMWRITE_PNG_COMPRESSION, 1]
                )
                if not ok:
                    raise OSError(f"cannot write images into {tmp}")
            written += len(idx)
            timings["warp_write"] += time.perf_counter() - tic
            tic = time.perf_counter()
    finally:
        reader.close()
    return written


def _au_labels(labels: np.ndarray | None, num_frames: int) -> np.ndarray:
    """(T, 12) float32 labels, row t = frame t; padded with -1 / truncated to T frames."""
    out = np.full((num_frames, len(AFFWILD2_AU_NAMES)), -1.0, dtype=np.float32)
    if labels is not None:
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim != 2 or labels.shape[1] != len(AFFWILD2_AU_NAMES):
            raise PrepareError(f"au_labels must be (T, 12), got {labels.shape}")
        n = min(num_frames, len(labels))
        out[:n] = labels[:n]
    return out


def _meta(
    source: ClipSource,
    cfg: Config,
    fps: float,
    size: tuple[int, int],
    num_frames: int,
    valid: np.ndarray,
    interpolated: np.ndarray,
    names: tuple[str, ...],
) -> dict:
    from seqdeca import __version__

    src = source.video if source.video is not None else source.frames_dir
    return {
        "dataset": source.dataset,
        "clip_id": source.clip_id,
        "subject": source.subject,
        "emotion": source.emotion,
        "level": source.level,
        "view": source.view,
        "fps": None if not math.isfinite(fps) else fps,
        "num_frames": int(num_frames),
        "source": str(Path(src).resolve()),
        "source_size": list(size),
        "crop": {
            "size": cfg.crop.size,
            "scale": cfg.crop.scale,
            "smooth_frames": cfg.crop.smooth_frames,
        },
        "track": {
            "max_side": cfg.track.max_side,
            "max_gap": cfg.track.max_gap,
            "min_detection_confidence": cfg.track.min_detection_confidence,
        },
        "seqdeca_version": __version__,
        "au_proxy_names": list(names),
        "au_names": list(AFFWILD2_AU_NAMES),
        "has_au_labels": source.au_labels is not None,
        "face_side": source.face_side,
        "counts": {"valid": int(valid.sum()), "interpolated": int(interpolated.sum())},
    }


def _build(
    source: ClipSource, cfg: Config, tmp: Path, timings: dict[str, float]
) -> tuple[int, int]:
    """Write every file of the clip into ``tmp``; returns (frames, valid frames)."""
    if source.video is not None:
        _check_rotation(Path(source.video))
    landmarks, valid, interp, size, fps, count = _track(source, cfg, timings)
    crops = crop_transforms(
        landmarks,
        valid,
        size=cfg.crop.size,
        scale=cfg.crop.scale,
        smooth_frames=cfg.crop.smooth_frames,
    )
    lm = np.full(landmarks.shape, np.nan, dtype=np.float32)
    lm[..., :2] = apply_transform(landmarks[..., :2], crops)
    lm[..., 2] = landmarks[..., 2] * matrix_scale(crops)[:, None]
    written = _write_frames(source, cfg, size, crops, lm, tmp, timings)
    if written != count:
        raise PrepareError(f"second decoding pass gave {written} of {count} frames")
    proxies, names = au_proxies(lm, valid)
    np.save(tmp / "landmarks.npy", lm)
    np.save(tmp / "landmarks68.npy", mediapipe_to_ibug68(lm)[..., :2].astype(np.float32))
    np.save(tmp / "valid.npy", valid)
    np.save(tmp / "transforms.npy", crops.astype(np.float32))
    np.save(tmp / "au.npy", _au_labels(source.au_labels, count))
    np.save(tmp / "au_proxy.npy", proxies)
    meta = _meta(source, cfg, fps, size, count, valid, interp, names)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return count, int(valid.sum())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if isinstance(exc, PrepareError) else f"{type(exc).__name__}: {text}"


def prepare_clip(source: ClipSource, out_root: str | Path, cfg: Config) -> ClipReport:
    """Prepare one clip into ``<out_root>/<dataset>/<clip_id>/`` (atomic, resumable).

    Args:
        source: the clip.
        out_root: root of the prepared data.
        cfg: the configuration (reads ``crop``, ``track`` and ``prepare``).

    Returns:
        A :class:`ClipReport`: "done", "skipped" (the folder exists) or "failed" (with a one-line
        reason; nothing is left on disk). Never raises for bad input.
    """
    start = time.perf_counter()
    report = ClipReport(dataset=source.dataset, clip_id=source.clip_id, status="failed")
    final = Path(out_root) / source.dataset / source.clip_id
    if final.is_dir():
        report.status, report.path = "skipped", final
        return report
    tmp = final.parent / f".{source.clip_id}.tmp-{os.getpid()}"
    timings = {"decode": 0.0, "track": 0.0, "warp_write": 0.0}
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        report.frames, report.valid_frames = _build(source, cfg, tmp, timings)
        os.replace(tmp, final)
        report.status, report.path = "done", final
    except Exception as exc:  # noqa: BLE001 - any bad input becomes a failed report
        report.reason = _one_line(exc)
        report.frames = report.valid_frames = 0
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if report.status == "failed":
            try:  # the dataset folder too, if this call created it and it stayed empty
                final.parent.rmdir()
            except OSError:
                pass
    report.seconds = time.perf_counter() - start
    report.timings = timings
    return report
