"""Benchmark the built-in renderer against a ResNet-50 forward on the same batch.

Usage: python tools/bench_render.py [--batch 8] [--image-size 224] [--repeats 10] [--device cpu]
                                    [--threads N]

Prints a table of median milliseconds; the target is render / ResNet-50 <= 0.25. On a CPU that
other processes are using, PyTorch's multi-threaded operations stall at every thread barrier and
the renderer (hundreds of mid-sized operations) suffers far more than ResNet-50; the tool warns
when the machine looks busy. ``--threads 1`` gives stable figures on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from seqdeca.render.benchmark import benchmark_render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    r = benchmark_render(
        batch=args.batch, image_size=args.image_size, repeats=args.repeats, device=args.device
    )
    print(" ".join(f"{k}={v}" for k, v in r.info.items()) + f" coverage={r.coverage:.2f}")
    if load > 0.5 * (os.cpu_count() or 1):
        hint = " (try --threads 1)" if torch.get_num_threads() > 1 else ""
        print(
            f"warning: load average {load:.1f} on {os.cpu_count()} cores before the run; "
            f"timings are unreliable{hint}"
        )
    rows = [
        ("rasterize (project + raster)", r.rasterize_ms),
        ("interpolate + shade", r.shade_ms),
        ("total render (forward)", r.render_ms),
        ("render forward + backward", r.backward_ms),
        ("ResNet-50 forward (no_grad)", r.resnet50_ms),
    ]
    print(f"{'stage':<32}{'ms (median)':>12}")
    for name, ms in rows:
        print(f"{name:<32}{ms:>12.1f}")
    verdict = "ok" if r.ratio <= 0.25 else "over target"
    print(f"{'render / ResNet-50':<32}{r.ratio:>12.3f}  (target <= 0.25: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
