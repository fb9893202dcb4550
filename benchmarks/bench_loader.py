"""Training data loader throughput (frames/s per worker) and open file descriptors per worker.

    python benchmarks/bench_loader.py                        # synthetic prepared clips
    python benchmarks/bench_loader.py --data PREPARED_DIR    # your prepared clips
    python benchmarks/bench_loader.py --workers 0 1 2 4 --batches 40 --batch-size 8

Throughput: the training loader of ``seqdeca.data.dataset.window_loader`` (JPEG and PNG decode,
per-clip arrays, window augmentation, collation) is read for ``--batches`` batches after one
warm-up batch (worker start-up), once per worker count; "per worker" divides by the number of
loader processes (0 workers = the main process).

The open-clip bound: ``--fd-clips`` hard links of the first clip make a source of that many
clips. It prints the time to open a clip's arrays again (what a miss of the bounded cache costs;
a random training window over many clips misses, with or without the bound, the first time its
clip is read), and the most descriptors open in a loader worker over a training epoch of
``--fd-clips`` random windows read by 2 workers (each item records ``len(/proc/self/fd)`` in its
worker), with the bounded cache and with every clip kept open (the loader before the bound).

How many workers a GPU needs: workers >= windows/s of the GPU step * frames per window /
(frames/s per worker of this table).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.clip_files import open_clip_arrays
from seqdeca.data.dataset import SequenceDataset, find_clips, window_loader
from seqdeca.data.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
FD_DIR = Path("/proc/self/fd")
ALL_OPEN = 10**9  # max_open_clips that keeps every clip open (the loader before the bound)


@contextmanager
def open_clip_limit(limit: int) -> Iterator[None]:
    """Set ``SequenceDataset.max_open_clips`` for the duration (workers fork after it is set)."""
    saved = SequenceDataset.max_open_clips
    SequenceDataset.max_open_clips = limit
    try:
        yield
    finally:
        SequenceDataset.max_open_clips = saved


def batches_forever(loader: torch.utils.data.DataLoader) -> Iterator:
    """Batches of consecutive epochs (``set_epoch`` before each)."""
    epoch = 0
    while True:
        loader.dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def frames_per_s(cfg: Config, workers: int, batches: int) -> float:
    """Frames/s of the training loader over ``batches`` batches after a warm-up batch."""
    data = copy.deepcopy(cfg.data)
    data.num_workers = workers
    loader = window_loader(data, train=True, seed=0, crop=cfg.crop)
    stream = batches_forever(loader)
    next(stream)  # warm-up: worker start-up and first reads
    frames, start = 0, time.perf_counter()
    for _ in range(batches):
        images = next(stream).images
        frames += images.shape[0] * images.shape[1]
    seconds = time.perf_counter() - start
    del stream  # shuts the workers down
    return frames / seconds


def linked_source(clip: Path, out: Path, count: int) -> Path:
    """``out/clip_NNNN`` x ``count``: hard links (symbolic ones across file systems) of the
    files of one prepared clip."""
    for k in range(count):
        for src in clip.rglob("*"):
            dst = out / f"clip_{k:04d}" / src.relative_to(clip)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another file system
                os.symlink(src.resolve(), dst)
    return out


class DescriptorCount(torch.utils.data.Dataset):
    """Reads an item of the wrapped dataset; returns (pid, open descriptors of the process)."""

    def __init__(self, inner: SequenceDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> tuple[int, int]:
        self.inner[index]
        return os.getpid(), len(os.listdir(FD_DIR)) - 1  # minus the listing's own descriptor


def _rows(items: list) -> list:
    return items


def max_descriptors(source: Path, window: int, windows: int, workers: int = 2) -> int:
    """The most descriptors open in a loader worker over ``windows`` random training windows
    of ``source`` (an epoch of that size)."""
    dataset = SequenceDataset(
        sources=[source], window=window, train=True, seed=0, epoch_size=windows
    )
    loader = torch.utils.data.DataLoader(
        DescriptorCount(dataset), batch_size=8, num_workers=workers, collate_fn=_rows
    )
    return max(count for batch in loader for _, count in batch)


def bound_table(data: Path, tmp: Path, clips: int, window: int, frame_ms: float) -> None:
    """Print what the open-clip bound costs (opening a clip's arrays again, per window) and what
    it saves (descriptors per worker), on ``clips`` hard-linked copies of the first clip."""
    source = linked_source(find_clips(data)[0], tmp / "linked", clips)
    folders = find_clips(source)
    start = time.perf_counter()
    for folder in folders:
        open_clip_arrays(folder, folder.name)  # opened, then closed when dropped
    open_ms = (time.perf_counter() - start) / len(folders) * 1e3
    print(
        f"\nopening the 5 arrays of a clip again (a miss of the bounded cache): {open_ms:.2f} ms"
        f" (mean of {len(folders)} clips), {open_ms / (window * frame_ms):.1%} of the time of a "
        f"{window}-frame window at the 0-worker rate above (at most one miss per window)"
    )
    if not FD_DIR.is_dir():
        return
    print(
        f"\nmost file descriptors open in a loader worker, 2 workers, {clips} random windows of "
        f"{clips} clips (hard links of one):\n"
    )
    print("| open clips per process | most descriptors in a worker |")
    print("| :--- | ---: |")
    for limit in (ALL_OPEN, SequenceDataset.max_open_clips):
        with open_clip_limit(limit):
            print(f"| {_label(limit)} | {max_descriptors(source, window, clips)} |")


def _label(limit: int) -> str:
    return "all (before the bound)" if limit == ALL_OPEN else f"{limit} (LRU)"


def machine() -> str:
    """CPU model, cores, OS, Python and torch versions."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            x.split(":", 1)[1].strip()
            for x in cpuinfo.read_text().splitlines()
            if x.startswith("model name")
        ]
        model = names[0] if names else model
    return (
        f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, help="prepared folder (default: synthetic clips)")
    parser.add_argument(
        "--config",
        default=str(ROOT / "configs" / "tiny_cpu.yaml"),
        help="config: data augmentation, crop size, synthetic face model",
    )
    parser.add_argument("--clips", type=int, default=6, help="synthetic clips")
    parser.add_argument("--frames", type=int, default=24, help="frames per synthetic clip")
    parser.add_argument("--window", type=int, default=3, help="frames per window (odd)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fd-clips", type=int, default=300, help="0: no descriptor count")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(
        args.config,
        [f"data.window={args.window}", "data.min_window=0", f"data.batch_size={args.batch_size}"],
    )
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            make_synthetic_dataset(
                data, cfg, clips=args.clips, frames=args.frames, seed=0, progress=False
            )
        cfg.data.sources = [DataSourceConfig(root=str(data))]
        print(f"command: python {shlex.join([sys.argv[0], *sys.argv[1:]])}")
        print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
        print(f"machine: {machine()}")
        print(
            f"data: {len(find_clips(data))} clips in {data if args.data else 'synthetic'}, "
            f"window {args.window}, batch {args.batch_size}, {args.batches} timed batches\n"
        )
        print("| loader workers | open clips per process | frames/s | frames/s per worker |")
        print("| ---: | :--- | ---: | ---: |")
        rates = {}
        for workers in args.workers:
            rates[workers] = frames_per_s(cfg, workers, args.batches)
            label = _label(SequenceDataset.max_open_clips)
            print(
                f"| {workers} | {label} | {rates[workers]:.1f} | "
                f"{rates[workers] / max(1, workers):.1f} |"
            )
        if args.fd_clips > 0:
            frame_ms = 1e3 / rates.get(0, max(rates.values()))
            bound_table(data, Path(tmp), args.fd_clips, args.window, frame_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
