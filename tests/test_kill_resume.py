"""experiments/kill_resume.py: SIGKILL during training and data preparation stays lossless.

The short run trains the tiny CPU config for 6 steps (3 kills, one aimed at a checkpoint write)
and prepares one synthetic face video of 12 frames with MediaPipe (2 kills); the comparisons it
relies on are checked on hand-made differences first.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "kill_resume.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


kill_resume = _load_script()

REFERENCE = [
    {"step": 1, "epoch": 0, "skipped": False, "total": 0.5, "landmark": 0.25},
    {"step": 2, "epoch": 0, "skipped": False, "total": 0.375, "landmark": 0.125},
    {"step": 3, "epoch": 1, "skipped": False, "total": 0.3125, "landmark": 0.0625},
]


def test_loss_comparison_accepts_replayed_steps_and_names_each_difference() -> None:
    replayed = [*REFERENCE[:3], REFERENCE[2]]  # step 3 logged again after a resume
    assert kill_resume.compare_losses(REFERENCE, replayed, 3) == []
    changed = [REFERENCE[0], REFERENCE[1] | {"total": 0.37500001}, REFERENCE[2]]
    problems = kill_resume.compare_losses(REFERENCE, changed, 3)
    assert problems == ["losses.jsonl line 2: step 2 total = 0.37500001, reference 0.375"]
    wrong_epoch = [*REFERENCE[:2], REFERENCE[2] | {"epoch": 0}]
    assert "step 3 epoch = 0" in kill_resume.compare_losses(REFERENCE, wrong_epoch, 3)[0]
    missing = kill_resume.compare_losses(REFERENCE, REFERENCE[:2], 3)
    assert missing == ["steps never logged by the killed run: [3]"]


def test_torn_loss_lines_are_counted_not_parsed(tmp_path) -> None:
    path = tmp_path / "losses.jsonl"
    lines = [json.dumps(r) for r in REFERENCE]
    path.write_text(lines[0] + "\n" + lines[1][:20] + lines[1] + "\n" + lines[2] + "\n")
    records, torn = kill_resume.read_loss_lines(path)
    assert torn == 1 and [r["step"] for r in records] == [1, 3]
    assert kill_resume.compare_losses(REFERENCE, records, 3) == [
        "steps never logged by the killed run: [2]"
    ]


def test_tree_comparison_finds_changed_missing_and_left_over_files(tmp_path) -> None:
    reference, killed = tmp_path / "a", tmp_path / "b"
    for root in (reference, killed):
        (root / "videos" / "clip" / "frames").mkdir(parents=True)
        (root / "videos" / "clip" / "frames" / "000000.jpg").write_bytes(b"\xff\xd8jpeg")
        (root / "videos" / "clip" / "meta.json").write_text("{}")
        (root / "summary.json").write_text('{"seconds": 1}')  # timings: not compared
    (killed / "summary.json").write_text('{"seconds": 9}')
    assert kill_resume.compare_trees(reference, killed) == []
    (killed / "videos" / "clip" / "frames" / "000000.jpg").write_bytes(b"\xff\xd8jpeG")
    (killed / "videos" / "clip" / "meta.json").unlink()
    (killed / "videos" / ".clip2.tmp-123").mkdir()
    assert kill_resume.compare_trees(reference, killed) == [
        "missing in the killed output: videos/clip/meta.json",
        "left over / extra in the killed output: videos/.clip2.tmp-123/",
        "different bytes: videos/clip/frames/000000.jpg",
    ]


def test_kill_plan_spreads_sorted_targets_over_the_run_with_every_mode() -> None:
    import random

    plan = kill_resume.plan_kills(20, 60, random.Random(0), step_s=0.2, startup_s=5.0)
    modes = [k.mode for k in plan]
    assert (modes.count("checkpoint"), modes.count("early"), modes.count("step")) == (6, 2, 12)
    steps = [k.step for k in plan]
    assert steps == sorted(steps) and 1 <= steps[0] and steps[-1] <= 59
    assert all(0 <= k.delay <= (5.0 if k.mode == "early" else 0.2) for k in plan)


def test_a_code_change_during_a_part_voids_its_comparison() -> None:
    before = kill_resume.source_digests()
    assert "seqdeca/train/loop.py" in before and "tools/train_seq.py" in before
    assert kill_resume.code_changes(before) == []
    edited = before | {"seqdeca/train/loop.py": "0" * 64}
    (problem,) = kill_resume.code_changes(edited)
    assert problem.startswith("the code changed while this part ran (seqdeca/train/loop.py)")


@pytest.mark.slow
def test_killed_training_and_preparation_equal_uninterrupted_runs(tmp_path) -> None:
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(out),
        "--kills",
        "3",
        "--steps",
        "6",
        "--prep-kills",
        "2",
        "--videos",
        "synthetic",
        "--prep-clips",
        "1",
        "--prep-frames",
        "12",
    ]
    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "| training | 5 | 3 |" in proc.stdout and "lossless" in proc.stdout
    train, prepare = json.loads((out / "report.json").read_text())["parts"]
    assert train["problems"] == [] and prepare["problems"] == []
    assert [k["mode"] for k in train["kills"]].count("checkpoint") == 1
    assert any(k["in_checkpoint_write"] for k in train["kills"])
    assert any("final step 6" in note for note in train["notes"])
    assert len(prepare["kills"]) >= 1 and prepare["launches"] == 4
    assert (out / "prep_killed" / "videos" / "synth_00000" / "meta.json").is_file()
