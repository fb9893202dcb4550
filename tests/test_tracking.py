"""Video decoding, MediaPipe face tracking and the MediaPipe landmark index tables."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from skimage import data as skdata
from skimage.transform import resize

from seqdeca.errors import UserError
from seqdeca.io.video import VideoError, VideoReader, scaled_size
from seqdeca.prep.landmark_sets import (
    IBUG68_FROM_MEDIAPIPE,
    MEDIAPIPE105,
    OUTER_EYE_CORNERS,
    inter_ocular_distance,
    mediapipe_to_ibug68,
)
from seqdeca.prep.tracking import FaceTracker, TrackResult, track_video


def _write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as an H.264 mp4 (near-lossless)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def ramp_video(tmp_path_factory) -> Path:
    """12 frames of 96x64 whose mean grey level encodes the frame index (20 * i)."""
    frames = np.stack([np.full((64, 96, 3), 20 * i, dtype=np.uint8) for i in range(12)])
    return _write_video(tmp_path_factory.mktemp("video") / "ramp.mp4", frames)


@pytest.fixture(scope="module")
def face_image() -> np.ndarray:
    """A real face (scikit-image's astronaut), 512x512 RGB uint8."""
    return skdata.astronaut()


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, face_image) -> Path:
    """6 frames of the astronaut at 640x640 (upscaled, so that tracking runs on a smaller copy)."""
    big = (resize(face_image, (640, 640), anti_aliasing=True) * 255).round().astype(np.uint8)
    return _write_video(tmp_path_factory.mktemp("video") / "face.mp4", np.stack([big] * 6))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_reader_streams_every_frame_in_order(ramp_video, backend):
    with VideoReader(ramp_video, backend=backend) as reader:
        assert (reader.num_frames, reader.size, reader.decode_size) == (12, (96, 64), (96, 64))
        assert reader.fps == pytest.approx(25.0)
        chunks = list(reader.chunks(5))
    assert [len(i) for i, _ in chunks] == [5, 5, 2]
    idx = np.concatenate([i for i, _ in chunks])
    frames = np.concatenate([f for _, f in chunks])
    np.testing.assert_array_equal(idx, np.arange(12))
    assert frames.shape == (12, 64, 96, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.reshape(12, -1).mean(1), 20 * np.arange(12), atol=3)


@pytest.mark.parametrize(("backend", "max_side"), [("auto", 48), ("auto", 80), ("pyav", 80)])
def test_video_reader_decodes_at_reduced_size_with_a_step(ramp_video, backend, max_side):
    # decord cannot scale this clip to 48x32 (it fails on reading): "auto" must fall back to PyAV.
    with VideoReader(ramp_video, max_side=max_side, backend=backend) as reader:
        w, h = reader.decode_size
        assert reader.size == (96, 64) and w == max_side and abs(w / h - 1.5) < 0.05
        idx, frames = zip(*reader.chunks(4, step=3))
    np.testing.assert_array_equal(np.concatenate(idx), [0, 3, 6, 9])
    frames = np.concatenate(frames)
    assert frames.shape == (4, h, w, 3)
    np.testing.assert_allclose(frames.reshape(4, -1).mean(1), [0, 60, 120, 180], atol=3)


def test_video_reader_decord_only_reports_its_failure(ramp_video):
    with pytest.raises(VideoError, match="decord"):
        VideoReader(ramp_video, max_side=48, backend="decord")


def test_scaled_size_keeps_the_aspect_and_never_enlarges():
    assert scaled_size(1920, 1080, 960) == (960, 540)
    assert scaled_size(224, 224, 960) == (224, 224)
    assert scaled_size(1000, 500, None) == (1000, 500)


def test_video_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(VideoError, match="not found") as missing:
        VideoReader(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoError, match="cannot read a video stream") as bad:
        VideoReader(text)
    for err in (missing, bad):
        assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_tracker_finds_478_points_in_original_pixels(face_image):
    small = face_image[::2, ::2]  # MediaPipe sees 256x256, landmarks come back in 512x512 pixels
    with FaceTracker(static_image_mode=True) as tracker:
        full, ok_full = tracker.process(face_image)
        scaled, ok_small = tracker.process(small, original_size=(512, 512))
    assert ok_full and ok_small
    assert full.shape == (478, 3) and full.dtype == np.float32
    iod = inter_ocular_distance(full)
    assert 40 < iod < 200  # the astronaut's face is about 200 px wide
    np.testing.assert_allclose(scaled[:, :2], full[:, :2], atol=0.05 * iod)
    right, left = OUTER_EYE_CORNERS
    assert full[right, 0] < full[left, 0]  # subject's right eye on the image's left
    assert full[10, 1] < full[152, 1]  # forehead above the chin (y down)
    assert full[4, 2] < full[234, 2]  # nose tip nearer the camera than the cheek side


def test_tracker_reports_frames_without_a_face():
    with FaceTracker(static_image_mode=True) as tracker:
        points, ok = tracker.process(np.zeros((128, 128, 3), np.uint8))
    assert not ok and np.isnan(points).all()


def test_track_video_and_result_round_trip(face_video, face_image, tmp_path):
    result = track_video(face_video, max_side=320)
    assert result.landmarks.shape == (6, 478, 3) and result.valid.all()
    assert result.size == (640, 640) and result.fps == pytest.approx(25.0)
    with FaceTracker(static_image_mode=True) as tracker:
        reference, _ = tracker.process(face_image, original_size=(640, 640))
    iod = inter_ocular_distance(reference)
    np.testing.assert_allclose(result.landmarks[0, :, :2], reference[:, :2], atol=0.05 * iod)
    loaded = TrackResult.load(result.save(tmp_path / "track.npz"))
    np.testing.assert_array_equal(loaded.landmarks, result.landmarks)
    np.testing.assert_array_equal(loaded.valid, result.valid)
    assert (loaded.fps, loaded.size) == (result.fps, result.size)


def test_landmark_tables_are_valid_mediapipe_ids():
    for table, n in ((IBUG68_FROM_MEDIAPIPE, 68), (MEDIAPIPE105, 105)):
        assert table.shape == (n,) and len(np.unique(table)) == n
        assert table.min() >= 0 and table.max() < 468
    assert IBUG68_FROM_MEDIAPIPE[8] == 152 and IBUG68_FROM_MEDIAPIPE[36] == 33  # chin, eye corner
    points = np.arange(478 * 3, dtype=np.float32).reshape(1, 478, 3)
    np.testing.assert_array_equal(mediapipe_to_ibug68(points)[0, :, 0], IBUG68_FROM_MEDIAPIPE * 3)


def test_sample_clip_is_tracked_in_every_frame(shared_clips):
    result = track_video(shared_clips / "PbgB2TaYhio_00007.mp4")
    assert result.num_frames == 35 and result.size == (224, 224)
    assert result.valid.mean() > 0.9
    iod = inter_ocular_distance(result.landmarks[result.valid])
    assert np.all((iod > 20) & (iod < 224))
