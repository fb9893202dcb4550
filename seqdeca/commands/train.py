"""Train a seqdeca stage (single process, or under ``accelerate launch`` for DDP / GPUs).

    python tools/train_seq.py --config configs/temporal.yaml [--resume | --resume-from CKPT] [a.b=value ...]
    accelerate launch --multi_gpu --num_processes 2 --cpu tools/train_seq.py --config ...
    python tools/train_seq.py --export RUN_DIR_OR_CHECKPOINT OUT.pt [--config ...]

Writes run.output_dir/: config.yaml, losses.jsonl, val.jsonl (train.validate_every), images/
(train.images_every), tb/ (TensorBoard), checkpoints/step_NNNNNN/ and model.pt. ``--resume``
continues from the newest checkpoint of run.output_dir (``--resume-from``: a given step_NNNNNN
folder), mid-epoch, with the same loss trajectory as an uninterrupted run (without a checkpoint
yet it starts from scratch, so a job may always pass it). ``--export`` writes an
inference checkpoint (like model.pt) from a saved checkpoint without training, using the run's
config.yaml unless --config is given; during a run, ``touch RUN_DIR/export.request`` does the
same with the current weights after the next step (RUN_DIR/exports/model_step_NNNNNN.pt).
"""

from __future__ import annotations

import argparse
import logging
import sys

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.train.loop import train
from seqdeca.train.state import export_from_checkpoint


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="resume from the newest checkpoint of run.output_dir (none yet: start from scratch)",
    )
    parser.add_argument("--resume-from", default=None, help="resume from this checkpoint folder")
    parser.add_argument(
        "--export",
        nargs=2,
        metavar=("CHECKPOINT", "OUT"),
        default=None,
        help="write OUT (an inference model.pt) from a checkpoint folder or a run folder's newest "
        "checkpoint, without training",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def job() -> int:
        if args.export:
            given = args.config or args.overrides
            cfg = load_config(args.config, split_overrides(args.overrides)) if given else None
            print(f"exported {export_from_checkpoint(args.export[0], args.export[1], cfg=cfg)}")
            return 0
        cfg = load_config(args.config, split_overrides(args.overrides))
        resume = args.resume_from or ("latest" if args.resume else None)
        summary = train(cfg, resume=resume)
        if not summary.main_process:
            return 0
        losses = " ".join(f"{k}={v:.4g}" for k, v in sorted(summary.last_losses.items()))
        print(
            f"{summary.steps} steps ({summary.skipped_steps} skipped, "
            f"{summary.bad_samples} unreadable windows), "
            f"{summary.windows_per_s:.2f} windows/s; last: {losses}; -> {summary.run_dir}"
        )
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
