"""How close fit mode's render comes to the frames: PSNR, covered PSNR, L1 and NME of each
``inference.fit.texture`` mode on face clips, in sample and leave one clip out.

    python experiments/fit_appearance.py OUT [--clips DIR] [--modes mean model extract]

The clips (default: the sample clips in ``../shared/data/clips``) are prepared with
``tools/prepare_data.py``. Each mode is scored by ``tools/evaluate.py --mode fit``:

* in sample: with the configured face model (the bundled one was built from the sample clips,
  so its texture space has seen them);
* leave one out: per clip, a face model built by ``tools/build_face_model.py`` from the OTHER
  clips, then that clip evaluated with it (``face_model.path``).

Rows: ``mean`` (the mean albedo under a fixed light), ``model`` (the estimated texture
coefficients and lights, the openings' colours learnt from every frame) and ``extract, odd
frames`` (the texture map and the openings' colours learnt from the even frames only, scored on
the odd ones); the last two come from one evaluation with ``inference.fit.texture=extract``.
Means over clips are weighted by the frames scored. Writes ``OUT/results.md`` and ``OUT/results.json`` (``{setting: {row: {metric:
value}}}``); each step is skipped when its output exists, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from ablation import banner, finish_parsing

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "clips"
MODES = ("mean", "model", "extract")
ROWS = {"mean": "mean", "model": "model", "extract, odd frames": "extract"}  # row: its mode
METRICS = ("psnr", "psnr_covered", "l1", "nme_mp")
HEADERS = ("PSNR (dB)", "PSNR covered (dB)", "L1", "NME-MP (%)")
BUILD_DATE = "2026-11-21"  # the bundled model's: the models differ only by their clips


def _run(args: list[str], log: Path) -> None:
    """Run a repository tool, its output to ``log``; exit with its last line on failure."""
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, *args], check=False, stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode:
        lines = log.read_text().strip().splitlines() or ["(no output)"]
        sys.exit(f"error: {' '.join(args[:1])} failed ({log}): {lines[-1]}")


def prepare(clips: list[Path], out: Path) -> Path:
    """The clips prepared with tools/prepare_data.py into ``out/prepared/videos/<stem>``."""
    root = out / "prepared"
    if not (root / "summary.json").exists():
        raw = out / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for clip in clips:
            link = raw / clip.name
            if not link.exists():
                link.symlink_to(clip.resolve())
        tool = str(ROOT / "tools" / "prepare_data.py")
        _run([tool, "--dataset", "videos", "--input", str(raw), "--out", str(root)],
             out / "prepare.log")  # fmt: skip
    return root / "videos"


def evaluate(data: Path, out: Path, mode: str, overrides: list[str]) -> Path:
    """tools/evaluate.py --mode fit with ``inference.fit.texture=mode``; its output folder."""
    if not (out / "metrics.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tool = str(ROOT / "tools" / "evaluate.py")
        args = [tool, "--data", str(data), "--out", str(out), "--mode", "fit", "--no-progress"]
        _run([*args, f"inference.fit.texture={mode}", *overrides], out.parent / f"{out.name}.log")
    return out


def leave_one_out_model(clips: list[Path], held_out: Path, out: Path) -> Path:
    """A face model built from every clip but ``held_out``."""
    path = out / "models" / f"without_{held_out.stem}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        others = [str(c) for c in clips if c != held_out]
        tool = str(ROOT / "tools" / "build_face_model.py")
        args = [tool, *others, "--out", str(path), "--build-date", BUILD_DATE]
        _run(args, path.with_suffix(".log"))
    return path


def per_clip(folder: Path, method: str) -> list[dict[str, float]]:
    """The rows of ``per_clip/<method>.csv`` of an evaluation (frames and metrics)."""
    with (folder / "per_clip" / f"{method}.csv").open() as f:
        return [
            {k: float(v) for k, v in row.items() if k != "clip" and v} for row in csv.DictReader(f)
        ]


def frame_weighted(rows: list[dict[str, float]]) -> dict[str, float]:
    """Frame-weighted means of :data:`METRICS` over clips (a metric missing from a clip is
    left out of its mean)."""
    means = {}
    for key in METRICS:
        have = [r for r in rows if key in r]
        if have:
            frames = sum(r["frames"] for r in have)
            means[key] = sum(r[key] * r["frames"] for r in have) / frames
    means["frames"] = sum(r["frames"] for r in rows)
    return means


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one line per (setting, row)."""
    lines = ["| rows | " + " | ".join(HEADERS) + " |", "| --- |" + " ---: |" * len(HEADERS)]
    for setting, rows in results.items():
        for name, values in rows.items():
            cells = [f"{values[k]:.2f}" if k != "l1" else f"{values[k]:.3f}" for k in METRICS
                     if k in values]  # fmt: skip
            cells += [""] * (len(METRICS) - len(cells))
            lines.append(f"| `{name}`, {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="folder of .mp4 clips")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--no-leave-one-out", dest="loo", action="store_false")
    args = finish_parsing(parser, argv)
    clips = sorted(args.clips.glob("*.mp4"))
    if len(clips) < (3 if args.loo else 1):
        sys.exit(f"error: {args.clips}: need at least {3 if args.loo else 1} .mp4 clips")
    head = banner("fit_appearance.py", argv)
    print(head, flush=True)
    out: Path = args.out
    data = prepare(clips, out)
    # one evaluation per texture setting: ``extract`` also renders the fit row with the model
    # albedo (its openings learnt from every frame), which is the ``model`` row
    runs = ["mean"] if "mean" in args.modes else []
    runs += ["extract"] if {"model", "extract"} & set(args.modes) else []
    settings = {"in sample": [(data, out / "in_sample", [])]}
    if args.loo:
        settings["leave-one-out"] = [
            (
                data / c.stem,
                out / "leave_one_out",
                [f"face_model.path={leave_one_out_model(clips, c, out)}"],
            )
            for c in clips
        ]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for setting, jobs in settings.items():
        rows: dict[str, list[dict[str, float]]] = {}
        for run in runs:
            for folder, parent, extra in jobs:
                name = run if setting == "in sample" else f"{run}/{folder.name}"
                done = evaluate(folder, parent / name, run, [*extra, *args.overrides])
                if run == "mean":
                    rows.setdefault("mean", []).extend(per_clip(done, "fit"))
                    continue
                rows.setdefault("model", []).extend(per_clip(done, "fit"))
                rows.setdefault("extract, odd frames", []).extend(per_clip(done, "fit+extract"))
            print(f"[{setting}] {run} done", flush=True)
        wanted = [r for r in ROWS if ROWS[r] in args.modes]
        results[setting] = {r: frame_weighted(rows[r]) for r in wanted}
    md = f"```\n{head}\n```\n\n{table(results)}\n"
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(md)
    print(f"wrote {out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
