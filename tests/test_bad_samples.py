"""Damaged prepared data in the middle of training: unreadable windows are skipped and counted.

Damages: a cut JPEG, a missing mask PNG, a cut ``.npy``, an ``.npy`` of the wrong length. The dataset turns them into
:class:`BadWindow` markers (training) or a one-line error (evaluation); the collate function
drops the markers; the loop counts them and stops after ``train.max_bad_samples`` in a row.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from prepared_factory import make_prepared_clip
from two_process_launch import TWO_CPU_PROCESSES, launcher

from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.dataset import (
    BadWindow,
    SequenceDataset,
    UnreadableFileError,
    collate_windows,
)
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.train.loop import TrainingError, train
from seqdeca.train.monitor import BadSampleCount
from seqdeca.train.state import TrainState
from seqdeca.train.trainer import skip_unreadable
from tools import train_seq

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"


def cut(path: Path, keep: float = 0.5) -> None:
    """Truncate ``path`` to ``keep`` of its size (a write interrupted mid-file)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGES = {
    "cut_jpeg": ("frames/000002.jpg", lambda f: cut(f)),
    "missing_mask": ("masks/000002.png", lambda f: f.unlink()),
    "cut_npy": ("landmarks.npy", lambda f: cut(f, 0.9)),
    "short_npy": ("au.npy", lambda f: np.save(f, np.zeros((1, 12), np.float32))),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_an_unreadable_window_is_a_marker_in_training_and_an_error_in_evaluation(
    tmp_path, caplog, damage
) -> None:
    name, spoil = DAMAGES[damage]
    folder = make_prepared_clip(tmp_path, "bad", [True] * 3, seed=1)
    make_prepared_clip(tmp_path, "good", [True] * 3, seed=2)
    spoil(folder / name)
    ds = SequenceDataset(sources=[tmp_path / "videos"], window=3, train=True, seed=0)
    with caplog.at_level(logging.WARNING, logger="seqdeca.data.dataset"):
        items = [ds[i] for i in range(len(ds))]
    bad = [item for item in items if isinstance(item, BadWindow)]
    assert len(bad) == 1 and bad[0].clip_id == "bad" and bad[0].file == name
    assert len(caplog.records) == 1 and name in caplog.records[0].getMessage()
    batch = collate_windows(items, ds.clip_ids)
    assert batch.clip_ids == ["good"] and batch.images.shape[0] == 1
    assert batch.bad_samples == 1 and sorted(batch.read_ok) == [False, True]
    assert batch.unreadable[0].startswith(f"bad/{name} (")
    evaluation = SequenceDataset(sources=[tmp_path / "videos"], window=3, train=False)
    number = evaluation.clip_ids.index("bad")
    with pytest.raises(UnreadableFileError, match=f"cannot read .*{name}") as info:
        evaluation[int(np.flatnonzero(evaluation.windows[:, 0] == number)[0])]
    assert "\n" not in str(info.value)
    if damage == "cut_jpeg":  # from a loader worker: the same UserError type (exit code 2)
        loader = torch.utils.data.DataLoader(evaluation, num_workers=1, collate_fn=collate_windows)
        with pytest.raises(UnreadableFileError, match=f"cannot read .*{name}"):
            list(loader)


def test_a_batch_of_only_unreadable_windows_is_empty_and_counted() -> None:
    items = [BadWindow("c", "au.npy", "cut"), BadWindow("d", "frames/000001.jpg", "cut")]
    batch = collate_windows(items, ["c", "d"])
    assert batch.clip_ids == [] and batch.images.shape[0] == 0 and batch.bad_samples == 2
    assert batch.to("cpu").read_ok == [False, False]


def test_the_loop_skips_empty_batches_and_stops_after_a_run_of_bad_windows() -> None:
    accelerator = SimpleNamespace(num_processes=1)
    state, count = TrainState(), BadSampleCount(limit=3)
    bad, good = BadWindow("c", "au.npy", "cut"), None

    def batch(*kinds: BadWindow | None):
        return SimpleNamespace(
            read_ok=[k is None for k in kinds],
            unreadable=[k.note for k in kinds if k is not None],
            clip_ids=["x" for k in kinds if k is None],
            bad_samples=sum(k is not None for k in kinds),
        )

    assert not skip_unreadable(accelerator, state, batch(bad, good), count)
    assert skip_unreadable(accelerator, state, batch(bad, bad), count)  # no window left
    assert state.batches_in_epoch == 1 and count.total == 3 and count.take_step() == 3
    assert count.take_step() == 0
    with pytest.raises(TrainingError, match="3 unreadable training windows in a row"):
        skip_unreadable(accelerator, state, batch(bad, good), count)


# ------------------------------------------------------------------------------ training runs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """2 synthetic clips of 6 frames (4 windows of 3 frames each)."""
    root = tmp_path_factory.mktemp("prepared")
    make_synthetic_dataset(root, load_config(TINY), clips=2, frames=6, seed=3, progress=False)
    return root


def _overrides(run_dir: Path, **train_keys) -> list[str]:
    keys = {"max_steps": 3, "checkpoint_every": 0, "log_every": 1} | train_keys
    return [
        "data.window=3",
        "data.batch_size=2",
        f"run.output_dir={run_dir}",
        *(f"train.{k}={v}" for k, v in keys.items()),
    ]


def _damaged_copy(data_root: Path, tmp_path: Path, clips: list[int], name: str) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(data_root, copy)
    for k in clips:
        DAMAGES[name][1](copy / "synthetic" / f"synth_{k:05d}" / DAMAGES[name][0])
    return copy


def test_training_skips_a_damaged_clip_and_logs_the_count(data_root, tmp_path, caplog) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = _damaged_copy(data_root, tmp_path, [0], "cut_npy")
    cfg: Config = load_config(TINY, _overrides(tmp_path / "run"))
    cfg.data.sources = [DataSourceConfig(root=str(root))]
    with caplog.at_level(logging.WARNING, logger="seqdeca.data.dataset"):
        summary = train(cfg)
    assert summary.steps == 3 and summary.bad_samples > 0
    records = [json.loads(x) for x in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert sum(r["bad_samples"] for r in records) == summary.bad_samples
    assert all(np.isfinite(r["total"]) for r in records)
    # One warning per unreadable window read (the loader may read a batch ahead of the loop).
    warned = [r.getMessage() for r in caplog.records if "landmarks.npy" in r.getMessage()]
    assert len(warned) >= summary.bad_samples and all("synth_00000" in w for w in warned)
    events = EventAccumulator(glob.glob(str(tmp_path / "run" / "tb" / "*tfevents*"))[0])
    events.Reload()
    assert events.Scalars("data/bad_samples")[-1].value == summary.bad_samples


def test_training_on_only_damaged_clips_stops_with_one_line(data_root, tmp_path, capsys) -> None:
    root = _damaged_copy(data_root, tmp_path, [0, 1], "missing_mask")
    for mask in root.rglob("masks/*.png"):
        mask.unlink()
    code = train_seq.main(
        [
            "--config",
            str(TINY),
            *_overrides(tmp_path / "run", max_bad_samples=3),
            f"data.sources=[{{root: {root}}}]",
        ]
    )
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith("error: training stopped at step 0: 3 unreadable training windows")
    assert "masks/" in errors[0]


def test_max_bad_samples_must_be_positive(data_root, tmp_path) -> None:
    cfg = load_config(TINY, _overrides(tmp_path / "run", max_bad_samples=0))
    cfg.data.sources = [DataSourceConfig(root=str(data_root))]
    with pytest.raises(UserError, match="train.max_bad_samples=0 must be >= 1"):
        train(cfg)


@pytest.mark.slow
def test_two_processes_skip_a_batch_together(data_root, tmp_path) -> None:
    """DDP (2 CPU processes, gloo), batch 1, one of 2 clips damaged: when one process has no
    readable window and the other has one, both skip the batch (no hang) and the run ends."""
    root = _damaged_copy(data_root, tmp_path, [0], "cut_jpeg")
    for jpeg in (root / "synthetic" / "synth_00000" / "frames").glob("*.jpg"):
        cut(jpeg)
    run_dir = tmp_path / "ddp"
    cmd = [
        launcher(),
        *TWO_CPU_PROCESSES,
        str(ROOT / "tools" / "train_seq.py"),
        "--config",
        str(TINY),
        *_overrides(run_dir, max_steps=3),
        "data.batch_size=1",
        f"data.sources=[{{root: {root}}}]",
    ]
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            cmd, check=False, env=env, capture_output=True, text=True, timeout=150
        )
    except subprocess.TimeoutExpired:
        pytest.fail("2-process run with a damaged clip did not finish in 150 s (a hang?)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (run_dir / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert sum(r["bad_samples"] for r in records) > 0
