"""Render the configured face model's modes of variation and export its neutral mesh.

    python tools/render_face_model.py --out outputs/demo [--config configs/x.yaml] [a.b=value ...]

Writes face_model.png (textured and grey renders), neutral.obj/.mtl/.png, config.yaml and
summary.json into --out.
"""

from __future__ import annotations

import argparse
import sys

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.vis.model_sheet import write_face_model_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="output folder (default: the config's run.output_dir)")
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)

    def job() -> int:
        cfg = load_config(args.config, split_overrides(args.overrides))
        out = args.out or cfg.run.output_dir
        summary = write_face_model_demo(cfg, out)
        print(
            f"{summary['model']}: {summary['vertices']} vertices, {summary['faces']} faces, "
            f"{summary['identity_components']} identity / {summary['expression_components']} "
            f"expression components -> {out}/face_model.png, {out}/neutral.obj"
        )
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
