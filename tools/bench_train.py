"""Training throughput (windows/s and frames/s) of the tiny and the full config, both stages.

    python tools/bench_train.py [--device cpu|cuda] [--steps 3] [--warmup 1] [--configs tiny full]
                                [--stages temporal detail] [--clips 2 --frames 16] [a.b=value ...]

"tiny" is configs/tiny_cpu.yaml (tiny backbones, render 64); "full" is configs/base.yaml (ResNet-50
coarse / detail / AU networks, default temporal fusion, render 224). The runs train on synthetic
clips written to a temporary folder; the warm-up steps are not timed. Overrides apply to every
run (e.g. data.batch_size=2 train.n_critic=2 train.mixed_precision=bf16).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.train.bench import benchmark_training, format_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NAMED = {"tiny": [CONFIGS / "tiny_cpu.yaml"], "full": [CONFIGS / "base.yaml"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="run.device: cpu, cuda, cuda:1, ...")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument("--configs", nargs="+", choices=sorted(NAMED), default=["tiny", "full"])
    parser.add_argument("--stages", nargs="+", choices=["temporal", "detail"],
                        default=["temporal", "detail"])  # fmt: skip
    parser.add_argument("--clips", type=int, default=2, help="synthetic clips to train on")
    parser.add_argument("--frames", type=int, default=16, help="frames per synthetic clip")
    parser.add_argument("--workdir", default=None, help="keep the data and runs here")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def job() -> int:
        rows = benchmark_training(
            {name: NAMED[name] for name in args.configs}, stages=args.stages, device=args.device,
            steps=args.steps, warmup=args.warmup, overrides=split_overrides(args.overrides),
            clips=args.clips, frames=args.frames, workdir=args.workdir,
        )  # fmt: skip
        print(format_table(rows))
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
