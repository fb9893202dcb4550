"""video2mesh end to end: output layout and contents, chunk independence, bad inputs, both modes.

The clips are made at run time (the astronaut face of scikit-image, noise, broken files), so the
tests need nothing outside the repository; one test also runs a cut of a real sample clip when
../shared/data is present.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqdeca.config import config_to_yaml, load_config
from seqdeca.inference.demo import make_demo_clip
from seqdeca.inference.pipeline import video2mesh
from seqdeca.io.obj import read_obj
from seqdeca.io.video import VideoReader, VideoWriter
from seqdeca.models.from_config import build_model
from seqdeca.train.state import export_inference_checkpoint
from tools import video2mesh as video2mesh_tool

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "base.yaml"
FRAMES = 16
BLANK = (6, 8)  # frames without a face (gap filling off in these tests)
FAST = ["track.max_gap=0", "inference.fit.iterations=5"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    return make_demo_clip(folder / "astro.mp4", frames=FRAMES, size=256, blank=BLANK)


@pytest.fixture(scope="module")
def fit_run(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fit")
    cfg = load_config(BASE, [*FAST, "inference.chunk_frames=64"])
    results = video2mesh([clip], out, cfg, progress=False)
    assert results[0].status == "done", results[0].reason
    return out / "astro"


def test_fit_mode_output_layout_and_contents(fit_run):
    names = {p.name for p in fit_run.iterdir()}
    assert {"meshes", "codes.npz", "landmarks.npz", "overlay.mp4", "summary.json"} <= names
    assert not [n for n in names if n.startswith(".")]
    codes = np.load(fit_run / "codes.npz")
    valid = codes["valid"]
    assert valid.shape == (FRAMES,) and not valid[BLANK[0] : BLANK[1]].any()
    assert valid.sum() == FRAMES - (BLANK[1] - BLANK[0])
    for key in (
        "shape",
        "expression",
        "global_pose",
        "jaw_pose",
        "cam",
        "light",
        "texture",
        "crop_from_frame",
        "frame",
        "interpolated",
    ):
        assert codes[key].shape[0] == FRAMES, key
    assert codes["light"].shape[1:] == (9, 3) and codes["crop_from_frame"].shape[1:] == (3, 3)
    assert np.isfinite(codes["expression"][valid]).all()
    assert np.isnan(codes["expression"][~valid]).all()
    np.testing.assert_allclose(
        codes["shape"][valid], codes["shape"][valid][:1].repeat(valid.sum(), 0)
    )
    meshes = sorted((fit_run / "meshes").glob("*.obj"))
    assert [int(p.stem) for p in meshes] == np.flatnonzero(valid).tolist()
    mesh = read_obj(meshes[0])
    assert mesh.vertices.shape == (478, 3) and mesh.verts_uvs is not None
    assert (fit_run / "meshes" / "material.mtl").is_file()
    lm = np.load(fit_run / "landmarks.npz")
    assert lm["landmarks"].shape == (FRAMES, 478, 2)
    tracked, model = lm["landmarks"][valid], lm["model_landmarks"][valid]
    assert 0 < np.nanmin(tracked) and np.nanmax(tracked) < 256  # original-frame pixels
    err = np.linalg.norm(tracked - model, axis=-1).mean()
    assert err < 4.0, err  # the fitted model's MediaPipe points land on the tracked ones
    summary = json.loads((fit_run / "summary.json").read_text())
    assert summary["frames"] == FRAMES and summary["frames_with_face"] == int(valid.sum())
    assert summary["mode"] == "fit" and summary["meshes"] == len(meshes)
    assert summary["frames_per_second"] > 0 and set(summary["timings_s"]) >= {"track", "predict"}
    reader = VideoReader(fit_run / "overlay.mp4")
    assert reader.num_frames == FRAMES and abs(reader.fps - 25.0) < 1e-3
    assert reader.size[0] == 3 * reader.size[1]


def test_results_do_not_depend_on_chunk_size(fit_run, clip, tmp_path):
    cfg = load_config(BASE, [*FAST, "inference.chunk_frames=3"])
    (res,) = video2mesh([clip], tmp_path, cfg, video=False, progress=False)
    assert res.status == "done"
    a, b = np.load(fit_run / "codes.npz"), np.load(tmp_path / "astro" / "codes.npz")
    assert set(a.files) == set(b.files)
    np.testing.assert_array_equal(a["valid"], b["valid"])
    np.testing.assert_allclose(a["crop_from_frame"], b["crop_from_frame"], rtol=1e-6)
    for key in ("expression", "global_pose", "jaw_pose", "cam", "shape"):
        np.testing.assert_allclose(a[key], b[key], atol=2e-3, rtol=1e-3, err_msg=key)
    la, lb = np.load(fit_run / "landmarks.npz"), np.load(tmp_path / "astro" / "landmarks.npz")
    np.testing.assert_allclose(la["model_landmarks"], lb["model_landmarks"], atol=0.05)
    va, vb = (
        read_obj(fit_run / "meshes" / "000010.obj"),
        read_obj(tmp_path / "astro" / "meshes" / "000010.obj"),
    )
    np.testing.assert_allclose(va.vertices, vb.vertices, atol=1e-4)


def _noise_clip(path: Path, frames: int = 6) -> Path:
    rng = np.random.default_rng(0)
    with VideoWriter(path, fps=25, size=(128, 96)) as writer:
        writer.write(rng.integers(0, 256, (frames, 96, 128, 3), dtype=np.uint8))
    return path


def test_bad_inputs_fail_alone_with_one_line(clip, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is not a video\n")
    data = clip.read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])
    _noise_clip(bad / "noise.mp4")
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "out"
    inputs = [
        str(missing),
        str(bad / "empty.mp4"),
        str(bad / "notes.mp4"),
        str(bad / "truncated.mp4"),
        str(bad / "noise.mp4"),
        str(clip),
    ]
    code = video2mesh_tool.main([*inputs, "--out", str(out), "--no-video", *FAST])
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 5, captured.err
    assert all(line.startswith("error: ") for line in errors)
    assert "Traceback" not in captured.err
    for name, words in (
        ("missing", "not found"),
        ("empty", "cannot read"),
        ("notes", "cannot read"),
        ("noise", "no face"),
    ):
        line = next(line for line in errors if f"{name}.mp4" in line)
        assert words in line, line
    # nothing else, no temp folders; the run's summary lists the 5 failures
    assert sorted(p.name for p in out.iterdir()) == ["astro", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["failed"] == 5
    assert (out / "astro" / "summary.json").is_file()
    assert "astro" in captured.out


def test_cli_subprocess_no_face_is_one_stderr_line(tmp_path):
    noise = _noise_clip(tmp_path / "noise.mp4", frames=3)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "video2mesh.py"),
            str(noise),
            "--out",
            str(tmp_path / "out"),
            "--no-video",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no face" in lines[0], lines
    assert not (tmp_path / "out" / "noise").exists()


def test_user_errors_before_any_clip(clip, tmp_path, capsys):
    tool = video2mesh_tool
    assert tool.main([str(clip), "--mode", "network", "--out", str(tmp_path)]) == 2
    assert "network mode needs a checkpoint" in capsys.readouterr().err
    assert tool.main([str(clip), "--detail", "--out", str(tmp_path)]) == 2
    assert "--detail needs network mode" in capsys.readouterr().err
    assert tool.main([str(clip), "inference.windw=3", "--out", str(tmp_path)]) == 2
    assert "did you mean 'inference.window'" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert tool.main([str(clip), "--checkpoint", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "bad.pt" in err


def test_network_mode_with_exported_tiny_model(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = load_config(ROOT / "configs" / "tiny_cpu.yaml")
    model = build_model(cfg, load_checkpoints=False)
    ckpt = export_inference_checkpoint(
        tmp_path / "model.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=1,
    )
    clip = make_demo_clip(tmp_path / "short.mp4", frames=5, size=192)
    out = tmp_path / "out"
    code = video2mesh_tool.main(
        [
            str(clip),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--detail",
            "--batch-size",
            "2",
            "crop.size=64",
            "inference.chunk_frames=2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    folder = out / "short"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["mode"] == "network" and summary["frames"] == 5
    codes = np.load(folder / "codes.npz")
    assert codes["au_intensities"].shape == (5, 27) and codes["expression"].shape == (5, 10)
    assert len(list((folder / "meshes").glob("??????.obj"))) == int(codes["valid"].sum())
    assert len(list((folder / "meshes").glob("*_detail.obj"))) == int(codes["valid"].sum())
    assert VideoReader(folder / "overlay.mp4").num_frames == 5


def test_real_clip_fit_mode(shared_clips, tmp_path):
    source = VideoReader(shared_clips / "W023_level_2_surprised_010.mp4", max_side=640)
    _, frames = next(source.chunks(12))
    h, w = frames.shape[1:3]
    cut = tmp_path / "w023.mp4"
    with VideoWriter(cut, fps=source.fps, size=(w, h)) as writer:
        writer.write(frames)
    cfg = load_config(BASE, FAST)
    (res,) = video2mesh([cut], tmp_path / "out", cfg, video=False, progress=False)
    assert res.status == "done" and res.valid_frames == 12
    lm = np.load(tmp_path / "out" / "w023" / "landmarks.npz")
    err = np.linalg.norm(lm["landmarks"] - lm["model_landmarks"], axis=-1).mean()
    assert err < 0.01 * w, err


def test_background_threads_change_no_output(clip, tmp_path):
    """Read-ahead, write-behind and the next clip opened early give the files of one thread."""
    runs = {}
    for depth in (0, 2):
        cfg = load_config(
            BASE, [*FAST, "inference.chunk_frames=3", f"inference.background_chunks={depth}"]
        )
        out = tmp_path / f"depth{depth}"
        results = video2mesh([clip, clip], out, cfg, progress=False)
        assert [r.status for r in results] == ["done", "done"]
        runs[depth] = out
    for name in ("astro", "astro_2"):
        one, two = runs[0] / name, runs[2] / name
        a, b = np.load(one / "codes.npz"), np.load(two / "codes.npz")
        assert set(a.files) == set(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        meshes = sorted(p.name for p in (one / "meshes").iterdir())
        assert meshes == sorted(p.name for p in (two / "meshes").iterdir())
        for mesh in meshes:
            assert (one / "meshes" / mesh).read_bytes() == (two / "meshes" / mesh).read_bytes()
        frames_one = np.stack(list(VideoReader(one / "overlay.mp4")))
        frames_two = np.stack(list(VideoReader(two / "overlay.mp4")))
        np.testing.assert_array_equal(frames_one, frames_two)
        timings = json.loads((two / "summary.json").read_text())["timings_s"]
        assert {"wait_input", "wait_output"} <= set(timings)


def test_benchmark_times_one_thread_and_background_threads_side_by_side(clip, tmp_path):
    from benchmarks.bench_video2mesh import bench_fit_threads

    cfg = load_config(BASE, FAST)
    one, background = bench_fit_threads([clip], cfg, tmp_path, repeats=1)
    assert one.frames == background.frames == FRAMES
    assert "one thread" in one.what and "background 2" in background.what
    assert "x one thread" in background.note and "wait_output" in background.note


def test_peak_memory_child_reads_its_own_peak_and_quarters():
    import time

    from benchmarks.video2mesh_peak_memory import RssSampler, peak_kb

    sampler = RssSampler(interval=0.01)
    sampler.start()
    time.sleep(0.2)
    sampler.stop()
    quarters = sampler.quarters_mb()
    assert len(quarters) == 4 and all(q > 0 for q in quarters)
    assert peak_kb() / 1024 >= max(quarters) * 0.99  # the peak bounds every sample
    assert RssSampler().quarters_mb() == []  # no samples, no quarters
