"""Learning evidence on synthetic clips: held-out expression error before and after training.

    python experiments/learning_check.py OUT [--preset expression|full] [--steps 200 400 600]
        [--lr-scales 1 1 0.3] [--train-clips 512] [--heldout-clips 32] [--frames 8] [--seed 0]
        [--synthetic max_yaw=5 ...] [--png OUT/curve.png]
        [--config configs/synthetic_expression.yaml] [a.b=value ...]

(``python tools/learning_curve.py`` runs this script.) Writes synthetic training and held-out
clips under OUT/data (kept between runs: use a new OUT after changing the preset or
--synthetic) with the settings of --preset (:data:`SYNTHETIC_PRESETS`; "expression": head pose,
identity and framing fixed; "full": everything varies), --synthetic KEY=VALUE items overriding
SyntheticSettings fields of both sets; trains the configured temporal stage with self-supervised
losses only into OUT/run, scoring the held-out clips after each --steps count (segment k runs at
train.lr x --lr-scales[k]; default: the last segment at 0.3); prints the expression code error,
the expression-only and expression + jaw vertex errors, the jaw error and the landmark NME
against steps and training seconds, and writes OUT/curve.json (and the PNG).

Synthetic clips (:mod:`seqdeca.data.synthetic`) carry the codes they were rendered from
(``gt.npz``), so the error of the predicted codes can be measured, which real video cannot give.
:func:`run_learning_check` writes a training set and a held-out set of synthetic clips (different
seeds, hence different identities, motions, lights and backgrounds; :data:`SYNTHETIC_PRESETS`
says which of these vary), scores the untrained model on the held-out clips, then trains with
the config's self-supervised losses (:func:`seqdeca.train.loop.train`; e.g.
``configs/synthetic_expression.yaml``: the landmark terms; the ground truth is never used for
training) in segments, resuming from the previous segment's checkpoint, and scores the
exported ``model.pt`` after each segment. A segment may run at a fraction of ``train.lr``: the
loop's rate is constant after warm-up, and the camera (whose translation, in metres, is far
more sensitive per unit than the other codes) settles to landmark precision only at a lower rate.

Scores (:class:`HeldOutScores`) over every valid frame of the held-out clips, cut into
non-overlapping windows of ``data.window`` frames:

* expression error: :func:`seqdeca.eval.metrics.code_error` of the fused expression codes against
  the ground truth (mean absolute difference over the E coefficients, unit-variance units);
* jaw error: the same on the jaw axis-angle (radians);
* expression vertex error: :func:`seqdeca.eval.metrics.vertex_error_mm` between the face model
  deformed by the predicted and by the true (expression, jaw pose), identity and head pose left
  out (mm): the facial expression as a shape, each coefficient weighted by how much it moves
  the face (many of the tiny model's later components move it by less than a millimetre); and
  the same for the expression alone (jaw closed on both sides), which the jaw cannot improve;
* landmark NME: :func:`seqdeca.eval.metrics.landmark_nme` of the projected iBUG-68 landmarks, in
  % of the outer-eye-corner distance.

The constant predictor "expression = 0, jaw closed" (the face model's mean expression, which is
also where the untrained coarse encoder starts, see :meth:`CoarseEncoder.start_at`) is reported
as ``zero_expression_error`` / ``zero_expression_vertex_mm``: training must go below it to show
that the expression is read from the images and not merely shrunk towards the mean.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.dataset import SequenceDataset, WindowCollator
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.eval.clip_metrics import frame_series, model_prediction, window_reference
from seqdeca.eval.metrics import code_error, vertex_error_mm
from seqdeca.io.weights import load_weights
from seqdeca.models.export import load_export
from seqdeca.models.from_config import build_model
from seqdeca.models.seqdeca_model import SeqDECA

__all__ = [
    "SYNTHETIC_PRESETS",
    "CurvePoint",
    "HeldOutScores",
    "LearningCheck",
    "heldout_scores",
    "load_trained_model",
    "make_learning_sets",
    "run_learning_check",
    "save_curve_png",
]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic_expression.yaml"


#: Synthetic-set presets (:class:`~seqdeca.data.synthetic.SyntheticSettings` overrides).
#: "full": everything varies (head pose +-30/20/10 degrees, identity, framing, expression, jaw,
#: light, texture, background), 25 fps. "expression": head pose, identity (mean shape) and
#: framing fixed, so what the landmarks show is expression and jaw; texture, light and
#: background still vary. Both sample clips at 4 fps so that the 8 frames of a clip span 2 s of
#: the 0.1-1 Hz trajectories: at 25 fps a clip's expression hardly changes, and 96 clips gave
#: about 96 distinct expressions, too few for a network to read expression from (it memorises).
SYNTHETIC_PRESETS: dict[str, dict[str, float]] = {
    "full": {"fps": 4.0},
    "expression": {
        "fps": 4.0,
        "max_yaw": 0.0,
        "max_pitch": 0.0,
        "max_roll": 0.0,
        "shape_scale": 0.0,
        "scale_jitter": 0.0,
        "shift_jitter": 0.0,
    },
}


@dataclass(frozen=True)
class HeldOutScores:
    """Scores of a model on the held-out synthetic clips (means over valid frames).

    Attributes:
        expression_error: mean |pred - gt| of the expression coefficients.
        jaw_error: mean |pred - gt| of the jaw axis-angle, radians.
        landmark_nme: iBUG-68 NME, % of the outer-eye-corner distance.
        expression_vertex_mm: vertex error of the (expression, jaw) deformation, mm.
        expression_only_mm: vertex error of the expression deformation alone (jaw closed), mm.
        zero_expression_error: mean |gt| of the expression (the "predict the mean" baseline).
        zero_expression_vertex_mm: the same baseline's expression + jaw vertex error, mm.
        zero_expression_only_mm: the same baseline's expression-only vertex error, mm.
        frames: number of frames scored.
    """

    expression_error: float
    jaw_error: float
    landmark_nme: float
    expression_vertex_mm: float
    expression_only_mm: float
    zero_expression_error: float
    zero_expression_vertex_mm: float
    zero_expression_only_mm: float
    frames: int


@dataclass(frozen=True)
class CurvePoint:
    """Held-out scores after ``step`` optimizer steps and ``train_s`` seconds of training."""

    step: int
    train_s: float
    scores: HeldOutScores
    loss: float = float("nan")  # training loss ("total") of the last step


@dataclass
class LearningCheck:
    """Result of :func:`run_learning_check`: the curve from step 0 (untrained) to the end."""

    run_dir: Path
    points: list[CurvePoint] = field(default_factory=list)

    @property
    def untrained(self) -> HeldOutScores:
        return self.points[0].scores

    @property
    def trained(self) -> HeldOutScores:
        return self.points[-1].scores

    def table(self) -> str:
        """A plain-text table of the curve."""
        head = (
            f"{'step':>6} {'train s':>8} {'loss':>7} {'exp code':>8} {'exp mm':>7} "
            f"{'jaw rad':>8} {'exp+jaw mm':>10} {'NME %':>6}"
        )
        rows = [head]
        for p in self.points:
            s = p.scores
            rows.append(
                f"{p.step:>6d} {p.train_s:>8.1f} {p.loss:>7.4f} {s.expression_error:>8.4f} "
                f"{s.expression_only_mm:>7.3f} {s.jaw_error:>8.4f} "
                f"{s.expression_vertex_mm:>10.3f} {s.landmark_nme:>6.2f}"
            )
        base = self.untrained
        rows.append(
            f"zero-expression baseline: code {base.zero_expression_error:.4f}, "
            f"exp {base.zero_expression_only_mm:.3f} mm, "
            f"exp+jaw {base.zero_expression_vertex_mm:.3f} mm "
            f"({base.frames} held-out frames)"
        )
        return "\n".join(rows)


def make_learning_sets(
    out_dir: str | Path,
    cfg: Config,
    *,
    train_clips: int,
    heldout_clips: int,
    frames: int,
    seed: int,
    ranges: dict[str, float] | None = None,
) -> tuple[Path, Path]:
    """Write the training and held-out synthetic sets (existing clips are kept).

    ``ranges`` overrides :class:`~seqdeca.data.synthetic.SyntheticSettings` fields of both sets.

    Returns:
        ``(train_root, heldout_root)``: ``out_dir/train`` (seed ``seed``) and
        ``out_dir/heldout`` (seed ``seed + 1``), each holding ``synthetic/synth_NNNNN``.
    """
    out_dir = Path(out_dir)
    train_root, heldout_root = out_dir / "train", out_dir / "heldout"
    make_synthetic_dataset(
        train_root, cfg, clips=train_clips, frames=frames, seed=seed, progress=False, ranges=ranges
    )
    make_synthetic_dataset(
        heldout_root,
        cfg,
        clips=heldout_clips,
        frames=frames,
        seed=seed + 1,
        progress=False,
        ranges=ranges,
    )
    return train_root, heldout_root


def _ground_truth(dataset: SequenceDataset) -> list[dict[str, torch.Tensor]]:
    """Per clip number: "expression" (T, E) and "jaw_pose" (T, 3) from its gt.npz."""
    out = []
    for clip in dataset.clips:
        with np.load(clip.path / "gt.npz") as gt:
            out.append({k: torch.from_numpy(gt[k]) for k in ("expression", "jaw_pose")})
    return out


def _batch_sums(model: SeqDECA, batch, gt_exp: torch.Tensor, gt_jaw: torch.Tensor) -> dict:
    """Sums over the batch's valid frames of every score (see :class:`HeldOutScores`).

    The landmark NME is the evaluation's (:func:`~seqdeca.eval.clip_metrics.frame_series`). The
    code and mesh scores are this check's own and differ from the evaluation's expression_error,
    jaw_error and expression vertex errors: the expression is cut to the ground truth's length
    (not zero-padded), the jaw error is in radians, and the meshes have the mean identity.
    """
    out = model(batch.images, batch.valid, "temporal")
    valid, fm = batch.valid, model.face_model
    pred_exp = out.expression[..., : gt_exp.shape[-1]]
    zero_exp, zero_jaw = torch.zeros_like(gt_exp), torch.zeros_like(gt_jaw)
    true_shape = fm(expression=gt_exp, jaw_pose=gt_jaw).vertices  # identity and head pose zero
    reference = window_reference(batch, images=False)  # the landmark series only
    nme = frame_series(model_prediction(out), reference, mediapipe_ids=None)["nme_68"]
    pred_shape = fm(expression=pred_exp, jaw_pose=out.jaw_pose).vertices
    zero_shape = fm(expression=zero_exp, jaw_pose=zero_jaw).vertices
    true_face = fm(expression=gt_exp).vertices  # expression alone, jaw closed
    per_frame = {
        "expression": code_error(pred_exp, gt_exp),
        "zero": code_error(zero_exp, gt_exp),
        "jaw": code_error(out.jaw_pose, gt_jaw),
        "vertex": vertex_error_mm(pred_shape, true_shape),
        "zero_vertex": vertex_error_mm(zero_shape, true_shape),
        "only": vertex_error_mm(fm(expression=pred_exp).vertices, true_face),
        "zero_only": vertex_error_mm(zero_shape, true_face),  # the mean face has the jaw closed
        "nme": torch.nan_to_num(nme),
    }
    return {k: float(v[valid].sum()) for k, v in per_frame.items()} | {"count": int(valid.sum())}


@torch.no_grad()
def heldout_scores(
    model: SeqDECA, heldout_root: str | Path, *, window: int, batch_size: int = 8
) -> HeldOutScores:
    """Score ``model`` (eval mode, CPU) on every valid frame of the held-out clips.

    Args:
        model: the model; its face model must be the one the clips were rendered with.
        heldout_root: a folder of prepared synthetic clips with ``gt.npz``.
        window: frames per window (non-overlapping windows cover each clip).
        batch_size: windows per forward pass.
    """
    dataset = SequenceDataset(sources=[str(heldout_root)], window=window, train=False)
    keep = [i for i, (_, start) in enumerate(dataset.windows) if start % window == 0]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, keep),
        batch_size=batch_size,
        collate_fn=WindowCollator(dataset.clip_ids),
    )
    truth = _ground_truth(dataset)
    clip_number = {clip_id: k for k, clip_id in enumerate(dataset.clip_ids)}
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    for batch in loader:
        numbers = [clip_number[c] for c in batch.clip_ids]
        gt = {
            k: torch.stack([truth[n][k][f] for n, f in zip(numbers, batch.frames)])
            for k in ("expression", "jaw_pose")
        }
        for k, v in _batch_sums(model, batch, gt["expression"], gt["jaw_pose"]).items():
            sums[k] = sums.get(k, 0.0) + v
    model.train(was_training)
    n = max(sums.get("count", 0), 1)
    return HeldOutScores(
        expression_error=sums["expression"] / n,
        jaw_error=sums["jaw"] / n,
        landmark_nme=sums["nme"] / n,
        expression_vertex_mm=sums["vertex"] / n,
        expression_only_mm=sums["only"] / n,
        zero_expression_error=sums["zero"] / n,
        zero_expression_vertex_mm=sums["zero_vertex"] / n,
        zero_expression_only_mm=sums["zero_only"] / n,
        frames=int(sums["count"]),
    )


def load_trained_model(model_path: str | Path, cfg: Config) -> SeqDECA:
    """The :class:`SeqDECA` of ``cfg`` with the weights of an exported ``model.pt`` (strict, CPU).

    Args:
        model_path: ``run_dir/model.pt`` of a run of ``cfg``.
        cfg: the run's config (builds the same model; no checkpoint is loaded from it).
    """
    record = load_export(model_path)  # weights_only: runs nothing
    model = build_model(cfg, load_checkpoints=False)
    load_weights(model, record.weights, source=str(model_path))
    return model


def _last_loss(run_dir: Path) -> float:
    lines = (run_dir / "losses.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])["total"]) if lines else float("nan")


def run_learning_check(
    cfg: Config,
    out_dir: str | Path,
    *,
    checkpoints: list[int],
    train_clips: int = 16,
    heldout_clips: int = 4,
    frames: int = 24,
    seed: int = 0,
    ranges: dict[str, float] | None = None,
    lr_scales: list[float] | None = None,
) -> LearningCheck:
    """Train ``cfg`` on fresh synthetic clips and score held-out clips along the way.

    Args:
        cfg: the training config (e.g. ``configs/synthetic_tiny.yaml``); its data sources and
            ``run.output_dir`` are replaced, ``train.max_steps`` is set per segment.
        out_dir: where the clips (``out_dir/data``) and the run (``out_dir/run``) go.
        checkpoints: increasing step counts at which to score (the last is the run's length).
        train_clips, heldout_clips, frames: sizes of the two synthetic sets.
        seed: seed of the synthetic sets (held-out: ``seed + 1``).
        ranges: :class:`~seqdeca.data.synthetic.SyntheticSettings` overrides of both sets.
        lr_scales: per segment, a factor on ``train.lr`` (None: 1 for all). The loop's rate is
            constant after warm-up; a lower rate in the last segment (a step schedule) lets the
            camera settle to the precision at which expression shows in the landmarks.

    Returns:
        :class:`LearningCheck` with the untrained point (step 0) and one point per checkpoint.
    """
    from seqdeca.train.loop import train  # the loop pulls Accelerate; import when used

    if not checkpoints or any(b <= a for a, b in zip([0, *checkpoints], checkpoints)):
        raise UserError(f"score steps must be increasing positive counts, got {checkpoints}")
    lr_scales = [1.0] * len(checkpoints) if lr_scales is None else list(lr_scales)
    if len(lr_scales) != len(checkpoints) or min(lr_scales) <= 0:
        raise UserError(f"need one positive lr scale per score step, got {lr_scales}")
    out_dir = Path(out_dir)
    train_root, heldout_root = make_learning_sets(
        out_dir / "data",
        cfg,
        train_clips=train_clips,
        heldout_clips=heldout_clips,
        frames=frames,
        seed=seed,
        ranges=ranges,
    )
    cfg = copy.deepcopy(cfg)
    cfg.data.sources = [DataSourceConfig(root=str(train_root))]
    cfg.run.output_dir = str(out_dir / "run")
    cfg.train.checkpoint_every = 0
    torch.manual_seed(cfg.run.seed)  # the untrained model is the one train() starts from
    untrained = build_model(cfg)
    window = cfg.data.window
    result = LearningCheck(run_dir=Path(cfg.run.output_dir))
    result.points.append(CurvePoint(0, 0.0, heldout_scores(untrained, heldout_root, window=window)))
    elapsed, base_lr = 0.0, cfg.train.lr
    for k, steps in enumerate(checkpoints):
        cfg.train.max_steps, cfg.train.lr = steps, base_lr * lr_scales[k]
        start = time.perf_counter()
        summary = train(cfg, resume=None if k == 0 else "latest")
        elapsed += time.perf_counter() - start
        model = load_trained_model(summary.model_path, cfg)
        scores = heldout_scores(model, heldout_root, window=window)
        result.points.append(CurvePoint(steps, elapsed, scores, _last_loss(result.run_dir)))
    return result


def save_curve_png(result: LearningCheck, path: str | Path) -> Path:
    """Draw every held-out score relative to the untrained model's (1 = no change) against
    steps into a PNG: expression code error, expression-only vertex error, jaw error,
    expression + jaw vertex error and landmark NME."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "expression_error": "exp code",
        "expression_only_mm": "exp vertices",
        "jaw_error": "jaw",
        "expression_vertex_mm": "exp+jaw vertices",
        "landmark_nme": "NME",
    }
    steps, start = [p.step for p in result.points], result.untrained
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.axhline(1.0, color="0.7", lw=1)  # the untrained level
    for name, label in labels.items():
        base = max(getattr(start, name), 1e-12)
        ax.plot(steps, [getattr(p.scores, name) / base for p in result.points], label=label)
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("held-out score / untrained")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ranges(preset: str, items: list[str]) -> dict[str, float]:
    """The preset's SyntheticSettings overrides updated by ``KEY=VALUE`` items."""
    if any("=" not in item for item in items):
        raise UserError(f"--synthetic takes KEY=VALUE items, got {items}")
    ranges = dict(SYNTHETIC_PRESETS[preset])
    for key, value in (item.split("=", 1) for item in items):
        try:
            ranges[key] = float(value)
        except ValueError:
            raise UserError(f"--synthetic {key}={value}: the value must be a number") from None
    return ranges


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="output folder (data/, run/, curve.json)")
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[200, 400, 600],
        help="step counts at which to score the held-out clips",
    )
    parser.add_argument(
        "--lr-scales",
        type=float,
        nargs="+",
        default=None,
        help="train.lr factor per segment (default 1 ... 1 0.3)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(SYNTHETIC_PRESETS),
        default="expression",
        help="synthetic settings preset (default: expression)",
    )
    parser.add_argument("--train-clips", type=int, default=512)
    parser.add_argument("--heldout-clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8, help="frames per synthetic clip")
    parser.add_argument(
        "--synthetic",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="SyntheticSettings overrides, e.g. max_yaw=5 shape_scale=0",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic clips")
    parser.add_argument("--png", default=None, help="also draw the curve into this PNG")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help=f"YAML config file(s) (default {DEFAULT_CONFIG.name})",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def job() -> int:
        cfg = load_config(args.config or [DEFAULT_CONFIG], split_overrides(args.overrides))
        ranges = _ranges(args.preset, args.synthetic)
        scales = args.lr_scales or [1.0] * (len(args.steps) - 1) + [0.3]
        result = run_learning_check(
            cfg,
            args.out,
            checkpoints=args.steps,
            train_clips=args.train_clips,
            heldout_clips=args.heldout_clips,
            frames=args.frames,
            seed=args.seed,
            ranges=ranges,
            lr_scales=scales,
        )
        print(result.table())
        points = [asdict(p) for p in result.points]
        (Path(args.out) / "curve.json").write_text(json.dumps(points, indent=1))
        if args.png:
            print(f"curve -> {save_curve_png(result, args.png)}")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
