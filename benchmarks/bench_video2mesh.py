"""Benchmark video2mesh: fit-mode frames/s, network end to end vs bare forward, peak memory.

    python benchmarks/bench_video2mesh.py [CLIP ...] [--network-config configs/tiny_cpu.yaml]
        [--skip fit,network,memory] [--out DIR] [--repeats N] [section.key=value ...]

(``python tools/bench_video2mesh.py`` runs this script.) CLIP defaults to the MEAD 1080p sample
clips in ../shared/data/clips. Prints a table of:

(a) fit mode end to end, frames/s, on the given clips (with the overlay video), in one thread
    (``inference.background_chunks=0``) and with the read-ahead and write-behind threads, IN
    THE SAME RUN (alternately, ``--repeats`` times each: the median run of each is shown);
(b) network mode end to end vs the bare network forward at the same batch size, IN THE SAME
    RUN, with a randomly initialised model exported like a trained one;
(c) peak resident memory of a video2mesh process (``benchmarks/video2mesh_peak_memory.py``) on
    a clip and on the same clip looped (several times longer), to show that memory does not
    grow with the clip.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from seqdeca.cli import run_main, split_overrides
from seqdeca.config import Config, config_to_yaml, load_config
from seqdeca.errors import UserError
from seqdeca.inference.checkpoint import load_model
from seqdeca.inference.pipeline import video2mesh
from seqdeca.inference.settings import network_window
from seqdeca.inference.windows import predict_frames
from seqdeca.models.export import ModelExport, save_export
from seqdeca.models.from_config import build_model

__all__ = [
    "BenchRow",
    "bench_fit",
    "bench_fit_threads",
    "bench_network",
    "bench_peak_memory",
    "loop_video",
]

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "clips"
PEAK_MEMORY = Path(__file__).resolve().with_name("video2mesh_peak_memory.py")


@dataclass
class BenchRow:
    """One line of the benchmark table."""

    what: str
    frames: int
    seconds: float
    value: float
    unit: str
    note: str = ""


def bench_fit(
    clips: list[Path], cfg: Config, out: Path, *, video: bool = True, label: str = ""
) -> BenchRow:
    """(a) fit mode frames/s over ``clips`` (total frames / total wall time, process included);
    ``label`` is added to the row's name."""
    start = time.perf_counter()
    results = video2mesh(clips, out, cfg, video=video, progress=False)
    seconds = time.perf_counter() - start
    frames = sum(r.frames for r in results)
    failed = [r.source for r in results if r.status != "done"]
    stages: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    note = "stages s: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    note += f"; failed: {failed}" if failed else ""
    what = f"fit mode end to end ({'with' if video else 'no'} overlay{label})"
    return BenchRow(what, frames, seconds, frames / seconds, "frames/s", note)


def bench_fit_threads(clips: list[Path], cfg: Config, out: Path, *, repeats: int) -> list[BenchRow]:
    """(a) fit mode in one thread (``inference.background_chunks=0``) and with the background
    threads of ``cfg``, run alternately ``repeats`` times each after a warm-up run on the first
    clip; the median run of each (by wall time) and their ratio."""
    one = replace(cfg, inference=replace(cfg.inference, background_chunks=0))
    depth = cfg.inference.background_chunks
    runs: dict[str, list[BenchRow]] = {"one": [], "background": []}
    bench_fit(clips[:1], cfg, out / "warm_up")  # the process's first-use costs, not counted
    for i in range(max(1, repeats)):
        runs["one"].append(bench_fit(clips, one, out / f"one_{i}", label=", one thread"))
        runs["background"].append(
            bench_fit(clips, cfg, out / f"background_{i}", label=f", background {depth}")
        )
    best = {k: sorted(v, key=lambda r: r.seconds)[len(v) // 2] for k, v in runs.items()}
    ratio = best["background"].value / best["one"].value
    best["background"].note += f"; {ratio:.2f} x one thread (median of {len(runs['one'])} each)"
    return [best["one"], best["background"]]


def _export_random(cfg: Config, folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(cfg, load_checkpoints=False)
    record = ModelExport(
        weights=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage="temporal",
        step=0,
    )
    return save_export(folder / "model.pt", record)


@torch.no_grad()
def _bare_forward(cfg: Config, checkpoint: Path, *, repeats: int = 3) -> float:
    """Frames/s of ``model(images (B, W, 3, 224, 224))`` (B windows give B predicted frames)."""
    loaded = load_model(checkpoint, device=cfg.run.device)
    b, w = cfg.inference.batch_size, network_window(loaded, cfg.inference.window)
    images = torch.rand(b, w, 3, 224, 224, device=cfg.run.device)
    valid = torch.ones(b, w, dtype=torch.bool, device=cfg.run.device)
    loaded.model(images, valid)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        loaded.model(images, valid, render_shape=True)
    return b * repeats / (time.perf_counter() - start)


@torch.no_grad()
def _bare_engine(cfg: Config, checkpoint: Path, frames: int) -> float:
    """Frames/s of :func:`predict_frames` alone on ``frames`` random crops (no video, tracking
    or writing): the network work that video2mesh does per clip, encoders once per frame."""
    loaded = load_model(checkpoint, device=cfg.run.device)
    crops = torch.rand(frames, 3, 224, 224, device=cfg.run.device)
    valid = torch.ones(frames, dtype=torch.bool, device=cfg.run.device)
    kwargs = {
        "window": network_window(loaded, cfg.inference.window),
        "batch_size": cfg.inference.batch_size,
        "render_shape": True,
    }
    b = cfg.inference.batch_size
    predict_frames(loaded.model, crops[:b], valid[:b], **kwargs)  # warm-up
    start = time.perf_counter()
    predict_frames(loaded.model, crops, valid, **kwargs)
    return frames / (time.perf_counter() - start)


def bench_network(clip: Path, cfg: Config, out: Path) -> list[BenchRow]:
    """(b) network mode end to end and the bare forward, same model, batch size and run."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _export_random(cfg, Path(tmp))
        run_cfg = copy.deepcopy(cfg)
        run_cfg.inference.checkpoint, run_cfg.inference.mode = str(ckpt), "network"
        bare = _bare_forward(cfg, ckpt)
        start = time.perf_counter()
        (res,) = video2mesh([clip], out, run_cfg, progress=False)
        seconds = time.perf_counter() - start
        engine = _bare_engine(cfg, ckpt, res.frames)
    e2e = res.frames / seconds
    b, name = cfg.inference.batch_size, cfg.model.backbone
    return [
        BenchRow(f"network ({name}) bare forward, batch {b}", b, 0.0, bare, "frames/s"),
        BenchRow(
            f"network ({name}) bare predict_frames, batch {b}", res.frames, 0.0, engine, "frames/s"
        ),
        BenchRow(
            f"network ({name}) end to end, batch {b}",
            res.frames,
            seconds,
            e2e,
            "frames/s",
            f"ratio to bare forward {e2e / bare:.2f}, to bare predict_frames {e2e / engine:.2f}",
        ),
    ]


def loop_video(source: Path, target: Path, times: int) -> Path:
    """``source`` repeated ``times`` times, remuxed without re-encoding."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        offset = 0
        for _ in range(times):
            inp.seek(0)
            last = 0
            for packet in inp.demux(stream):
                if packet.dts is None:
                    continue
                last = max(last, packet.pts + (packet.duration or 0))
                packet.pts += offset
                packet.dts += offset
                packet.stream = ostream
                out.mux(packet)
            offset += last
    return target


def bench_peak_memory(
    clip: Path, out: Path, overrides: list[str], *, times: int = 6
) -> list[BenchRow]:
    """(c) peak RSS of a video2mesh process on ``clip`` and on it looped ``times`` times."""
    rows = []
    longer = loop_video(clip, out / f"{clip.stem}_x{times}.mp4", times)
    for path in (clip, longer):
        cmd = [sys.executable, str(PEAK_MEMORY), str(path), str(out / "mem"), *overrides]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"peak-memory child failed: {done.stderr.strip()[-400:]}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        quarters = " / ".join(f"{q:.0f}" for q in info.get("rss_quarters_mb", []))
        note = f"highest RSS by quarter of the run: {quarters} MB" if quarters else ""
        rows.append(
            BenchRow(f"peak RSS, {path.name}", info["frames"], seconds, info["peak_mb"], "MB", note)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clips", nargs="*", metavar="CLIP", help="default: MEAD sample clips")
    parser.add_argument(
        "--network-config",
        default=str(ROOT / "configs" / "base.yaml"),
        help="config of the random network of (b) (base = ResNet-50)",
    )
    parser.add_argument("--skip", default="", help="comma list of fit, network, memory")
    parser.add_argument("--out", default="outputs/bench_video2mesh")
    parser.add_argument(
        "--repeats", type=int, default=1, help="fit-mode runs of each variant (median quoted)"
    )
    args, rest = parser.parse_known_args(argv)
    clips = [c for c in args.clips if "=" not in c]
    overrides = [c for c in args.clips if "=" in c] + rest

    def job() -> int:
        paths = [Path(c) for c in clips] or sorted(SAMPLES.glob("[MW]0*.mp4"))
        if not paths:
            raise UserError(f"no clips given and no MEAD samples in {SAMPLES}")
        skip = set(filter(None, args.skip.split(",")))
        out = Path(args.out)
        cfg = load_config(ROOT / "configs" / "base.yaml", split_overrides(overrides))
        rows = []
        if "fit" not in skip:
            rows += bench_fit_threads(paths, cfg, out / "fit", repeats=args.repeats)
        if "network" not in skip:
            net_cfg = load_config(args.network_config, split_overrides(overrides))
            rows += bench_network(paths[0], net_cfg, out / "network")
        if "memory" not in skip:
            rows += bench_peak_memory(paths[0], out, split_overrides(overrides))
        print(f"{'measurement':58s} {'frames':>6s} {'seconds':>8s} {'value':>9s}  unit / note")
        for r in rows:
            print(f"{r.what:58s} {r.frames:6d} {r.seconds:8.1f} {r.value:9.2f}  {r.unit} {r.note}")
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
