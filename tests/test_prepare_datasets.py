"""tools/prepare_data.py end to end on a raw MEAD tree and an Aff-Wild2 tree (real clips)."""

from __future__ import annotations

import json

import numpy as np
from test_prepare_data_tool import _load_tool
from test_sources import write_au


def test_mead_raw_tree_with_extra_folder_level(tmp_path, shared_clips, capsys):
    """W023 has MEAD's irregular extra level (W023/video/1/front/...); a side view is ignored."""
    root = tmp_path / "MEAD"
    clip = root / "W023/video/1/front/surprised/level_2/010.mp4"
    side = root / "W023/video/1/left_30/surprised/level_2/010.mp4"
    for path in (clip, side):
        path.parent.mkdir(parents=True)
        path.symlink_to(shared_clips / "W023_level_2_surprised_010.mp4")
    out = tmp_path / "out"
    code = _load_tool().main(
        ["--dataset", "mead", "--input", str(root), "--out", str(out), "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    folders = list((out / "mead").iterdir())
    assert [f.name for f in folders] == ["W023_front_surprised_level2_010"]
    prepared = folders[0]
    meta = json.loads((prepared / "meta.json").read_text())
    assert (meta["subject"], meta["emotion"], meta["level"], meta["view"]) == (
        "W023",
        "surprised",
        2,
        "front",
    )
    t = meta["num_frames"]
    assert t == 73 == len(list((prepared / "frames").glob("*.jpg")))
    valid = np.load(prepared / "valid.npy")
    assert valid.shape == (t,) and valid.all()
    assert np.load(prepared / "au.npy").shape == (t, 12)
    assert (np.load(prepared / "au.npy") == -1).all()  # MEAD has no AU labels
    proxy = np.load(prepared / "au_proxy.npy")
    assert proxy.shape == (t, len(meta["au_proxy_names"])) and np.isfinite(proxy).all()
    assert ((proxy >= 0) & (proxy <= 1)).all()
    lmk68 = np.load(prepared / "landmarks68.npy")
    assert ((lmk68 >= 0) & (lmk68 <= 224)).all()
    # The surprised clip raises the brows: the proxy must move over the clip.
    brow = meta["au_proxy_names"].index("AU1_proxy")
    assert proxy[:, brow].max() - proxy[:, brow].min() > 0.2


def test_affwild2_labels_align_line_i_plus_1_with_frame_i(tmp_path, shared_clips, capsys):
    root = tmp_path / "AffWild2"
    video = root / "videos" / "1-30-1280x720.mp4"
    video.parent.mkdir(parents=True)
    video.symlink_to(shared_clips / "PbgB2TaYhio_00007.mp4")  # 35 frames
    rows = [[(i + k) % 2 if i % 7 else -1 for k in range(12)] for i in range(35)]
    write_au(root / "AU_Detection_Challenge" / "Train_Set" / "1-30-1280x720.txt", rows)
    out = tmp_path / "out"
    code = _load_tool().main(
        ["--dataset", "affwild2", "--input", str(root), "--out", str(out), "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    prepared = out / "affwild2" / "1-30-1280x720"
    au = np.load(prepared / "au.npy")
    np.testing.assert_array_equal(au, np.asarray(rows, dtype=np.float32))
    assert json.loads((prepared / "meta.json").read_text())["dataset"] == "affwild2"
