"""Prepare many clips: discovery, resume, a pool of worker processes, progress and a summary.

:func:`prepare_dataset` is what ``tools/prepare_data.py`` calls. Every clip goes through
:func:`~seqdeca.prep.prepare.prepare_clip`, which writes ``<out>/<dataset>/<clip_id>/``
atomically; a clip whose folder exists is skipped (resume = run the same command again). A bad
input becomes a failed clip with a one-line reason and never stops the run; Ctrl-C stops it and
leaves the completed clips intact. Workers are separate processes started with "spawn" (safe
with MediaPipe and torch); each builds its own face tracker inside ``prepare_clip``. Processes
started by ``accelerate launch`` or ``torchrun`` share the clips (:mod:`seqdeca.shards`), each
with its own pool; the main one writes the summary of them all.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seqdeca.config import Config, save_config
from seqdeca.errors import UserError
from seqdeca.prep.sources import (
    affwild2_splits,
    find_affwild2,
    find_mead,
    find_videos,
    read_mead_split,
)
from seqdeca.shards import Shard

__all__ = [
    "DATASETS",
    "ClipOutcome",
    "RunSummary",
    "clip_splits",
    "discover",
    "format_summary",
    "merge_summaries",
    "prepare_dataset",
    "write_manifests",
]

DATASETS: tuple[str, ...] = ("mead", "affwild2", "videos")

PrepareFn = Callable[[Any, Path, Config], Any]


@dataclass
class ClipOutcome:
    """What happened to one clip (a flat, JSON-friendly copy of a ClipReport)."""

    clip_id: str
    status: str  # "done", "skipped" or "failed"
    reason: str = ""
    frames: int = 0
    valid_frames: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    """The totals of one :func:`prepare_dataset` run (also written to ``summary.json``).

    ``frames`` and ``frames_without_face`` count the clips prepared in this run; throughput is
    their frames per wall-clock second. ``workers`` is per process; ``processes`` shared the run.
    """

    dataset: str
    out_root: str
    clips: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    frames_without_face: int = 0
    seconds: float = 0.0
    frames_per_second: float = 0.0
    workers: int = 1
    processes: int = 1
    interrupted: bool = False
    failures: list[dict[str, str]] = field(default_factory=list)
    outcomes: list[ClipOutcome] = field(default_factory=list)

    def add(self, outcome: ClipOutcome) -> None:
        """Count one clip's outcome."""
        self.outcomes.append(outcome)
        if outcome.status == "done":
            self.done += 1
            self.frames += outcome.frames
            self.frames_without_face += max(0, outcome.frames - outcome.valid_frames)
        elif outcome.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append({"clip_id": outcome.clip_id, "reason": outcome.reason})


def discover(dataset: str, root: str | Path, *, views: Sequence[str] = ("front",)) -> list[Any]:
    """The ClipSources of ``dataset`` ("mead", "affwild2" or "videos") below ``root``.

    Raises:
        UserError: unknown dataset, missing root, or no clip found (with the expected layout).
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset '{dataset}'; choose one of {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"input folder not found: {root}")
    if dataset == "mead":
        sources = find_mead(root, views=tuple(views))
        layout = "{subject}/video/{view}/{emotion}/level_{k}/{NNN}.mp4"
    elif dataset == "affwild2":
        sources = find_affwild2(root)
        layout = "AU_Detection_Challenge/{Train_Set,Validation_Set}/*.txt plus videos"
    else:
        sources = find_videos(root)
        layout = "video files (.mp4, .avi, .mkv, ...)"
    if not sources:
        raise UserError(
            f"no {dataset} clips found in {root} (expected {layout}; see datasets/README.md)"
        )
    return sources


def _outcome(clip_id: str, report: Any) -> ClipOutcome:
    """A ClipOutcome from a ClipReport (read by field name, so both stay decoupled)."""
    return ClipOutcome(
        clip_id=clip_id,
        status=str(getattr(report, "status", "failed")),
        reason=str(getattr(report, "reason", "") or ""),
        frames=int(getattr(report, "frames", 0) or 0),
        valid_frames=int(getattr(report, "valid_frames", 0) or 0),
        seconds=float(getattr(report, "seconds", 0.0) or 0.0),
    )


def _default_prepare(source: Any, out_root: Path, cfg: Config) -> Any:
    from seqdeca.prep.prepare import prepare_clip

    return prepare_clip(source, out_root, cfg)


def _run_one(job: tuple[Any, Path, Config, PrepareFn]) -> ClipOutcome:
    """Prepare one clip in a worker; any exception becomes a failed outcome, never a crash."""
    source, out_root, cfg, prepare = job
    start = time.perf_counter()
    try:
        outcome = _outcome(source.clip_id, prepare(source, out_root, cfg))
    except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the run
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        outcome = ClipOutcome(source.clip_id, "failed", f"{type(exc).__name__}: {text}"[:300])
    if not outcome.seconds:
        outcome.seconds = time.perf_counter() - start
    return outcome


def _is_complete(out_root: Path, source: Any) -> bool:
    return (out_root / source.dataset / source.clip_id).is_dir()


def _remove_stale_tmp(folder: Path) -> None:
    """Remove ``.{clip_id}.tmp-{pid}`` folders left by runs that were killed."""
    if not folder.is_dir():
        return
    for tmp in folder.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _silence_native_stderr() -> None:
    """Pool initializer: a worker's file descriptor 2 goes to /dev/null.

    MediaPipe's C++ side prints start-up chatter there from its own threads, which would tear
    through the progress bar. Nothing is lost: a worker reports every outcome, failures and
    exceptions included, back to the parent, which prints them.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _results(
    jobs: list[tuple[Any, Path, Config, PrepareFn]], workers: int
) -> Iterator[ClipOutcome]:
    """Outcomes in completion order, in this process (1 worker) or a spawn pool."""
    if workers <= 1 or len(jobs) <= 1:
        yield from (_run_one(job) for job in jobs)
        return
    pool = multiprocessing.get_context("spawn").Pool(
        processes=min(workers, len(jobs)), initializer=_silence_native_stderr
    )
    try:
        yield from pool.imap_unordered(_run_one, jobs)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def prepare_dataset(
    sources: Sequence[Any],
    out_root: str | Path,
    cfg: Config,
    *,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
    prepare: PrepareFn | None = None,
    report: Callable[[ClipOutcome], None] | None = None,
    shard: Shard | None = None,
) -> RunSummary:
    """Prepare ``sources`` into ``out_root``, skipping completed clips.

    Args:
        sources: ClipSources of one dataset (from :func:`discover`).
        out_root: the prepared-data root; clips go to ``{out_root}/{dataset}/{clip_id}/``.
        cfg: the resolved config (``crop``, ``track``, ``prepare`` sections are used by
            ``prepare_clip``); saved as ``{out_root}/config.yaml``.
        workers: worker processes (1 = this process).
        limit: prepare at most this many clips (the first ones by clip_id; skipped clips count).
        progress: show a tqdm progress bar on stderr.
        prepare: the per-clip function (default ``prepare_clip``); must be picklable when
            ``workers > 1``.
        report: called with each clip's outcome as soon as it is known (skipped ones first).
        shard: this process's place in a run shared by several processes
            (:func:`seqdeca.shards.current_shard`): it prepares its share of the chosen clips
            (:meth:`~seqdeca.shards.Shard.take`) with its own ``workers``; the main process
            writes ``config.yaml`` and the summary of every process. None: one process.

    Returns:
        The :class:`RunSummary`, also written to ``{out_root}/summary.json``; in a shared run
        the main process returns the merged one, the others their own. On Ctrl-C the summary
        so far is written (``interrupted`` true; one process only) and KeyboardInterrupt is
        re-raised.
    """
    from tqdm import tqdm

    shard = shard or Shard()
    out_root = Path(out_root)
    chosen = list(sources)[: limit if limit is not None and limit >= 0 else None]
    datasets = {s.dataset for s in chosen}
    _start(out_root, cfg, datasets, shard)
    mine = shard.take(chosen)
    summary = RunSummary(
        dataset=chosen[0].dataset if chosen else "none",
        out_root=str(out_root),
        clips=len(mine),
        workers=workers,
    )
    todo = []
    for source in mine:
        if _is_complete(out_root, source):
            _count(summary, ClipOutcome(source.clip_id, "skipped", "already prepared"), report)
        else:
            todo.append((source, out_root, cfg, prepare or _default_prepare))
    start = time.perf_counter()
    bar = tqdm(
        total=len(mine),
        initial=summary.skipped,
        disable=not progress or not shard.is_main,
        unit="clip",
    )
    try:
        for outcome in _results(todo, workers):
            _count(summary, outcome, report)
            bar.set_postfix(done=summary.done, failed=summary.failed, refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
        if shard.one_machine:  # the workers are gone: drop their partial folders
            for name in datasets:
                _remove_stale_tmp(out_root / name)
        raise
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        summary.frames_per_second = summary.frames / summary.seconds if summary.seconds else 0.0
        if not shard.sharded:
            write_summary(summary, out_root / "summary.json")
    return _merged(summary, shard, [s.clip_id for s in chosen])


def _start(out_root: Path, cfg: Config, datasets: set[str], shard: Shard) -> None:
    """The main process makes the folder, saves the config and removes the temporary folders of
    killed runs; the others wait for it (nobody writes before the stale folders are gone)."""
    if shard.is_main:
        out_root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_root / "config.yaml")
        for name in datasets:
            _remove_stale_tmp(out_root / name)
    shard.barrier()


def _count(
    summary: RunSummary, outcome: ClipOutcome, report: Callable[[ClipOutcome], None] | None
) -> None:
    summary.add(outcome)
    if report is not None:
        report(outcome)


def _merged(summary: RunSummary, shard: Shard, order: list[str]) -> RunSummary:
    """A shared run: every process's summary, merged and written by the main process."""
    if not shard.sharded:
        return summary
    shares = shard.gather(summary)  # waits for every process
    if shares is None:
        return summary
    merged = merge_summaries(shares, order)
    write_summary(merged, Path(summary.out_root) / "summary.json")
    return merged


def merge_summaries(parts: Sequence[RunSummary], order: Sequence[str] = ()) -> RunSummary:
    """One summary for a run shared by ``len(parts)`` processes.

    Counts and frames add up; the run took as long as its slowest process, so throughput is
    all frames over that time. Outcomes (and failures) follow ``order`` (clip ids; others last).
    """
    first = parts[0]
    merged = RunSummary(
        dataset=first.dataset,
        out_root=first.out_root,
        workers=first.workers,
        processes=sum(p.processes for p in parts),
    )
    position = {clip_id: i for i, clip_id in enumerate(order)}
    outcomes = [o for p in parts for o in p.outcomes]
    for outcome in sorted(outcomes, key=lambda o: position.get(o.clip_id, len(position))):
        merged.add(outcome)
    merged.clips = sum(p.clips for p in parts)
    merged.interrupted = any(p.interrupted for p in parts)
    merged.seconds = max(p.seconds for p in parts)
    merged.frames_per_second = merged.frames / merged.seconds if merged.seconds else 0.0
    return merged


def write_summary(summary: RunSummary, path: str | Path) -> Path:
    """Write ``summary`` as JSON (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    tmp.replace(path)
    return path


def format_summary(summary: RunSummary) -> str:
    """A few readable lines: counts, frames, faces, throughput and every failure's reason."""
    stop = " (interrupted)" if summary.interrupted else ""
    counts = f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed{stop}"
    rate = f"{summary.seconds:.1f} s, {summary.frames_per_second:.1f} frames/s"
    if summary.processes > 1:
        rate += f" over {summary.processes} processes"
    lines = [
        f"{summary.dataset}: {summary.clips} clips -> {counts}",
        f"frames prepared: {summary.frames} ({summary.frames_without_face} without a face), "
        + f"{rate} with {summary.workers} worker(s)",
    ]
    lines += [f"  failed {f['clip_id']}: {f['reason']}" for f in summary.failures]
    lines.append(f"output: {summary.out_root} (summary.json, config.yaml)")
    return "\n".join(lines)


def clip_splits(
    dataset: str, sources: Sequence[Any], root: str | Path, mead_split: str | Path | None
) -> dict[str, str]:
    """Clip id -> split: MEAD by subject (``mead_split`` file), Aff-Wild2 by annotation folder.

    Returns an empty mapping for plain folders, or for MEAD when ``mead_split`` is None.
    """
    if dataset == "mead" and mead_split is not None:
        by_subject = read_mead_split(mead_split)
        return {s.clip_id: by_subject[s.subject] for s in sources if s.subject in by_subject}
    if dataset == "affwild2":
        return affwild2_splits(root)
    return {}


def write_manifests(out_root: str | Path, dataset: str, splits: dict[str, str]) -> list[Path]:
    """Write ``{out_root}/manifests/{dataset}_{split}.txt``: the PREPARED clips of each split.

    One clip id per line (the ``data.sources[].manifest`` format); clips that are not prepared
    (failed, or not yet run) are left out, so a manifest always matches the prepared folder.
    """
    folder = Path(out_root) / dataset
    names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    prepared = sorted(n for n in names if not n.startswith("."))
    written = []
    for split in sorted(set(splits.values())):
        ids = [c for c in prepared if splits.get(c) == split]
        path = Path(out_root) / "manifests" / f"{dataset}_{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{c}\n" for c in ids))
        written.append(path)
    return written
