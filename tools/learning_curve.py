"""Learning evidence: held-out expression error on synthetic clips, untrained vs trained.

    python tools/learning_curve.py OUT [--preset expression|full] [--steps 200 400 600]
        [--lr-scales 1 1 0.3] [--train-clips 512] [--heldout-clips 32] [--frames 8] [--seed 0]
        [--synthetic max_yaw=5 ...] [--png OUT/curve.png]
        [--config configs/synthetic_expression.yaml] [a.b=value ...]

Writes synthetic training and held-out clips under OUT/data (kept between runs: use a new OUT
after changing the preset or --synthetic) with the settings of --preset
(seqdeca.train.learning_check.SYNTHETIC_PRESETS; "expression": head pose, identity and framing
fixed; "full": everything varies), --synthetic KEY=VALUE items overriding SyntheticSettings
fields of both sets; trains the configured temporal stage with self-supervised losses only
into OUT/run, scoring the held-out clips after each --steps count (segment k runs at train.lr x
--lr-scales[k]; default: the last segment at 0.3); prints the expression code error, the
expression-only and expression + jaw vertex errors, the jaw error and the landmark NME against
steps and training seconds, and writes OUT/curve.json (and the PNG).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.errors import UserError
from seqdeca.train.learning_check import SYNTHETIC_PRESETS, run_learning_check, save_curve_png

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic_expression.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="output folder (data/, run/, curve.json)")
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 400, 600],
                        help="step counts at which to score the held-out clips")  # fmt: skip
    parser.add_argument("--lr-scales", type=float, nargs="+", default=None,
                        help="train.lr factor per segment (default 1 ... 1 0.3)")  # fmt: skip
    parser.add_argument("--preset", choices=sorted(SYNTHETIC_PRESETS), default="expression",
                        help="synthetic settings preset (default: expression)")  # fmt: skip
    parser.add_argument("--train-clips", type=int, default=512)
    parser.add_argument("--heldout-clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8, help="frames per synthetic clip")
    parser.add_argument("--synthetic", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SyntheticSettings overrides, e.g. max_yaw=5 shape_scale=0")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic clips")
    parser.add_argument("--png", default=None, help="also draw the curve into this PNG")
    parser.add_argument("--config", action="append", default=[],
                        help=f"YAML config file(s) (default {DEFAULT_CONFIG.name})")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def job() -> int:
        cfg = load_config(args.config or [DEFAULT_CONFIG], split_overrides(args.overrides))
        if any("=" not in item for item in args.synthetic):
            raise UserError(f"--synthetic takes KEY=VALUE items, got {args.synthetic}")
        ranges = dict(SYNTHETIC_PRESETS[args.preset])
        for key, value in (item.split("=", 1) for item in args.synthetic):
            try:
                ranges[key] = float(value)
            except ValueError:
                raise UserError(f"--synthetic {key}={value}: the value must be a number") from None
        scales = args.lr_scales or [1.0] * (len(args.steps) - 1) + [0.3]
        result = run_learning_check(
            cfg, args.out, checkpoints=args.steps, train_clips=args.train_clips,
            heldout_clips=args.heldout_clips, frames=args.frames, seed=args.seed,
            ranges=ranges, lr_scales=scales,
        )  # fmt: skip
        print(result.table())
        points = [asdict(p) for p in result.points]
        (Path(args.out) / "curve.json").write_text(json.dumps(points, indent=1))
        if args.png:
            print(f"curve -> {save_curve_png(result, args.png)}")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
