"""Resuming after a kill: the steps after the checkpoint are logged once, and ``--resume`` in
a folder without a checkpoint starts from scratch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seqdeca.config import load_config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.train.state import list_checkpoints
from tools import train_seq

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_synthetic_dataset(root, load_config(TINY), clips=2, frames=6, seed=3, progress=False)
    return root


def _args(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(TINY),
        f"data.sources=[{{root: {data_root}}}]",
        "data.batch_size=1",
        "train.max_steps=4",
        "train.checkpoint_every=2",
        "train.log_every=1",
        f"run.output_dir={run_dir}",
        *extra,
    ]


def _steps(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "losses.jsonl").read_text().splitlines()]


def test_resume_logs_each_step_once(data_root, tmp_path):
    run = tmp_path / "run"
    assert train_seq.main(_args(data_root, run)) == 0
    reference = _steps(run)
    assert [r["step"] for r in reference] == [1, 2, 3, 4]
    # as if killed during step 4's checkpoint write, with a torn last log line
    shutil.rmtree(list_checkpoints(run)[-1])
    with (run / "losses.jsonl").open("a") as f:
        f.write('{"step": 5, "tot')
    assert train_seq.main([*_args(data_root, run), "--resume"]) == 0
    assert _steps(run) == reference


def test_resume_without_a_checkpoint_starts_from_scratch(data_root, tmp_path):
    run = tmp_path / "fresh"
    assert train_seq.main([*_args(data_root, run, "train.max_steps=2"), "--resume"]) == 0
    assert [r["step"] for r in _steps(run)] == [1, 2]
