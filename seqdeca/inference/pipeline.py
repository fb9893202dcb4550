"""video2mesh: every clip -> streaming decode/track/crop -> windows -> network or fitting -> outputs.

:func:`video2mesh` is what ``tools/video2mesh.py`` calls. Clips are processed one after the
other with one engine (the network is loaded once); a clip that fails (missing, unreadable,
truncated, no face anywhere) gives a one-line reason and leaves nothing behind, and the other
clips are still processed; ``summary.json`` next to the clip folders sums up the run. Processes
started by ``accelerate launch`` or ``torchrun`` share the clips (:mod:`seqdeca.shards`). See
:mod:`seqdeca.inference.outputs` for the output layout and
:mod:`seqdeca.inference.stream` for the chunking that keeps memory bounded and results
independent of ``inference.chunk_frames``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from seqdeca import __version__
from seqdeca.config.schema import Config
from seqdeca.data.crop import apply_transform, scale_matrix
from seqdeca.errors import UserError
from seqdeca.geometry.camera import ndc_to_pixels
from seqdeca.inference.checkpoint import load_model
from seqdeca.inference.engines import ChunkResult, FitEngine, NetworkEngine
from seqdeca.inference.outputs import ClipWriter
from seqdeca.inference.settings import inference_config
from seqdeca.inference.stream import ChunkFrames, ClipStream
from seqdeca.shards import Shard
from seqdeca.vis.overlay import overlay_frames, panel_size

__all__ = ["MODES", "VIDEO_EXTENSIONS", "ClipResult", "build_engine", "discover_clips",
           "process_clip", "resolve_mode", "run_summary", "video2mesh"]  # fmt: skip

log = logging.getLogger(__name__)

MODES = ("auto", "network", "fit")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv")  # fmt: skip
STAGES = ("decode", "track", "crop", "predict", "render", "write")


class NoFaceError(UserError):
    """A clip in which no frame has a face."""


@dataclass
class ClipResult:
    """Outcome of one clip.

    Attributes:
        source: the input path as given.
        status: "done" or "failed".
        reason: one line for a failed clip.
        out: the clip's output folder (done only).
        frames, valid_frames: frames read and frames with a face.
        seconds: wall time of the clip.
        timings: seconds per stage (:data:`STAGES`).
    """

    source: str
    status: str
    reason: str = ""
    out: Path | None = None
    frames: int = 0
    valid_frames: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def resolve_mode(cfg: Config) -> str:
    """``inference.mode`` with "auto" resolved: "network" when a checkpoint is set, else "fit"."""
    mode = cfg.inference.mode
    if mode not in MODES:
        raise UserError(f"unknown inference.mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "auto":
        return "network" if cfg.inference.checkpoint else "fit"
    if mode == "network" and not cfg.inference.checkpoint:
        raise UserError(
            "network mode needs a checkpoint: pass --checkpoint model.pt (a seqdeca export or "
            "DECA's deca_model.tar) or use --mode fit"
        )
    return mode


def build_engine(
    cfg: Config, *, detail: bool = False, explicit: Collection[str] = ()
) -> NetworkEngine | FitEngine:
    """The engine of ``cfg`` (reads inference.mode/checkpoint and run.device).

    The engine's ``cfg`` is the resolved one (:func:`~seqdeca.inference.settings.inference_config`):
    a network runs at its trained window and crop unless ``explicit`` names the keys to keep.
    """
    mode = resolve_mode(cfg)
    if mode == "network":
        loaded = load_model(cfg.inference.checkpoint, device=cfg.run.device, config=cfg)
        resolved = inference_config(cfg, loaded, explicit=explicit)
        return NetworkEngine(loaded, resolved, detail=detail)
    if detail:
        raise UserError("--detail needs network mode (a trained detail generator): "
                        "pass --checkpoint or drop --detail")  # fmt: skip
    return FitEngine(cfg, device=cfg.run.device)


def discover_clips(inputs: Sequence[str | Path]) -> list[Path]:
    """The clips of the command line: files as given, folders expanded to their videos (sorted).

    A missing path is kept (it fails later with a one-line reason, without stopping the rest).
    """
    clips: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)  # fmt: skip
            if not found:
                log.warning("no video files (%s) in %s", ", ".join(VIDEO_EXTENSIONS), path)
            clips.extend(found)
        else:
            clips.append(path)
    return clips


def _unique_names(clips: Sequence[Path]) -> list[str]:
    """Output folder names: the stems, with _2, _3, ... for repeated stems."""
    seen: dict[str, int] = {}
    names = []
    for clip in clips:
        seen[clip.stem] = seen.get(clip.stem, 0) + 1
        names.append(clip.stem if seen[clip.stem] == 1 else f"{clip.stem}_{seen[clip.stem]}")
    return names


# ------------------------------------------------------------------------------------- chunks


def _render_matrices(data: ChunkFrames, crop_size: int, render_size: int) -> np.ndarray:
    """(n, 3, 3) decoded-frame pixels -> render pixels."""
    to_render = scale_matrix(render_size / crop_size, render_size / crop_size)
    return to_render @ data.crop_from_frame @ np.linalg.inv(data.decoded_from_original)


def _nan_invalid(array: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.asarray(array, dtype=np.float32).copy()
    out[~valid] = np.nan
    return out


def _write_chunk(writer: ClipWriter, data: ChunkFrames, res: ChunkResult, cfg: Config, *,
                 video: bool) -> None:  # fmt: skip
    """Append a chunk's own frames to every output of the clip."""
    own = data.own
    frames = data.indices[own]
    valid = data.valid[own]
    codes = {k: _nan_invalid(v, valid) for k, v in res.codes.items()}
    crop_from_frame = data.crop_from_frame[own].astype(np.float32)
    writer.codes.append(frame=frames, valid=valid, interpolated=data.interpolated[own],
                        crop_from_frame=crop_from_frame, **codes)  # fmt: skip
    crop_px = ndc_to_pixels(res.landmarks.float().cpu(), cfg.crop.size).numpy()
    frame_from_crop = np.linalg.inv(np.where(valid[:, None, None], data.crop_from_frame[own],
                                             np.eye(3)))  # fmt: skip
    model_lmk = _nan_invalid(apply_transform(crop_px, frame_from_crop), valid)
    writer.landmarks.append(frame=frames, valid=valid, interpolated=data.interpolated[own],
                            landmarks=data.landmarks[own][..., :2].astype(np.float32),
                            model_landmarks=model_lmk)  # fmt: skip
    vertices = res.vertices.detach().float().cpu().numpy()
    textures = None if res.textures is None else res.textures.detach().float().cpu().numpy()
    detail = None
    if res.detail_vertices is not None:
        detail = res.detail_vertices.detach().float().cpu().numpy()
    for i in np.flatnonzero(valid):
        tex = None if textures is None else textures[i].clip(0, 1)
        writer.mesh(int(frames[i]), vertices[i], texture=tex)
        if detail is not None:
            writer.mesh(int(frames[i]), detail[i], suffix="_detail")


def _overlay_chunk(writer: ClipWriter, data: ChunkFrames, res: ChunkResult, cfg: Config) -> None:
    own = data.own
    n = len(data.valid[own])
    size = cfg.render.image_size
    render = res.render if res.render is not None else torch.zeros(n, 3, size, size)
    alpha = res.alpha if res.alpha is not None else torch.zeros(n, 1, size, size)
    shape = res.shape_image if res.shape_image is not None else torch.zeros(n, 3, size, size)
    mats = _render_matrices(data, cfg.crop.size, render.shape[-1])[own]
    valid = data.valid[own] & (res.render is not None)
    writer.video.write(overlay_frames(data.frames[own], mats, valid, render.cpu(), alpha.cpu(),
                                      shape.cpu()))  # fmt: skip


# --------------------------------------------------------------------------------------- clips


def _run_chunks(stream: ClipStream, engine, writer: ClipWriter, cfg: Config, timings: dict,
                *, video: bool, on_frames: Callable[[int], None]) -> int:  # fmt: skip
    """Process every chunk of the stream; returns the number of frames with a face."""
    valid_frames = 0
    for a, b in stream.chunks():
        tic = time.perf_counter()
        data = stream.prepare(a, b)
        if engine.needs_shape and engine.shape is None and data.valid.any():
            first = data.start + int(np.flatnonzero(data.valid)[0])  # the clip's first face
            stream.ensure(first + engine.shape_span + stream.margin)
            engine.fit_shape(stream.prepare(first, first + engine.shape_span))
        timings["crop"] += time.perf_counter() - tic
        tic = time.perf_counter()
        res = engine.predict(data, render=video)
        timings["predict"] += time.perf_counter() - tic
        tic = time.perf_counter()
        _write_chunk(writer, data, res, cfg, video=video)
        timings["write"] += time.perf_counter() - tic
        if video:
            tic = time.perf_counter()
            _overlay_chunk(writer, data, res, cfg)
            timings["render"] += time.perf_counter() - tic
        valid_frames += int(data.valid[data.own].sum())
        on_frames(b - a)
    return valid_frames


def process_clip(path: str | Path, out_dir: str | Path, name: str, cfg: Config,
                 engine: NetworkEngine | FitEngine, *, video: bool = True, rig: bool = True,
                 progress: bool = True) -> ClipResult:  # fmt: skip
    """Run video2mesh on one clip into ``out_dir / name`` (see the module docstring); ``rig``:
    also write ``rig.glb`` (:mod:`seqdeca.io.gltf_rig`) from the clip's codes at its end.

    Returns:
        A :class:`ClipResult`, "done" or "failed" (one-line reason; nothing left on disk).
        Errors that are not the input's fault (bugs) propagate.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    result = ClipResult(source=str(path), status="failed")
    timings = dict.fromkeys(STAGES, 0.0)
    writer = None
    try:
        with ClipStream(path, cfg, window=cfg.inference.window) as stream:
            reader = stream.reader
            overlay = None
            if video:
                pw, ph = panel_size(reader.decode_size)
                overlay = (reader.fps, (3 * pw, ph))
            fm = engine.face_model
            writer = ClipWriter(
                out_dir, name, faces=fm.faces.cpu().numpy(), overlay=overlay,
                verts_uvs=None if fm.verts_uvs is None else fm.verts_uvs.cpu().numpy(),
                faces_uvs=None if fm.faces_uvs is None else fm.faces_uvs.cpu().numpy(),
            )  # fmt: skip
            engine.start_clip()
            if isinstance(engine, FitEngine) and (tex := engine.shared_texture()) is not None:
                writer.shared_texture(tex)
            bar = tqdm(total=reader.num_frames, desc=name, unit="frame", leave=False,
                       disable=None if progress else True)  # fmt: skip
            with bar:
                valid = _run_chunks(stream, engine, writer, cfg, timings, video=video,
                                    on_frames=bar.update)  # fmt: skip
            timings["decode"], timings["track"] = stream.timings["decode"], stream.timings["track"]
            frames = stream.end or 0
            if valid == 0:
                raise NoFaceError(f"no face found in any of the {frames} frames of {path}")
            if rig:
                tic = time.perf_counter()
                writer.rig(engine.face_model, fps=reader.fps)
                timings["write"] += time.perf_counter() - tic
            result.frames, result.valid_frames = frames, valid
            result.seconds = time.perf_counter() - start
            result.timings = timings
            summary = _summary(path, name, cfg, engine, result, reader, writer, video=video,
                               rig=rig)  # fmt: skip
            result.out = writer.finish(summary)
            result.status = "done"
    except UserError as exc:
        result.reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    finally:
        if writer is not None and result.status != "done":
            writer.abort()
    result.seconds = time.perf_counter() - start
    return result


def _summary(path, name: str, cfg: Config, engine, result: ClipResult, reader, writer: ClipWriter,
             *, video: bool, rig: bool) -> dict:  # fmt: skip
    seconds = result.seconds
    inf = cfg.inference
    return {
        "clip": name, "source": str(Path(path).resolve()), "frames": result.frames,
        "frames_with_face": result.valid_frames, "meshes": writer.meshes,
        "mode": engine.mode, "model": engine.description,
        "face_model": engine.face_model.name, "fps": reader.fps,
        "source_size": list(reader.size), "decode_size": list(reader.decode_size),
        "window": inf.window, "chunk_frames": inf.chunk_frames, "batch_size": inf.batch_size,
        "crop_size": cfg.crop.size, "render_size": cfg.render.image_size,
        "device": cfg.run.device, "overlay": video, "rig": rig,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "seconds": round(seconds, 4),
        "frames_per_second": round(result.frames / seconds, 3) if seconds > 0 else None,
        "seqdeca_version": __version__,
    }  # fmt: skip


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads for a while (None: unchanged). Fitting runs many small
    operations that gain nothing from more threads, and extra threads spin against MediaPipe's
    and the decoder's."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def video2mesh(inputs: Sequence[str | Path], out_dir: str | Path, cfg: Config, *,
               detail: bool = False, video: bool = True, rig: bool = True,
               progress: bool = True,
               report: Callable[[ClipResult], None] | None = None,
               explicit: Collection[str] = (), shard: Shard | None = None,
               ) -> list[ClipResult]:  # fmt: skip
    """Run video2mesh on clips and folders of clips; the run's totals go to ``summary.json``.

    Args:
        inputs: video files and/or folders (every video inside is processed).
        out_dir: output root; clip ``x.mp4`` goes to ``out_dir/x/``.
        cfg: the config (``inference``, ``face_model``, ``render``, ``crop``, ``track``,
            ``run.device`` are read).
        detail: network mode: also write detail meshes.
        video: write overlay.mp4.
        rig: write rig.glb, the clip's animated glTF rig (docs/rig.md).
        progress: show a progress bar per clip (on terminals).
        report: called with each clip's result as soon as it is known.
        explicit: config keys the caller set on purpose (:func:`seqdeca.config.given_keys`):
            a network otherwise runs with its checkpoint's window and crop.
        shard: this process's place in a run shared by several processes
            (:func:`seqdeca.shards.current_shard`): it processes its share of the clips
            (:meth:`~seqdeca.shards.Shard.take`) on ``cuda:<local_rank>`` when ``run.device``
            is ``cuda``, and the main process writes the summary of every clip. None: one
            process does every clip.

    Returns:
        One :class:`ClipResult` per clip, in order; in a shared run the main process returns
        every process's, the others their own.

    Raises:
        UserError: a bad configuration or checkpoint (before any clip is processed).
    """
    start = time.perf_counter()
    shard = shard or Shard()
    if (device := shard.device(cfg.run.device)) != cfg.run.device:
        cfg = replace(cfg, run=replace(cfg.run, device=device))
    engine = build_engine(cfg, detail=detail, explicit=explicit)
    cfg = engine.cfg  # the window and crop the engine runs with
    clips = discover_clips(inputs)
    if not clips:
        raise UserError(f"no video to process in {', '.join(map(str, inputs))}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    names = _unique_names(clips)  # from the whole list: the same folders whoever runs a clip
    results = []
    for clip, name in shard.take(list(zip(clips, names))):
        with torch.no_grad(), _torch_threads(engine.threads):
            res = process_clip(clip, out_dir, name, cfg, engine, video=video, rig=rig,
                               progress=progress and shard.is_main)  # fmt: skip
        results.append(res)
        if report is not None:
            report(res)
    shares = shard.gather(results)  # waits for every process
    if shares is None:
        return results
    # clip i was processed by process i % world_size, as its (i // world_size)-th clip
    results = [shares[i % len(shares)][i // len(shares)] for i in range(len(clips))]
    summary = run_summary(results, names, seconds=time.perf_counter() - start,
                          processes=shard.world_size)  # fmt: skip
    _write_json(summary, Path(out_dir) / "summary.json")
    return results


def run_summary(results: Sequence[ClipResult], names: Sequence[str], *, seconds: float,
                processes: int = 1) -> dict:  # fmt: skip
    """The totals of a run (``summary.json`` next to the clip folders).

    Args:
        results: one result per clip, in order.
        names: the clips' output folder names, in the same order.
        seconds: wall time of the run.
        processes: processes that shared it; clip i was processed by process ``i % processes``.
    """
    done = [r for r in results if r.status == "done"]
    frames = sum(r.frames for r in done)
    return {
        "clips": len(results), "done": len(done), "failed": len(results) - len(done),
        "frames": frames, "frames_with_face": sum(r.valid_frames for r in done),
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 3) if seconds > 0 else None,
        "processes": processes,
        "failures": [{"source": r.source, "reason": r.reason} for r in results
                     if r.status != "done"],
        "outcomes": [{"clip": name, "source": r.source, "status": r.status, "reason": r.reason,
                      "frames": r.frames, "frames_with_face": r.valid_frames,
                      "seconds": round(r.seconds, 3), "process": i % processes}
                     for i, (r, name) in enumerate(zip(results, names))],
        "seqdeca_version": __version__,
    }  # fmt: skip


def _write_json(data: dict, path: Path) -> None:
    """Write ``data`` as JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
