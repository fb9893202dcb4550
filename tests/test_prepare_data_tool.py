"""The multi-clip runner (resume, failures, Ctrl-C, summary) and tools/prepare_data.py end to end.

Runner tests use a fake per-clip function (fast, no MediaPipe); the end-to-end tests run the real
``prepare_clip`` on the two short 224x224 LRS3 sample clips with two worker processes.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from test_sources import build_mead_tree

from seqdeca.config import Config
from seqdeca.errors import UserError
from seqdeca.prep.prepare import ClipReport, ClipSource
from seqdeca.prep.prepare_run import (
    clip_splits,
    discover,
    format_summary,
    prepare_dataset,
    write_manifests,
)

ROOT = Path(__file__).resolve().parents[1]
LRS3 = ("0Fi83BHQsMA_00002.mp4", "PbgB2TaYhio_00007.mp4")


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "prepare_data", ROOT / "tools" / "prepare_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_prepare(source: ClipSource, out_root: Path, cfg: Config) -> ClipReport:
    """Stand-in for prepare_clip: a 'done' folder with meta.json, 'failed' for empty files."""
    if source.video is not None and Path(source.video).stat().st_size == 0:
        return ClipReport(source.dataset, source.clip_id, "failed", reason="empty video file")
    if source.clip_id.endswith("_crash"):
        raise RuntimeError("a bug in the per-clip code")
    final = Path(out_root) / source.dataset / source.clip_id
    tmp = final.parent / f".{source.clip_id}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    (tmp / "meta.json").write_text(json.dumps({"clip_id": source.clip_id}))
    os.replace(tmp, final)
    return ClipReport(source.dataset, source.clip_id, "done", frames=10, valid_frames=7)


def interrupting_prepare(source: ClipSource, out_root: Path, cfg: Config) -> ClipReport:
    if "M030" in source.clip_id:
        raise KeyboardInterrupt
    return fake_prepare(source, out_root, cfg)


# ---------------------------------------------------------------------------------- runner


def test_runner_resume_and_failures(tmp_path, shared_clips):
    mead = build_mead_tree(tmp_path / "MEAD", shared_clips)
    broken = mead / "M005/video/front/sad/level_2/001.mp4"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"")  # zero-length video: reported, the others go on
    sources = discover("mead", mead)
    sources.append(ClipSource(dataset="mead", clip_id="X_crash", video=mead / "README.txt"))
    out = tmp_path / "out"
    stale = out / "mead" / ".old.tmp-999999999"  # left by a killed run (no such process)
    stale.mkdir(parents=True)
    summary = prepare_dataset(sources, out, Config(), progress=False, prepare=fake_prepare)
    assert (summary.clips, summary.done, summary.skipped, summary.failed) == (7, 5, 0, 2)
    assert (summary.frames, summary.frames_without_face) == (50, 15)
    reasons = {f["clip_id"]: f["reason"] for f in summary.failures}
    assert reasons == {
        "M005_front_sad_level2_001": "empty video file",
        "X_crash": "RuntimeError: a bug in the per-clip code",
    }
    assert not stale.exists()
    assert (out / "mead" / "W023_front_surprised_level2_010" / "meta.json").is_file()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["done"] == 5 and saved["failures"][0]["reason"]
    assert (out / "config.yaml").is_file()
    text = format_summary(summary)
    assert "5 done, 0 skipped, 2 failed" in text and "empty video file" in text

    again = prepare_dataset(sources, out, Config(), progress=False, prepare=fake_prepare)
    assert (again.done, again.skipped, again.failed) == (0, 5, 2)
    splits = clip_splits("mead", sources, mead, ROOT / "datasets" / "mead_split.json")
    assert splits["M005_front_sad_level2_001"] == "test" and "X_crash" not in splits
    paths = write_manifests(out, "mead", splits)
    assert [p.name for p in paths] == ["mead_test.txt", "mead_train.txt"]
    assert paths[0].read_text() == ""  # the only test-split clip failed
    train = [s.clip_id for s in sources if s.subject != "M005" and s.clip_id != "X_crash"]
    assert paths[1].read_text().split() == sorted(train) and len(train) == 5
    limited = prepare_dataset(
        sources, tmp_path / "o2", Config(), limit=2, progress=False, prepare=fake_prepare
    )
    assert limited.clips == 2 and len(list((tmp_path / "o2" / "mead").iterdir())) == 2


def test_runner_ctrl_c_keeps_finished_clips(tmp_path, shared_clips):
    sources = discover("mead", build_mead_tree(tmp_path / "MEAD", shared_clips))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(sources, out, Config(), progress=False, prepare=interrupting_prepare)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["interrupted"] and saved["done"] == 2  # the two M003 clips come first
    done = sorted(p.name for p in (out / "mead").iterdir())
    assert done == ["M003_front_disgusted_level1_015", "M003_front_neutral_level1_001"]


def test_discover_errors(tmp_path):
    with pytest.raises(UserError, match="input folder not found"):
        discover("mead", tmp_path / "missing")
    with pytest.raises(UserError, match="no mead clips found"):
        discover("mead", tmp_path)
    with pytest.raises(UserError, match="unknown dataset"):
        discover("lrs3", tmp_path)


# ------------------------------------------------------------------------------------ tool


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        _load_tool().main(["--help"])
    assert info.value.code == 0
    assert "--dataset" in capsys.readouterr().out


def test_tool_arguments_errors(tmp_path, capsys):
    tool = _load_tool()
    code = tool.main(
        ["--dataset", "videos", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "input folder not found" in err and err.count("\n") == 1
    (tmp_path / "in").mkdir()
    code = tool.main(
        [
            "--dataset",
            "videos",
            "--input",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "out"),
            "prepare.jpegquality=3",
        ]
    )
    assert code == 2 and "did you mean 'prepare.jpeg_quality'" in capsys.readouterr().err


def test_tool_end_to_end(tmp_path, shared_clips, capsys):
    """Real prepare_clip, 2 workers, a broken file reported, then a resumed run (all skipped)."""
    data = tmp_path / "in"
    data.mkdir()
    for name in LRS3:
        (data / name).symlink_to(shared_clips / name)
    (data / "broken.mp4").write_bytes(b"")
    out = tmp_path / "out"
    args = [
        "--dataset",
        "videos",
        "--input",
        str(data),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
        "prepare.jpeg_quality=90",
    ]
    tool = _load_tool()
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    assert "2 done, 0 skipped, 1 failed" in printed and "failed broken:" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 41 + 35 and summary["frames_per_second"] > 0
    assert [f["clip_id"] for f in summary["failures"]] == ["broken"]
    assert "jpeg_quality: 90" in (out / "config.yaml").read_text()
    for name in LRS3:
        clip = out / "videos" / Path(name).stem
        assert (clip / "meta.json").is_file() and (clip / "frames" / "000000.jpg").is_file()
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(Path(n).stem for n in LRS3)

    assert tool.main(args) == 0  # resume: nothing left to do
    assert "0 done, 2 skipped, 1 failed" in capsys.readouterr().out


def test_tool_exit_2_when_nothing_prepared(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.mp4").write_bytes(b"")
    code = _load_tool().main(
        [
            "--dataset",
            "videos",
            "--input",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "0 done, 0 skipped, 1 failed" in capsys.readouterr().out
