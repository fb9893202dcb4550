"""Reconstruct a 3D face mesh for every frame of videos (network or landmark fitting).

    python tools/video2mesh.py CLIP [CLIP ...] | --demo [--out DIR] [--checkpoint PATH]
        [--mode auto|network|fit] [--device cpu|cuda] [--detail] [--no-video] [--batch-size N]
        [--config FILE ...] [section.key=value ...]

A folder argument processes every video in it. `network` mode runs a trained checkpoint (a
seqdeca model.pt, or DECA's deca_model.tar with face_model.* pointing at FLAME); `fit` mode
needs no trained weights and fits the face model to the tracked landmarks; `auto` (default)
picks `network` when a checkpoint is given or configured, else `fit`.

Writes DIR/<clip stem>/: meshes/NNNNNN.obj per frame with a face, codes.npz, landmarks.npz,
overlay.mp4 (input | render | shape) and summary.json. A clip that cannot be processed gives
one line on stderr; the others are still processed and the exit code is then 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdeca.cli import EXIT_USER_ERROR, run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.errors import UserError
from seqdeca.inference.demo import make_demo_clip
from seqdeca.inference.pipeline import MODES, ClipResult, video2mesh

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "base.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clips", nargs="*", metavar="CLIP", help="video files or folders")
    parser.add_argument("--demo", action="store_true",
                        help="also process the built-in demo clip (written to OUT/astronaut.mp4)")  # fmt: skip
    parser.add_argument("--out", default="outputs/video2mesh", help="output folder")
    parser.add_argument("--checkpoint", help="seqdeca model.pt or DECA deca_model.tar")
    parser.add_argument("--mode", choices=MODES, help="default: the config's inference.mode")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: run.device)")
    parser.add_argument("--detail", action="store_true", help="also write detail meshes")
    parser.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    parser.add_argument("--batch-size", type=int, help="windows per network forward")
    parser.add_argument("--config", action="append", default=None,
                        help=f"YAML config file(s) (default: {DEFAULT_CONFIG.name})")  # fmt: skip
    args, rest = parser.parse_known_args(argv)
    clips = [c for c in args.clips if "=" not in c or Path(c).exists()]
    overrides = [c for c in args.clips if c not in clips] + rest

    def report(res: ClipResult) -> None:
        if res.status == "done":
            print(f"{res.source}: {res.frames} frames ({res.valid_frames} with a face), "
                  f"{res.frames_per_second:.1f} frames/s -> {res.out}")  # fmt: skip
        else:
            where = "" if res.source in res.reason else f"{res.source}: "
            print(f"error: {where}{res.reason}", file=sys.stderr)

    def job() -> int:
        cfg = load_config(args.config or [DEFAULT_CONFIG], split_overrides(overrides))
        if args.demo:
            clips.append(str(make_demo_clip(Path(args.out) / "astronaut.mp4")))
        if not clips:
            raise UserError("give at least one CLIP (a video file or a folder), or --demo")
        if args.checkpoint:
            cfg.inference.checkpoint = args.checkpoint
        if args.mode:
            cfg.inference.mode = args.mode
        if args.device:
            cfg.run.device = args.device
        if args.batch_size is not None:
            cfg.inference.batch_size = max(1, args.batch_size)
        results = video2mesh(clips, args.out, cfg, detail=args.detail,
                             video=not args.no_video, report=report)  # fmt: skip
        return EXIT_USER_ERROR if any(r.status != "done" for r in results) else 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
