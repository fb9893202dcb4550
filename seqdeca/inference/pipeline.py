"""video2mesh: every clip -> streaming decode/track/crop -> windows -> network or fitting -> outputs.

:func:`video2mesh` is what ``tools/video2mesh.py`` calls. Clips are processed one after the
other with one engine (the network is loaded once); a clip that fails (missing, unreadable,
truncated, no face anywhere) gives a one-line reason and leaves nothing behind, and the other
clips are still processed; ``summary.json`` next to the clip folders sums up the run. Processes
started by ``accelerate launch`` or ``torchrun`` share the clips (:mod:`seqdeca.shards`). See
:mod:`seqdeca.inference.outputs` for the output layout and
:mod:`seqdeca.inference.stream` for the chunking that keeps memory bounded and results
independent of ``inference.chunk_frames``. ``inference.faces`` (:mod:`seqdeca.inference.faces`)
chooses one face (the largest) or several, each tracked with a stable identity and sent through
the same crop, engine and outputs as the one face (a per-face state in the engine, a
:class:`~seqdeca.inference.outputs.FaceOutput` each, one overlay with every face).

With ``inference.background_chunks`` > 0 (default), decoding and tracking run ahead in one
background thread and the outputs (files, overlay renders, compositing, encoding) are written
behind in another (:mod:`seqdeca.inference.background`), and the next clip is opened while the
current one runs; the files are the same as with everything in one thread.

The config is read here only, by :func:`video2mesh` and the builders (:func:`build_engine`,
:func:`build_fit_engine`, :func:`clip_settings`); :func:`process_clip` and every part below it
take the values they need (:class:`ClipSettings`, the engines' arguments).
"""

from __future__ import annotations

import contextlib
import functools
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
from seqdeca.errors import UserError
from seqdeca.face_model.from_config import face_model_assets_from_config, face_model_from_config
from seqdeca.inference.background import WriteBehind
from seqdeca.inference.checkpoint import load_model
from seqdeca.inference.clip_appearance import check_appearance, light_size
from seqdeca.inference.engines import ChunkResult, FitEngine, NetworkEngine
from seqdeca.inference.faces import FaceSelection, face_selection
from seqdeca.inference.outputs import ClipOutputs
from seqdeca.inference.settings import inference_config
from seqdeca.inference.stream import ChunkFrames, ClipStream, StreamSettings
from seqdeca.prep.crop import scale_matrix
from seqdeca.prep.tracking import visible_stderr
from seqdeca.render.from_config import renderer_from_config
from seqdeca.shards import Shard
from seqdeca.vis.overlay import FaceLayer, OverlayPanels, panel_size

__all__ = [
    "MODES",
    "VIDEO_EXTENSIONS",
    "ClipResult",
    "ClipSettings",
    "build_engine",
    "build_fit_engine",
    "clip_settings",
    "discover_clips",
    "open_stream",
    "process_clip",
    "resolve_mode",
    "run_summary",
    "video2mesh",
]

log = logging.getLogger(__name__)

MODES = ("auto", "network", "fit")
VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mov",
    ".mkv",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
)
STAGES = ("decode", "track", "crop", "predict", "render", "write")
# seconds the predicting thread waited for the read-ahead and the write-behind threads
WAITS = ("wait_input", "wait_output")


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
        frames, valid_frames: frames read and frames with a face (any face).
        faces: faces reconstructed (folders ``face_K`` with several faces; 1 for "largest").
        seconds: wall time of the clip.
        timings: seconds per stage (:data:`STAGES`; decode and track run in the read-ahead
            thread, render and write in the write-behind one, so they overlap the others) and
            the predicting thread's waits for those threads (:data:`WAITS`).
    """

    source: str
    status: str
    reason: str = ""
    out: Path | None = None
    frames: int = 0
    valid_frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ClipSettings:
    """What :func:`process_clip` reads: :func:`clip_settings` of the config the engine runs with.

    Attributes:
        stream: decoding, tracking, crop and chunk size (:class:`ClipStream`).
        window: W, frames per centred window (> 0).
        faces: which faces of the clip.
        batch_size, render_size, device: ``inference.batch_size``, ``render.image_size`` and
            ``run.device``, recorded in the clip's ``summary.json``.
        write_behind: output jobs (a face's chunk, a chunk's overlay) queued for the
            write-behind thread (0: written in the predicting thread).
    """

    stream: StreamSettings
    window: int
    faces: FaceSelection
    batch_size: int
    render_size: int
    device: str
    write_behind: int = 0


# ------------------------------------------------------------------------------------ builders


def clip_settings(cfg: Config, faces: FaceSelection | None = None) -> ClipSettings:
    """The :class:`ClipSettings` of ``cfg`` (resolved: see :func:`build_engine`); ``faces``:
    default ``inference.faces`` of ``cfg``."""
    inf, track, crop = cfg.inference, cfg.track, cfg.crop
    stream = StreamSettings(
        chunk_frames=inf.chunk_frames,
        max_side=track.max_side,
        max_gap=track.max_gap,
        min_detection_confidence=track.min_detection_confidence,
        crop_size=crop.size,
        crop_scale=crop.scale,
        smooth_frames=crop.smooth_frames,
        read_ahead=inf.background_chunks,
    )
    return ClipSettings(
        stream=stream,
        window=inf.window,
        faces=faces or face_selection(cfg),
        batch_size=inf.batch_size,
        render_size=cfg.render.image_size,
        device=cfg.run.device,
        write_behind=2 * inf.background_chunks,  # a job per face and one per overlay chunk
    )


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
) -> tuple[NetworkEngine | FitEngine, Config]:
    """The engine of ``cfg`` (reads inference.mode/checkpoint and run.device) and the config it
    runs with.

    That config is resolved (:func:`~seqdeca.inference.settings.inference_config`): a network
    runs at its trained window and crop unless ``explicit`` names the keys to keep; fit mode's
    window 0 is :data:`~seqdeca.inference.settings.FIT_WINDOW`.
    """
    mode = resolve_mode(cfg)
    if mode == "network":
        loaded = load_model(cfg.inference.checkpoint, device=cfg.run.device, config=cfg)
        resolved = inference_config(cfg, loaded, explicit=explicit)
        inf = resolved.inference
        engine = NetworkEngine(
            loaded,
            window=inf.window,
            batch_size=inf.batch_size,
            crop_size=resolved.crop.size,
            detail=detail,
        )
        return engine, resolved
    if detail:
        raise UserError(
            "--detail needs network mode (a trained detail generator): "
            "pass --checkpoint or drop --detail"
        )
    return build_fit_engine(cfg, device=cfg.run.device), inference_config(cfg, None)


def build_fit_engine(cfg: Config, *, device: str = "cpu") -> FitEngine:
    """The :class:`FitEngine` of ``cfg``: its ``face_model``, ``render`` (the renderers),
    ``crop.size`` and ``inference`` (window, 0 = :data:`~seqdeca.inference.settings.FIT_WINDOW`;
    fit), on ``device``.

    Raises:
        UserError: a negative window; ``inference.fit.texture`` or ``texture_prior`` is not
            valid (before the face model is loaded).
    """
    cfg = inference_config(cfg, None)
    fit = cfg.inference.fit
    check_appearance(fit.texture, fit.texture_prior)
    on = torch.device(device)
    assets = face_model_assets_from_config(cfg.face_model)
    face_model = face_model_from_config(cfg.face_model).to(on)
    renderer = light_renderer = None
    if face_model.verts_uvs is not None:
        renderer = renderer_from_config(cfg.render, face_model).to(on)
        small = replace(cfg.render, image_size=light_size(cfg.render.image_size))
        light_renderer = renderer_from_config(small, face_model).to(on)
    return FitEngine(
        face_model,
        assets,
        fit,
        window=cfg.inference.window,
        crop_size=cfg.crop.size,
        renderer=renderer,
        light_renderer=light_renderer,
        device=device,
    )


def discover_clips(inputs: Sequence[str | Path]) -> list[Path]:
    """The clips of the command line: files as given, folders expanded to their videos (sorted).

    A missing path is kept (it fails later with a one-line reason, without stopping the rest).
    """
    clips: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
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


def _layer(data: ChunkFrames, res: ChunkResult, crop_size: int) -> FaceLayer | None:
    """One face's overlay renders for the chunk's own frames (None: nothing rendered)."""
    renders = res.renders()
    if renders is None:
        return None
    render, alpha, shape_image = renders
    own = data.own
    mats = _render_matrices(data, crop_size, render.shape[-1])[own]
    return FaceLayer(mats, data.valid[own], render.cpu(), alpha.cpu(), shape_image.cpu())


# --------------------------------------------------------------------------------------- clips


def _ensure_shape(stream: ClipStream, engine, data: ChunkFrames, face: int) -> None:
    """Fit mode: fit the face's identity at its first frame with a face (once)."""
    if not engine.needs_shape or engine.face_shape(face) is not None or not data.valid.any():
        return
    first = data.start + int(np.flatnonzero(data.valid)[0])  # the face's first frame
    stream.ensure(first + engine.shape_span + stream.margin)
    engine.fit_shape(stream.prepare(first, first + engine.shape_span, face=face), face=face)


def _run_face(
    stream: ClipStream, engine, face: int, a: int, b: int, timings: dict, *, video: bool
) -> tuple[ChunkFrames, ChunkResult | None]:
    """Frames ``[a, b)`` of one face: its chunk and the engine's result (None: no face there)."""
    tic = time.perf_counter()
    data = stream.prepare(a, b, face=face)
    _ensure_shape(stream, engine, data, face)
    timings["crop"] += time.perf_counter() - tic
    if not data.valid[data.own].any():  # not in these frames: no prediction
        return data, None
    tic = time.perf_counter()
    res = engine.predict(data, render=video, face=face)
    timings["predict"] += time.perf_counter() - tic
    return data, res


@dataclass
class _ChunkWrite:
    """Writes one chunk's outputs, face by face, then its overlay frames (in the write-behind
    thread when there is one; every call in order)."""

    outputs: ClipOutputs
    b: int
    timings: dict
    video: bool
    crop_size: int
    panels: OverlayPanels | None = None

    def face(self, face: int, data: ChunkFrames, res: ChunkResult | None) -> None:
        """Codes, landmarks and meshes of one face; its renders go into the overlay panels."""
        tic = time.perf_counter()
        if res is None:
            self.outputs.faces[face].empty(self.b)
        else:
            self.outputs.faces[face].write(data, res)
        self.timings["write"] += time.perf_counter() - tic
        tic = time.perf_counter()
        if self.outputs.video is not None and self.panels is None:
            self.panels = OverlayPanels(data.frames[data.own])
        layer = _layer(data, res, self.crop_size) if self.video and res is not None else None
        if self.panels is not None and layer is not None:
            self.panels.add(layer)  # the face's renders are freed once this job is done
        self.timings["render"] += time.perf_counter() - tic

    def overlay(self) -> None:
        """The chunk's overlay frames, every face pasted."""
        if self.panels is not None and self.outputs.video is not None:
            tic = time.perf_counter()
            self.outputs.video.write(self.panels.image())
            self.timings["render"] += time.perf_counter() - tic
        self.panels = None


def _run_chunks(
    stream: ClipStream,
    engine,
    outputs: ClipOutputs,
    timings: dict,
    *,
    video: bool,
    write_behind: int,
    on_frames: Callable[[int], None],
) -> int:
    """Process every chunk of the stream, face by face, the outputs written behind (up to
    ``write_behind`` jobs queued; 0: in this thread); returns the number of frames with a face
    (any face). ``timings["wait_output"]``: seconds spent waiting for the writing."""
    valid_frames = 0
    with WriteBehind(depth=write_behind, name="write-outputs") as writer:
        for a, b in stream.chunks():
            seen = np.zeros(b - a, dtype=bool)
            chunk = _ChunkWrite(outputs, b, timings, video, stream.settings.crop_size)
            for face in range(stream.slots):
                data, res = _run_face(stream, engine, face, a, b, timings, video=video)
                seen |= data.valid[data.own]
                writer.submit(functools.partial(chunk.face, face, data, res))
                del data, res  # the job holds the chunk until it is written
            writer.submit(chunk.overlay)
            valid_frames += int(seen.sum())
            on_frames(b - a)
        writer.finish()
        timings["wait_output"] = writer.waited
    return valid_frames


def process_clip(
    path: str | Path,
    out_dir: str | Path,
    name: str,
    settings: ClipSettings,
    engine: NetworkEngine | FitEngine,
    *,
    video: bool = True,
    rig: bool = True,
    progress: bool = True,
    stream: ClipStream | None = None,
) -> ClipResult:
    """Run video2mesh on one clip into ``out_dir / name`` (see the module docstring) with
    ``settings`` (:func:`clip_settings` of the config ``engine`` runs with); ``rig``: also write
    ``rig.glb`` (:mod:`seqdeca.face_model.gltf_rig`) from the clip's codes at its end.
    ``stream``: the clip already opened (:func:`open_stream`; closed here), else it is opened
    here.

    Returns:
        A :class:`ClipResult`, "done" or "failed" (one-line reason; nothing left on disk).
        Errors that are not the input's fault (bugs) propagate.
    """
    start = time.perf_counter()
    result = ClipResult(source=str(path), status="failed")
    timings = dict.fromkeys(STAGES + WAITS, 0.0)
    outputs = None
    try:
        if stream is None:
            stream = ClipStream(path, settings.stream, window=settings.window, faces=settings.faces)
        with stream:
            outputs = _clip_outputs(
                stream, engine, out_dir, name, video=video, separate=settings.faces.separate
            )
            _process(
                stream,
                engine,
                outputs,
                result,
                timings,
                video=video,
                rig=rig,
                progress=progress,
                name=name,
                write_behind=settings.write_behind,
            )
            result.seconds = time.perf_counter() - start
            summary, per_face = _summaries(
                path, name, settings, engine, result, stream, outputs, video=video, rig=rig
            )
            result.out = outputs.finish(summary, per_face)
            result.status = "done"
    except UserError as exc:
        result.reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    finally:
        if outputs is not None and result.status != "done":
            outputs.abort()
    result.seconds = time.perf_counter() - start
    return result


def _clip_outputs(
    stream: ClipStream, engine, out_dir, name: str, *, video: bool, separate: bool
) -> ClipOutputs:
    reader, fm = stream.reader, engine.face_model
    overlay = None
    if video:
        pw, ph = panel_size(reader.decode_size)
        overlay = (reader.fps, (3 * pw, ph))
    return ClipOutputs(
        out_dir,
        name,
        slots=stream.slots,
        separate=separate,
        faces=fm.faces.cpu().numpy(),
        verts_uvs=None if fm.verts_uvs is None else fm.verts_uvs.cpu().numpy(),
        faces_uvs=None if fm.faces_uvs is None else fm.faces_uvs.cpu().numpy(),
        overlay=overlay,
        texture=None,
        crop_size=stream.settings.crop_size,
        block=max(1, stream.settings.chunk_frames),
    )


def _process(
    stream: ClipStream,
    engine,
    outputs: ClipOutputs,
    result: ClipResult,
    timings: dict,
    *,
    video: bool,
    rig: bool,
    progress: bool,
    name: str,
    write_behind: int,
) -> None:
    """Every chunk, then the rigs; fills ``result`` (frames, valid_frames, faces, timings)."""
    from tqdm import tqdm

    reader = stream.reader
    engine.start_clip()
    bar = tqdm(
        total=reader.num_frames,
        desc=name,
        unit="frame",
        leave=False,
        disable=None if progress else True,
    )
    with bar:
        valid = _run_chunks(
            stream,
            engine,
            outputs,
            timings,
            video=video,
            write_behind=write_behind,
            on_frames=bar.update,
        )
    for key in ("decode", "track", "wait_input"):
        timings[key] = stream.timings[key]
    frames = stream.end or 0
    if valid == 0:
        raise NoFaceError(f"no face found in any of the {frames} frames of {result.source}")
    if rig:
        tic = time.perf_counter()
        for face in outputs.found:
            face.writer.rig(engine.face_model, fps=reader.fps, texture=face.texture)
        timings["write"] += time.perf_counter() - tic
    result.frames, result.valid_frames = frames, valid
    result.faces = len(outputs.found)
    result.timings = timings


def _summaries(
    path,
    name: str,
    settings: ClipSettings,
    engine,
    result: ClipResult,
    stream: ClipStream,
    outputs: ClipOutputs,
    *,
    video: bool,
    rig: bool,
) -> tuple[dict, list[dict]]:
    """The clip's ``summary.json`` and, with several faces, each face's."""
    seconds = result.seconds
    reader, faces = stream.reader, settings.faces
    found = outputs.found
    summary = {
        "clip": name,
        "source": str(Path(path).resolve()),
        "frames": result.frames,
        "frames_with_face": result.valid_frames,
        "faces": len(found),
        "meshes": sum(f.writer.meshes for f in found),
        "mode": engine.mode,
        "model": engine.description,
        "face_model": engine.face_model.name,
        "fps": reader.fps,
        "source_size": list(reader.size),
        "decode_size": list(reader.decode_size),
        "window": settings.window,
        "chunk_frames": settings.stream.chunk_frames,
        "batch_size": settings.batch_size,
        "crop_size": settings.stream.crop_size,
        "render_size": settings.render_size,
        "device": settings.device,
        "overlay": video,
        "rig": rig,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "seconds": round(seconds, 4),
        "frames_per_second": round(result.frames / seconds, 3) if seconds > 0 else None,
        "seqdeca_version": __version__,
    }
    if not faces.separate:
        return summary, []
    per_face = [
        {
            "face": f.writer.final.name,
            "first_frame": f.first_frame,
            "frames_with_face": f.frames_with_face,
            "meshes": f.writer.meshes,
        }
        for f in found
    ]
    summary.update(
        faces_requested=faces.request,
        max_faces=faces.limit,
        face_order="first appearance, left to right within a frame",
        detections_left_out=stream.unassigned,
        face_folders=per_face,
    )
    common = {
        k: summary[k]
        for k in (
            "clip",
            "source",
            "frames",
            "mode",
            "model",
            "face_model",
            "fps",
            "crop_size",
            "window",
            "seqdeca_version",
        )
    }
    return summary, [{**common, **face} for face in per_face]


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


def video2mesh(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    cfg: Config,
    *,
    detail: bool = False,
    video: bool = True,
    rig: bool = True,
    progress: bool = True,
    report: Callable[[ClipResult], None] | None = None,
    explicit: Collection[str] = (),
    shard: Shard | None = None,
) -> list[ClipResult]:
    """Run video2mesh on clips and folders of clips; the run's totals go to ``summary.json``.

    Args:
        inputs: video files and/or folders (every video inside is processed).
        out_dir: output root; clip ``x.mp4`` goes to ``out_dir/x/``.
        cfg: the config (``inference``, ``face_model``, ``render``, ``crop``, ``track``,
            ``run.device`` are read; ``inference.faces``: which faces, see
            :mod:`seqdeca.inference.faces`).
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
    faces = face_selection(cfg)
    engine, cfg = build_engine(cfg, detail=detail, explicit=explicit)
    settings = clip_settings(cfg, faces)  # the window and crop the engine runs with
    clips = discover_clips(inputs)
    if not clips:
        raise UserError(f"no video to process in {', '.join(map(str, inputs))}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    names = _unique_names(clips)  # from the whole list: the same folders whoever runs a clip
    results = []
    mine = shard.take(list(zip(clips, names)))
    ahead = open_stream(mine[0][0], settings) if mine else None
    try:
        for i, (clip, name) in enumerate(mine):
            stream, ahead = ahead, None
            if i + 1 < len(mine):  # the next clip is decoded and tracked while this one runs
                ahead = open_stream(mine[i + 1][0], settings)
            with torch.no_grad(), _torch_threads(engine.threads):
                res = process_clip(
                    clip,
                    out_dir,
                    name,
                    settings,
                    engine,
                    video=video,
                    rig=rig,
                    progress=progress and shard.is_main,
                    stream=stream,
                )
            results.append(res)
            if report is not None:
                with visible_stderr():  # not lost to the next clip's read-ahead silence
                    report(res)
    finally:
        if ahead is not None:
            ahead.__exit__(None, None, None)
    shares = shard.gather(results)  # waits for every process
    if shares is None:
        return results
    # clip i was processed by process i % world_size, as its (i // world_size)-th clip
    results = [shares[i % len(shares)][i // len(shares)] for i in range(len(clips))]
    summary = run_summary(
        results, names, seconds=time.perf_counter() - start, processes=shard.world_size
    )
    _write_json(summary, Path(out_dir) / "summary.json")
    return results


def open_stream(path: str | Path, settings: ClipSettings) -> ClipStream | None:
    """The clip's :class:`ClipStream`, its read-ahead started; None when it cannot be opened
    (:func:`process_clip` then opens it again and reports why)."""
    try:
        return ClipStream(path, settings.stream, window=settings.window, faces=settings.faces)
    except UserError:
        return None


def run_summary(
    results: Sequence[ClipResult], names: Sequence[str], *, seconds: float, processes: int = 1
) -> dict:
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
        "clips": len(results),
        "done": len(done),
        "failed": len(results) - len(done),
        "frames": frames,
        "frames_with_face": sum(r.valid_frames for r in done),
        "faces": sum(r.faces for r in done),
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 3) if seconds > 0 else None,
        "processes": processes,
        "failures": [
            {"source": r.source, "reason": r.reason} for r in results if r.status != "done"
        ],
        "outcomes": [
            {
                "clip": name,
                "source": r.source,
                "status": r.status,
                "reason": r.reason,
                "frames": r.frames,
                "frames_with_face": r.valid_frames,
                "faces": r.faces,
                "seconds": round(r.seconds, 3),
                "process": i % processes,
            }
            for i, (r, name) in enumerate(zip(results, names))
        ],
        "seqdeca_version": __version__,
    }


def _write_json(data: dict, path: Path) -> None:
    """Write ``data`` as JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
