"""Detail evidence: does the detail stage learn AU-driven wrinkles, does the AU condition steer
them, and does the GAN beat DECA's plain L1 training? On synthetic clips with ground-truth
detail.

    python experiments/detail_ablation.py OUT [--quick] [--device cpu|cuda] [--heldout DIR ...]
        [--rows ROW ...] [--seeds N] [--train-clips N] [--heldout-clips N]
        [--pretrain-steps N] [--steps N] [--photometric-check]
        [--signal-check [--pooled] [--matched] [--check-steps N]]
        [a.b=value ...]

1. Data (``configs/experiments/detail.yaml``: AU-driven expressions, photo backgrounds, every
   frame shaded with a ground-truth UV displacement of six AU-driven wrinkle patterns plus
   static fine detail, :mod:`seqdeca.data.synthetic_detail`): OUT/data/train and
   OUT/data/heldout (another seed: other identities, AU trajectories and wrinkle shapes), and
   OUT/data/pretrain (a third seed: many clips of two frames, for the AU network alone).
   ``--heldout DIR`` evaluates on those folders instead (each a set named by its folder).
2. Pretraining (OUT/pretrain): the AU network and the AU head (the detail condition) per frame,
   supervised by the true AU intensities (``loss.au_supervision``,
   ``loss.au_head_supervision``), on OUT/data/pretrain only: trained on the rows' own clips
   it learned their faces, so its condition was right on the rows' training clips and noise on
   new faces, and the generator learned to trust it.
3. Rows, every one a detail stage (detail encoder + generator) trained with the same steps,
   data and generator losses (detail contrast, z_reg, z_diff, z_sym) from the same pretrained AU
   network, with the TRUE coarse codes (``train.detail_coarse=ground_truth``: the experiment
   isolates the detail stage), OUT/<row>/model.pt:
   ``zero`` (a zero displacement: the floor), ``l1-only`` (DECA's detail training: no critic,
   unconditioned generator), ``bce-gan`` (a non-saturating BCE GAN, otherwise ``wgan-full``),
   ``wgan-noau`` (WGAN-GP, unconditioned generator, critic without AU channels or head),
   ``wgan-film`` (AU FiLM in the generator only), ``wgan-full`` (FiLM + the critic's AU heatmaps
   and AU-regression head: seqdeca's default) and ``wgan-full-gtau`` (``wgan-full`` conditioned
   on the true AU intensities: an upper bound for the conditioning).
   ``--quick``: ``zero``, ``wgan-noau`` and ``wgan-full``, fewer clips and steps.
4. Evaluation of every row on every held-out set (:mod:`seqdeca.eval.detail_eval`):
   displacement error (mm) and detail normal error (degrees), overall, per wrinkle region and
   their mean over the regions; AU controllability of the generator (correlation of each
   pattern's commanded AU with the wrinkle energy in its region, the leakage into the other
   regions, and the same correlation with shuffled AU channels: the chance level); and the
   correlation of the AU condition with the true AUs per pattern (for the zero row, that of the
   pretrained AU head, which every row on the head gets: the detail stage keeps it frozen).
   OUT/results.json (``{set: {row: {metric: mean}}}`` plus ``<metric>_std`` over seeds),
   OUT/results.md, OUT/results.png (errors per row and the training curves), OUT/detail.png
   (input | predicted | true detail shading in UV, ``wgan-full``) and OUT/sweep.png (the
   generator's high-pass displacement for each pattern's AU from 0 to 1, ``wgan-full``).

Every stage is skipped when its output exists, so an interrupted run continues where it stopped.
Prints the command, date and machine. On the CPU the model uses configs/small_cpu.yaml
(ResNet-18 encoders on 64 px crops), a 128 x 128 UV map (``model.detail_uv_size=128``: the
DECA generator's five blocks from a 4 x 4 start) and a critic of width 16; ``--device cuda`` uses
configs/base.yaml (ResNet-50, DECA's 256 UV generator, the default critic).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from ablation import (
    banner,
    finish_parsing,
    markdown_table,
    overrides,
    summarise,
    train_once,
)
from detail_checks import photometric_check, signal_check

from seqdeca.cli import run_main
from seqdeca.config import load_config
from seqdeca.config.schema import Config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.eval.clips import find_eval_clips, load_clip
from seqdeca.eval.detail_condition import condition_correlation
from seqdeca.eval.detail_eval import (
    controllability,
    detail_clip_series,
    generator_function,
    has_detail_truth,
    pooled,
)
from seqdeca.eval.detail_metrics import DETAIL_PATTERN_AUS, au_channels
from seqdeca.eval.detail_plots import (
    sweep_highpass_cells,
    write_au_sweep_grid,
    write_detail_comparison,
)
from seqdeca.inference.checkpoint import load_model
from seqdeca.models.detail_sources import DetailSources

ROOT = Path(__file__).resolve().parents[1]
DATA_CONFIG = ROOT / "configs" / "experiments" / "detail.yaml"
MODEL_CONFIGS = {"cpu": ROOT / "configs" / "small_cpu.yaml", "cuda": ROOT / "configs" / "base.yaml"}
#: The CPU's smaller detail maps and critic (same blocks and layers as DECA's / GANimation's),
#: and learning rates 5x DECA's and GANimation's 1e-4 for a budget of hundreds of steps, not
#: hundreds of thousands (not tuned). 128, not 64: at 64 the photometric term is not lowest at
#: the true displacement (--photometric-check, docs/detail_evidence.md).
#: The detail encoder sees the whole 224 px crop (at 64 px the wrinkles, a few pixels apart,
#: are gone, and with them where each face's wrinkles lie). The clips are shaded with maps of
#: the size the rows predict, so the truth is one the generator can draw.
CPU_SIZES = {
    "model.detail_uv_size": 128,
    "model.critic_width": 16,
    "render.uv_size": 128,
    "train.lr": 5e-4,
    "train.critic_lr": 5e-4,
    "model.detail_encoder_size": 0,
    "synthetic.detail.uv_size": 128,
}

#: Settings of every run: the true pose and camera would not follow a geometric augmentation,
#: and the true albedo and light not a colour jitter.
COMMON = {
    "data.augmentation.flip_prob": 0.0,
    "data.augmentation.max_rotation_deg": 0.0,
    "data.augmentation.scale_jitter": 0.0,
    "data.augmentation.shift_jitter": 0.0,
    "data.augmentation.color_jitter": 0.0,
    "model.use_temporal": False,
    "data.window": 1,
    "data.min_window": 0,
}
#: Pretraining of the AU network and AU head on the true AU intensities; nothing else.
PRETRAIN = {
    "loss.au_supervision": 1.0,
    "loss.au_head_supervision": 1.0,
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
    "model.freeze_au_net": False,
    "train.lr": 1e-3,
    "data.batch_size": 32,
}
#: Every detail row: the detail stage on the true coarse codes, from the pretrained AU network,
#: with the generator losses chosen by the probes on the training clips
#: (docs/detail_evidence.md): the detail contrast instead of the UV photometric L1 (the same
#: signal with the coarse stage's smooth errors, the borders and the albedo edges left out),
#: z_reg strong enough to hold the smooth displacement the contrast cannot see and to keep the
#: AU maps to what the training faces' wrinkles share (100: on training clips the rows did not
#: train on, 2 let the maps add error and 100 was the best of 2, 20, 100 and 300), and a 1 mm
#: bound on the displacement (DECA's 1 cm puts 0.1 mm wrinkles at 1 % of the generator's range);
#: the critic sees the same region as the contrast term, and its feedback to the generator is
#: scaled down as a whole: the adversarial term by 1000 (at 1 the critic wins within 20 steps
#: and the generator saturates; at 0.01 it still costs the linear generator its gain) and the
#: AU regression with it (0.16 = GANimation's 160 / 1000, the same ratio to the adversarial
#: term; at 160 the AU regression alone drives the maps to their bound). 3 critic steps per
#: generator step (GANimation: 5) are meant to keep the full run under two hours (estimated
#: from the rows' times in --quick; the full run has not been timed). The generator is
#: linear in its AU condition (a map per AU, with a template shared by every face), and the
#: photo's contrast is compared less what its render-and-unwrap path leaves in a face without
#: detail: with both, a trained row first beat the zero map on training clips
#: (docs/detail_evidence.md, "A generator linear in the AUs").
DETAIL = {
    "train.stage": "detail",
    "train.detail_coarse": "ground_truth",
    "train.init_modules": "[coarse_encoder,au_net,temporal_fusion,au_head]",
    "data.batch_size": 8,
    "train.checkpoint_every": 0,
    "loss.detail_photometric": 0.0,
    "loss.detail_contrast": 2.0,
    "loss.z_reg": 100.0,
    "model.detail_max_displacement": 0.001,
    "loss.critic_region": "compared",
    "loss.adversarial": 0.001,
    "loss.au_regression": 0.16,
    "train.n_critic": 3,
    "model.detail_au_form": "linear",
    "model.detail_path_offset": True,
}
#: Row -> overrides on top of DETAIL (None: not trained).
ROWS: dict[str, dict | None] = {
    "zero": None,
    "l1-only": {"loss.adversarial": 0.0, "model.detail_au_condition": "none"},
    "bce-gan": {"loss.gan_type": "bce"},
    "wgan-noau": {"model.detail_au_condition": "none", "model.critic_au": False},
    "wgan-film": {"model.critic_au": False},
    "wgan-full": {},
    "wgan-full-gtau": {"train.detail_condition": "ground_truth"},
}
QUICK_ROWS = ("zero", "wgan-noau", "wgan-full")
#: The row whose pictures are drawn (the first of these that ran).
PICTURE_ROWS = ("wgan-full", "wgan-full-gtau", "wgan-film")
#: Frames per held-out set kept for the controllability sweep and the pictures.
SWEEP_FRAMES = 8
PICTURE_FRAMES = 4
#: detail.png: the detail's shading over a flat face's, shown from 1 - this (black) to 1 + this.
SHADING_RANGE = 0.25
#: Columns of results.md (metric key, header, format).
COLUMNS = (
    ("displacement_error_regions", "disp. err. AU regions (mm)", ".4f"),
    ("displacement_error", "disp. err. face (mm)", ".4f"),
    ("detail_normal_error_regions", "normal err. AU regions (deg)", ".2f"),
    ("detail_normal_error", "normal err. face (deg)", ".2f"),
    ("controllability_mean", "AU control", ".2f"),
    ("controllability_shuffled_mean", "shuffled", ".2f"),
    ("gain_mean", "AU gain (mm^2)", ".4f"),
    ("gain_shuffled_mean", "shuffled gain", ".4f"),
    ("leakage_mean", "leakage", ".2f"),
    ("condition_correlation_mean", "AU condition r", ".2f"),
    ("seconds", "train (s)", ".0f"),
)


class Sizes(NamedTuple):
    """How much of everything a run makes and trains."""

    train_clips: int  # clips the detail rows train on
    heldout_clips: int
    pretrain_clips: int  # clips of PRETRAIN_FRAMES frames for the AU network and head
    pretrain_steps: int
    steps: int  # generator steps of every detail row
    seeds: int


SIZES = {
    "quick": Sizes(48, 8, 1000, 150, 150, 1),
    "full": Sizes(200, 16, 6000, 1200, 150, 3),
}
#: Frames per AU pretraining clip: many short clips, since the faces' variety is what an AU
#: reader must generalise over (from 40 of the rows' clips it learned their faces: r 0.97 with
#: the truth on them, about 0 on other faces; docs/detail_evidence.md).
PRETRAIN_FRAMES = 2


def base_config(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """The data config + the model config of the device + ``extra`` + the command line's."""
    device = args.device.split(":")[0]
    sizes = CPU_SIZES if device == "cpu" else {}
    items = overrides(COMMON | sizes | (extra or {})) + [f"run.device={args.device}"]
    return load_config([DATA_CONFIG, MODEL_CONFIGS[device]], items + args.overrides)


def make_data(args: argparse.Namespace, out: Path, sizes: Sizes) -> dict[str, Path]:
    """OUT/data/pretrain, OUT/data/train and OUT/data/heldout (kept when present), each of its
    own seed (other faces); returns the held-out sets."""
    short = {"synthetic.frames": PRETRAIN_FRAMES, "synthetic.min_frames": 0}
    sets = {
        "pretrain": (sizes.pretrain_clips, 500, short),
        "train": (sizes.train_clips, 100, {}),
        "heldout": (sizes.heldout_clips, 3000, {}),
    }
    for name, (clips, seed, extra) in sets.items():
        folder = out / "data" / name
        done = folder / "done.json"
        if done.is_file() or (args.heldout and name == "heldout"):
            continue
        print(f"[data] {name}: {clips} clips", flush=True)
        make_synthetic_dataset(
            folder,
            base_config(args, extra),
            clips=clips,
            seed=seed,
            progress=args.progress,
            workers=args.workers,
        )
        done.write_text(json.dumps({"clips": clips, "seed": seed}))
    if args.heldout:
        return {Path(d).name: Path(d) for d in args.heldout}
    return {"heldout": out / "data" / "heldout"}


def train_rows(
    args: argparse.Namespace, out: Path, rows: list[str], sizes: Sizes, encoders: Path
) -> dict[str, list[tuple[Path, float]]]:
    """Every trained row for every seed: ``{row: [(model.pt, training seconds) per seed]}``."""
    models: dict[str, list[tuple[Path, float]]] = {}
    for row in rows:
        extra = ROWS[row]
        if extra is None:
            continue
        models[row] = []
        for seed in range(sizes.seeds):
            items = (
                DETAIL
                | extra
                | {
                    "run.seed": seed,
                    "train.init_from": str(encoders),
                    "train.max_steps": sizes.steps,
                }
            )
            run_dir = out / row / f"seed_{seed}"
            start = time.perf_counter()
            model = train_once(
                base_config(args, items),
                run_dir,
                [out / "data" / "train"],
                f"train {row} seed {seed}",
            )
            seconds = _training_seconds(run_dir, time.perf_counter() - start)
            models[row].append((model, seconds))
        (out / row / "model.pt").write_bytes(models[row][0][0].read_bytes())
    return models


def _training_seconds(run_dir: Path, measured: float) -> float:
    """The row's training time (recorded next to its model.pt, so a rerun reports it too)."""
    record = run_dir / "seconds.json"
    if not record.is_file():
        record.write_text(json.dumps({"seconds": measured}))
    return float(json.loads(record.read_text())["seconds"])


def _region_means(metrics: dict[str, float]) -> dict[str, float]:
    """Mean over the wrinkle regions of the per-region errors (``<key>_regions``)."""
    out = {}
    for key in ("displacement_error", "detail_normal_error"):
        values = [v for k, v in metrics.items() if k.startswith(f"{key}/") and np.isfinite(v)]
        if values:
            out[f"{key}_regions"] = float(np.mean(values))
    return out


def evaluate_model(
    args, checkpoint: Path, folder: Path, *, zero: bool = False, pictures: Path | None = None
) -> dict[str, float]:
    """Detail metrics of one model on the clips of ``folder`` (``zero``: of a zero map)."""
    loaded = load_model(checkpoint, device=args.device)
    model = loaded.model.eval()
    sources = DetailSources.from_config(loaded.config.train)
    if zero:  # the floor: the true coarse mesh, no displacement
        sources = DetailSources(coarse="ground_truth")
    clips = [load_clip(p) for p in find_eval_clips(folder)]
    clips = [c for c in clips if has_detail_truth(c)]
    if not clips:
        raise UserError(f"{folder}: no clip with ground-truth detail (make them with --detail)")
    keep = max(1, SWEEP_FRAMES // len(clips))
    series, kept = [], []
    for clip in clips:
        s, frames = detail_clip_series(
            model, clip, sources=sources, device=args.device, zero=zero, keep=keep
        )
        series.append(s)
        kept += [frames] if frames is not None else []
    metrics = pooled(series) | condition_correlation(series)
    metrics |= _region_means(metrics)
    if not zero and kept:
        latent = torch.cat([k.latent for k in kept])[:SWEEP_FRAMES]
        scores = controllability(model, latent)
        if scores is not None:
            metrics |= scores.metrics()
        if pictures is not None:
            draw_pictures(model, kept, pictures)
    return metrics


def draw_pictures(model, kept: list, out: Path) -> None:
    """OUT/detail.png and OUT/sweep.png from the kept held-out frames."""
    take = kept[:PICTURE_FRAMES]

    def shown(ratio: torch.Tensor) -> torch.Tensor:  # shading ratio 1 -/+ 0.25 -> grey [0, 1]
        return ((ratio - 1) / (2 * SHADING_RANGE) + 0.5).clamp(0, 1).expand(-1, 3, -1, -1)

    write_detail_comparison(
        torch.cat([k.input_uv[:1] for k in take]),
        shown(torch.cat([k.predicted_shading[:1] for k in take])),
        shown(torch.cat([k.true_shading[:1] for k in take])),
        out / "detail.png",
        titles=("input (UV)", "predicted detail shading", "true detail shading"),
    )
    generator = model.detail_generator.eval()
    channels = au_channels(DETAIL_PATTERN_AUS, model.au_condition_names)
    latent = take[0].latent[:1].to(next(generator.parameters()).device)
    base = torch.zeros(1, len(model.au_condition_names), device=latent.device)
    face = model.uv_detail_mask(latent)
    face = torch.nn.functional.interpolate(face[None, None], size=generator.uv_size)[0, 0].cpu()
    cells = (
        sweep_highpass_cells(generator_function(model), latent, channels, base_condition=base)
        * face
    )
    write_au_sweep_grid(
        cells,
        out / "sweep.png",
        patterns=list(channels),
        intensities=np.linspace(0, 1, cells.shape[1]).tolist(),
    )


def evaluate_rows(
    args, out: Path, sets: dict[str, Path], models: dict, rows: list[str], encoders: Path
) -> dict:
    """``{set: {row: [metrics per seed]}}`` (cached in OUT/eval/<set>/<row>_seed_<k>.json)."""
    picture_row = next((r for r in PICTURE_ROWS if r in models), None)
    table: dict[str, dict[str, list[dict]]] = {}
    for name, folder in sets.items():
        table[name] = {}
        runs = [("zero", 0, encoders, 0.0)] if "zero" in rows else []
        runs += [
            (row, k, path, seconds)
            for row in rows
            if row in models
            for k, (path, seconds) in enumerate(models[row])
        ]
        for row, seed, checkpoint, seconds in runs:
            cache = out / "eval" / name / f"{row}_seed_{seed}.json"
            if not cache.is_file():
                print(f"[eval] {name}: {row} seed {seed}", flush=True)
                draw = (
                    out if (row == picture_row and seed == 0 and name == next(iter(sets))) else None
                )
                metrics = evaluate_model(
                    args, checkpoint, folder, zero=row == "zero", pictures=draw
                )
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(metrics | {"checkpoint": str(checkpoint)}, indent=1))
            metrics = json.loads(cache.read_text())
            metrics.pop("checkpoint", None)
            table[name].setdefault(row, []).append(
                metrics | ({"seconds": seconds} if seconds else {})
            )
    return table


def markdown(results: dict, header: str, sizes: Sizes) -> str:
    """results.md: one table per held-out set (mean ± std over seeds), then per-pattern scores."""
    lines = [
        "# Detail ablation",
        "",
        "```",
        header,
        "```",
        "",
        f"Every trained row: {sizes.steps} generator steps, {sizes.seeds} seed(s).",
        "",
    ]
    for name, rows in results.items():
        lines += [f"## {name}", "", *markdown_table(rows, COLUMNS), ""]
        patterns = list(DETAIL_PATTERN_AUS)
        controlled = {r: m for r, m in rows.items() if "controllability_mean" in m}
        conditioned = {r: m for r, m in rows.items() if "condition_correlation_mean" in m}
        columns = tuple((f"condition_correlation/{p}", p, ".2f") for p in patterns)
        if conditioned:
            title = "Correlation of the AU condition with the true AUs per pattern:"
            lines += [title, "", *markdown_table(conditioned, columns), ""]
        for score, title, fmt in (
            ("controllability", "AU controllability per pattern:", ".2f"),
            ("gain", "AU gain per pattern (mm^2):", ".4f"),
            ("gain_shuffled", "AU gain per pattern, shuffled conditions (mm^2):", ".4f"),
        ):
            columns = tuple((f"{score}/{p}", p, fmt) for p in patterns)
            lines += [title, "", *markdown_table(controlled, columns), ""] if controlled else []
    return "\n".join(lines)


def plot(results: dict, out: Path, models: dict) -> None:
    """OUT/results.png: region displacement error per row, and the training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    name = next(iter(results))
    rows = list(results[name])
    for ax, key, label in (
        (axes[0], "displacement_error_regions", "disp. error, AU regions (mm)"),
        (axes[1], "gain_mean", "AU gain in own region (mm^2); dots: shuffled"),
    ):
        means = [results[name][r].get(key, np.nan) for r in rows]
        stds = [results[name][r].get(f"{key}_std", 0.0) for r in rows]
        ax.bar(np.arange(len(rows)), means, yerr=stds)
        ax.set_xticks(np.arange(len(rows)), rows, rotation=35, ha="right")
        ax.set_ylabel(label)
    chance = [results[name][r].get("gain_shuffled_mean", np.nan) for r in rows]
    axes[1].plot(np.arange(len(rows)), chance, "ko")
    for row, runs in models.items():
        for k, (path, _) in enumerate(runs):
            log = path.parent / "losses.jsonl"
            if not log.is_file():
                continue
            lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            values = [x.get("D_critic", x.get("detail_contrast")) for x in lines]
            axes[2].plot(
                [v for v in values if v is not None], lw=0.8, label=row if k == 0 else None
            )
    axes[2].set_xlabel("logged step")
    axes[2].set_ylabel("critic loss (detail contrast without a critic)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="rows zero, wgan-noau, wgan-full; fewer clips and steps",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ResNet-50, UV 256)")
    parser.add_argument("--heldout", nargs="+", default=[], help="held-out clip folders")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to run")
    parser.add_argument("--seeds", type=int, help="training seeds of the detail rows")
    parser.add_argument("--train-clips", type=int)
    parser.add_argument("--heldout-clips", type=int)
    parser.add_argument(
        "--pretrain-clips", type=int, help=f"AU pretraining clips of {PRETRAIN_FRAMES} frames"
    )
    parser.add_argument("--pretrain-steps", type=int)
    parser.add_argument("--steps", type=int, help="generator steps of every detail row")
    parser.add_argument(
        "--photometric-check",
        action="store_true",
        help="only score the photometric terms at given displacements (zero, "
        "true, 2 x true, -true) after pretraining",
    )
    parser.add_argument(
        "--signal-check",
        action="store_true",
        help="only fit a free displacement per frame to the rows' contrast and z_reg "
        "terms after pretraining, and score it",
    )
    parser.add_argument(
        "--pooled",
        action="store_true",
        help="with --signal-check: also fit per clip a static map plus one map per wrinkle "
        "AU weighted by the frames' true AU intensities (every third frame, every frame)",
    )
    parser.add_argument(
        "--matched",
        action="store_true",
        help="with --signal-check: also score and fit the contrast with the map rendered "
        "into the frame and unwrapped like the photo (matched), and with the zero map's "
        "contrast subtracted on each side, each on its own path (offset)",
    )
    parser.add_argument(
        "--check-steps", type=int, default=300, help="with --signal-check: Adam steps of each fit"
    )
    return finish_parsing(parser, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)

    def job() -> int:
        header = banner("detail_ablation.py", argv)
        print(header, flush=True)
        if not args.device.startswith(("cpu", "cuda")):
            raise UserError(f"--device {args.device}: use cpu or cuda")
        given = {k: getattr(args, k) for k in Sizes._fields if getattr(args, k) is not None}
        sizes = SIZES["quick" if args.quick else "full"]._replace(**given)
        rows = args.rows or list(QUICK_ROWS if args.quick else ROWS)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        sets = make_data(args, out, sizes)
        cfg = base_config(
            args, PRETRAIN | {"train.max_steps": sizes.pretrain_steps, "train.checkpoint_every": 0}
        )
        encoders = train_once(cfg, out / "pretrain", [out / "data" / "pretrain"], "pretrain")
        if args.photometric_check or args.signal_check:
            model = load_model(encoders, device=args.device).model.eval()
            clips = find_eval_clips(out / "data" / "train")[:4]
            if args.photometric_check:
                photometric_check(model, clips, out, args.device)
            if args.signal_check:
                loss = base_config(args, DETAIL).loss
                signal_check(
                    model,
                    clips,
                    out,
                    contrast=loss.detail_contrast,
                    z_reg=loss.z_reg,
                    device=args.device,
                    pooled=args.pooled,
                    matched=args.matched,
                    steps=args.check_steps,
                )
            return 0
        models = train_rows(args, out, rows, sizes, encoders)
        table = evaluate_rows(args, out, sets, models, rows, encoders)
        results = summarise(table, rows)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        text = markdown(results, f"{header}\nwall: {time.perf_counter() - start:.0f} s", sizes)
        (out / "results.md").write_text(text)
        plot(results, out, models)
        print(text)
        print(f"-> {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
