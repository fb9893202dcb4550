"""Contact sheet of a prepared clip: crops with landmarks and the 3-class masks, as one PNG.

Usage: python tools/show_prepared.py CLIP_DIR [--out sheet.png] [--frames 8] [--columns 4]
                                     [--tile 224] [--dense]

CLIP_DIR is <out_root>/<dataset>/<clip_id> written by tools/prepare_data.py. Default output:
CLIP_DIR/../<clip_id>_sheet.png. Frames without a face have a red border and "no face".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdeca.cli import run_main
from seqdeca.vis.contact_sheet import contact_sheet, load_prepared_view
from seqdeca.vis.grid import save_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clip_dir", help="prepared clip folder <out_root>/<dataset>/<clip_id>")
    parser.add_argument("--out", default=None, help="PNG path (default CLIP_DIR/../<id>_sheet.png)")
    parser.add_argument("--frames", type=int, default=8, help="evenly spaced frames (default 8)")
    parser.add_argument("--columns", type=int, default=4, help="frames per row (default 4)")
    parser.add_argument("--tile", type=int, default=None, help="tile side px (default crop size)")
    parser.add_argument("--dense", action="store_true", help="also draw all 478 points")
    args = parser.parse_args(argv)

    def job() -> int:
        view = load_prepared_view(args.clip_dir)
        out = Path(args.out) if args.out else view.folder.parent / f"{view.clip_id}_sheet.png"
        sheet = contact_sheet(
            view.folder, frames=args.frames, columns=args.columns, tile=args.tile, dense=args.dense
        )
        save_png(sheet, out)
        print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
