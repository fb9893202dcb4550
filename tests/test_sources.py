"""Raw-dataset discovery (MEAD, Aff-Wild2, plain folders) and Aff-Wild2 annotation readers.

The trees are synthetic: MEAD files are symlinks to the sample clips in ../shared/data/clips,
Aff-Wild2 annotation files are written here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqdeca.errors import UserError
from seqdeca.prep.annotations import (
    AFFWILD2_AU_NAMES,
    AnnotationError,
    read_au_file,
    read_expression_file,
    read_va_file,
)
from seqdeca.prep.sources import (
    affwild2_splits,
    find_affwild2,
    find_mead,
    find_videos,
    read_mead_split,
)

AU_HEADER = ",".join(AFFWILD2_AU_NAMES)
MEAD_SPLIT = Path(__file__).resolve().parents[1] / "datasets" / "mead_split.json"


# MEAD sample clip -> raw-layout path below the MEAD root (W023 has the extra folder level).
MEAD_TREE = {
    "M003_level_1_disgusted_015.mp4": "M003/video/front/disgusted/level_1/015.mp4",
    "M030_level_3_angry_016.mp4": "M030/video/front/angry/level_3/016.mp4",
    "W023_level_2_surprised_010.mp4": "W023/video/1/front/surprised/level_2/010.mp4",
    "W036_level_3_happy_007.mp4": "W036/video/front/happy/level_3/007.mp4",
}


def build_mead_tree(root: Path, clips: Path) -> Path:
    """A raw MEAD tree of symlinks, with a non-front view, audio and stray files to ignore."""
    for name, rel in MEAD_TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(clips / name)
    extra = {
        "W036/video/left_30/happy/level_3/007.mp4": "W036_level_3_happy_007.mp4",
        "M003/video/front/neutral/level_1/001.mp4": "M003_level_1_disgusted_015.mp4",
        "M003/audio/disgusted/level_1/015.m4a": "M003_level_1_disgusted_015.mp4",
    }
    for rel, name in extra.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(clips / name)
    (root / "M003/video/front/disgusted/level_1/notes.txt").write_text("not a video")
    (root / "README.txt").write_text("stray file")
    return root


def write_au(path: Path, rows: list[list[int]], header: str = AU_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def build_affwild2_tree(root: Path, clips: Path) -> Path:
    """Videos (one two-person), AU files incl. _left/_right, a frame-folder-only clip."""
    lrs3 = sorted(clips.glob("*_0000*.mp4"))
    (root / "videos" / "batch1").mkdir(parents=True)
    (root / "videos" / "batch1" / "1-30-1280x720.mp4").symlink_to(lrs3[0])
    (root / "videos" / "10-60-1280x720.avi").symlink_to(lrs3[1])
    (root / "videos" / "unlabelled_video.mkv").symlink_to(lrs3[1])
    ann = root / "Annotations" / "AU_Detection_Challenge"
    write_au(ann / "Train_Set" / "1-30-1280x720.txt", [[0] * 12, [1] * 12, [-1] * 12])
    write_au(ann / "Train_Set" / "10-60-1280x720_left.txt", [[1] + [0] * 11] * 2)
    write_au(ann / "Validation_Set" / "10-60-1280x720_right.txt", [[0] * 11 + [1]] * 2)
    write_au(ann / "Validation_Set" / "frames_only.txt", [[0] * 12] * 2)
    write_au(ann / "Train_Set" / "no_input_anywhere.txt", [[0] * 12])
    frames = root / "cropped_aligned" / "frames_only"
    frames.mkdir(parents=True)
    for i in (1, 2):
        (frames / f"{i:05d}.jpg").write_bytes(b"")
    return root


# ----------------------------------------------------------------------------------- MEAD


def test_find_mead_front(tmp_path, shared_clips):
    root = build_mead_tree(tmp_path / "MEAD", shared_clips)
    sources = find_mead(root)
    ids = [s.clip_id for s in sources]
    assert ids == [
        "M003_front_disgusted_level1_015",
        "M003_front_neutral_level1_001",
        "M030_front_angry_level3_016",
        "W023_front_surprised_level2_010",  # found below the extra folder level video/1/
        "W036_front_happy_level3_007",
    ]
    w023 = sources[3]
    assert (w023.dataset, w023.subject, w023.emotion, w023.level, w023.view) == (
        "mead",
        "W023",
        "surprised",
        2,
        "front",
    )
    assert w023.video == root / MEAD_TREE["W023_level_2_surprised_010.mp4"]
    assert all(s.view == "front" and s.au_labels is None for s in sources)


def test_find_mead_views_and_errors(tmp_path, shared_clips):
    root = build_mead_tree(tmp_path / "MEAD", shared_clips)
    both = find_mead(root, views=("front", "left_30"))
    assert len(both) == 6
    side = [s for s in both if s.view == "left_30"]
    assert [s.clip_id for s in side] == ["W036_left_30_happy_level3_007"]
    assert [s.clip_id for s in find_mead(root / "M030")] == ["M030_front_angry_level3_016"]
    with pytest.raises(UserError, match="unknown MEAD view"):
        find_mead(root, views=("frontal",))
    with pytest.raises(UserError, match="not found"):
        find_mead(tmp_path / "missing")


# ------------------------------------------------------------------------------ Aff-Wild2


def test_find_affwild2(tmp_path, shared_clips):
    root = build_affwild2_tree(tmp_path / "AffWild2", shared_clips)
    sources = {s.clip_id: s for s in find_affwild2(root)}
    assert sorted(sources) == [
        "1-30-1280x720",
        "10-60-1280x720_left",
        "10-60-1280x720_right",
        "frames_only",
    ]
    left, right = sources["10-60-1280x720_left"], sources["10-60-1280x720_right"]
    assert left.video == right.video == root / "videos" / "10-60-1280x720.avi"
    if hasattr(left, "face_side"):
        assert (left.face_side, right.face_side) == ("left", "right")
    np.testing.assert_array_equal(left.au_labels[:, 0], [1, 1])
    np.testing.assert_array_equal(right.au_labels[:, 11], [1, 1])
    single = sources["1-30-1280x720"]
    assert single.dataset == "affwild2" and single.au_labels.shape == (3, 12)
    assert single.au_labels.dtype == np.float32 and (single.au_labels[2] == -1).all()
    assert single.video == root / "videos" / "batch1" / "1-30-1280x720.mp4"
    only = sources["frames_only"]
    assert only.video is None and only.frames_dir == root / "cropped_aligned" / "frames_only"
    with_unlabelled = find_affwild2(root, unlabelled=True)
    extra = [s for s in with_unlabelled if s.clip_id == "unlabelled_video"]
    assert len(with_unlabelled) == 5 and extra[0].au_labels is None
    train_only = find_affwild2(root, sets=("Train_Set",))
    assert [s.clip_id for s in train_only] == ["1-30-1280x720", "10-60-1280x720_left"]


def test_find_affwild2_prefers_frames_when_asked(tmp_path, shared_clips):
    root = build_affwild2_tree(tmp_path / "AffWild2", shared_clips)
    (root / "cropped_aligned" / "1-30-1280x720").mkdir()
    sources = {s.clip_id: s for s in find_affwild2(root, prefer="frames")}
    assert sources["1-30-1280x720"].frames_dir == root / "cropped_aligned" / "1-30-1280x720"
    assert sources["1-30-1280x720"].video is None
    (root / "cropped_aligned" / "10-60-1280x720_left").mkdir()
    sources = {s.clip_id: s for s in find_affwild2(root)}  # prefer="video", but two persons
    left, right = sources["10-60-1280x720_left"], sources["10-60-1280x720_right"]
    assert left.video is None and left.frames_dir == root / "cropped_aligned" / left.clip_id
    assert right.video == root / "videos" / "10-60-1280x720.avi" and right.frames_dir is None


# ---------------------------------------------------------------------------- plain folder


def test_find_videos(tmp_path, shared_clips):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "clip one.mp4").symlink_to(shared_clips / "0Fi83BHQsMA_00002.mp4")
    (tmp_path / "a" / "b" / "x.MKV").write_bytes(b"")
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("no")
    sources = find_videos(tmp_path)
    assert [s.clip_id for s in sources] == ["a_b_x", "a_x", "clip_one"]
    assert all(s.dataset == "videos" for s in sources)
    assert sources[2].video == tmp_path / "a" / "clip one.mp4"
    with pytest.raises(UserError, match="not found"):
        find_videos(tmp_path / "nope")


# ---------------------------------------------------------------------------- annotations


def test_read_au_file(tmp_path):
    rows = [[0] * 12, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [-1] * 12]
    labels = read_au_file(write_au(tmp_path / "v.txt", rows))
    assert labels.shape == (3, 12) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels[1], rows[1])  # line i+1 (after the header) = frame i
    assert (labels[2] == -1).all() and labels[0].sum() == 0


@pytest.mark.parametrize(
    "header, rows, match",
    [
        ("AU1,AU2,AU4", [[0] * 12], "not an Aff-Wild2 AU annotation file"),
        (AU_HEADER, [[0] * 11], "11 values, expected 12"),
        (AU_HEADER, [[2] * 12], "must be -1, 0 or 1"),
        (AU_HEADER, [["x"] * 12], "non-numeric"),
    ],
)
def test_read_au_file_errors(tmp_path, header, rows, match):
    path = write_au(tmp_path / "bad.txt", rows, header=header)
    with pytest.raises(AnnotationError, match=match) as info:
        read_au_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(AnnotationError, match="not found"):
        read_au_file(tmp_path / "missing.txt")


def test_read_expression_and_va(tmp_path):
    expr = tmp_path / "e.txt"
    expr.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n7\n-1\n")
    np.testing.assert_array_equal(read_expression_file(expr), [0, 7, -1])
    expr.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n8\n")
    with pytest.raises(AnnotationError, match="expression ids"):
        read_expression_file(expr)
    va = tmp_path / "va.txt"
    va.write_text("valence,arousal\n0.5,-0.25\n-5,-5\n")
    values = read_va_file(va)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, [[0.5, -0.25], [-5, -5]])
    with pytest.raises(AnnotationError, match="header"):
        read_va_file(expr)


# --------------------------------------------------------------------------------- splits


def test_mead_split_file_is_the_smirk_split():
    split = read_mead_split(MEAD_SPLIT)
    counts = {name: sum(v == name for v in split.values()) for name in ("train", "val", "test")}
    assert counts == {"train": 37, "val": 5, "test": 5} and len(split) == 47
    assert split["M003"] == "train" and split["W028"] == "val" and split["M005"] == "test"
    assert split["W021"] == "train"  # the subject with the extra folder level


def test_split_errors_and_affwild2_splits(tmp_path, shared_clips):
    bad = tmp_path / "split.json"
    bad.write_text('{"train": ["M003"], "test": ["M003"]}')
    with pytest.raises(UserError, match="two splits"):
        read_mead_split(bad)
    with pytest.raises(UserError, match="cannot read MEAD split"):
        read_mead_split(tmp_path / "missing.json")
    root = build_affwild2_tree(tmp_path / "AffWild2", shared_clips)
    splits = affwild2_splits(root)
    assert splits["1-30-1280x720"] == "train" and splits["10-60-1280x720_right"] == "val"
    assert splits["frames_only"] == "val" and len(splits) == 5
