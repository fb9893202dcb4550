"""Write an evaluation: ``metrics.json``, ``metrics.md``, ``per_clip/<method>.csv``, plots and,
when asked, TensorBoard scalars.

``metrics.json``::

    {"settings": {...}, "units": {metric: unit},
     "methods": {name: {"description", "kind", "overall": {...}, "per_clip": {clip: {...}}}}}

Non-finite numbers are written as null. ``metrics.md`` holds an accuracy table, a temporal and
cost table, a detail table (detail-stage checkpoints on clips with ground-truth detail), a
per-AU F1 table and the list of methods with their descriptions.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.eval.clip_metrics import SERIES_UNITS
from seqdeca.eval.detail_metrics import DETAIL_PATTERN_AUS
from seqdeca.evaluation.plots import safe_name, write_plots
from seqdeca.evaluation.results import MethodResult, nan_to_none, summarise, summarise_clip

__all__ = [
    "ACCURACY_COLUMNS",
    "DETAIL_COLUMNS",
    "TEMPORAL_COLUMNS",
    "markdown_report",
    "write_report",
]

# (metric key, column header, format)
ACCURACY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("nme_68", "NME-68 (%)", ".2f"),
    ("nme_mp", "NME-MP (%)", ".2f"),
    ("l1", "L1", ".4f"),
    ("psnr", "PSNR (dB)", ".2f"),
    ("psnr_covered", "PSNR covered (dB)", ".2f"),
    ("ssim", "SSIM", ".3f"),
    ("expression_error", "exp err", ".3f"),
    ("pose_error", "pose err (deg)", ".2f"),
    ("jaw_error", "jaw err (deg)", ".2f"),
    ("vertex_error", "vertex err (mm)", ".2f"),
    ("expression_vertex_error", "exp vertex err (mm)", ".3f"),
    ("expression_jaw_vertex_error", "exp+jaw vertex err (mm)", ".3f"),
    ("au_f1_mean", "AU F1", ".3f"),
)
TEMPORAL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accel_vertices", "accel verts (mm/f^2)", ".3f"),
    ("accel_error", "accel err (mm/f^2)", ".3f"),
    ("expression_jaw_accel_error", "exp+jaw accel err (mm/f^2)", ".4f"),
    ("jerk_vertices", "jerk verts (mm/f^3)", ".3f"),
    ("accel_landmarks", "accel lmk (%IOD/f^2)", ".3f"),
    ("jerk_landmarks", "jerk lmk (%IOD/f^3)", ".3f"),
    ("au_std", "AU std", ".3f"),
    ("au_flips_per_s", "AU flips/s", ".2f"),
    ("parameters", "params (M)", ".2f"),
    ("ms_per_frame", "ms/frame", ".1f"),
)

#: Detail-stage checkpoints on clips with ground-truth detail (per region in metrics.json).
DETAIL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("displacement_error", "disp. err. face (mm)", ".4f"),
    ("detail_normal_error", "normal err. face (deg)", ".2f"),
    *(
        (f"displacement_error/{region}", f"disp. err. {region} (mm)", ".4f")
        for region in DETAIL_PATTERN_AUS
    ),
)

#: Units of the detail keys (per-region keys ``<key>/<region>`` share their key's unit).
DETAIL_UNITS = {"displacement_error": "mm", "detail_normal_error": "deg"}


def _cell(value, fmt: str, key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if key == "parameters":
        value = value / 1e6
    return format(value, fmt)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _table(rows: list[tuple[str, dict]], columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    used = [c for c in columns if any(_cell(s.get(c[0]), c[2], c[0]) != "—" for _, s in rows)]
    lines = ["| method | " + " | ".join(h for _, h, _ in used) + " |"]
    lines.append("| --- |" + " ---: |" * len(used))
    for name, summary in rows:
        cells = [_cell(summary.get(key), fmt, key) for key, _, fmt in used]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(results: list[MethodResult], summaries: dict[str, dict], settings: dict) -> str:
    """The Markdown text of ``metrics.md`` (columns no method has are left out)."""
    rows = [(r.name, summaries[r.name]) for r in results]
    clips = max((s.get("clips", 0) for _, s in rows), default=0)
    frames = max((s.get("frames", 0) for _, s in rows), default=0)
    lines = [
        "# Evaluation",
        "",
        (
            f"Data: `{settings.get('data')}` ({clips} clips, {frames} valid frames); window "
            f"{settings.get('window')}; device {settings.get('device')}. Means over all valid "
            "frames of all clips; — = not available for that method."
        ),
        "",
        "## Accuracy",
        "",
        *_table(
            [(r.name, summaries[r.name]) for r in results if r.kind != "reference"],
            ACCURACY_COLUMNS,
        ),
        "",
        "## Temporal stability and cost",
        "",
        *_table(rows, TEMPORAL_COLUMNS),
        "",
    ]
    detail_rows = [(n, s) for n, s in rows if _finite(s.get("displacement_error"))]
    if detail_rows:
        lines += ["## Detail (clips with ground-truth detail)", ""]
        lines += [*_table(detail_rows, DETAIL_COLUMNS), ""]
    au_rows = [(n, s) for n, s in rows if _finite(s.get("au_f1_mean"))]
    if au_rows:
        columns = tuple((au, au, ".3f") for au in AFFWILD2_AU_NAMES)
        flat = [(n, dict(s["au_f1"]) | {"mean": s.get("au_f1_mean")}) for n, s in au_rows]
        lines += ["## AU F1 per AU (Aff-Wild2 labels, threshold 0.5)", ""]
        lines += _table(flat, columns + (("mean", "mean", ".3f"),))
        lines.append("")
    lines += ["## Methods", ""]
    lines += [f"- **{r.name}** ({r.kind}): {r.description}" for r in results]
    return "\n".join(lines) + "\n"


def _write_csv(result: MethodResult, path: Path) -> None:
    per_clip = {clip: summarise_clip(c) for clip, c in result.clips.items()}
    metrics = sorted(
        {k for s in per_clip.values() for k, v in s.items() if not isinstance(v, dict)}
    )
    metrics = [k for k in ("frames", "ms_per_frame") if k in metrics] + [
        k for k in metrics if k not in ("frames", "ms_per_frame")
    ]
    has_au = any("au_f1" in s for s in per_clip.values())
    header = ["clip", *metrics] + [f"f1_{au}" for au in AFFWILD2_AU_NAMES if has_au]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for clip, summary in per_clip.items():
            row = [clip] + [_csv_value(summary.get(k)) for k in metrics]
            if has_au:
                f1 = summary.get("au_f1", {})
                row += [_csv_value(f1.get(au)) for au in AFFWILD2_AU_NAMES]
            writer.writerow(row)


def _csv_value(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _write_tensorboard(
    results: list[MethodResult], summaries: dict[str, dict], folder: Path
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    try:
        for result in results:
            for key, value in summaries[result.name].items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"eval/{key}/{result.name}", value, 0)
            for clip, clip_result in result.clips.items():
                for key in ("nme_mp", "nme_68", "accel_vertices"):
                    series = clip_result.series.get(key)
                    if series is None:
                        continue
                    for t, value in enumerate(series.tolist()):
                        if math.isfinite(value):
                            writer.add_scalar(f"per_frame/{clip}/{key}/{result.name}", value, t)
    finally:
        writer.close()


def write_report(
    results: list[MethodResult],
    out_dir: str | Path,
    *,
    settings: dict,
    tensorboard: bool = False,
    plots: bool = True,
) -> dict:
    """Write every output of an evaluation into ``out_dir``.

    Args:
        results: the evaluated methods, in table order (names must be unique).
        out_dir: output folder (created).
        settings: what was evaluated how (data, window, device, ...), stored in the JSON.
        tensorboard: also write scalars to ``out_dir/tensorboard``.
        plots: write PNG plots to ``out_dir/plots`` (needs matplotlib).

    Returns:
        The ``metrics.json`` content (NaN as None).
    """
    out = Path(out_dir)
    (out / "per_clip").mkdir(parents=True, exist_ok=True)
    summaries = {r.name: summarise(r) for r in results}
    payload = {
        "settings": settings,
        "units": SERIES_UNITS | DETAIL_UNITS | {"ms_per_frame": "ms", "parameters": "count"},
        "methods": {
            r.name: {
                "description": r.description,
                "kind": r.kind,
                "overall": summaries[r.name],
                "per_clip": {clip: summarise_clip(c) for clip, c in r.clips.items()},
            }
            for r in results
        },
    }
    payload = nan_to_none(payload)
    (out / "metrics.json").write_text(json.dumps(payload, indent=1))
    (out / "metrics.md").write_text(markdown_report(results, summaries, settings))
    for result in results:
        _write_csv(result, out / "per_clip" / f"{safe_name(result.name)}.csv")
    if plots:
        write_plots(results, summaries, out / "plots")
    if tensorboard:
        _write_tensorboard(results, summaries, out / "tensorboard")
    return payload
