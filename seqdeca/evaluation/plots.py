"""PNG plots of an evaluation: per-frame NME and acceleration curves per clip, AU F1 bars.

Uses matplotlib's object API (``Figure`` + Agg canvas) so that no global backend is switched.
When matplotlib is missing, :func:`write_plots` writes nothing and says so.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch

from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.evaluation.results import MethodResult

__all__ = ["MAX_CLIP_PLOTS", "safe_name", "write_plots"]

log = logging.getLogger(__name__)

MAX_CLIP_PLOTS = 20  # per-clip curves are drawn for the first clips only


def safe_name(name: str) -> str:
    """A file-name-safe form of a clip or method name ("a/b c" -> "a_b_c")."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "unnamed"


def _figure(width: float = 8.0, height: float = 3.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _curves(
    results: list[MethodResult],
    clip: str,
    keys: tuple[str, ...],
    ylabel: str,
    title: str,
    path: Path,
) -> bool:
    """One line per method for the first of ``keys`` it has; False if nothing to draw."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for result in results:
        clip_result = result.clips.get(clip)
        if clip_result is None:
            continue
        key = next((k for k in keys if k in clip_result.series), None)
        if key is None or not torch.isfinite(clip_result.series[key]).any():
            continue
        values = clip_result.series[key].numpy()
        style = "--" if result.kind == "reference" else "-"
        ax.plot(range(len(values)), values, style, label=f"{result.name} ({key})", linewidth=1.2)
        drawn = True
    if drawn:
        ax.set_xlabel("frame")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    return drawn


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _au_bars(results: list[MethodResult], summaries: dict[str, dict], path: Path) -> bool:
    rows = [(r.name, summaries[r.name].get("au_f1")) for r in results]
    rows = [(name, f1) for name, f1 in rows if f1 and any(_finite(v) for v in f1.values())]
    if not rows:
        return False
    fig = _figure(10.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(rows)
    for i, (name, f1) in enumerate(rows):
        values = [f1[au] if _finite(f1[au]) else 0.0 for au in AFFWILD2_AU_NAMES]
        positions = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(values))]
        ax.bar(positions, values, width=width, label=name)
    ax.set_xticks(range(len(AFFWILD2_AU_NAMES)))
    ax.set_xticklabels(AFFWILD2_AU_NAMES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (threshold 0.5)")
    ax.set_title("AU F1 per Aff-Wild2 AU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return True


def write_plots(
    results: list[MethodResult], summaries: dict[str, dict], folder: str | Path
) -> list[Path]:
    """Write ``nme_<clip>.png``, ``accel_<clip>.png`` (first :data:`MAX_CLIP_PLOTS` clips) and
    ``au_f1.png`` (when some method has AU F1) into ``folder``.

    Args:
        results: the evaluated methods (reference rows are drawn dashed).
        summaries: method name -> :func:`seqdeca.evaluation.results.summarise` output.
        folder: output folder (created).

    Returns:
        The written files.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips: list[str] = []
    for result in results:
        clips += [c for c in result.clips if c not in clips]
    written = []
    for clip in clips[:MAX_CLIP_PLOTS]:
        name = safe_name(clip)
        path = folder / f"nme_{name}.png"
        if _curves(
            results,
            clip,
            ("nme_mp", "nme_68"),
            "NME (% inter-ocular)",
            f"per-frame landmark NME: {clip}",
            path,
        ):
            written.append(path)
        path = folder / f"accel_{name}.png"
        if _curves(
            results,
            clip,
            ("accel_vertices",),
            "mm / frame^2",
            f"acceleration of pose-removed vertices: {clip}",
            path,
        ):
            written.append(path)
        path = folder / f"accel_landmarks_{name}.png"
        if _curves(
            results,
            clip,
            ("accel_landmarks",),
            "% IOD / frame^2",
            f"acceleration of normalised landmarks: {clip}",
            path,
        ):
            written.append(path)
    path = folder / "au_f1.png"
    if _au_bars(results, summaries, path):
        written.append(path)
    return written
