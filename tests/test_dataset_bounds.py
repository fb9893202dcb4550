"""Bounded resources of the window dataset: open file descriptors per loader worker.

Hundreds of prepared clips are hard links of one small prepared clip, so the test writes only a
few files; every clip folder is still a separate set of paths (and open descriptors) to the
dataset. The last test runs the loader benchmark script (benchmarks/bench_loader.py) on tiny data.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from prepared_factory import make_prepared_clip

from benchmarks.bench_loader import DescriptorCount
from seqdeca.data.dataset import SequenceDataset

FD_DIR = Path("/proc/self/fd")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loader.py"
MAX_FDS = 64  # the bound a loader process must stay under


def linked_clips(root: Path, count: int, frames: int = 1) -> Path:
    """``root/many/clip_NNNN`` x ``count``: hard links of one prepared clip's files."""
    first = make_prepared_clip(root / "one", "clip", [True] * frames, dataset="many", seed=4)
    for k in range(count):
        folder = root / "many" / f"clip_{k:04d}"
        for src in first.rglob("*"):
            dst = folder / src.relative_to(first)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
    return root / "many"


@pytest.mark.skipif(not FD_DIR.is_dir(), reason="needs /proc/self/fd (Linux)")
def test_open_descriptors_stay_bounded_over_an_epoch_with_two_workers(tmp_path) -> None:
    clips = 320
    ds = SequenceDataset(sources=[linked_clips(tmp_path, clips)], window=1, train=True, seed=1)
    assert len(ds.clips) == clips and len(ds) == clips
    loader = torch.utils.data.DataLoader(
        DescriptorCount(ds), batch_size=8, num_workers=2, collate_fn=list
    )
    seen = [row for batch in loader for row in batch]
    assert len(seen) == clips  # a full epoch
    per_worker: dict[int, int] = {}
    for pid, count in seen:
        per_worker[pid] = max(per_worker.get(pid, 0), count)
    assert len(per_worker) == 2, per_worker
    assert max(per_worker.values()) <= MAX_FDS, f"open descriptors per worker: {per_worker}"


@pytest.mark.skipif(not FD_DIR.is_dir(), reason="needs /proc/self/fd (Linux)")
def test_evicted_clips_release_their_descriptors(tmp_path) -> None:
    ds = SequenceDataset(sources=[linked_clips(tmp_path, 40)], window=1, train=False)
    before = len(os.listdir(FD_DIR))
    for index in range(len(ds)):
        ds[index]
    after = len(os.listdir(FD_DIR))
    assert after - before <= 5 * SequenceDataset.max_open_clips
    assert len(ds._arrays) <= SequenceDataset.max_open_clips
    # An evicted clip reads again (reopened) and gives the same values.
    first = ds[0]
    torch.testing.assert_close(first["landmarks"], ds[0]["landmarks"])


@pytest.mark.skipif(not FD_DIR.is_dir(), reason="needs /proc/self/fd (Linux)")
def test_loader_benchmark_prints_its_tables(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_loader", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for k in range(2):
        make_prepared_clip(tmp_path / "data", f"c{k}", [True] * 4, seed=k)
    argv = [
        "--data",
        str(tmp_path / "data"),
        "--workers",
        "0",
        "--batches",
        "1",
        "--batch-size",
        "2",
        "--fd-clips",
        "24",
    ]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "command: python" in out and "machine: " in out
    rows = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows[0][0] == "loader workers" and rows[1][0] == "0" and float(rows[1][2]) > 0
    before, after = rows[3], rows[4]
    assert before[0] == "all (before the bound)" and after[0] == "4 (LRU)"
    assert int(before[1]) > int(after[1])  # most descriptors open in a worker
    assert "opening the 5 arrays of a clip again" in out
