"""Reconstruct a 3D face mesh for every frame of videos (network or landmark fitting).

    python tools/video2mesh.py CLIP [CLIP ...] | --demo [--out DIR] [--checkpoint PATH]
        [--mode auto|network|fit] [--device cpu|cuda] [--detail] [--no-video] [--no-rig]
        [--faces largest|all|N] [--max-faces N] [--texture model|extract|mean]
        [--batch-size N] [--config FILE ...]
        [section.key=value ...]

A folder argument processes every video in it. `network` mode runs a trained checkpoint (a
seqdeca model.pt, or DECA's deca_model.tar with face_model.* pointing at FLAME); `fit` mode
needs no trained weights and fits the face model to the tracked landmarks, then estimates its
texture coefficients and every frame's light from the frames (`--texture extract`: also a UV
texture map unwrapped from them); `auto` (default) picks `network` when a checkpoint is given
or configured, else `fit`.

Writes DIR/<clip stem>/: meshes/NNNNNN.obj per frame with a face, codes.npz, landmarks.npz,
overlay.mp4 (input | render | shape), rig.glb (an animated glTF rig, docs/rig.md) and
summary.json, and DIR/summary.json for the run. `--faces all` (up to --max-faces, default 4) or
`--faces N` reconstructs several faces, each followed with a stable identity (numbered by first
appearance, left to right within a frame) into DIR/<clip stem>/face_0/, face_1/, ... (meshes,
codes.npz, landmarks.npz, rig.glb, summary.json each), with one overlay.mp4 showing every face
and the clip's summary.json next to them. A clip that cannot be processed gives one line
on stderr; the others are still processed and the exit code is then 2. Under `accelerate launch
--num_processes N` (or torchrun) the N processes share the clips, each on its own GPU
(cuda:LOCAL_RANK); process 0 writes DIR/summary.json and its exit code covers every clip.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from seqdeca.cli import EXIT_USER_ERROR, run_main, split_overrides
from seqdeca.config import given_keys, load_config
from seqdeca.errors import UserError
from seqdeca.inference.clip_appearance import TEXTURE_MODES
from seqdeca.inference.demo import make_demo_clip
from seqdeca.inference.faces import face_selection
from seqdeca.inference.pipeline import MODES, ClipResult, video2mesh
from seqdeca.shards import current_shard

# The checkout's configs/ (seqdeca is installed editable from it).
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "base.yaml"


def report(res: ClipResult, tag: str = "", *, faces: bool = False) -> None:
    """One line per clip: stdout when done, stderr when failed (``tag``: the process's;
    ``faces``: say how many faces were found)."""
    if res.status == "done":
        found = f"{res.faces} face{'s' if res.faces != 1 else ''}, " if faces else ""
        print(
            f"{tag}{res.source}: {res.frames} frames ({res.valid_frames} with a face), "
            f"{found}{res.frames_per_second:.1f} frames/s -> {res.out}",
            flush=True,
        )
    else:
        where = "" if res.source in res.reason else f"{res.source}: "
        print(f"{tag}error: {where}{res.reason}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clips", nargs="*", metavar="CLIP", help="video files or folders")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also process the built-in demo clip (written to OUT/astronaut.mp4)",
    )
    parser.add_argument("--out", default="outputs/video2mesh", help="output folder")
    parser.add_argument("--checkpoint", help="seqdeca model.pt or DECA deca_model.tar")
    parser.add_argument("--mode", choices=MODES, help="default: the config's inference.mode")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: run.device)")
    parser.add_argument("--detail", action="store_true", help="also write detail meshes")
    parser.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    parser.add_argument("--no-rig", action="store_true", help="skip rig.glb (the glTF rig)")
    parser.add_argument(
        "--faces",
        help="largest (default: one face), all (up to --max-faces) "
        "or N: faces to reconstruct, one folder each (inference.faces)",
    )
    parser.add_argument(
        "--max-faces",
        type=int,
        help="faces followed at most with --faces all (inference.max_faces, 4)",
    )
    parser.add_argument(
        "--texture",
        choices=TEXTURE_MODES,
        help="fit mode's appearance (inference.fit.texture): model (default: "
        "texture coefficients and per-frame light estimated), extract (also a "
        "UV texture map unwrapped from the frames) or mean (mean albedo, fixed "
        "light)",
    )
    parser.add_argument("--batch-size", type=int, help="windows per network forward")
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help=f"YAML config file(s) (default: {DEFAULT_CONFIG.name})",
    )
    args, rest = parser.parse_known_args(argv)
    clips = [c for c in args.clips if "=" not in c or Path(c).exists()]
    overrides = [c for c in args.clips if c not in clips] + rest

    def job() -> int:
        shard = current_shard()
        files, items = args.config or [DEFAULT_CONFIG], split_overrides(overrides)
        cfg = load_config(files, items)
        if args.demo:
            demo = Path(args.out) / "astronaut.mp4"
            if shard.is_main:
                make_demo_clip(demo)
            shard.barrier()  # the others wait until it is written
            clips.append(str(demo))
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
        if args.texture is not None:
            cfg.inference.fit.texture = args.texture
        if args.faces is not None:
            cfg.inference.faces = args.faces
        if args.max_faces is not None:
            cfg.inference.max_faces = args.max_faces
        separate = face_selection(cfg).separate  # a bad value stops here, before any clip
        results = video2mesh(
            clips,
            args.out,
            cfg,
            detail=args.detail,
            video=not args.no_video,
            rig=not args.no_rig,
            report=partial(report, tag=shard.tag, faces=separate),
            explicit=given_keys(files, items),
            shard=shard,
        )
        if not shard.is_main:
            return 0  # process 0 holds every result; a failed exit here would stop it early
        return EXIT_USER_ERROR if any(r.status != "done" for r in results) else 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
