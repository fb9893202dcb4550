"""Several faces per clip (``--faces all|N``): association into stable tracks, and video2mesh.

The association tests use synthetic landmark tracks (no video). The video tests build short
clips from two real sample clips of ../shared/data/clips (side by side; crossing each other over
a shared background) and skip when the clips, MediaPipe or PyAV are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqdeca.config import load_config
from seqdeca.errors import UserError
from seqdeca.inference.engines import ChunkResult
from seqdeca.inference.faces import face_selection
from seqdeca.inference.outputs import ClipOutputs
from seqdeca.inference.pipeline import video2mesh
from seqdeca.inference.stream import ChunkFrames
from seqdeca.prep.crop import apply_transform
from seqdeca.prep.face_association import FaceAssociator, associate_frames
from seqdeca.prep.tracking import interpolate_gaps
from tools import video2mesh as video2mesh_tool

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "base.yaml"
FAST = ["inference.fit.iterations=5"]
POINTS = 30  # landmarks of a synthetic face
SHAPE = (POINTS, 2)
PEOPLE = "0Fi83BHQsMA_00002.mp4", "PbgB2TaYhio_00007.mp4"  # 224 x 224 LRS3 clips


# --------------------------------------------------------------------- association (synthetic)


def _layout(seed: int) -> np.ndarray:
    """(POINTS, 2) a person's landmark layout in [-0.5, 0.5] (face sizes)."""
    return np.random.default_rng(seed).uniform(-0.5, 0.5, SHAPE)


def _face(person: np.ndarray, x: float, y: float, size: float = 100.0) -> np.ndarray:
    return person * size + np.array([x, y])


def _slot_of(points: np.ndarray, found: np.ndarray, x: float, y: float) -> int:
    """The slot whose face has its box centre nearest (x, y) in one frame."""
    dist = np.full(len(found), np.inf)
    for slot in np.flatnonzero(found):
        centre = (points[slot].min(0) + points[slot].max(0)) / 2
        dist[slot] = np.linalg.norm(centre - [x, y])
    return int(np.argmin(dist))


def test_slots_ignore_detection_order_and_number_left_to_right():
    a, b = _layout(1), _layout(2)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(20):
        faces = [_face(b, 400 - 2 * t, 100), _face(a, 100 + 2 * t, 110)]
        frames.append([faces[i] for i in rng.permutation(2)])  # MediaPipe's order is arbitrary
    points, found = associate_frames(frames, max_faces=3, max_gap=5, point_shape=SHAPE)
    assert points.shape == (20, 3, POINTS, 2) and found[:, :2].all() and not found[:, 2].any()
    for t in range(20):  # slot 0 is the left person (first seen in the same frame as b)
        assert _slot_of(points[t], found[t], 100 + 2 * t, 110) == 0
        assert _slot_of(points[t], found[t], 400 - 2 * t, 100) == 1


def test_short_loss_is_reacquired_and_gap_filled():
    a, b = _layout(1), _layout(2)
    frames = [
        [_face(a, 100, 100)] + ([] if 5 <= t < 8 else [_face(b, 300 + 3 * t, 100)])
        for t in range(15)
    ]
    points, found = associate_frames(frames, max_faces=2, max_gap=5, point_shape=SHAPE)
    assert found[:, 0].all()
    assert found[:5, 1].all() and not found[5:8, 1].any() and found[8:, 1].all()
    filled, valid, interpolated = interpolate_gaps(points[:, 1], found[:, 1], max_gap=5)
    assert valid.all() and interpolated[5:8].all()
    centre_x = (filled.min(1)[:, 0] + filled.max(1)[:, 0]) / 2
    assert np.all(np.diff(centre_x) > 0)  # interpolated along the person's own motion


def test_long_loss_revived_near_last_place_and_new_face_gets_next_slot():
    a, b, c = _layout(1), _layout(2), _layout(3)
    frames = []
    for t in range(30):
        faces = [_face(a, 100, 100)]
        if not 5 <= t < 20:  # b gone for 15 frames (> max_gap): back near where it left
            faces.append(_face(b, 300 + (20 if t >= 20 else 0), 100))
        if t >= 10:  # c comes in far from everyone
            faces.append(_face(c, 600, 300, size=80))
        frames.append(faces[::-1])
    assoc = FaceAssociator(max_faces=3, max_gap=3, point_shape=SHAPE)
    rows = [assoc.update(f) for f in frames]
    found = np.stack([f for _, f in rows])
    assert assoc.num_tracks == 3 and assoc.unassigned == 0
    assert found[:, 0].all() and found[:5, 1].all() and not found[5:20, 1].any()
    assert found[20:, 1].all() and not found[:10, 2].any() and found[10:, 2].all()
    for t in range(20, 30):
        assert _slot_of(rows[t][0], rows[t][1], 320, 100) == 1
        assert _slot_of(rows[t][0], rows[t][1], 600, 300) == 2


def test_slot_limit_keeps_the_largest_and_counts_the_rest():
    a, b = _layout(1), _layout(2)
    frames = [[_face(a, 100, 100, size=60), _face(b, 300, 100, size=120)] for _ in range(5)]
    assoc = FaceAssociator(max_faces=1, max_gap=2, point_shape=SHAPE)
    rows = [assoc.update(f) for f in frames]
    assert all(found[0] for _, found in rows)
    assert all(_slot_of(p, f, 300, 100) == 0 for p, f in rows)  # the larger face
    assert assoc.unassigned == 5


def test_crossing_faces_keep_their_slots():
    """Two faces pass each other 1.2 face sizes apart vertically at 25 px a frame; one is
    missing for two frames at the crossing (behind the other)."""
    a, b = _layout(1), _layout(2)
    frames = []
    for t in range(30):
        xa, xb = 50 + 25 * t, 775 - 25 * t
        faces = [_face(b, xb, 220)] + ([] if 15 <= t < 17 else [_face(a, xa, 100)])
        frames.append(faces)
    points, found = associate_frames(frames, max_faces=2, max_gap=3, point_shape=SHAPE)
    for t in range(30):
        if found[t, 0]:
            assert _slot_of(points[t], found[t], 50 + 25 * t, 100) == 0, t
        assert _slot_of(points[t], found[t], 775 - 25 * t, 220) == 1, t


def test_duplicate_detections_are_one_face():
    a = _layout(1)
    frames = [[_face(a, 100, 100), _face(a, 103, 102, size=95)] for _ in range(3)]
    _, found = associate_frames(frames, max_faces=2, max_gap=2, point_shape=SHAPE)
    assert found[:, 0].all() and not found[:, 1].any()


def test_face_selection_parses_and_refuses_bad_values():
    def sel(*items):
        return face_selection(load_config(BASE, list(items)))

    assert not sel().separate and sel().limit == 1
    assert sel("inference.faces=all").limit == 4 and sel("inference.faces=all").separate
    assert sel("inference.faces=all", "inference.max_faces=2").limit == 2
    assert sel("inference.faces=3").limit == 3 and sel("inference.faces=1").separate
    for bad in ("inference.faces=0", "inference.faces=two", "inference.faces=-1"):
        with pytest.raises(UserError, match="inference.faces"):
            sel(bad)
    with pytest.raises(UserError, match="max_faces"):
        sel("inference.max_faces=0")


def test_cli_bad_faces_is_one_line_before_any_clip(tmp_path, capsys):
    code = video2mesh_tool.main(
        [str(tmp_path / "missing.mp4"), "--faces", "many", "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "--faces" in err
    assert not (tmp_path / "out").exists()


def _chunk(start: int, valid: list[bool]) -> tuple[ChunkFrames, ChunkResult]:
    """A fake chunk of len(valid) own frames (no context) and its result."""
    n = len(valid)
    ok = np.array(valid)
    mats = np.where(ok[:, None, None], np.eye(3), np.nan)
    data = ChunkFrames(
        start=start,
        own=slice(0, n),
        frames=np.zeros((n, 8, 8, 3), np.uint8),
        landmarks=np.ones((n, 478, 3), np.float32),
        valid=ok,
        interpolated=np.zeros(n, bool),
        crop_from_frame=mats,
        decoded_from_original=np.eye(3),
        is_last=False,
    )
    res = ChunkResult(
        codes={"expression": np.ones((n, 4)), "cam": np.ones((n, 3))},
        vertices=torch.rand(n, 3, 3),
        landmarks=torch.zeros(n, 5, 2),
    )
    return data, res


def test_face_outputs_have_one_row_per_frame_of_the_clip(tmp_path):
    """Rows before a face appears and chunks without it are written as frames without a face."""
    outputs = ClipOutputs(
        tmp_path,
        "clip",
        slots=2,
        separate=True,
        faces=np.array([[0, 1, 2]]),
        verts_uvs=None,
        faces_uvs=None,
        overlay=None,
        texture=None,
        crop_size=16,
        block=3,
    )
    late = outputs.faces[1]
    late.empty(4)  # not seen yet: nothing written
    assert late.writer is None and outputs.found == []
    late.write(*_chunk(4, [False, True, True, False]))
    late.empty(12)  # gone for two chunks
    late.write(*_chunk(12, [True, False]))
    assert outputs.found == [late] and late.first_frame == 5 and late.frames_with_face == 3
    folder = outputs.finish({"frames": 16}, [{"face": "face_1"}])
    assert sorted(p.name for p in folder.iterdir()) == ["face_1", "summary.json"]
    codes = np.load(folder / "face_1" / "codes.npz")
    assert list(codes.files) == [
        "frame",
        "valid",
        "interpolated",
        "crop_from_frame",
        "expression",
        "cam",
    ]
    assert codes["frame"].tolist() == list(range(16))
    assert np.flatnonzero(codes["valid"]).tolist() == [5, 6, 12]
    assert np.isnan(codes["expression"][~codes["valid"]]).all()
    assert codes["expression"].dtype == np.float32 and codes["expression"].shape == (16, 4)
    marks = np.load(folder / "face_1" / "landmarks.npz")
    assert marks["landmarks"].shape == (16, 478, 2) and marks["model_landmarks"].shape == (16, 5, 2)
    meshes = sorted(p.stem for p in (folder / "face_1" / "meshes").glob("*.obj"))
    assert meshes == ["000005", "000006", "000012"]


# ------------------------------------------------------------------------------- video clips


@pytest.fixture(scope="module")
def people(shared_clips) -> list[np.ndarray]:
    """The first 24 frames (24, 224, 224, 3) of two LRS3 sample clips (two people)."""
    pytest.importorskip("mediapipe", reason="MediaPipe is not installed (face tracking)")
    pytest.importorskip("av", reason="PyAV is not installed (video writing)")
    from seqdeca.io.video import VideoReader

    out = []
    for name in PEOPLE:
        with VideoReader(shared_clips / name) as reader:
            out.append(next(reader.chunks(24))[1])
    return out


def _write(path: Path, frames: np.ndarray) -> Path:
    from seqdeca.io.video import VideoWriter

    with VideoWriter(path, fps=25, size=(frames.shape[2], frames.shape[1]), crf=18) as writer:
        writer.write(frames)
    return path


def _crop_centres(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) frame pixels of each frame's crop centre (NaN without a face), (T,) valid."""
    codes = np.load(folder / "codes.npz")
    valid, mats = codes["valid"], codes["crop_from_frame"].astype(np.float64)
    size = json.loads((folder / "summary.json").read_text())["crop_size"]
    centres = np.full((len(valid), 2), np.nan)
    for t in np.flatnonzero(valid):
        centres[t] = apply_transform(np.array([[size / 2, size / 2]]), np.linalg.inv(mats[t]))[0]
    return centres, valid


@pytest.fixture(scope="module")
def side_by_side(people, tmp_path_factory) -> Path:
    """20 frames 448 x 224: person 0 on the left; person 1 on the right from frame 8 on."""
    left, right = people[0][:20], people[1][:20].copy()
    right[:8] = 0  # the second face appears later (in a later chunk: its rows are padded)
    return _write(tmp_path_factory.mktemp("multi") / "duo.mp4", np.concatenate([left, right], 2))


def test_side_by_side_gives_two_stable_faces(side_by_side, tmp_path, capsys):
    out = tmp_path / "out"
    code = video2mesh_tool.main(
        [str(side_by_side), "--faces", "all", "--out", str(out), *FAST, "inference.chunk_frames=6"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 faces" in captured.out
    clip = out / "duo"
    assert sorted(p.name for p in clip.iterdir()) == [
        "face_0",
        "face_1",
        "overlay.mp4",
        "summary.json",
    ]
    for face in ("face_0", "face_1"):
        names = {p.name for p in (clip / face).iterdir()}
        assert {"meshes", "codes.npz", "landmarks.npz", "rig.glb", "summary.json"} <= names
        assert "overlay.mp4" not in names
    summary = json.loads((clip / "summary.json").read_text())
    assert summary["faces"] == 2 and summary["frames"] == 20
    assert json.loads((out / "summary.json").read_text())["outcomes"][0]["faces"] == 2
    first = [f["first_frame"] for f in summary["face_folders"]]
    assert first[0] == 0 and 8 <= first[1] <= 10, first
    for face, side in (("face_0", -1), ("face_1", 1)):  # face_0 stays on the left person
        centres, valid = _crop_centres(clip / face)
        assert valid.sum() >= 10 and np.all(side * (centres[valid, 0] - 224) > 40), centres
        codes = np.load(clip / face / "codes.npz")
        assert codes["expression"].shape[0] == 20  # one row per frame of the clip
        meshes = sorted((clip / face / "meshes").glob("??????.obj"))
        assert [int(p.stem) for p in meshes] == np.flatnonzero(valid).tolist()
    _, valid1 = _crop_centres(clip / "face_1")
    assert not valid1[:8].any()
    from seqdeca.io.video import VideoReader

    with VideoReader(clip / "overlay.mp4") as reader:
        assert reader.num_frames == 20


def test_faces_cross_and_keep_identities(people, tmp_path):
    """Two 150 px crops slide past each other (40 px vertical overlap at the crossing)."""
    t_len, (h, w, s), top, bottom = 24, (280, 480, 150), 10, 120
    rng = np.random.default_rng(0)
    import cv2

    background = cv2.resize(
        rng.integers(60, 200, (h // 8, w // 8, 3)).astype(np.uint8),
        (w, h),
        interpolation=cv2.INTER_CUBIC,
    )
    frames = np.repeat(background[None], t_len, axis=0)
    for t in range(t_len):
        u = t / (t_len - 1)
        xa, xb = round(10 + u * (w - s - 20)), round(w - s - 10 - u * (w - s - 20))
        frames[t, top : top + s, xa : xa + s] = cv2.resize(people[0][t], (s, s))
        frames[t, bottom : bottom + s, xb : xb + s] = cv2.resize(people[1][t], (s, s))
    clip = _write(tmp_path / "cross.mp4", frames)
    cfg = load_config(BASE, [*FAST, "inference.faces=2"])
    (res,) = video2mesh([clip], tmp_path / "out", cfg, video=False, rig=False, progress=False)
    assert res.status == "done" and res.faces == 2, res.reason
    rows = {}
    for face in ("face_0", "face_1"):
        centres, valid = _crop_centres(tmp_path / "out" / "cross" / face)
        assert valid.sum() >= 0.8 * t_len
        y, x = centres[valid, 1], centres[valid, 0]
        rows["top" if y.mean() < h / 2 else "bottom"] = x
        assert np.ptp(y) < 20, y  # the same person throughout: no jump to the other row
    top_x, bottom_x = rows["top"], rows["bottom"]
    assert top_x[-1] - top_x[0] > 150 and bottom_x[0] - bottom_x[-1] > 150  # they crossed
    assert np.all(np.diff(top_x) > -3) and np.all(np.diff(bottom_x) < 3)


def test_largest_keeps_the_one_face_layout(side_by_side, tmp_path):
    cfg = load_config(BASE, FAST)
    (res,) = video2mesh([side_by_side], tmp_path, cfg, video=False, progress=False)
    assert res.status == "done" and res.faces == 1
    folder = tmp_path / "duo"
    names = {p.name for p in folder.iterdir()}
    assert {"meshes", "codes.npz", "landmarks.npz", "rig.glb", "summary.json"} <= names
    assert not [n for n in names if n.startswith(("face_", "."))]
    codes = np.load(folder / "codes.npz")
    assert codes["valid"].shape == (20,) and codes["valid"].all()


def test_fit_mode_survives_a_long_absence_inside_a_chunk(tmp_path):
    """A face absent for longer than the window inside a chunk (windows without any face)."""
    pytest.importorskip("mediapipe", reason="MediaPipe is not installed (face tracking)")
    pytest.importorskip("av", reason="PyAV is not installed (video writing)")
    from seqdeca.inference.demo import make_demo_clip

    clip = make_demo_clip(tmp_path / "gap.mp4", frames=14, size=192, blank=(3, 9))
    cfg = load_config(BASE, [*FAST, "track.max_gap=0"])
    (res,) = video2mesh([clip], tmp_path / "out", cfg, video=False, rig=False, progress=False)
    assert res.status == "done" and res.valid_frames == 8, res.reason
