"""Prepare a raw dataset into prepared clip folders (crops, landmarks, masks, transforms, labels).

    python tools/prepare_data.py --dataset mead --input /data/MEAD --out /data/prepared \\
        [--views front left_30] [--workers 4] [--limit 10] [--config x.yaml] [a.b=value ...]

Clips go to OUT/{dataset}/{clip_id}/ (layout: docs/data.md); run the same command again to
resume: finished clips are skipped. Prints one line per prepared or failed clip, then the totals.
Writes OUT/summary.json, OUT/config.yaml and, for MEAD (subject split datasets/mead_split.json)
and Aff-Wild2 (annotation folders), split manifests OUT/manifests/{dataset}_{split}.txt of the
prepared clip ids. Exit code 2 when the arguments are wrong or no clip could be prepared; failed
clips are listed, not fatal. Under `accelerate launch --num_processes N` (or torchrun) the N
processes share the clips (each with its own --workers); process 0 writes the summary and the
manifests, and its exit code covers every clip.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from seqdeca.cli import EXIT_USER_ERROR, run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.prep.prepare_run import (
    DATASETS,
    ClipOutcome,
    clip_splits,
    discover,
    format_summary,
    prepare_dataset,
    write_manifests,
)
from seqdeca.prep.sources import MEAD_VIEWS
from seqdeca.shards import current_shard

# The checkout's datasets/ (seqdeca is installed editable from it).
MEAD_SPLIT = Path(__file__).resolve().parents[2] / "datasets" / "mead_split.json"


def report(outcome: ClipOutcome, tag: str = "") -> None:
    """One line per prepared or failed clip (``tag``: the process's); skipped ones are counted."""
    from tqdm import tqdm

    if outcome.status == "done":
        tqdm.write(
            f"{tag}{outcome.clip_id}: {outcome.frames} frames ({outcome.valid_frames} "
            f"with a face), {outcome.seconds:.1f} s"
        )
    elif outcome.status == "failed":
        tqdm.write(f"{tag}failed {outcome.clip_id}: {outcome.reason}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="raw dataset layout")
    parser.add_argument("--input", required=True, help="raw dataset root (see datasets/README.md)")
    parser.add_argument("--out", required=True, help="prepared-data root")
    parser.add_argument(
        "--views",
        nargs="+",
        default=["front"],
        choices=MEAD_VIEWS,
        help="MEAD camera views (default: front)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many clips")
    parser.add_argument("--mead-split", default=str(MEAD_SPLIT), help="MEAD subject split file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)

    def job() -> int:
        shard = current_shard()
        cfg = load_config(args.config, split_overrides(args.overrides))
        sources = discover(args.dataset, args.input, views=args.views)
        if shard.is_main:
            shared = f", shared by {shard.world_size} processes" if shard.sharded else ""
            print(
                f"found {len(sources)} clips ({args.dataset}) in {args.input}{shared}", flush=True
            )
        summary = prepare_dataset(
            sources,
            args.out,
            cfg,
            workers=max(1, args.workers),
            limit=args.limit,
            progress=not args.no_progress,
            report=partial(report, tag=shard.tag),
            shard=shard,
        )
        if not shard.is_main:
            return 0  # process 0 holds every outcome; a failed exit here would stop it early
        print(format_summary(summary))
        splits = clip_splits(args.dataset, sources, args.input, args.mead_split)
        for path in write_manifests(args.out, args.dataset, splits):
            print(f"manifest: {path}")
        return 0 if summary.done + summary.skipped > 0 else EXIT_USER_ERROR

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
