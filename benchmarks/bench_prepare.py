"""Benchmark data preparation end to end (the tools/prepare_data.py code path).

    python benchmarks/bench_prepare.py [CLIP.mp4 ...] [--workers 1 2] [--config x.yaml] [a.b=value]

(``python tools/bench_prepare.py`` runs this script.) Default clips: the four 1080p MEAD samples
in ../shared/data/clips (M*.mp4, W*.mp4) next to the repository. Each --workers value prepares
all clips into a fresh temporary folder with prepare_dataset / prepare_clip and prints a line:
frames, wall seconds, end-to-end frames/s, the per-stage split in ms/frame (decode, track, warp +
write, other; per-process busy time) and the one-time start-up cost per process. Target: >= 25
frames/s end to end on a 2-core CPU machine.

The benchmark runs the real code path of ``tools/prepare_data.py``: plain-video discovery
(:func:`~seqdeca.prep.prepare_run.discover`) and :func:`~seqdeca.prep.prepare_run.prepare_dataset`
calling :func:`~seqdeca.prep.prepare.prepare_clip` for every clip, once per worker count, each
into a fresh folder. The only addition is a thin per-clip wrapper (:func:`timed_prepare`) that
calls ``prepare_clip`` unchanged and records its stage timings (``ClipReport.timings``) and when
it ran, so that the one-time start-up cost of a process (interpreter spawn, imports, MediaPipe
graph set-up) can be told apart from the steady per-frame cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import Config, load_config
from seqdeca.errors import UserError

__all__ = ["PrepareBenchmark", "benchmark_prepare", "timed_prepare"]

STAGES = ("decode", "track", "warp_write")
_RECORDS = "bench_records"  # sub-folder of a run's output root holding one JSON per clip
_CALLS = {"count": 0}  # clips prepared by this process (module state, fresh in each worker)
SAMPLE_CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clips"


def timed_prepare(source, out_root: Path, cfg: Config):
    """``prepare_clip(source, out_root, cfg)`` plus a timing record (picklable, for workers).

    Writes ``out_root/bench_records/<clip_id>.json`` with the report's status, frames,
    ``timings`` (seconds per stage), the wrapper's own wall time in seconds (``total``: includes
    importing ``seqdeca.prep.prepare`` on a process's first clip), the epoch ``start`` time, the
    process id and whether it was the process's first clip.

    Returns:
        The :class:`~seqdeca.prep.prepare.ClipReport` of ``prepare_clip``.
    """
    start, tic = time.time(), time.perf_counter()
    from seqdeca.prep.prepare import prepare_clip

    first = _CALLS["count"] == 0
    _CALLS["count"] += 1
    report = prepare_clip(source, out_root, cfg)
    record = {
        "clip_id": source.clip_id,
        "status": report.status,
        "reason": report.reason,
        "frames": report.frames,
        "timings": dict(getattr(report, "timings", {}) or {}),
        "total": time.perf_counter() - tic,
        "start": start,
        "pid": os.getpid(),
        "first": first,
    }
    folder = Path(out_root) / _RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{source.clip_id}.json").write_text(json.dumps(record))
    return report


@dataclass
class PrepareBenchmark:
    """One prepare run of the benchmark (all clips, one worker count).

    Attributes:
        workers: worker processes.
        clips: clips given; done: clips prepared; failures: "clip_id: reason" lines.
        frames: frames written.
        seconds: wall time of ``prepare_dataset`` (spawning the pool included).
        frames_per_second: frames / seconds, end to end.
        stage_ms: milliseconds per frame of each stage in :data:`STAGES` plus "other"
            (rotation check, tracker set-up, saving arrays, AU proxies), summed over the
            clips and divided by the frames: per-process busy time, not wall time.
        startup_s: mean one-time cost per process in seconds: the delay before its first clip
            starts (spawn + imports of a worker) plus the extra time of its first clip over
            the steady per-frame cost (imports, MediaPipe graph set-up).
    """

    workers: int
    clips: int
    done: int
    frames: int
    seconds: float
    frames_per_second: float
    stage_ms: dict[str, float] = field(default_factory=dict)
    startup_s: float = float("nan")
    failures: list[str] = field(default_factory=list)


def _records(out_root: Path) -> list[dict]:
    folder = out_root / _RECORDS
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _steady_seconds_per_frame(records: list[dict]) -> float:
    """Median seconds per frame of one run's clips that were not a process's first (else all)."""
    import numpy as np

    done = [r for r in records if r["status"] == "done" and r["frames"] > 0]
    warm = [r for r in done if not r["first"]] or done
    return float(np.median([r["total"] / r["frames"] for r in warm])) if warm else float("nan")


def _summarise(run: PrepareBenchmark, records: list[dict], run_start: float, steady: float) -> None:
    """Fill ``stage_ms`` and ``startup_s`` of ``run`` from its clip records."""
    done = [r for r in records if r["status"] == "done"]
    frames = sum(r["frames"] for r in done)
    if frames:
        for stage in STAGES:
            run.stage_ms[stage] = 1000 * sum(r["timings"].get(stage, 0.0) for r in done) / frames
        busy = sum(r["total"] for r in done)
        run.stage_ms["other"] = 1000 * busy / frames - sum(run.stage_ms.values())
    firsts = [r for r in done if r["first"]]
    if firsts:
        costs = [
            max(0.0, r["start"] - run_start) + max(0.0, r["total"] - r["frames"] * steady)
            for r in firsts
        ]
        run.startup_s = sum(costs) / len(costs)


def benchmark_prepare(
    clips: Sequence[str | Path],
    cfg: Config,
    *,
    workers: Sequence[int] = (1, 2),
    work_dir: str | Path | None = None,
) -> list[PrepareBenchmark]:
    """Prepare ``clips`` once per worker count with the real pipeline and time it.

    Args:
        clips: video files (any readable format); their stems must be distinct.
        cfg: the resolved config (``crop``, ``track``, ``prepare`` are used by prepare_clip).
        workers: worker counts, run in this order, each into a fresh output folder.
        work_dir: where to build the input links and outputs (default: a temporary folder,
            removed afterwards).

    Returns:
        One :class:`PrepareBenchmark` per worker count.

    Raises:
        UserError: a clip is missing or two clips share a file name.
    """
    from seqdeca.prep.prepare_run import discover, prepare_dataset

    paths = [Path(c).expanduser().resolve() for c in clips]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"video file not found: {missing[0]}")
    if len({p.name for p in paths}) != len(paths):
        raise UserError("two benchmark clips share a file name; pass distinct files")
    with tempfile.TemporaryDirectory(prefix="bench_prepare_", dir=work_dir) as tmp:
        inputs = Path(tmp) / "input"
        inputs.mkdir()
        for path in paths:
            (inputs / path.name).symlink_to(path)
        sources = discover("videos", inputs)
        runs = []
        for n in workers:
            out_root = Path(tmp) / f"prepared_w{n}"
            run_start = time.time()
            summary = prepare_dataset(
                sources,
                out_root,
                cfg,
                workers=max(1, int(n)),
                progress=False,
                prepare=timed_prepare,
            )
            run = PrepareBenchmark(
                workers=max(1, int(n)),
                clips=summary.clips,
                done=summary.done,
                frames=summary.frames,
                seconds=summary.seconds,
                frames_per_second=summary.frames_per_second,
                failures=[f"{f['clip_id']}: {f['reason']}" for f in summary.failures],
            )
            records = _records(out_root)
            runs.append((run, records, run_start))
        for run, records, run_start in runs:
            steady = _steady_seconds_per_frame(records)
            _summarise(run, records, run_start, steady)
    return [run for run, _, _ in runs]


def environment() -> dict[str, str]:
    """Versions and machine facts printed above the table."""
    import platform

    import torch

    try:
        import mediapipe

        mp_version = mediapipe.__version__
    except ImportError:  # pragma: no cover - mediapipe is a dependency
        mp_version = "absent"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mediapipe": mp_version,
        "cpus": str(os.cpu_count()),
        "load1": f"{load:.2f}",
    }


def format_table(runs: Sequence[PrepareBenchmark], target_fps: float = 25.0) -> str:
    """The benchmark table (one line per worker count) and the verdict against the target."""
    head = (
        f"{'workers':>7} {'clips':>5} {'frames':>6} {'wall s':>7} {'frames/s':>8} | "
        f"{'decode':>6} {'track':>6} {'warp+wr':>7} {'other':>6} ms/frame | {'start-up s':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        ms = [r.stage_ms.get(k, float("nan")) for k in (*STAGES, "other")]
        lines.append(
            f"{r.workers:>7} {r.done:>5} {r.frames:>6} {r.seconds:>7.2f} "
            f"{r.frames_per_second:>8.1f} | {ms[0]:>6.1f} {ms[1]:>6.1f} {ms[2]:>7.1f} "
            f"{ms[3]:>6.1f}          | {r.startup_s:>10.2f}"
        )
        lines += [f"  failed {line}" for line in r.failures]
    best = max((r.frames_per_second for r in runs), default=0.0)
    verdict = "ok" if best >= target_fps else "under target"
    lines.append(f"best end-to-end: {best:.1f} frames/s (target >= {target_fps:g}: {verdict})")
    return "\n".join(lines)


def default_clips() -> list[Path]:
    """The MEAD samples (M*.mp4, W*.mp4) in ../shared/data/clips."""
    folder = SAMPLE_CLIPS.resolve()
    clips = sorted(folder.glob("M*.mp4")) + sorted(folder.glob("W*.mp4")) if folder.is_dir() else []
    if not clips:
        raise UserError(f"no sample clips (M*.mp4, W*.mp4) in {folder}: pass video files instead")
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", nargs="*", help="video files, then config overrides a.b=value")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    args = parser.parse_args(argv)

    def job() -> int:
        overrides = split_overrides([a for a in args.items if "=" in a])
        clips = [Path(a) for a in args.items if "=" not in a] or default_clips()
        cfg = load_config(args.config, overrides)
        env = environment()
        print(" ".join(f"{k}={v}" for k, v in env.items()) + f" clips={len(clips)}", flush=True)
        if float(env["load1"]) > 0.5 * (os.cpu_count() or 1):
            print(
                f"warning: load average {env['load1']} on {env['cpus']} cores before the run; "
                "timings are unreliable"
            )
        runs = benchmark_prepare(clips, cfg, workers=args.workers)
        print(format_table(runs))
        return 0 if all(r.done for r in runs) else 2

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
