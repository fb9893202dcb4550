"""What the ablation experiments share: the banner, config overrides, one training run that
is skipped when its model.pt exists, and the mean and spread of metrics over seeds.

Imported by the scripts of this folder (``python experiments/<name>.py`` puts the folder on
``sys.path``); not part of the installed package.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import shlex
import time
from pathlib import Path

import numpy as np

from seqdeca.cli import split_overrides
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.train.loop import train


def banner(script: str, argv: list[str]) -> str:
    """The command, date and machine, for the log and results.md."""
    command = shlex.join(["python", f"experiments/{script}", *argv])
    machine = (
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {platform.system()})"
    )
    now = datetime.datetime.now().isoformat(timespec="seconds")
    return f"command: {command}\ndate: {now}\nmachine: {machine}"


#: A ``section.key=value`` config override.
_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")


def finish_parsing(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Add the options every experiment has (``--workers``, ``--no-progress``), parse ``argv``
    (``args.overrides``: the ``a.b=value`` items) and apply ``--no-progress`` and the log level."""
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes writing synthetic clips (default: the CPU count)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args, rest = parser.parse_known_args(argv)
    # ``--heldout A B x.y=1`` takes the override as a folder (nargs="+"): give it back
    folders = getattr(args, "heldout", None) or []
    taken = [f for f in folders if _OVERRIDE.match(f)]
    if taken:
        args.heldout = [f for f in folders if not _OVERRIDE.match(f)]
        rest = sorted(rest + taken, key=argv.index)  # in command-line order
    args.overrides = split_overrides(rest)
    if not args.progress:
        os.environ["TQDM_DISABLE"] = "1"  # the training loop's bar too
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args


def overrides(items: dict) -> list[str]:
    """``{"a.b": value}`` as command-line overrides (booleans lower-case)."""
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in items.items()]


def train_once(cfg: Config, run_dir: Path, sources: list[Path], label: str) -> Path:
    """Train ``cfg`` on ``sources`` into ``run_dir`` unless its model.pt exists; returns it."""
    model = run_dir / "model.pt"
    if model.is_file():
        return model
    print(f"[{label}] {cfg.train.max_steps} steps", flush=True)
    cfg.run.output_dir = str(run_dir)
    cfg.data.sources = [DataSourceConfig(root=str(s)) for s in sources]
    start = time.perf_counter()
    summary = train(cfg)
    print(
        f"  {run_dir.name}: {summary.steps} steps in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return model


def summarise(table: dict[str, dict[str, list[dict]]], rows: list[str]) -> dict:
    """``{set: {row: [metrics per seed]}}`` -> ``{set: {row: {metric: mean, metric_std: std,
    "seeds": n}}}`` in ``rows`` order (rows without runs left out; std only over 2+ seeds)."""
    out: dict[str, dict] = {}
    for name, by_row in table.items():
        out[name] = {}
        for row in rows:
            runs = by_row.get(row)
            if not runs:
                continue
            keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float))}
            values = {
                k: [r.get(k) for r in runs if isinstance(r.get(k), (int, float))] for k in keys
            }
            out[name][row] = {k: float(np.mean(v)) for k, v in values.items() if v}
            out[name][row] |= {
                f"{k}_std": float(np.std(v)) for k, v in values.items() if len(v) > 1
            }
            out[name][row]["seeds"] = len(runs)
    return out


def markdown_table(rows: dict[str, dict], columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    """Markdown lines of one table: a row per entry of ``rows`` (``{row: metrics}``), a column
    per ``(metric key, header, format)``, mean ± std where a ``<key>_std`` exists."""
    lines = [
        "| row | " + " | ".join(h for _, h, _ in columns) + " | seeds |",
        "| --- |" + " ---: |" * (len(columns) + 1),
    ]
    for row, metrics in rows.items():
        cells = []
        for key, _, fmt in columns:
            value = metrics.get(key)
            scale = 1e-6 if key == "parameters" else 1.0
            cell = "—" if value is None else format(value * scale, fmt)
            if f"{key}_std" in metrics:
                cell += f" ± {format(metrics[f'{key}_std'] * scale, fmt)}"
            cells.append(cell)
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {metrics.get('seeds', 1)} |")
    return lines
