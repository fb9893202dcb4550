"""Training throughput: windows and frames per second of the real loop on synthetic clips.

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

import contextlib
import copy
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.losses.weights import uses_critic

__all__ = ["BenchRow", "bench_config", "benchmark_training", "format_table"]


@dataclass(frozen=True)
class BenchRow:
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
) -> list[BenchRow]:
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
        One :class:`BenchRow` per (config, stage), in order.
    """
    from seqdeca.train.loop import train  # Accelerate is imported only when timing

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps}, {warmup}")
    with _scratch(workdir) as scratch:
        data_root = scratch / "data"
        first = load_config(list(next(iter(configs.values()))), list(overrides))
        make_synthetic_dataset(data_root, first, clips=clips, frames=frames, seed=0,
                               progress=False)  # fmt: skip
        rows = []
        for name, files in configs.items():
            for stage in stages:
                cfg = bench_config(files, overrides, stage=stage, data_root=data_root,
                                   run_dir=scratch / f"run_{name}_{stage}", device=device,
                                   max_steps=warmup + steps)  # fmt: skip
                summary = train(copy.deepcopy(cfg))
                rate = summary.windows_per_s_after(warmup)
                start = summary.step_marks[warmup - 1][0] if warmup else 0.0
                gan = stage == "detail" and uses_critic(cfg.loss)
                critic_steps = cfg.train.n_critic if gan else 1
                per_step = cfg.train.grad_accum * critic_steps
                rows.append(BenchRow(
                    config=name, stage=stage, device=device, batch_size=cfg.data.batch_size,
                    window=cfg.data.window, batches_per_step=per_step, steps=steps,
                    windows_per_s=rate, frames_per_s=rate * cfg.data.window,
                    s_per_step=(summary.step_marks[-1][0] - start) / steps,
                ))  # fmt: skip
        return rows


def format_table(rows: Sequence[BenchRow]) -> str:
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
