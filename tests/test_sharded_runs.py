"""Runs shared by several processes: the shard arithmetic, and both dataset tools end to end.

The end-to-end tests start two CPU processes with ``accelerate launch`` (gloo) on clips made at
run time (the astronaut face of scikit-image and an empty file that cannot be read), and compare
every output with a one-process run of the same command.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from two_process_launch import TWO_CPU_PROCESSES, launcher

from seqdeca.errors import UserError
from seqdeca.inference.demo import make_demo_clip
from seqdeca.prep.prepare_run import ClipOutcome, RunSummary, format_summary, merge_summaries
from seqdeca.shards import Shard, current_shard
from tools import prepare_data as prepare_tool
from tools import video2mesh as video2mesh_tool

ROOT = Path(__file__).resolve().parents[1]
FAST = ["track.max_gap=0", "inference.fit.iterations=5"]
LINE = re.compile(r"^\[(\d)/2\] (?:failed )?(\S+?):")


# ----------------------------------------------------------------------------- shard arithmetic


def test_current_shard_reads_the_launcher_environment():
    assert current_shard({}) == Shard()
    assert not Shard().sharded and Shard().is_main and Shard().tag == ""
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
    }
    shard = current_shard(env)
    assert shard == Shard(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert shard.sharded and not shard.is_main and not shard.one_machine
    assert shard.tag == "[3/4] "
    with pytest.raises(UserError, match="RANK='x' is not a whole number"):
        current_shard(env | {"RANK": "x"})
    with pytest.raises(UserError, match="do not fit WORLD_SIZE=4"):
        current_shard(env | {"RANK": "4"})
    with pytest.raises(UserError, match="MASTER_ADDR/MASTER_PORT are not set"):
        current_shard({"RANK": "0", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shares_cover_every_item_once(world):
    items = [f"clip{i:02d}" for i in range(11)]
    shares = [Shard(rank=r, world_size=world).take(items) for r in range(world)]
    assert sorted(x for share in shares for x in share) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares[-1] == items[world - 1 :: world]


def test_device_per_process(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    third = Shard(rank=2, world_size=4, local_rank=2, local_world_size=4)
    assert third.device("cuda") == "cuda:0" and chosen == [0]  # 4 processes on 2 GPUs
    assert Shard(rank=1, world_size=2, local_rank=1).device("cuda") == "cuda:1"
    assert third.device("cpu") == "cpu" and third.device("cuda:1") == "cuda:1"
    assert Shard().device("cuda") == "cuda" and chosen == [0, 1]
    assert Shard().gather({"a": 1}) == [{"a": 1}]  # one process: nothing to wait for


def test_merge_summaries():
    def part(outcomes: list[ClipOutcome], seconds: float) -> RunSummary:
        summary = RunSummary(dataset="videos", out_root="/out", clips=len(outcomes), workers=2)
        for outcome in outcomes:
            summary.add(outcome)
        summary.seconds = seconds
        return summary

    first = part(
        [
            ClipOutcome("c", "done", frames=10, valid_frames=8),
            ClipOutcome("a", "failed", "unreadable"),
        ],
        4.0,
    )
    second = part(
        [ClipOutcome("b", "skipped"), ClipOutcome("d", "done", frames=30, valid_frames=30)], 8.0
    )
    merged = merge_summaries([first, second], order=["a", "b", "c", "d"])
    assert [o.clip_id for o in merged.outcomes] == ["a", "b", "c", "d"]
    assert (merged.clips, merged.done, merged.skipped, merged.failed) == (4, 2, 1, 1)
    assert (merged.frames, merged.frames_without_face, merged.seconds) == (40, 2, 8.0)
    assert merged.frames_per_second == 5.0 and (merged.processes, merged.workers) == (2, 2)
    assert merged.failures == [{"clip_id": "a", "reason": "unreadable"}]
    assert "over 2 processes" in format_summary(merged)


# ----------------------------------------------------------------------------- end to end


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(tool: str, args: list[str]) -> subprocess.CompletedProcess:
    """``accelerate launch`` two CPU processes of ``tools/<tool>``."""
    cmd = [
        launcher(),
        *TWO_CPU_PROCESSES,
        "--main_process_port",
        str(_free_port()),
        str(ROOT / "tools" / tool),
        *args,
    ]
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=240, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"2-process {tool} did not finish in 240 s")


def _clip_folder(folder: Path, frames: dict[str, int]) -> Path:
    """Demo clips of the given lengths and ``broken.mp4`` (empty: it cannot be read)."""
    pytest.importorskip("mediapipe", reason="mediapipe (face tracking) is not installed")
    folder.mkdir()
    for name, count in frames.items():
        make_demo_clip(folder / f"{name}.mp4", frames=count, size=256)
    (folder / "broken.mp4").write_bytes(b"")
    return folder


def _ranks(text: str) -> dict[str, list[int]]:
    """Clip -> ranks of the per-clip lines (path or id, as printed)."""
    found: dict[str, list[int]] = {}
    for line in text.splitlines():
        if match := LINE.match(line.replace("error: ", "")):
            found.setdefault(Path(match[2]).stem, []).append(int(match[1]))
    return found


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_video2mesh_two_processes_match_one(tmp_path):
    clips = _clip_folder(tmp_path / "clips", {"a": 5, "c": 7, "d": 6})
    one, two = tmp_path / "one", tmp_path / "two"
    args = [str(clips), "--mode", "fit", "--no-video", *FAST]
    assert video2mesh_tool.main([*args, "--out", str(one)]) == 2  # broken.mp4 fails

    proc = _launch("video2mesh.py", [*args, "--out", str(two)])
    # sorted: a broken c d -> process 0 runs a, c; process 1 runs broken, d
    assert proc.returncode != 0, proc.stderr[-3000:]  # process 1's failure counts
    assert _ranks(proc.stdout) == {"a": [0], "c": [0], "d": [1]}, proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and errors[0].startswith("[1/2] error: "), proc.stderr[-3000:]
    assert "broken.mp4" in errors[0]
    summary = json.loads((two / "summary.json").read_text())
    expected = json.loads((one / "summary.json").read_text())
    assert summary["processes"] == 2 and expected["processes"] == 1
    for key in ("clips", "done", "failed", "frames", "frames_with_face", "failures"):
        assert summary[key] == expected[key], key
    assert (summary["clips"], summary["done"], summary["frames"]) == (4, 3, 5 + 7 + 6)
    assert [(o["clip"], o["process"]) for o in summary["outcomes"]] == [
        ("a", 0),
        ("broken", 1),
        ("c", 0),
        ("d", 1),
    ]
    for clip in ("a", "c", "d"):
        for name in ("codes.npz", "landmarks.npz"):
            ref, got = np.load(one / clip / name), np.load(two / clip / name)
            assert sorted(ref) == sorted(got)
            for key in ref:
                np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{clip} {key}")
        assert _files(two / clip / "meshes") == _files(one / clip / "meshes")
    assert sorted(p.name for p in two.iterdir()) == ["a", "c", "d", "summary.json"]


@pytest.mark.slow
def test_prepare_data_two_processes_match_one(tmp_path):
    clips = _clip_folder(tmp_path / "clips", {"a": 6, "c": 5, "d": 4})
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--dataset", "videos", "--input", str(clips), "--no-progress"]
    assert prepare_tool.main([*args, "--out", str(one)]) == 0

    proc = _launch("prepare_data.py", [*args, "--out", str(two), "--workers", "2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # sorted: a broken c d -> process 0 prepares a, c (a pool of 2); process 1 broken, d
    assert _ranks(proc.stdout) == {"a": [0], "c": [0], "broken": [1], "d": [1]}, proc.stdout
    assert proc.stdout.count("found 4 clips (videos)") == 1
    assert proc.stdout.count("3 done, 0 skipped, 1 failed") == 1  # the merged totals, once
    assert _files(two / "videos") == _files(one / "videos")  # every prepared file, byte for byte
    assert len(_files(two / "videos")) > 3 * 10
    summary = json.loads((two / "summary.json").read_text())
    expected = json.loads((one / "summary.json").read_text())
    assert (summary["processes"], summary["workers"]) == (2, 2)
    for key in ("clips", "done", "skipped", "failed", "frames", "frames_without_face"):
        assert summary[key] == expected[key], key
    assert [o["clip_id"] for o in summary["outcomes"]] == ["a", "broken", "c", "d"]
    assert [f["clip_id"] for f in summary["failures"]] == ["broken"]
    assert (two / "config.yaml").read_text() == (one / "config.yaml").read_text()
    assert Counter(p.name for p in two.iterdir()) == Counter(
        ["config.yaml", "summary.json", "videos"]
    )
