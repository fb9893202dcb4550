"""Figures of the realistic synthetic clips (configs/experiments/temporal.yaml).

    python benchmarks/synthetic_realism.py OUT [--clips 10] [--frames 100] [--sheet PNG]

Writes three sets of the same seed under OUT (tracked clean, tracked corrupted, exact landmarks
with the same crop) and prints, per set, the render speed (frames/s, whole pipeline: render,
corrupt, track, crop, write), MediaPipe's detection rate (face found in the frame itself) on
clean and corrupted frames, and the NME of ``landmarks68.npy`` against the exact projections in
``gt.npz`` (% of the outer eye-corner distance, frames where the face was found), per kind of
corruption too. ``--sheet`` also draws clean (top) and corrupted (bottom) frames of the same
clips, one column per kind of corruption (docs/images/synthetic_corrupt.png).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from seqdeca.config import load_config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.data.synthetic_corrupt import CORRUPTIONS
from seqdeca.vis.grid import draw_points, image_grid, save_png

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "temporal.yaml"
CLEAN = [f"synthetic.corruption.{k}=0" for k in CORRUPTIONS]
SETS = {
    "tracked_clean": CLEAN,
    "tracked_corrupt": [],
    "exact_crop_clean": [*CLEAN, "synthetic.landmarks=exact"],
}


def kinds(gt) -> dict[str, np.ndarray]:
    """{kind: (T,) bool} corruptions active per frame (from the gt.npz records)."""
    return {
        "occluder": gt["corrupt_occluder"] > 0,
        "blur": gt["corrupt_blur"][:, 0] > 0,
        "noise": gt["corrupt_noise"] > 0,
        "jpeg": gt["corrupt_jpeg"] > 0,
        "flicker": gt["corrupt_brightness"] != 1,
    }


def frame_table(paths: list[Path]) -> dict[str, np.ndarray]:
    """Per-frame found, NME and corruption flags over the clips."""
    rows: dict[str, list[np.ndarray]] = {}
    for clip in paths:
        gt = np.load(clip / "gt.npz")
        exact, tracked = gt["landmarks68"], np.load(clip / "landmarks68.npy")
        iod = np.linalg.norm(exact[:, 36] - exact[:, 45], axis=-1)
        t = len(iod)
        row = {
            "nme": np.linalg.norm(tracked - exact, axis=-1).mean(1) / iod * 100,
            "found": gt["tracked"] if "tracked" in gt else np.ones(t, bool),
            "valid": np.load(clip / "valid.npy"),
            "corrupted": gt["corrupted"] if "corrupted" in gt else np.zeros(t, bool),
        }
        if "corrupted" in gt:
            row.update(kinds(gt))
        for key, value in row.items():
            rows.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in rows.items()}


def report(name: str, table: dict[str, np.ndarray], seconds: float) -> None:
    n, found, nme = len(table["nme"]), table["found"], table["nme"]
    print(
        f"{name}: {n} frames in {seconds:.1f} s = {n / seconds:.1f} frames/s; "
        f"valid {table['valid'].mean():.3f}"
    )
    groups = {"clean": ~table["corrupted"], "corrupted": table["corrupted"]}
    groups.update({k: table[k] for k in CORRUPTIONS if k in table})
    for label, mask in groups.items():
        if mask.any():
            print(
                f"  {label:10s} frames {mask.sum():5d}  found {found[mask].mean():.3f}  "
                f"NME {np.nanmean(nme[mask & found]):.2f} %"
            )


def _tile(clip: Path, t: int, size: int = 160) -> np.ndarray:
    image = Image.open(clip / "frames" / f"{t:06d}.jpg")
    points = np.load(clip / "landmarks68.npy")[t] * size / image.size[0]
    return draw_points(np.asarray(image.resize((size, size), Image.BILINEAR)), points, (0, 255, 0))


def contact_sheet(clean: list[Path], dirty: list[Path], path: str) -> None:
    """Clean and corrupted versions of frames where one kind of corruption acts alone."""
    columns, labels = [], []
    for kind in CORRUPTIONS:
        for c, clip in enumerate(dirty):
            active = kinds(np.load(clip / "gt.npz"))
            alone = active[kind] & ~np.logical_or.reduce(
                [v for k, v in active.items() if k != kind]
            )
            if alone.any() and all(c != used for used, _ in columns):
                columns.append((c, int(np.flatnonzero(alone)[len(np.flatnonzero(alone)) // 2])))
                labels.append(f"{kind} (clip {c}, t={columns[-1][1]})")
                break
    rows = [[_tile(paths[c], t) for c, t in columns] for paths in (clean, dirty)]
    print(f"sheet -> {save_png(image_grid(rows, labels=labels), path)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--sheet", default=None, help="also write the contact sheet PNG here")
    args = parser.parse_args()
    made = {}
    for name, overrides in SETS.items():
        cfg = load_config(CONFIG, ["synthetic.min_frames=0", *overrides])
        tic = time.perf_counter()
        made[name] = make_synthetic_dataset(
            f"{args.out}/{name}",
            cfg,
            clips=args.clips,
            frames=args.frames,
            seed=args.seed,
            progress=False,
        )
        report(name, frame_table(made[name]), time.perf_counter() - tic)
    if args.sheet:
        contact_sheet(made["tracked_clean"], made["tracked_corrupt"], args.sheet)


if __name__ == "__main__":
    main()
