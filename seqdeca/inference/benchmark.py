"""video2mesh speed and memory benchmark (``tools/bench_video2mesh.py``).

(a) fit mode end to end, frames/s, on the given clips (with the overlay video);
(b) network mode end to end vs the bare network forward at the same batch size, IN THE SAME
    RUN, with a randomly initialised model exported like a trained one;
(c) peak resident memory of a video2mesh process on a clip and on the same clip looped
    (several times longer), to show that memory does not grow with the clip.
"""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from seqdeca.config import Config, config_to_yaml, load_config
from seqdeca.inference.checkpoint import load_model
from seqdeca.inference.pipeline import video2mesh
from seqdeca.inference.settings import network_window
from seqdeca.inference.windows import predict_frames
from seqdeca.models.export import ModelExport, save_export
from seqdeca.models.from_config import build_model

__all__ = ["BenchRow", "bench_fit", "bench_network", "bench_peak_memory", "loop_video"]


@dataclass
class BenchRow:
    """One line of the benchmark table."""

    what: str
    frames: int
    seconds: float
    value: float
    unit: str
    note: str = ""


def bench_fit(clips: list[Path], cfg: Config, out: Path, *, video: bool = True) -> BenchRow:
    """(a) fit mode frames/s over ``clips`` (total frames / total wall time, process included)."""
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
    what = f"fit mode end to end ({'with' if video else 'no'} overlay)"
    return BenchRow(what, frames, seconds, frames / seconds, "frames/s", note)


def _export_random(cfg: Config, folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(cfg, load_checkpoints=False)
    record = ModelExport(weights=model.state_dict(), config_yaml=config_to_yaml(cfg),
                         face_model=model.face_model.name, stage="temporal", step=0)  # fmt: skip
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
    kwargs = {"window": network_window(loaded, cfg.inference.window), "batch_size": cfg.inference.batch_size,
              "render_shape": True}  # fmt: skip
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
        BenchRow(f"network ({name}) bare predict_frames, batch {b}", res.frames, 0.0, engine,
                 "frames/s"),
        BenchRow(f"network ({name}) end to end, batch {b}", res.frames, seconds, e2e,
                 "frames/s", f"ratio to bare forward {e2e / bare:.2f}, "
                 f"to bare predict_frames {e2e / engine:.2f}"),
    ]  # fmt: skip


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
        cmd = [sys.executable, "-m", "seqdeca.inference.benchmark", str(path), str(out / "mem"),
               *overrides]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"peak-memory child failed: {done.stderr.strip()[-400:]}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(BenchRow(f"peak RSS, {path.name}", info["frames"], seconds,
                             info["peak_mb"], "MB"))  # fmt: skip
    return rows


def _child(argv: list[str]) -> None:
    """``python -m seqdeca.inference.benchmark CLIP OUT [overrides]``: run, print peak RSS."""
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "base.yaml", argv[2:])
    (res,) = video2mesh([argv[0]], argv[1], cfg, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": res.frames, "status": res.status, "peak_mb": peak_kb / 1024}))


if __name__ == "__main__":
    _child(sys.argv[1:])
