"""Benchmark data preparation end to end (the tools/prepare_data.py code path).

Usage: python tools/bench_prepare.py [CLIP.mp4 ...] [--workers 1 2] [--config x.yaml] [a.b=value]

Default clips: the four 1080p MEAD samples in ../shared/data/clips (M*.mp4, W*.mp4) next to the
repository. Each --workers value prepares all clips into a fresh temporary folder with
prepare_dataset / prepare_clip and prints a line: frames, wall seconds, end-to-end frames/s, the
per-stage split in ms/frame (decode, track, warp + write, other; per-process busy time) and the
one-time start-up cost per process. Target: >= 25 frames/s end to end on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.data.benchmark import benchmark_prepare, environment, format_table
from seqdeca.errors import UserError

SAMPLE_CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clips"


def default_clips() -> list[Path]:
    """The MEAD samples (M*.mp4, W*.mp4) in ../shared/data/clips."""
    folder = SAMPLE_CLIPS.resolve()
    clips = sorted(folder.glob("M*.mp4")) + sorted(folder.glob("W*.mp4")) if folder.is_dir() else []
    if not clips:
        raise UserError(f"no sample clips (M*.mp4, W*.mp4) in {folder}: pass video files instead")
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", nargs="*", help="video files, then config overrides a.b=value")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    args = parser.parse_args(argv)

    def job() -> int:
        overrides = split_overrides([a for a in args.items if "=" in a])
        clips = [Path(a) for a in args.items if "=" not in a] or default_clips()
        cfg = load_config(args.config, overrides)
        env = environment()
        print(" ".join(f"{k}={v}" for k, v in env.items()) + f" clips={len(clips)}", flush=True)
        if float(env["load1"]) > 0.5 * (os.cpu_count() or 1):
            print(f"warning: load average {env['load1']} on {env['cpus']} cores before the run; "
                  "timings are unreliable")  # fmt: skip
        runs = benchmark_prepare(clips, cfg, workers=args.workers)
        print(format_table(runs))
        return 0 if all(r.done for r in runs) else 2

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
