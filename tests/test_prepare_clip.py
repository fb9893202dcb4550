"""prepare_clip: the prepared clip layout, atomic writes, resume and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data as skdata

from seqdeca.config.schema import Config
from seqdeca.io.video import VideoReader
from seqdeca.prep.au_proxy import AU_PROXY_NAMES
from seqdeca.prep.crop import apply_transform
from seqdeca.prep.prepare import ClipSource, _au_labels, prepare_clip
from seqdeca.prep.tracking import FaceTracker

LRS3_CLIP = "PbgB2TaYhio_00007.mp4"  # 35 frames, 224x224


@pytest.fixture(scope="module")
def prepared(shared_clips, tmp_path_factory):
    """(report, source video) of the short LRS3 sample prepared once."""
    video = shared_clips / LRS3_CLIP
    out = tmp_path_factory.mktemp("prepared")
    source = ClipSource(dataset="videos", clip_id="lrs3_sample", video=video)
    return prepare_clip(source, out, Config()), video, out


def test_prepared_clip_has_every_file_with_the_right_shapes(prepared):
    report, video, _ = prepared
    assert report.status == "done", report.reason
    with VideoReader(video) as reader:
        t = reader.num_frames
    assert report.frames == t == 35 and report.valid_frames >= 0.9 * t
    root = report.path
    assert sorted(p.name for p in (root / "frames").iterdir()) == [f"{i:06d}.jpg" for i in range(t)]
    assert sorted(p.name for p in (root / "masks").iterdir()) == [f"{i:06d}.png" for i in range(t)]
    frame = cv2.imread(str(root / "frames" / "000000.jpg"))
    mask = cv2.imread(str(root / "masks" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (224, 224, 3) and mask.shape == (224, 224) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2} and (mask == 2).any()
    expect = {
        "landmarks": ((t, 478, 3), np.float32),
        "landmarks68": ((t, 68, 2), np.float32),
        "valid": ((t,), np.bool_),
        "transforms": ((t, 3, 3), np.float32),
        "au": ((t, 12), np.float32),
        "au_proxy": ((t, len(AU_PROXY_NAMES)), np.float32),
    }
    arrays = {k: np.load(root / f"{k}.npy") for k in expect}
    for key, (shape, dtype) in expect.items():
        assert arrays[key].shape == shape and arrays[key].dtype == dtype, key
    assert (arrays["au"] == -1).all()
    valid = arrays["valid"]
    xy = arrays["landmarks"][valid, :, :2]
    assert np.isfinite(xy).all() and np.isnan(arrays["landmarks"][~valid]).all()
    # The DECA box is built from the iBUG-68 points (brows to chin): those lie inside the crop;
    # only the top of MediaPipe's forehead contour may reach slightly above it.
    xy68 = arrays["landmarks68"][valid]
    assert (xy68 > 0).all() and (xy68 < 224).all()
    assert (xy > -0.1 * 224).all() and (xy < 224).all()
    assert ((xy > 0) & (xy < 224)).all(-1).mean() > 0.97
    assert np.nanmin(arrays["au_proxy"]) >= 0 and np.nanmax(arrays["au_proxy"]) <= 1
    meta = json.loads((root / "meta.json").read_text())
    assert meta["num_frames"] == t and meta["au_proxy_names"] == list(AU_PROXY_NAMES)
    assert meta["counts"]["valid"] == int(valid.sum()) and meta["source_size"] == [224, 224]


def test_transforms_map_frame_landmarks_onto_the_crop(prepared):
    """The stored matrix is crop_from_frame: its inverse brings crop landmarks back to the frame,
    where the first frame shows the face the crop shows."""
    report, video, _ = prepared
    with VideoReader(video) as reader:
        _, frames = next(reader.chunks(1))
    with FaceTracker(static_image_mode=True) as tracker:
        ref, ok = tracker.process(frames[0])
    assert ok
    m = np.load(report.path / "transforms.npy")[0]
    crop_lm = np.load(report.path / "landmarks.npy")[0, :, :2]
    back = apply_transform(crop_lm, np.linalg.inv(m))
    iod = np.linalg.norm(ref[33, :2] - ref[263, :2])
    assert np.median(np.linalg.norm(back - ref[:, :2], axis=1)) < 0.1 * iod


def test_second_call_is_skipped_and_nothing_temporary_remains(prepared):
    report, video, out = prepared
    again = prepare_clip(
        ClipSource(dataset="videos", clip_id="lrs3_sample", video=video), out, Config()
    )
    assert again.status == "skipped" and again.path == report.path
    assert [p.name for p in (out / "videos").iterdir()] == ["lrs3_sample"]


def _bad_inputs(tmp: Path, real: Path) -> dict[str, Path]:
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(real.read_bytes()[: real.stat().st_size // 3])
    # The same clip remuxed with its index first ("faststart"), then cut: it opens, but the
    # decoder runs out of frames before the announced count.
    faststart = tmp / "faststart.mp4"
    with (
        av.open(str(real)) as src,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    cut = tmp / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: int(faststart.stat().st_size * 0.6)])
    black = tmp / "black.mp4"
    writer = cv2.VideoWriter(str(black), cv2.VideoWriter_fourcc(*"mp4v"), 25, (128, 128))
    for _ in range(5):
        writer.write(np.zeros((128, 128, 3), np.uint8))
    writer.release()
    return {
        "missing": tmp / "missing.mp4",
        "empty": empty,
        "text": text,
        "truncated": truncated,
        "cut": cut,
        "noface": black,
    }


def test_bad_inputs_fail_with_a_reason_and_leave_no_folder(shared_clips, tmp_path):
    out = tmp_path / "out"
    reasons = {}
    for name, path in _bad_inputs(tmp_path, shared_clips / LRS3_CLIP).items():
        report = prepare_clip(ClipSource(dataset="videos", clip_id=name, video=path), out, Config())
        assert report.status == "failed", name
        assert report.reason and "\n" not in report.reason, name
        assert report.path is None and not (out / "videos" / name).exists(), name
        reasons[name] = report.reason
    assert not out.exists() or not any(out.rglob("*"))
    assert "not found" in reasons["missing"] and "0 bytes" in reasons["empty"]
    assert "cannot read a video stream" in reasons["text"]
    assert "decoded" in reasons["cut"] and "no face" in reasons["noface"]
    report = prepare_clip(ClipSource(dataset="videos", clip_id="none"), out, Config())
    assert report.status == "failed" and "neither" in report.reason


def test_frame_folder_source_keeps_missing_frames_invalid_and_aligns_labels(tmp_path):
    """An Aff-Wild2-style cropped_aligned folder: 00001.jpg... with 00004.jpg missing."""
    face = np.ascontiguousarray(skdata.astronaut()[::2, ::2, ::-1])  # 256x256 BGR
    folder = tmp_path / "cropped_aligned" / "vid_left"
    folder.mkdir(parents=True)
    for n in (1, 2, 3, 5, 6):
        cv2.imwrite(str(folder / f"{n:05d}.jpg"), face)
    labels = np.tile(np.arange(12, dtype=np.float32), (8, 1)) * (np.arange(8)[:, None] % 2)
    source = ClipSource(dataset="affwild2", clip_id="vid_left", frames_dir=folder, au_labels=labels)
    report = prepare_clip(source, tmp_path / "out", Config())
    assert report.status == "done", report.reason
    valid = np.load(report.path / "valid.npy")
    np.testing.assert_array_equal(valid, [1, 1, 1, 0, 1, 1, 0, 0])
    au = np.load(report.path / "au.npy")
    np.testing.assert_array_equal(au, labels)  # frame t = label row t (file t + 1)
    assert len(list((report.path / "frames").iterdir())) == 8
    assert np.isnan(np.load(report.path / "landmarks.npy")[[3, 6, 7]]).all()


def test_au_labels_are_padded_and_truncated_to_the_clip_length():
    labels = np.arange(36, dtype=np.float32).reshape(3, 12)
    padded = _au_labels(labels, 5)
    np.testing.assert_array_equal(padded[:3], labels)
    assert (padded[3:] == -1).all() and padded.dtype == np.float32
    np.testing.assert_array_equal(_au_labels(labels, 2), labels[:2])
    assert (_au_labels(None, 4) == -1).all()


def test_tracker_prefers_the_large_central_face_then_follows_it():
    def face(cx: float, cy: float, half: float) -> np.ndarray:
        pts = np.zeros((478, 3), np.float32)
        pts[:, 0] = cx + np.linspace(-half, half, 478)
        pts[:, 1] = cy + np.linspace(-half, half, 478)[::-1]
        return pts

    tracker = FaceTracker(max_num_faces=3)
    small, large = face(0.5, 0.5, 0.05), face(0.2, 0.5, 0.2)
    assert tracker._choose([small, large]) is large
    tracker._last_centre = np.array([0.52, 0.5])
    assert tracker._choose([large, small]) is small
    right = FaceTracker(max_num_faces=3, face_side="right")
    assert right._choose([large, small]) is small  # the one further right in the image
