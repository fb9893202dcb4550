"""Benchmark video2mesh: fit-mode frames/s, network end to end vs bare forward, peak memory.

    python tools/bench_video2mesh.py [CLIP ...] [--network-config configs/tiny_cpu.yaml]
        [--skip fit,network,memory] [--out DIR] [section.key=value ...]

CLIP defaults to the MEAD 1080p sample clips in ../shared/data/clips. Prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.errors import UserError
from seqdeca.inference.benchmark import bench_fit, bench_network, bench_peak_memory

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "clips"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clips", nargs="*", metavar="CLIP", help="default: MEAD sample clips")
    parser.add_argument("--network-config", default=str(ROOT / "configs" / "base.yaml"),
                        help="config of the random network of (b) (base = ResNet-50)")  # fmt: skip
    parser.add_argument("--skip", default="", help="comma list of fit, network, memory")
    parser.add_argument("--out", default="outputs/bench_video2mesh")
    args, rest = parser.parse_known_args(argv)
    clips = [c for c in args.clips if "=" not in c]
    overrides = [c for c in args.clips if "=" in c] + rest

    def job() -> int:
        paths = [Path(c) for c in clips] or sorted(SAMPLES.glob("[MW]0*.mp4"))
        if not paths:
            raise UserError(f"no clips given and no MEAD samples in {SAMPLES}")
        skip = set(filter(None, args.skip.split(",")))
        out = Path(args.out)
        cfg = load_config(ROOT / "configs" / "base.yaml", split_overrides(overrides))
        rows = []
        if "fit" not in skip:
            rows.append(bench_fit(paths, cfg, out / "fit"))
        if "network" not in skip:
            net_cfg = load_config(args.network_config, split_overrides(overrides))
            rows += bench_network(paths[0], net_cfg, out / "network")
        if "memory" not in skip:
            rows += bench_peak_memory(paths[0], out, split_overrides(overrides))
        print(f"{'measurement':58s} {'frames':>6s} {'seconds':>8s} {'value':>9s}  unit / note")
        for r in rows:
            print(f"{r.what:58s} {r.frames:6d} {r.seconds:8.1f} {r.value:9.2f}  {r.unit} {r.note}")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
