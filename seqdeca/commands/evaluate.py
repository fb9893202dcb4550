"""Frame-window evaluation of networks (and of landmark fitting) on prepared clips.

    python tools/evaluate.py --checkpoint RUN/model.pt [--checkpoint RUN2/model.pt ...]
        --data PREPARED_DIR --out DIR [--window W] [--per-frame] [--filter SPEC ...]
        [--mode network|fit]
        [--device cpu] [--config configs/x.yaml] [--tensorboard] [a.b=value ...]

Every valid frame of every prepared clip is predicted from the window centred on it. Writes
DIR/metrics.json, DIR/metrics.md, DIR/per_clip/<method>.csv, DIR/plots/*.png and, with
--tensorboard, DIR/tensorboard/. --per-frame adds each checkpoint with the temporal model off;
--filter savgol:9:2 (or one_euro:MIN_CUTOFF:BETA) adds it per frame with its codes smoothed over time;
--mode fit adds (or, without checkpoints, evaluates only) the face model fitted to the landmarks.
See docs/evaluation.md for the metrics.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.evaluation.runner import EvalOptions, evaluate


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        type=Path,
        help="model.pt or deca_model.tar (repeat for an ablation table)",
    )
    parser.add_argument("--data", required=True, type=Path, help="prepared dataset folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="frames per window, odd (default: inference.window; 0 = each checkpoint's trained)",
    )
    parser.add_argument(
        "--per-frame",
        action="store_true",
        help="also evaluate each checkpoint with the temporal model off (T=1)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        dest="filters",
        metavar="SPEC",
        help="also evaluate each checkpoint per frame with its codes smoothed over time: "
        "savgol:WINDOW:ORDER or one_euro:MIN_CUTOFF:BETA (repeatable)",
    )
    parser.add_argument(
        "--mode",
        choices=("network", "fit"),
        default="network",
        help="fit: add the landmark-fitting baseline (no checkpoint needed)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="YAML config file(s): inference.* and, for fit mode, face_model.*",
    )
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def job() -> int:
        cfg = load_config(args.config, split_overrides(args.overrides))
        opts = EvalOptions(
            data=args.data,
            out=args.out,
            config=cfg,
            checkpoints=args.checkpoint,
            mode=args.mode,
            per_frame=args.per_frame,
            filters=args.filters,
            window=args.window,
            device=args.device,
            tensorboard=args.tensorboard,
            progress=not args.no_progress,
        )
        evaluate(opts)
        print(f"{len(args.checkpoint)} checkpoint(s), mode {args.mode} -> {args.out}/metrics.md")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
