"""Training throughput (windows/s and frames/s) of the tiny and the full config, both stages.

    python benchmarks/bench_train.py [--device cpu|cuda] [--steps 3] [--warmup 1]
        [--configs tiny full] [--stages temporal detail] [--clips 2 --frames 16] [a.b=value ...]

(``python tools/bench_train.py`` runs this script.) "tiny" is configs/tiny_cpu.yaml (tiny
backbones, render 64); "full" is configs/base.yaml (ResNet-50 coarse / detail / AU networks,
default temporal fusion, render 224). Overrides apply to every run (e.g. data.batch_size=2
train.n_critic=2 train.mixed_precision=bf16).

:func:`benchmark_training` writes a few synthetic prepared clips
(:func:`seqdeca.data.synthetic.make_synthetic_dataset`) into a scratch folder, then runs
:func:`seqdeca.train.loop.train` for ``warmup + steps`` optimizer steps per (config, stage) and
reports the rate over the steps after the warm-up (data loading, forward, losses, backward and
optimizer included; validation, image grids and checkpoints are off until the last step).
A detail-stage step is ``train.n_critic`` batches (critic updates, the last one also updating the
generator; one batch without a critic, ``loss.adversarial: 0``), so its windows/s counts every
batch.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.losses.weights import uses_critic

__all__ = ["TrainingThroughput", "bench_config", "benchmark_training", "format_table"]

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NAMED = {"tiny": [CONFIGS / "tiny_cpu.yaml"], "full": [CONFIGS / "base.yaml"]}


@dataclass(frozen=True)
class TrainingThroughput:
    """Throughput of one (config, stage) run.

    Attributes:
        config: the config's name (e.g. "tiny", "full").
        stage: "temporal" or "detail".
        device: "cpu", "cuda", ...
        batch_size: windows per batch.
        window: frames per window.
        batches_per_step: batches per optimizer step (detail: ``n_critic``).
        steps: timed optimizer steps (after the warm-up).
        windows_per_s: training windows per second.
        frames_per_s: ``windows_per_s * window``.
        s_per_step: seconds per optimizer step.
    """

    config: str
    stage: str
    device: str
    batch_size: int
    window: int
    batches_per_step: int
    steps: int
    windows_per_s: float
    frames_per_s: float
    s_per_step: float


@contextlib.contextmanager
def _scratch(folder: str | Path | None) -> Iterator[Path]:
    """A given folder (kept) or a temporary one (removed afterwards)."""
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="seqdeca_bench_") as tmp:
        yield Path(tmp)


def bench_config(
    files: Sequence[str | Path],
    overrides: Sequence[str],
    *,
    stage: str,
    data_root: Path,
    run_dir: Path,
    device: str,
    max_steps: int,
) -> Config:
    """The config of one benchmark run: ``files`` + ``overrides``, then the stage, the device, the
    synthetic data and everything that is not training switched off."""
    cfg = load_config(list(files), list(overrides))
    cfg.train.stage = stage
    cfg.run.device = device
    cfg.run.output_dir = str(run_dir)
    cfg.data.sources = [DataSourceConfig(root=str(data_root))]
    cfg.data.val_sources = []
    cfg.train.max_steps = max_steps
    cfg.train.checkpoint_every = 0
    cfg.train.validate_every = cfg.train.images_every = 0
    cfg.train.log_every = max_steps
    cfg.train.init_from = ""
    return cfg


def benchmark_training(
    configs: Mapping[str, Sequence[str | Path]],
    *,
    stages: Sequence[str] = ("temporal", "detail"),
    device: str = "cpu",
    steps: int = 3,
    warmup: int = 1,
    overrides: Sequence[str] = (),
    clips: int = 2,
    frames: int = 16,
    workdir: str | Path | None = None,
) -> list[TrainingThroughput]:
    """Time the training loop for every (config, stage).

    Args:
        configs: name -> config files (e.g. ``{"tiny": ["configs/tiny_cpu.yaml"], "full": []}``).
        stages: the stages to time.
        device: ``run.device`` of the runs.
        steps: timed optimizer steps.
        warmup: untimed optimizer steps first (allocations, lazy initialisation).
        overrides: ``a.b=value`` applied to every config (e.g. ``data.batch_size=2``).
        clips, frames: size of the synthetic set (written once, with the first config).
        workdir: scratch folder (default: a temporary one, removed afterwards).

    Returns:
        One :class:`TrainingThroughput` per (config, stage), in order.
    """
    from seqdeca.train.loop import train  # Accelerate is imported only when timing

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps}, {warmup}")
    with _scratch(workdir) as scratch:
        data_root = scratch / "data"
        first = load_config(list(next(iter(configs.values()))), list(overrides))
        make_synthetic_dataset(data_root, first, clips=clips, frames=frames, seed=0, progress=False)
        rows = []
        for name, files in configs.items():
            for stage in stages:
                cfg = bench_config(
                    files,
                    overrides,
                    stage=stage,
                    data_root=data_root,
                    run_dir=scratch / f"run_{name}_{stage}",
                    device=device,
                    max_steps=warmup + steps,
                )
                summary = train(copy.deepcopy(cfg))
                rate = summary.windows_per_s_after(warmup)
                start = summary.step_marks[warmup - 1][0] if warmup else 0.0
                gan = stage == "detail" and uses_critic(cfg.loss)
                critic_steps = cfg.train.n_critic if gan else 1
                per_step = cfg.train.grad_accum * critic_steps
                rows.append(
                    TrainingThroughput(
                        config=name,
                        stage=stage,
                        device=device,
                        batch_size=cfg.data.batch_size,
                        window=cfg.data.window,
                        batches_per_step=per_step,
                        steps=steps,
                        windows_per_s=rate,
                        frames_per_s=rate * cfg.data.window,
                        s_per_step=(summary.step_marks[-1][0] - start) / steps,
                    )
                )
        return rows


def format_table(rows: Sequence[TrainingThroughput]) -> str:
    """A Markdown table of the rows."""
    lines = [
        "| config | stage | device | batch x window | batches/step | s/step | windows/s | frames/s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.config} | {r.stage} | {r.device} | {r.batch_size} x {r.window} | "
            f"{r.batches_per_step} | {r.s_per_step:.2f} | {r.windows_per_s:.2f} | "
            f"{r.frames_per_s:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="run.device: cpu, cuda, cuda:1, ...")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument("--configs", nargs="+", choices=sorted(NAMED), default=["tiny", "full"])
    parser.add_argument(
        "--stages", nargs="+", choices=["temporal", "detail"], default=["temporal", "detail"]
    )
    parser.add_argument("--clips", type=int, default=2, help="synthetic clips to train on")
    parser.add_argument("--frames", type=int, default=16, help="frames per synthetic clip")
    parser.add_argument("--workdir", default=None, help="keep the data and runs here")
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def job() -> int:
        rows = benchmark_training(
            {name: NAMED[name] for name in args.configs},
            stages=args.stages,
            device=args.device,
            steps=args.steps,
            warmup=args.warmup,
            overrides=split_overrides(args.overrides),
            clips=args.clips,
            frames=args.frames,
            workdir=args.workdir,
        )
        print(format_table(rows))
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
