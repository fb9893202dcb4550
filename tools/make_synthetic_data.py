"""Render synthetic face clips with ground truth in the prepared clip layout.

    python tools/make_synthetic_data.py OUT [--clips N] [--frames T] [--seed S]
        [--config configs/x.yaml] [a.b=value ...]

Writes OUT/synthetic/synth_00000/ ... (frames, landmarks, masks, ..., gt.npz, meta.json) with the
configured face model (bundled default, or FLAME via face_model.path). Existing clips are kept.
"""

from __future__ import annotations

import argparse
import sys

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.data.synthetic import make_synthetic_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="output root (clips go to OUT/synthetic/)")
    parser.add_argument("--clips", type=int, default=10, help="number of clips (default 10)")
    parser.add_argument("--frames", type=int, default=50, help="frames per clip (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: run.seed)")
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)

    def job() -> int:
        cfg = load_config(args.config, split_overrides(args.overrides))
        seed = cfg.run.seed if args.seed is None else args.seed
        paths = make_synthetic_dataset(
            args.out, cfg, clips=args.clips, frames=args.frames, seed=seed
        )
        print(f"{len(paths)} synthetic clips of {args.frames} frames -> {args.out}/synthetic")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
