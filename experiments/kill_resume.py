"""Fault injection: ``kill -9`` at random moments must not change what training or data
preparation produce.

    python experiments/kill_resume.py OUT [--kills 20] [--steps 60] [--checkpoint-every 2]
        [--seed 0] [--config configs/tiny_cpu.yaml] [--prepared DIR] [--prep-kills 8]
        [--videos DIR|synthetic] [--prep-clips 3] [--prep-frames 30] [--only train|prepare]
        [a.b=value ...]

(a) Training: ``tools/train_seq.py`` runs ``--config`` (plus the overrides) for ``--steps`` steps
with a checkpoint every ``--checkpoint-every`` steps uninterrupted (OUT/train_reference), then
into OUT/train_killed, SIGKILLed ``--kills`` times and relaunched with ``--resume`` each time
(which trims ``losses.jsonl`` back to the checkpoint's step, so no step is logged twice). A kill comes a
random delay into a random step, a few ms after a checkpoint write began (a new
``checkpoints/.tmp_step_*`` folder), or a random time into start-up (imports, checkpoint
loading). The last launch runs to the end; then its final step must be ``--steps``, every line of
its ``losses.jsonl`` must equal the reference's record
of that step exactly, the two ``model.pt`` must hold bit-identical weights and no temporary
checkpoint folder may be left. Data: 2 synthetic clips of 8 frames, or ``--prepared DIR``.

(b) Preparation: ``tools/prepare_data.py --dataset videos`` prepares ``--prep-clips`` videos (the
smallest of ``--videos``, default ../shared/data/clips next to the repository; synthetic face
videos rendered here when it has none or with ``--videos synthetic``) into OUT/prep_reference,
then into OUT/prep_killed, killed ``--prep-kills`` times at uniform random times within the
expected remaining time (every other one within its clip-processing part) and rerun; a last
rerun completes the set. When the kills have completed every clip before the plan is used up,
that round is finished by a rerun and set aside (OUT/prep_killed_round<k>) and the remaining kills
start a fresh preparation, so every kill meets unfinished work. Every file of every round's output
(``summary.json`` aside: timings) must be byte-identical to the reference's, with nothing left
over. A kill goes to the tool's whole process group.

Prints the command, date, machine, each kill and a summary table; writes OUT/report.json and
OUT/logs/. Exit code 0: lossless; 1: a mismatch (the differing steps, losses or files are
printed), or the code changed while a part ran (its comparison is then void); 2: bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataConfig
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.models.export import load_export
from seqdeca.train.state import CHECKPOINT_DIR, STATE_FILE, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CLIPS = ROOT.parent / "shared" / "data" / "clips"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
POLL_S = 0.003  # how often a launch's files are looked at while waiting for a kill moment
CHECKPOINT_SHARE = 0.3  # share of training kills aimed at a checkpoint write
EARLY_SHARE = 0.1  # share of training kills during start-up
TMP_PREFIX = ".tmp_step_"
Timing = tuple[str | None, float, float]  # (problem or None, start-up seconds, other seconds)


@dataclass
class Launch:
    """One process (group leader) of a tool under test, its start (monotonic seconds and
    wall-clock ns, compared with file modification times) and its stdout + stderr file."""

    proc: subprocess.Popen
    started: float
    started_ns: int
    log: Path

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class PartResult:
    """What one part (training or preparation) did and found."""

    name: str
    launches: int = 0
    kills: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def source_digests() -> dict[str, str]:
    """SHA-256 of what the launches run: the library, the tools and the configs."""
    files = sorted(p for d in ("seqdeca", "tools", "configs") for p in (ROOT / d).rglob("*.*"))
    return {
        p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.suffix in (".py", ".yaml")
    }


def code_changes(before: dict[str, str]) -> list[str]:
    """A problem line when the code changed since ``before`` (the comparison is then void)."""
    after = source_digests()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    names = ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "")
    problem = f"the code changed while this part ran ({names}): the comparison is void"
    return [problem + "; rerun on a tree that nobody edits"] if changed else []


def start(cmd: list[str], log: Path) -> Launch:
    """Start ``cmd`` in a new process group, stdout and stderr into ``log``."""
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Launch(proc=proc, started=time.monotonic(), started_ns=time.time_ns(), log=log)


def kill(launch: Launch) -> None:
    """SIGKILL the launch's whole process group and reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launch.proc.pid, signal.SIGKILL)
    launch.proc.wait()


def finish(launch: Launch, timeout: float, what: str) -> str | None:
    """Wait for a launch to end by itself; a problem line when it fails or hangs."""
    try:
        code = launch.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(launch)
        return f"{what} did not finish within {timeout:.0f} s (log: {launch.log})"
    last = [x for x in launch.log.read_text(errors="replace").splitlines() if x.strip()][-1]
    return f"{what} exited with {code}: {last[:300]} (log: {launch.log})" if code else None


# ----------------------------------------------------------------------------------- training


def logged_step(path: Path, offset: int, since_ns: int) -> int:
    """Step of the newest complete line written to ``losses.jsonl`` after byte ``offset`` by a
    launch started at ``since_ns`` (0: none yet; a fresh run deletes and restarts the file)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mtime_ns >= since_ns:
            for line in reversed(path.read_bytes()[offset:].split(b"\n")[:-1]):
                with contextlib.suppress(ValueError, KeyError, TypeError):  # a torn line
                    return int(json.loads(line)["step"])
    return 0


def logged_bytes(path: Path, step: int) -> int:
    """Bytes of the ``losses.jsonl`` lines up to ``step``: what a resume from ``step`` keeps."""
    size = 0
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_bytes().split(b"\n")[:-1]:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if int(json.loads(line)["step"]) <= step:
                    size += len(line) + 1
    return size


def new_tmp_checkpoints(run_dir: Path, since_ns: int) -> list[int]:
    """Steps of ``checkpoints/.tmp_step_N`` folders created or changed since ``since_ns``."""
    found = []
    for path in (run_dir / CHECKPOINT_DIR).glob(TMP_PREFIX + "*"):
        with contextlib.suppress(OSError, ValueError):  # renamed meanwhile, or not ours
            if path.stat().st_mtime_ns >= since_ns:
                found.append(int(path.name[len(TMP_PREFIX) :]))
    return found


def training_overrides(args: argparse.Namespace, run_dir: Path, data_root: Path) -> list[str]:
    """Overrides of both training runs: sizes, data, output folder, frequent checkpoints."""
    keys = [
        f"data.sources=[{{root: {data_root}}}]",
        f"run.output_dir={run_dir}",
        f"run.seed={args.seed}",
        f"train.max_steps={args.steps}",
        "train.log_every=1",
        f"train.checkpoint_every={args.checkpoint_every}",
        "train.keep_checkpoints=2",
        "data.batch_size=2",
    ]
    if "min_window" in {f.name for f in dataclasses.fields(DataConfig)}:
        keys.append("data.min_window=1")  # a window length drawn per batch (1 or 3 frames)
    return keys + list(args.overrides)


def train_command(args: argparse.Namespace, run_dir: Path, data: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, str(ROOT / "tools" / "train_seq.py"), "--config", str(args.config)]
    return cmd + (["--resume"] if resume else []) + training_overrides(args, run_dir, data)


@dataclass
class Kill:
    """A planned kill: ``delay`` seconds after step ``step`` was logged ("step"), after a
    checkpoint write of a step >= ``step`` began ("checkpoint") or after launch ("early")."""

    mode: str
    step: int
    delay: float


def plan_kills(
    n: int, steps: int, rng: random.Random, *, step_s: float, startup_s: float
) -> list[Kill]:
    """``n`` kills at random steps spread over the run (sorted), with random modes and delays."""
    n_ckpt = round(n * CHECKPOINT_SHARE) if n >= 3 else min(n, 1)
    n_early = int(n * EARLY_SHARE)
    modes = ["checkpoint"] * n_ckpt + ["early"] * n_early + ["step"] * (n - n_ckpt - n_early)
    rng.shuffle(modes)
    targets = sorted(rng.randint(1, max(1, steps - 1)) for _ in range(n))
    plan = []
    for mode, target in zip(modes, targets):
        delay = {
            "step": rng.uniform(0.0, step_s),
            "checkpoint": rng.uniform(0.0, 0.01),
            "early": rng.uniform(0.0, startup_s),
        }[mode]
        plan.append(Kill(mode=mode, step=target, delay=delay))
    return plan


def wait_for_moment(launch: Launch, plan: Kill, offset: int, run_dir: Path, limit: float) -> bool:
    """Poll until the planned kill moment; False when the launch ended (or hung) before it."""
    while launch.proc.poll() is None and launch.elapsed() < limit:
        if plan.mode == "early":
            hit = launch.elapsed() >= plan.delay
        elif plan.mode == "step":
            hit = logged_step(run_dir / "losses.jsonl", offset, launch.started_ns) >= plan.step
        else:
            hit = any(s >= plan.step for s in new_tmp_checkpoints(run_dir, launch.started_ns))
        if hit:
            if plan.mode != "early":
                time.sleep(plan.delay)
            return launch.proc.poll() is None
        time.sleep(POLL_S)
    return False


def newest_step(run_dir: Path) -> int:
    """Step of the newest complete checkpoint (0: none)."""
    found = list_checkpoints(run_dir)
    return int(json.loads((found[-1] / STATE_FILE).read_text())["step"]) if found else 0


def run_reference(args: argparse.Namespace, run_dir: Path, data: Path, logs: Path) -> Timing:
    """The uninterrupted run; returns (problem or None, start-up seconds, seconds per step)."""
    launch = start(train_command(args, run_dir, data, resume=False), logs / "train_reference.log")
    first = last = None  # seconds when the first / last step was logged
    while launch.proc.poll() is None:
        step = logged_step(run_dir / "losses.jsonl", 0, launch.started_ns)
        first = launch.elapsed() if first is None and step >= 1 else first
        last = launch.elapsed() if last is None and step >= args.steps else last
        time.sleep(0.02)
    problem = finish(launch, 1.0, "the reference training run")
    first = launch.elapsed() if first is None else first
    last = launch.elapsed() if last is None else last
    return problem, first, (last - first) / max(1, args.steps - 1)


def killed_training(
    args: argparse.Namespace,
    run_dir: Path,
    data: Path,
    logs: Path,
    plan: list[Kill],
    limit: float,
    result: PartResult,
) -> None:
    """Launch, kill at each planned moment, relaunch with --resume; finally run to the end."""
    for i, moment in enumerate([*plan, None]):
        resume_from, losses = newest_step(run_dir), run_dir / "losses.jsonl"
        offset = logged_bytes(losses, resume_from) if resume_from else 0
        cmd = train_command(args, run_dir, data, resume=resume_from > 0)
        launch = start(cmd, logs / f"train_killed_{i:03d}.log")
        result.launches += 1
        if moment is None:
            problem = finish(launch, limit, f"the last training launch (#{i})")
            result.problems += [problem] if problem else []
            return
        if not wait_for_moment(launch, moment, offset, run_dir, limit):
            problem = finish(launch, 1.0, f"training launch #{i}")
            result.problems += [problem] if problem else []
            result.notes.append(f"launch #{i} ended before its {moment.mode} kill moment")
            continue
        kill(launch)
        last = logged_step(losses, offset, launch.started_ns)
        event = {
            "launch": i,
            "mode": moment.mode,
            "target_step": moment.step,
            "resumed_from": resume_from,
            "last_logged_step": last,
            "seconds": round(launch.elapsed(), 3),
            "in_checkpoint_write": bool(new_tmp_checkpoints(run_dir, launch.started_ns)),
        }
        result.kills.append(event)
        print(
            f"  kill {len(result.kills):3d}: {moment.mode:10s} resumed from step "
            f"{resume_from:4d}, last logged step {last:4d}, "
            f"{'DURING a checkpoint write' if event['in_checkpoint_write'] else ''}",
            flush=True,
        )


def read_loss_lines(path: Path) -> tuple[list[dict], int]:
    """The parsable records of a ``losses.jsonl`` and the number of torn (unparsable) lines."""
    records, torn = [], 0
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            torn += 1
    return records, torn


def compare_losses(reference: list[dict], killed: list[dict], steps: int) -> list[str]:
    """Problems: a killed-run record that differs from the reference's record of its step in
    any field (exactly; one line per record, "total" named first), or a step never logged."""
    by_step, problems = {int(r["step"]): r for r in reference}, []
    for line, record in enumerate(killed, start=1):
        step = int(record.get("step", -1))
        expected = by_step.get(step)
        if expected is None:
            problems.append(f"losses.jsonl line {line}: step {step} is not in the reference")
            continue
        keys = sorted(k for k in set(expected) | set(record) if record.get(k) != expected.get(k))
        if keys:
            key = "total" if "total" in keys else keys[0]
            more = f" (and {len(keys) - 1} other fields)" if len(keys) > 1 else ""
            problems.append(
                f"losses.jsonl line {line}: step {step} {key} = {record.get(key)!r}, "
                f"reference {expected.get(key)!r}{more}"
            )
    missing = sorted(set(range(1, steps + 1)) - {int(r.get("step", -1)) for r in killed})
    if missing:
        problems.append(f"steps never logged by the killed run: {missing[:10]}")
    return problems


def compare_models(reference: Path, killed: Path) -> list[str]:
    """Problems: the exported weights (or step) of two ``model.pt`` differ."""
    if not killed.exists():
        return [f"{killed} was not written"]
    a = load_export(reference, what="reference model.pt")
    b = load_export(killed, what="killed run's model.pt")
    problems = [f"model.pt step {b.step}, reference {a.step}"] if a.step != b.step else []
    if set(a.weights) != set(b.weights):
        return problems + ["model.pt holds other weight names than the reference"]
    for key, value in a.weights.items():
        if not torch.equal(value, b.weights[key]):
            diff = (value.double() - b.weights[key].double()).abs().max().item()
            problems.append(f"model.pt weight {key} differs (max abs difference {diff:.3g})")
    return problems


def check_training(
    args: argparse.Namespace, ref_dir: Path, run_dir: Path, result: PartResult
) -> None:
    """Compare the killed-and-resumed run with the reference (adds problems and notes)."""
    reference, _ = read_loss_lines(ref_dir / "losses.jsonl")
    killed, torn = read_loss_lines(run_dir / "losses.jsonl")
    if (final := newest_step(run_dir)) != args.steps:
        result.problems.append(f"newest checkpoint is at step {final}, expected {args.steps}")
    result.problems += compare_losses(reference, killed, args.steps)
    result.problems += compare_models(ref_dir / "model.pt", run_dir / "model.pt")
    left = sorted(p.name for p in (run_dir / CHECKPOINT_DIR).glob(TMP_PREFIX + "*"))
    result.problems += [f"temporary checkpoint folders left behind: {left}"] if left else []
    replayed = len(killed) - len({int(r.get("step", -1)) for r in killed})
    result.notes.append(
        f"final step {final}; losses.jsonl: {len(killed)} records for "
        f"{args.steps} steps ({replayed} replayed after a resume), "
        f"{torn} torn lines"
    )


def training_data(args: argparse.Namespace, cfg: Config, out: Path) -> Path:
    """``--prepared`` or 2 synthetic clips of 8 frames rendered with the training config."""
    if args.prepared:
        if not Path(args.prepared).is_dir():
            raise UserError(f"--prepared folder not found: {args.prepared}")
        return Path(args.prepared).resolve()
    data = out / "train_data"
    make_synthetic_dataset(data, cfg, clips=2, frames=8, seed=args.seed, progress=False)
    return data


def run_training(args: argparse.Namespace, out: Path) -> PartResult:
    """Part (a): reference run, killed-and-resumed run, comparison."""
    result, began, code = PartResult("training"), time.monotonic(), source_digests()
    cfg = load_config([args.config], split_overrides(args.overrides))
    data = training_data(args, cfg, out)
    ref_dir, run_dir, logs = out / "train_reference", out / "train_killed", out / "logs"
    problem, startup_s, step_s = run_reference(args, ref_dir, data, logs)
    result.launches += 1
    print(
        f"training reference: {args.steps} steps, start-up {startup_s:.1f} s, "
        f"{step_s:.3f} s per step",
        flush=True,
    )
    result.problems += [problem] if problem else []
    if not problem:
        plan = plan_kills(
            args.kills, args.steps, random.Random(args.seed), step_s=step_s, startup_s=startup_s
        )
        limit = 10 * (startup_s + args.steps * step_s) + 60
        killed_training(args, run_dir, data, logs, plan, limit, result)
    if not result.problems:
        check_training(args, ref_dir, run_dir, result)
    result.problems[:0] = code_changes(code)
    result.seconds = time.monotonic() - began
    return result


# -------------------------------------------------------------------------------- preparation


def synthetic_videos(folder: Path, clips: int, frames: int, seed: int) -> None:
    """Render ``clips`` synthetic face clips (default face model, 224 px) into mp4 files."""
    import av
    from PIL import Image

    root = folder.parent / "prep_rendered"
    for clip in make_synthetic_dataset(
        root, Config(), clips=clips, frames=frames, seed=seed, progress=False
    ):
        images = sorted((clip / "frames").glob("*.jpg"))
        with av.open(str(folder / f"{clip.name}.mp4"), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = (*Image.open(images[0]).size, "yuv420p")
            for path in images:
                pixels = np.asarray(Image.open(path).convert("RGB"))
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            container.mux(stream.encode())


def prep_inputs(args: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """A folder of the videos to prepare (links to sample clips, or rendered synthetic videos)."""
    folder = out / "prep_input"
    folder.mkdir(parents=True)
    source = Path(args.videos) if args.videos != "synthetic" else None
    clips = (
        sorted(
            (p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES),
            key=lambda p: p.stat().st_size,
        )
        if source and source.is_dir()
        else []
    )
    if clips:
        for clip in clips[: args.prep_clips]:
            (folder / clip.name).symlink_to(clip.resolve())
        return folder, f"the {min(len(clips), args.prep_clips)} smallest videos of {source}"
    synthetic_videos(folder, args.prep_clips, args.prep_frames, args.seed)
    note = "" if source is None else f" ({source} has no videos)"
    return folder, f"{args.prep_clips} synthetic videos of {args.prep_frames} frames{note}"


def prep_command(input_dir: Path, out_dir: Path) -> list[str]:
    tool, where = ROOT / "tools" / "prepare_data.py", ["--input", str(input_dir), "--out"]
    return [sys.executable, str(tool), "--dataset", "videos", *where, str(out_dir), "--no-progress"]


def tree_digests(root: Path, skip: tuple[str, ...] = ("summary.json",)) -> dict[str, str]:
    """SHA-256 of every file below ``root`` (hidden ones included) by relative path."""
    digests = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in skip:
            digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir() and path.name.startswith("."):
            digests[rel + "/"] = "folder"
    return digests


def compare_trees(reference: Path, killed: Path) -> list[str]:
    """Problems: files missing, extra or with other bytes in ``killed`` than in ``reference``."""
    a, b = tree_digests(reference), tree_digests(killed)
    problems = [f"missing in the killed output: {k}" for k in sorted(set(a) - set(b))]
    problems += [f"left over / extra in the killed output: {k}" for k in sorted(set(b) - set(a))]
    problems += [f"different bytes: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    if not a:
        problems.append(f"the reference preparation wrote no files under {reference}")
    return problems


def clip_state(out_dir: Path) -> tuple[int, int]:
    """(complete clip folders, temporary clip folders) under ``out_dir/videos``."""
    folder = out_dir / "videos"
    names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return sum(not n.startswith(".") for n in names), sum(n.startswith(".") for n in names)


def prep_reference(input_dir: Path, ref_dir: Path, logs: Path) -> Timing:
    """The uninterrupted preparation; returns (problem or None, seconds until the first clip
    folder was begun, total seconds)."""
    launch, began = start(prep_command(input_dir, ref_dir), logs / "prep_reference.log"), None
    while launch.proc.poll() is None:
        began = launch.elapsed() if began is None and clip_state(ref_dir)[1] else began
        time.sleep(0.02)
    problem = finish(launch, 1.0, "the reference preparation")
    return problem, launch.elapsed() if began is None else began, launch.elapsed()


def killed_preparation(
    args: argparse.Namespace,
    input_dir: Path,
    out_dir: Path,
    logs: Path,
    timing: tuple[float, float],
    result: PartResult,
) -> list[Path]:
    """Kill ``--prep-kills`` launches and rerun; a last rerun completes. Kill times are uniform
    over the expected run time, every other one over its clip-processing part only. When the
    kills have completed every clip before the plan is used up, a rerun finishes that round,
    its output is set aside (``<out_dir>_round<k>``, compared like the last one) and the next
    kills start a fresh preparation, so that every kill meets unfinished work. Returns the
    set-aside rounds."""
    rng, (startup, total) = random.Random(args.seed + 1), timing
    clips = max(1, sum(p.suffix.lower() in VIDEO_SUFFIXES for p in input_dir.iterdir()))
    rounds: list[Path] = []
    for i in range(args.prep_kills + 1):
        done = clip_state(out_dir)[0]
        if done >= clips and i < args.prep_kills:
            finishing = start(prep_command(input_dir, out_dir), logs / f"prep_round_{i:03d}.log")
            problem = finish(finishing, 10 * total + 60, f"the rerun that ends round {len(rounds)}")
            result.problems += [problem] if problem else []
            rounds.append(out_dir.with_name(f"{out_dir.name}_round{len(rounds)}"))
            out_dir.rename(rounds[-1])
            done = 0
        launch = start(prep_command(input_dir, out_dir), logs / f"prep_killed_{i:03d}.log")
        result.launches += 1
        if i == args.prep_kills:
            problem = finish(launch, 10 * total + 60, f"the last preparation launch (#{i})")
            result.problems += [problem] if problem else []
            return rounds
        remaining = startup + (total - startup) * max(0, clips - done) / clips
        delay = rng.uniform(startup if i % 2 else 0.0, remaining)
        try:
            launch.proc.wait(timeout=delay)
            result.notes.append(f"preparation launch #{i} finished before its kill ({delay:.1f} s)")
            problem = finish(launch, 1.0, f"preparation launch #{i}")
            result.problems += [problem] if problem else []
            continue
        except subprocess.TimeoutExpired:
            kill(launch)
        complete, partial = clip_state(out_dir)
        result.kills.append(
            {
                "launch": i,
                "seconds": round(delay, 3),
                "clips_before": done,
                "clips_after": complete,
                "in_clip_write": partial > 0,
            }
        )
        print(
            f"  kill {len(result.kills):3d}: after {delay:5.2f} s, {complete} clips complete"
            f"{', DURING a clip write' if partial else ''}",
            flush=True,
        )
    return rounds


def run_preparation(args: argparse.Namespace, out: Path) -> PartResult:
    """Part (b): reference preparation, killed-and-rerun preparation, byte comparison."""
    result, began, code = PartResult("preparation"), time.monotonic(), source_digests()
    input_dir, what = prep_inputs(args, out)
    ref_dir, out_dir, logs = out / "prep_reference", out / "prep_killed", out / "logs"
    problem, startup, total = prep_reference(input_dir, ref_dir, logs)
    result.launches += 1
    print(f"preparation reference: {what}, {total:.1f} s ({startup:.1f} s start-up)", flush=True)
    result.problems += [problem] if problem else []
    rounds = []
    if not problem:
        rounds = killed_preparation(args, input_dir, out_dir, logs, (startup, total), result)
    if not result.problems:
        for folder in [*rounds, out_dir]:
            result.problems += compare_trees(ref_dir, folder)
        if rounds:
            result.notes.append(
                f"{len(rounds) + 1} killed-and-rerun rounds, each compared with the reference"
            )
        files, clips = len(tree_digests(ref_dir)), clip_state(ref_dir)[0]
        result.notes.append(f"{what}: {files} files compared byte for byte ({clips} clips)")
    result.problems[:0] = code_changes(code)
    result.seconds = time.monotonic() - began
    return result


# ----------------------------------------------------------------------------------- report


def header(argv: list[str]) -> str:
    """Command, date and machine of this run."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    command = shlex.join(["python", os.path.relpath(__file__, ROOT), *argv])
    machine = (
        f"{platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, OMP_NUM_THREADS={threads}"
    )
    return f"command: {command}\ndate: {now}\nmachine: {machine}"


def summary_table(results: list[PartResult]) -> str:
    """One row per part: launches, kills, kills inside a write, result, wall time."""
    rows = [
        "| part | launches | kills | inside a checkpoint / clip write | result | wall s |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in results:
        inside = sum(bool(k.get("in_checkpoint_write") or k.get("in_clip_write")) for k in r.kills)
        verdict = "lossless" if not r.problems else f"MISMATCH ({len(r.problems)} problems)"
        rows.append(
            f"| {r.name} | {r.launches} | {len(r.kills)} | {inside} | {verdict} | {r.seconds:.1f} |"
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="output folder (must be new or empty)")
    parser.add_argument("--kills", type=int, default=20, help="training kills (default 20)")
    parser.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    parser.add_argument("--checkpoint-every", type=int, default=2, help="steps between checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training and kills")
    parser.add_argument(
        "--config",
        default=str(ROOT / "configs" / "tiny_cpu.yaml"),
        help="training config (default configs/tiny_cpu.yaml)",
    )
    parser.add_argument("--prepared", default=None, help="prepared data root to train on")
    parser.add_argument("--prep-kills", type=int, default=8, help="preparation kills (default 8)")
    parser.add_argument(
        "--videos", default=str(SAMPLE_CLIPS), help="folder of videos to prepare, or 'synthetic'"
    )
    parser.add_argument("--prep-clips", type=int, default=3, help="videos to prepare (default 3)")
    parser.add_argument("--prep-frames", type=int, default=30, help="frames per synthetic video")
    parser.add_argument("--only", choices=("train", "prepare"), default=None, help="one part")
    parser.add_argument("overrides", nargs="*", help="training config overrides a.b=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

    def job() -> int:
        out = Path(args.out).resolve()
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out} exists and is not empty: give a new output folder")
        if args.steps < 2 or args.checkpoint_every < 1 or min(args.kills, args.prep_kills) < 0:
            raise UserError("--steps must be >= 2, --checkpoint-every >= 1, kills >= 0")
        out.mkdir(parents=True, exist_ok=True)
        print(head := header(argv), flush=True)
        results = []
        if args.only in (None, "train"):
            results.append(run_training(args, out))
        if args.only in (None, "prepare"):
            results.append(run_preparation(args, out))
        report(out, head, results)
        return 0 if not any(r.problems for r in results) else 1

    return run_main(job)


def report(out: Path, head: str, results: list[PartResult]) -> None:
    """Print notes, the first problems and the summary table; write OUT/report.json."""
    for r in results:
        for note in r.notes:
            print(f"{r.name}: {note}")
        for problem in r.problems[:10]:
            print(f"{r.name}: MISMATCH {problem}")
        if len(r.problems) > 10:
            print(f"{r.name}: ... {len(r.problems) - 10} more problems in report.json")
    print(summary_table(results))
    payload = {"header": head, "parts": [dataclasses.asdict(r) for r in results]}
    (out / "report.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
