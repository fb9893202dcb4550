"""Build seqdeca's FLAME-format face model from face videos (one subject per clip).

Usage:
    python tools/build_face_model.py [VIDEO ...] [--out PATH] [--n-expression 24] ...
    python tools/build_face_model.py [VIDEO ...] --eval-leave-one-out [--frame-step 2]

Without VIDEO arguments it uses the sample clips in ../shared/data/clips, and without --out it
writes the bundled model (seqdeca/face_model/data/default_face_model.npz) and its .json report.
--eval-leave-one-out builds from all clips but one, fits the held-out clip's landmarks and prints
the 2D residual table (percent of the inter-ocular distance) instead of writing a model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqdeca.cli import run_main
from seqdeca.errors import UserError
from seqdeca.face_model import DEFAULT_MODEL_PATH, save_assets
from seqdeca.model_builder import (
    BuildConfig,
    build_face_model,
    evaluate_leave_one_out,
    format_residual_table,
)

SAMPLE_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "videos", nargs="*", type=Path, help="clips, one subject each (default: sample clips)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_MODEL_PATH, help="model .npz (report: same name .json)"
    )
    parser.add_argument("--n-shape", type=int, default=5)
    parser.add_argument("--n-expression", type=int, default=24)
    parser.add_argument("--n-texture", type=int, default=5)
    parser.add_argument("--no-texture", action="store_true", help="skip the albedo (geometry only)")
    parser.add_argument(
        "--build-date", default=None, help="ISO date stored in the model (default: today)"
    )
    parser.add_argument(
        "--eval-leave-one-out", action="store_true", help="print the held-out residual table"
    )
    parser.add_argument(
        "--frame-step", type=int, default=2, help="fit every n-th frame (leave-one-out)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)

    def run() -> int:
        videos = args.videos or sorted(SAMPLE_CLIPS.glob("*.mp4"))
        if not videos:
            raise UserError(f"no videos given and no sample clips in {SAMPLE_CLIPS}")
        config = BuildConfig(
            n_shape=args.n_shape,
            n_expression=args.n_expression,
            n_texture=args.n_texture,
            texture=not args.no_texture,
            build_date=args.build_date,
        )
        if args.eval_leave_one_out:
            rows = evaluate_leave_one_out(
                videos, config=config, frame_step=args.frame_step, log=print
            )
            print(format_residual_table(rows))
            return 0
        assets, report = build_face_model(videos, config=config, log=print)
        path = save_assets(assets, args.out, compact=True)
        path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}"
        )
        return 0

    return run_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
