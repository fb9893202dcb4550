"""Temporal evidence: does the temporal fusion beat per-frame regression, post-filtering and a
SPECTRE-style temporal convolution, on synthetic clips with ground truth?

    python experiments/temporal_ablation.py OUT [--quick] [--device cpu|cuda] [--heldout DIR ...]
        [--seeds N] [--rows ROW ...] [--train-clips N] [--heldout-clips N] [--max-frames T]
        [--pretrain-steps N] [--steps N] [a.b=value ...]

1. Data (``configs/experiments/temporal.yaml``: AU-driven expression, photo backgrounds, fast
   head turns, MediaPipe-tracked landmarks, about one frame in four corrupted): OUT/data/train
   and OUT/data/tune (corrupted, the training mix), OUT/data/heldout_corrupted and
   OUT/data/heldout_clean (other seeds: other identities and trajectories). ``--heldout DIR``
   evaluates on those folders instead (each a set named by its folder).
2. Pretraining (OUT/pretrain): the coarse encoder and the AU network per frame, with
   ground-truth code and AU supervision (``loss.code_supervision``, ``loss.au_supervision``), on
   OUT/data/pretrain: many clips of two frames (identity diversity matters more than frames).
3. Rows, every one from the same frozen pretrained encoders (``train.init_modules``), with the
   same steps, data and self-supervised losses (tracked landmarks, photometric, regularisers,
   temporal smoothness, and consistency with the frozen encoder's codes of the clean crops,
   averaged 1-2-1 over time, while the input is corrupted on the fly:
   ``loss.clean_consistency``), the transformer rows with code mixing
   (``model.fusion_code_mixing``), OUT/<row>/model.pt: ``per-frame``
   (the encoders alone, T = 1),
   ``bivit-w1`` (the transformer trained like the temporal rows but on single frames: what the
   self-supervised training does without time),
   ``per-frame+filter`` (its codes smoothed by the filter that scores best on OUT/data/tune),
   ``spectre-conv`` (``model.temporal=conv``), ``bivit-w3``, ``bivit-w5``, ``bivit-w9``,
   ``bivit-w3-noau`` (no AU tokens), ``bivit-w3-nomix`` (no code mixing),
   ``bivit-w3-nosmooth`` (``loss.temporal=0``),
   ``bivit-w3-gt`` (ground-truth codes instead: an upper bound) and ``fit`` (landmark fitting).
   ``--quick``: ``per-frame``, ``bivit-w3`` and ``spectre-conv``, fewer clips and steps.
4. Evaluation of every row on every held-out set with ``tools/evaluate.py``'s code, each row at
   its own trained window: OUT/eval/<set>/seed_<k>/metrics.json, then OUT/results.json
   (``{set: {row: {metric: mean}}}``, plus ``<metric>_std`` over seeds), OUT/results.md and
   OUT/results.png.

Every stage is skipped when its output exists, so an interrupted run continues where it stopped.
Prints the command, date and machine. ``--device cuda`` uses the ResNet-50 backbones
(configs/base.yaml) instead of the CPU ones (configs/small_cpu.yaml: ResNet-18 on 64 px crops).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ablation import (
    banner,
    finish_parsing,
    markdown_table,
    overrides,
    summarise,
    train_once,
)  # experiments/

from seqdeca.cli import run_main
from seqdeca.config import load_config
from seqdeca.config.schema import Config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.data.synthetic_corrupt import REALISTIC_MIX
from seqdeca.errors import UserError
from seqdeca.evaluation.runner import RESERVED_NAMES, EvalOptions, evaluate, method_name

ROOT = Path(__file__).resolve().parents[1]
DATA_CONFIG = ROOT / "configs" / "experiments" / "temporal.yaml"
MODEL_CONFIGS = {"cpu": ROOT / "configs" / "small_cpu.yaml", "cuda": ROOT / "configs" / "base.yaml"}

#: Settings of every run: the synthetic clips already vary in pose, framing and light, and the
#: ground-truth pose and camera would not follow a geometric augmentation.
COMMON = {
    "data.augmentation.flip_prob": 0.0,
    "data.augmentation.max_rotation_deg": 0.0,
    "data.augmentation.scale_jitter": 0.0,
    "data.augmentation.shift_jitter": 0.0,
    "data.augmentation.color_jitter": 0.0,
    "model.max_frames": 9,
}
#: Losses of the pretraining: ground truth only, every self-supervised term off.
PRETRAIN = {
    "loss.code_supervision": 1.0,
    "loss.au_supervision": 1.0,
    "loss.landmark": 0.0,
    "loss.landmark_mediapipe": 0.0,
    "loss.eye_closure": 0.0,
    "loss.lip_closure": 0.0,
    "loss.photometric": 0.0,
    "loss.shape_reg": 0.0,
    "loss.expression_reg": 0.0,
    "loss.texture_reg": 0.0,
    "loss.light_reg": 0.0,
    "loss.au_label": 0.0,
    "model.freeze_coarse": False,
    "model.freeze_au_net": False,
    "model.use_temporal": False,
    "data.window": 1,
    "data.min_window": 0,
    "train.lr": 1e-3,
    "data.batch_size": 32,
}
#: Self-supervised losses of every temporal row: the mission's (on tracked landmarks), plus the
#: clean-consistency term on inputs corrupted on the fly (the fused expression and jaw of a
#: corrupted window against the frozen per-frame encoder on the clean crops). Without it, the
#: landmark loss pulls every trained row away from the pretrained encoder (measured on the
#: tuning clips: docs/temporal_evidence.md). The consistency target is the clean codes averaged
#: 1-2-1 over neighbouring frames (faces move smoothly; the per-frame teacher jitters), and the
#: transformer rows mix their neighbours' codes directly (model.fusion_code_mixing): without
#: that path the transformer did not learn to smooth in 1000 steps (docs/temporal_evidence.md).
TEMPORAL = {
    "loss.landmark": 1.0,
    "loss.landmark_mediapipe": 1.0,
    "loss.photometric": 1.0,
    "loss.eye_closure": 0.0,
    "loss.lip_closure": 0.0,
    "loss.au_label": 0.0,
    "loss.temporal": 0.1,
    "loss.clean_consistency": 1.0,
    "data.augmentation.corruption": 1.0,
    "loss.clean_consistency_smooth": True,
    "model.fusion_code_mixing": True,
    "model.freeze_coarse": True,
    "model.freeze_au_net": True,
    "train.init_modules": "[coarse_encoder,au_net]",
    "train.lr": 3e-4,
}
#: Row -> overrides on top of TEMPORAL (None: not a trained temporal row).
ROWS: dict[str, dict | None] = {
    "per-frame": {"model.use_temporal": False, "data.window": 1},
    "per-frame+filter": None,
    "bivit-w1": {"data.window": 1},
    "spectre-conv": {"model.temporal": "conv", "data.window": 5},
    "bivit-w3": {"data.window": 3},
    "bivit-w5": {"data.window": 5},
    "bivit-w9": {"data.window": 9},
    "bivit-w3-noau": {"data.window": 3, "model.fusion_au_tokens": False},
    "bivit-w3-nomix": {"data.window": 3, "model.fusion_code_mixing": False},
    "bivit-w3-nosmooth": {"data.window": 3, "loss.temporal": 0.0},
    "bivit-w3-gt": {
        "data.window": 3,
        "loss.code_supervision": 1.0,
        "loss.landmark": 0.0,
        "loss.landmark_mediapipe": 0.0,
        "loss.photometric": 0.0,
    },
    "fit": None,
}
QUICK_ROWS = ("per-frame", "bivit-w3", "spectre-conv")
#: Filters tried for per-frame+filter on the tuning clips.
FILTERS = (
    "savgol:5:2",
    "savgol:9:2",
    "savgol:15:2",
    "one_euro:0.5:0.5",
    "one_euro:1.0:1.0",
    "one_euro:2.0:1.0",
)
#: Columns of results.md (metric key, header, format).
COLUMNS = (
    ("expression_jaw_vertex_error", "exp+jaw vertex (mm)", ".3f"),
    ("expression_jaw_vertex_error_gap", "on gap frames (mm)", ".3f"),
    ("expression_vertex_error", "exp vertex (mm)", ".3f"),
    ("jaw_error", "jaw (deg)", ".2f"),
    ("expression_error", "exp code", ".3f"),
    ("expression_jaw_accel_error", "exp+jaw accel err (mm/f^2)", ".4f"),
    ("accel_error", "accel err (mm/f^2)", ".4f"),
    ("accel_vertices", "accel (mm/f^2)", ".4f"),
    ("nme_mp", "NME-MP (%)", ".2f"),
    ("parameters", "params (M)", ".2f"),
    ("ms_per_frame", "ms/frame", ".1f"),
)


class Sizes(NamedTuple):
    """How much of everything a run makes and trains."""

    train_clips: int  # clips of the temporal rows' training set
    heldout_clips: int  # clips per held-out set
    pretrain_clips: int  # clips of PRETRAIN_FRAMES frames for the per-frame encoders
    pretrain_steps: int
    steps: int  # training steps of every temporal row
    seeds: int  # training seeds of the temporal rows
    frames: int  # frames of the longest clip (0: the config's 50-150)


#: The full run on 2 cores (measured 2026-12-05, docs/temporal_evidence.md): data about 30 min
#: (2 workers; 12000 two-frame pretraining clips are most of it), pretraining 1500 steps about
#: 20 min idle (35 min single-threaded beside other jobs), the nine trained rows x 3 seeds and
#: the evaluation 45 min (a step costs about its window's frames x 0.07 s).
SIZES = {
    "quick": Sizes(32, 6, 1000, 200, 200, 1, 40),
    "full": Sizes(128, 16, 12000, 1500, 200, 3, 0),
}
#: Frames per pretraining clip: many short clips, since identity diversity matters more to a
#: per-frame encoder than frames of one face.
PRETRAIN_FRAMES = 2


def base_config(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """The data config + the model config of the device + ``extra`` + the command line's."""
    items = overrides(COMMON | (extra or {})) + [f"run.device={args.device}"] + args.overrides
    return load_config([DATA_CONFIG, MODEL_CONFIGS[args.device.split(":")[0]]], items)


def make_data(args: argparse.Namespace, out: Path, sizes: Sizes) -> dict[str, Path]:
    """Pretraining, training, tuning and held-out sets (kept when present); returns the
    held-out sets."""
    corrupt = {f"synthetic.corruption.{k}": v for k, v in REALISTIC_MIX.items()}
    frames = {"synthetic.frames": sizes.frames} if sizes.frames else {}
    short = {"synthetic.frames": PRETRAIN_FRAMES, "synthetic.min_frames": 0}
    heldout = sizes.heldout_clips
    sets = {
        "pretrain": (sizes.pretrain_clips, 500, corrupt | short),
        "train": (sizes.train_clips, 1000, corrupt | frames),
        "tune": (max(2, heldout // 2), 2000, corrupt | frames),
        "heldout_corrupted": (heldout, 3000, corrupt | frames),
        "heldout_clean": (heldout, 3000, frames),
    }
    for name, (clips, seed, extra) in sets.items():
        folder = out / "data" / name
        done = folder / "done.json"
        if done.is_file() or (args.heldout and name.startswith("heldout")):
            continue
        cfg = base_config(args, extra)
        if "synthetic.corruption.occluder" in extra:
            cfg.synthetic.corruption.seed = seed  # corruption draws of their own
        print(f"[data] {name}: {clips} clips", flush=True)
        make_synthetic_dataset(
            folder, cfg, clips=clips, seed=seed, progress=args.progress, workers=args.workers
        )
        done.write_text(json.dumps({"clips": clips, "seed": seed}))
    if args.heldout:
        return {Path(d).name: Path(d) for d in args.heldout}
    return {name: out / "data" / name for name in ("heldout_corrupted", "heldout_clean")}


def pretrain(args: argparse.Namespace, out: Path, steps: int) -> Path:
    """The per-frame encoders, supervised by the ground truth on the many short clips of
    OUT/data/pretrain (OUT/pretrain/model.pt)."""
    cfg = base_config(args, PRETRAIN | {"train.max_steps": steps, "train.checkpoint_every": 0})
    return train_once(cfg, out / "pretrain", [out / "data" / "pretrain"], "pretrain")


def train_rows(
    args: argparse.Namespace, out: Path, rows: list[str], steps: int, seeds: int, encoders: Path
) -> dict[str, list[Path]]:
    """Every trained row for every seed: ``{row: [model.pt per seed]}``."""
    models: dict[str, list[Path]] = {}
    for row in rows:
        extra = ROWS[row]
        if extra is None:
            continue
        per_frame = row == "per-frame"
        models[row] = []
        for seed in range(1 if per_frame else seeds):
            items = (
                TEMPORAL
                | extra
                | {
                    "run.seed": seed,
                    "train.init_from": str(encoders),
                    "train.max_steps": 0 if per_frame else steps,
                    "train.checkpoint_every": 0,
                }
            )
            models[row].append(
                train_once(
                    base_config(args, items),
                    out / row / f"seed_{seed}",
                    [out / "data" / "train"],
                    f"train {row} seed {seed}",
                )
            )
        shutil.copyfile(models[row][0], out / row / "model.pt")
    return models


def tune_filter(args: argparse.Namespace, out: Path, per_frame: Path) -> str:
    """The filter of :data:`FILTERS` with the lowest expression+jaw vertex error on the tuning
    clips (OUT/tune_filter/metrics.json)."""
    report = out / "tune_filter" / "metrics.json"
    if not report.is_file():
        evaluate(
            EvalOptions(
                data=out / "data" / "tune",
                out=report.parent,
                config=base_config(args),
                checkpoints=[per_frame],
                filters=list(FILTERS),
                device=args.device,
                plots=False,
                progress=args.progress,
            )
        )
    methods = json.loads(report.read_text())["methods"]
    by_filter = {
        name.rsplit("+", 1)[-1]: m["overall"]
        for name, m in methods.items()
        if "+per-frame+" in name
    }
    scores = {spec: by_filter[spec].get("expression_jaw_vertex_error") for spec in FILTERS}
    best = min(scores, key=lambda s: np.inf if scores[s] is None else scores[s])
    print(f"[tune] filter {best} ({', '.join(f'{k}: {v:.3f}' for k, v in scores.items() if v)})")
    return best


def _evaluate(args, folder: Path, report: Path, ckpts: list[Path], **options) -> dict:
    """``tools/evaluate.py``'s evaluation into ``report.parent`` (kept when present and made
    with the same checkpoints and mode: a rerun with more rows evaluates again)."""
    wanted = {
        "checkpoints": [str(c) for c in ckpts],
        "mode": options.get("mode", "network"),
        "filters": list(options.get("filters", [])),
    }
    if report.is_file():
        settings = json.loads(report.read_text())["settings"]
        if any(settings.get(k) != v for k, v in wanted.items()):
            report.unlink()
    if not report.is_file():
        print(f"[eval] {report.parent.relative_to(report.parents[3])}", flush=True)
        evaluate(
            EvalOptions(
                data=folder,
                out=report.parent,
                config=base_config(args),
                checkpoints=ckpts,
                device=args.device,
                progress=args.progress,
                **options,
            )
        )
    return json.loads(report.read_text())["methods"]


def _method_names(ckpts: list[Path]) -> list[str]:
    """The row names the evaluation gives these checkpoints, in order (as the runner does)."""
    taken, names = set(RESERVED_NAMES), []
    for ckpt in ckpts:
        names.append(method_name(ckpt, taken))
        taken.add(names[-1])
    return names


def evaluate_rows(
    args,
    out: Path,
    sets: dict[str, Path],
    models: dict[str, list[Path]],
    rows: list[str],
    spec: str | None,
) -> dict:
    """Per set and seed: one evaluation of every row (fit with seed 0), and the per-frame model
    with the filter; returns ``{set: {row: [overall per seed]}}``."""
    seeds = max(len(m) for m in models.values())
    table: dict[str, dict[str, list[dict]]] = {}
    for name, folder in sets.items():
        table[name] = {}
        for seed in range(seeds):
            trained = {row: m[seed] for row, m in models.items() if seed < len(m)}
            report = out / "eval" / name / f"seed_{seed}" / "metrics.json"
            fit = "fit" in rows and seed == 0
            methods = _evaluate(
                args, folder, report, list(trained.values()), mode="fit" if fit else "network"
            )
            for row, method in zip(trained, _method_names(list(trained.values()))):
                table[name].setdefault(row, []).append(methods[method]["overall"])
            if fit:
                table[name]["fit"] = [methods["fit"]["overall"]]
            if seed == 0 and "mean-face" in methods:  # the floor: neutral face, true pose
                table[name]["mean-face"] = [methods["mean-face"]["overall"]]
        if spec:
            report = out / "eval" / name / "filter" / "metrics.json"
            methods = _evaluate(args, folder, report, [models["per-frame"][0]], filters=[spec])
            filtered = next(m for k, m in methods.items() if k.endswith(f"+per-frame+{spec}"))
            table[name]["per-frame+filter"] = [filtered["overall"]]
    return table


def pretraining_report(results: dict) -> str:
    """The per-frame encoders against the mean face, per held-out set (the pretraining goal:
    under 40 % of the mean face's expression-only vertex error on clean clips)."""
    parts = []
    for name, rows in results.items():
        ours, floor = rows.get("per-frame", {}), rows.get("mean-face", {})
        ratios = [
            f"{label} {ours[key] / floor[key]:.2f}"
            for key, label in (
                ("expression_vertex_error", "expression-only vertex error"),
                ("expression_error", "expression code error"),
            )
            if ours.get(key) is not None and floor.get(key)
        ]
        if ratios:
            parts.append(f"{name}: " + ", ".join(ratios))
    if not parts:
        return "Pretrained per-frame encoders: no ground truth to compare with the mean face."
    return (
        "Pretrained per-frame encoders / mean face (goal < 0.40 on clean clips): "
        + "; ".join(parts)
        + "."
    )


def markdown(results: dict, header: str, spec: str | None) -> str:
    """results.md: one table per held-out set (mean +- std over seeds)."""
    lines = ["# Temporal ablation", "", "```", header, "```", ""]
    if spec:
        note = f"per-frame+filter: the per-frame codes smoothed by `{spec}` (best on the tuning clips)."
        lines += [note, ""]
    lines += [pretraining_report(results), ""]
    for name, rows in results.items():
        lines += [f"## {name}", "", *markdown_table(rows, COLUMNS)]
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Bars of the expression+jaw vertex and acceleration errors per row and set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (
        ("expression_jaw_vertex_error", "exp+jaw vertex error (mm)"),
        ("expression_jaw_accel_error", "exp+jaw acceleration error (mm/frame²)"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sets = list(results)
    rows = list(dict.fromkeys(r for s in sets for r in results[s]))
    width = 0.8 / max(1, len(sets))
    for ax, (key, label) in zip(axes, keys):
        for i, name in enumerate(sets):
            means = [results[name].get(r, {}).get(key, np.nan) for r in rows]
            stds = [results[name].get(r, {}).get(f"{key}_std", 0.0) for r in rows]
            ax.bar(np.arange(len(rows)) + i * width, means, width, yerr=stds, label=name)
        ax.set_xticks(
            np.arange(len(rows)) + width * (len(sets) - 1) / 2, rows, rotation=35, ha="right"
        )
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="rows per-frame, bivit-w3, spectre-conv; fewer clips and steps",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ResNet-50 backbones)")
    parser.add_argument("--heldout", nargs="+", default=[], help="held-out clip folders")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to run")
    parser.add_argument("--seeds", type=int, help="training seeds of the temporal rows")
    parser.add_argument("--train-clips", type=int)
    parser.add_argument("--heldout-clips", type=int)
    parser.add_argument(
        "--pretrain-clips", type=int, help=f"pretraining clips of {PRETRAIN_FRAMES} frames"
    )
    parser.add_argument("--max-frames", dest="frames", type=int, help="frames of the longest clip")
    parser.add_argument("--pretrain-steps", type=int)
    parser.add_argument("--steps", type=int, help="training steps of every temporal row")
    return finish_parsing(parser, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)

    def job() -> int:
        header = banner("temporal_ablation.py", argv)
        print(header, flush=True)
        mode = "quick" if args.quick else "full"
        defaults = SIZES[mode]
        given = {k: getattr(args, k) for k in Sizes._fields if getattr(args, k) is not None}
        sizes = defaults._replace(**given)
        rows = args.rows or list(QUICK_ROWS if args.quick else ROWS)
        if "per-frame" not in rows:
            rows = ["per-frame", *rows]  # the filter row and the baseline need it
        if not args.device.startswith(("cpu", "cuda")):
            raise UserError(f"--device {args.device}: use cpu or cuda")
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        sets = make_data(args, out, sizes)
        encoders = pretrain(args, out, sizes.pretrain_steps)
        models = train_rows(args, out, rows, sizes.steps, sizes.seeds, encoders)
        spec = (
            tune_filter(args, out, models["per-frame"][0]) if "per-frame+filter" in rows else None
        )
        table = evaluate_rows(args, out, sets, models, rows, spec)
        results = summarise(table, [*rows, "mean-face"])
        (out / "results.json").write_text(json.dumps(results, indent=1))
        elapsed = time.perf_counter() - start
        (out / "results.md").write_text(markdown(results, f"{header}\nwall: {elapsed:.0f} s", spec))
        plot(results, out / "results.png")
        print(markdown(results, f"{header}\nwall: {elapsed:.0f} s", spec))
        print(f"-> {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
