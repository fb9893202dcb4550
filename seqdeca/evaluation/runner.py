"""Frame-window evaluation: every method on every valid frame of every prepared clip.

Methods (table rows), in order:

* one row per ``--checkpoint`` (named by the checkpoint's parent folder, or its file stem when
  the parent is not informative), predicting each frame from the window centred on it
  (:func:`seqdeca.inference.windows.predict_frames`);
* with ``per_frame``, the same checkpoint again with the temporal model off (T = 1), named
  ``<name>+per-frame``, so the gain of temporal fusion sits next to it;
* with mode "fit", the face model fitted to the tracked landmarks exactly as video2mesh's fit
  mode does it (:class:`~seqdeca.inference.engines.FitEngine`: identity and texture
  coefficients once, then every frame with its centred window and its own SH light) (``fit``);
  with ``inference.fit.texture`` extract also ``fit+extract``: the photometric metrics of the
  ODD frames rendered with a UV texture map extracted from the EVEN frames only;
* ``input``: the temporal metrics of the tracked input landmarks (and of the ground-truth mesh
  of synthetic clips), the reference the smoothness numbers are read against;
* ``mean-face`` (clips with ground truth only): the true identity and head pose with a neutral
  expression and closed jaw, the floor of the expression, jaw and vertex errors.

A checkpoint trained through the detail stage (``train.stage`` detail) is also scored on clips
with ground-truth detail (synthetic clips made with ``synthetic.detail``): displacement and
detail-normal errors, overall and per wrinkle region, with the coarse codes and AU condition it
was trained with (:func:`seqdeca.eval.detail_eval.detail_clip_series`), in its own row only
(the detail stage is per frame).

Window length, batch size and the fit settings come from ``cfg.inference`` (window overridable).
One model and one clip are in memory at a time.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from seqdeca.au_names import AFFWILD2_MAIN_INDICES
from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.eval.clip_metrics import (
    ClipPrediction,
    ExpressionMeshes,
    clip_series,
    photometric_series,
    reference_series,
)
from seqdeca.eval.clips import PreparedClip, find_eval_clips, load_clip
from seqdeca.eval.detail_eval import detail_clip_series, has_detail_truth
from seqdeca.evaluation.report import write_report
from seqdeca.evaluation.results import ClipResult, MethodResult
from seqdeca.face_model.assets import AssetError
from seqdeca.face_model.from_config import face_model_assets_from_config
from seqdeca.face_model.layer import FaceModel, FlameParams
from seqdeca.geometry.camera import project_weak_perspective
from seqdeca.inference.checkpoint import LoadedModel, load_model
from seqdeca.inference.engines import FitEngine
from seqdeca.inference.pipeline import build_fit_engine
from seqdeca.inference.settings import network_window
from seqdeca.inference.smoothing import CodeFilter, parse_filter
from seqdeca.inference.stream import ChunkFrames
from seqdeca.inference.windows import predict_frames
from seqdeca.losses.weights import coarse_weights, detail_weights
from seqdeca.models.detail_sources import DetailSources
from seqdeca.models.outputs import SeqDECAOutput, cat_outputs

__all__ = ["RESERVED_NAMES", "EvalOptions", "describe_config", "evaluate", "method_name"]

log = logging.getLogger(__name__)

_GENERIC_FOLDERS = {"", ".", "checkpoints", "models", "model", "weights", "runs", "outputs"}


@dataclass
class EvalOptions:
    """What to evaluate and where to write it.

    Attributes:
        data: prepared dataset folder (clips found as by ``seqdeca.data.dataset.find_clips``).
        out: output folder.
        config: base config: ``inference`` (window, batch_size, fit.*) and, for fit mode and the
            ground-truth mesh, ``face_model``.
        checkpoints: seqdeca ``model.pt`` exports or DECA ``deca_model.tar`` files.
        mode: "network" (checkpoints only) or "fit" (fit, plus the checkpoints if any).
        per_frame: also evaluate each checkpoint with the temporal model off.
        filters: also evaluate each checkpoint per frame with its codes smoothed over time by
            each of these filters (``savgol:9:2``, ``one_euro:1.0:0.5``; see
            :func:`seqdeca.inference.smoothing.parse_filter`): rows ``<name>+per-frame+<filter>``.
        window: frames per window; None = ``config.inference.window`` (0: each checkpoint's
            longest trained window, fit mode 3).
        device: torch device.
        tensorboard: also write TensorBoard scalars.
        plots: write PNG plots.
        progress: show progress bars.
    """

    data: Path
    out: Path
    config: Config = field(default_factory=Config)
    checkpoints: list[Path] = field(default_factory=list)
    mode: str = "network"
    per_frame: bool = False
    filters: list[str] = field(default_factory=list)
    window: int | None = None
    device: str = "cpu"
    tensorboard: bool = False
    plots: bool = True
    progress: bool = True


#: Row names of the fit and reference rows, never given to a checkpoint.
RESERVED_NAMES = frozenset({"fit", "fit+extract", "input", "mean-face"})


def method_name(checkpoint: Path, taken: set[str]) -> str:
    """Row name of a checkpoint: its parent folder's name, else its stem; made unique."""
    checkpoint = Path(checkpoint)
    parent = checkpoint.resolve().parent.name
    name = parent if parent.lower() not in _GENERIC_FOLDERS else checkpoint.stem
    unique, k = name, 2
    while unique in taken:
        unique, k = f"{name}-{k}", k + 1
    return unique


def describe_config(loaded: LoadedModel) -> str:
    """Modules and losses on/off of a checkpoint, from its saved config (one line)."""
    if loaded.kind == "deca":
        return f"DECA checkpoint {loaded.path.name} (per-frame, temporal model off)"
    cfg = loaded.config
    m = cfg.model
    parts = [
        f"stage {cfg.train.stage}",
        f"temporal {'on' if m.use_temporal else 'off'}",
        f"coarse encoder {'frozen' if m.freeze_coarse else 'trained'}",
        f"AU net {'frozen' if m.freeze_au_net else 'trained'}",
        f"fusion {m.fusion_depth}x{m.fusion_dim}",
    ]
    weights = coarse_weights(cfg.loss)
    if cfg.train.stage == "detail":
        weights = weights | detail_weights(cfg.loss)
    losses = [f"{k}={v:g}" for k, v in weights.items() if v > 0]
    return "; ".join(parts) + "; losses " + (", ".join(losses) if losses else "none")


def _scatter(values: torch.Tensor, frames: torch.Tensor, t_count: int) -> torch.Tensor:
    """(n, ...) values of frames ``frames`` -> (T, ...) float with NaN elsewhere."""
    out = torch.full((t_count, *values.shape[1:]), float("nan"), dtype=torch.float32)
    out[frames] = values.float().cpu()
    return out


def _synchronise(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


#: Codes a filter smooths over time before the mesh is decoded again.
_FILTERED = ("expression", "pose", "cam", "light")


@torch.no_grad()
def _filtered(
    model,
    out: SeqDECAOutput,
    frames: torch.Tensor,
    clip: PreparedClip,
    smooth: CodeFilter,
    batch: int,
) -> SeqDECAOutput:
    """``out`` (n >= 1 predicted frames) with its codes smoothed along the clip's time and
    decoded again (``decoded`` replaced; the other parts are the unfiltered network's)."""
    valid = clip.valid.numpy()
    codes = out.codes()
    for key in _FILTERED:
        series = _scatter(codes[key], frames.cpu(), clip.num_frames).numpy()
        smoothed = smooth(series.reshape(len(series), -1), valid).reshape(series.shape)
        codes[key] = torch.from_numpy(smoothed[frames.cpu().numpy()]).to(codes[key])
    codes["jaw_pose"] = codes["pose"][:, 3:]
    parts = []
    device = next(model.parameters()).device
    for a in range(0, len(frames), batch):
        part = {
            k: codes[k][None, a : a + batch].to(device) for k in ("shape", "texture", *_FILTERED)
        }
        parts.append(model.decode(part).map_tensors(lambda v: v[0].cpu()))
    return replace(out, **codes, decoded=cat_outputs(parts))


def predict_network(
    loaded: LoadedModel,
    clip: PreparedClip,
    *,
    window: int,
    batch_size: int,
    per_frame: bool,
    device: str,
    smooth: CodeFilter | None = None,
) -> ClipPrediction:
    """Run a network with centred windows on the valid frames of one clip.

    ``smooth``: a temporal filter of the codes (:func:`seqdeca.inference.smoothing.parse_filter`)
    applied before the meshes are decoded again (the per-frame+filter baseline).
    """
    frames = torch.nonzero(clip.valid).flatten()
    crops = clip.frames.to(device)
    _synchronise(device)
    start = time.perf_counter()
    out = predict_frames(
        loaded.model,
        crops,
        clip.valid,
        window=window,
        batch_size=batch_size,
        per_frame=per_frame,
        centres=frames,
    )
    if smooth is not None and len(frames):
        out = _filtered(loaded.model, out, frames, clip, smooth, max(1, batch_size))
    _synchronise(device)
    seconds = time.perf_counter() - start
    t_count = clip.num_frames

    def full(values: torch.Tensor | None) -> torch.Tensor | None:
        return None if values is None else _scatter(values, frames, t_count)

    au = out.encoded.au_probabilities[:, list(AFFWILD2_MAIN_INDICES)]
    pose, decoded = full(out.pose), out.decoded
    return ClipPrediction(
        landmarks68=full(decoded.landmarks68),
        landmarks_mp=full(decoded.landmarks_mp),
        vertices=full(decoded.vertices),
        global_pose=pose[:, :3],
        jaw_pose=full(out.jaw_pose),
        expression=full(out.expression),
        render=full(decoded.render),
        au_probabilities=_scatter(au, frames, t_count),
        seconds=seconds,
    )


def _chunk(clip: PreparedClip, rows: slice) -> ChunkFrames:
    """Rows of a prepared clip as video2mesh's chunk (frames and landmarks are the crops')."""
    valid = clip.valid[rows].numpy()
    n = len(valid)
    eye = np.repeat(np.eye(3)[None], n, 0)
    frames = (clip.frames[rows] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return ChunkFrames(
        start=rows.start or 0,
        own=slice(0, n),
        frames=frames,
        landmarks=clip.landmarks[rows].numpy(),
        valid=valid,
        interpolated=np.zeros(n, bool),
        crop_from_frame=eye,
        decoded_from_original=np.eye(3),
        is_last=True,
    )


def predict_fit(
    engine: FitEngine, clip: PreparedClip, *, extract: bool = False
) -> tuple[ClipPrediction, torch.Tensor | None]:
    """Fit mode exactly as video2mesh runs it (:class:`~seqdeca.inference.engines.FitEngine`):
    identity and texture coefficients from the first ``SHAPE_SPAN`` frames after the first
    face, then every frame with its centred window and its own light; rendered with the model
    albedo (``inference.fit.texture`` model; mean: the mean albedo under the fixed light).

    ``extract``: also render every ODD frame with a texture map extracted from the EVEN frames
    only (:meth:`~seqdeca.inference.engines.FitEngine.extracted_renders`), so that the map is
    scored on frames it was not built from; returned second ((T, 3, R, R), NaN on even and
    invalid frames), else None.
    """
    first = int(torch.nonzero(clip.valid)[0])
    engine.crop_size = clip.size  # this clip's crop size
    start = time.perf_counter()
    engine.start_clip()
    engine.fit_shape(_chunk(clip, slice(first, first + engine.shape_span)))
    chunk = _chunk(clip, slice(0, clip.num_frames))
    result = engine.predict(chunk, render=True)
    codes = {
        k: torch.from_numpy(result.codes[k]).to(engine.device)
        for k in ("shape", "expression", "global_pose", "jaw_pose", "cam")
    }
    with torch.no_grad():
        mesh = engine.face_model(
            FlameParams(
                shape=codes["shape"],
                expression=codes["expression"],
                global_pose=codes["global_pose"],
                jaw_pose=codes["jaw_pose"],
            )
        )
    overlay = result.renders()  # fit mode makes them on demand: timed like the rest
    seconds = time.perf_counter() - start
    invalid = ~clip.valid

    def masked(x: torch.Tensor | None, project: bool = False) -> torch.Tensor | None:
        if x is None:
            return None
        if project:
            x = project_weak_perspective(x, codes["cam"])[..., :2]
        x = x.detach().float().cpu().clone()
        x[invalid] = float("nan")
        return x

    pred = ClipPrediction(
        landmarks68=masked(mesh.landmarks68, True),
        landmarks_mp=masked(mesh.landmarks_mp, True),
        vertices=masked(result.vertices),
        global_pose=masked(codes["global_pose"]),
        jaw_pose=masked(codes["jaw_pose"]),
        expression=masked(codes["expression"]),
        render=masked(None if overlay is None else overlay[0]),
        au_probabilities=None,
        seconds=seconds,
        render_alpha=masked(None if overlay is None else overlay[1]),
    )
    if not extract:
        return pred, None
    even = np.arange(clip.num_frames) % 2 == 0
    with torch.no_grad():
        renders = engine.extracted_renders(chunk, result.vertices, codes["cam"], build=even)
    renders = masked(renders)
    renders[torch.from_numpy(even)] = float("nan")
    return pred, renders


class _GroundTruth:
    """Ground-truth meshes of synthetic clips, from a face model with all its components."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.model: FaceModel | None = None
        self.failed = False

    def _model_for(self, clip: PreparedClip) -> FaceModel | None:
        """The face model of the clip's ground truth (None: no usable ground truth)."""
        gt = clip.gt
        if gt is None or self.failed or not {"shape", "expression", "global_pose"} <= set(gt):
            return None
        if self.model is None:
            try:
                self.model = FaceModel(face_model_assets_from_config(self.cfg.face_model))
            except (AssetError, UserError, OSError, ValueError) as exc:
                log.warning("no ground-truth meshes: cannot build the face model (%s)", exc)
                self.failed = True
                return None
        wanted = clip.meta.get("face_model")
        if wanted and wanted != self.model.name:
            log.warning(
                "clip %s was rendered with face model '%s', not '%s': no vertex error",
                clip.name,
                wanted,
                self.model.name,
            )
            return None
        return self.model

    def vertices(self, clip: PreparedClip) -> torch.Tensor | None:
        """(T, V, 3) ground-truth meshes of a synthetic clip, or None."""
        if self._model_for(clip) is None:
            return None
        gt = clip.gt
        with torch.no_grad():
            return self.model(
                FlameParams(
                    shape=gt["shape"],
                    expression=gt["expression"],
                    global_pose=gt["global_pose"],
                    jaw_pose=gt.get("jaw_pose"),
                )
            ).vertices.float()

    def expression_meshes(
        self, clip: PreparedClip, pred: ClipPrediction
    ) -> ExpressionMeshes | None:
        """The ground-truth identity with the true and the predicted expression (and jaw), no
        head pose; predicted codes are zero-padded or cut to the model's expression size."""
        model = self._model_for(clip)
        if model is None or "jaw_pose" not in clip.gt:
            return None
        gt, e = clip.gt, model.num_expression

        def fit(codes: torch.Tensor) -> torch.Tensor:
            codes = torch.nan_to_num(codes.float())[..., :e]
            return F.pad(codes, (0, e - codes.shape[-1]))

        def mesh(expression: torch.Tensor, jaw: torch.Tensor | None) -> torch.Tensor:
            with torch.no_grad():
                return model(
                    FlameParams(shape=gt["shape"], expression=fit(expression), jaw_pose=jaw)
                ).vertices.float()

        pred_jaw = torch.nan_to_num(pred.jaw_pose.float())
        return ExpressionMeshes(
            true_expression=mesh(gt["expression"], None),
            pred_expression=mesh(pred.expression, None),
            true_expression_jaw=mesh(gt["expression"], gt["jaw_pose"]),
            pred_expression_jaw=mesh(pred.expression, pred_jaw),
        )

    def mean_face(self, clip: PreparedClip) -> ClipPrediction | None:
        """The ground truth with a neutral face (expression zero, jaw closed): the floor every
        expression estimate must beat; None without ground truth."""
        model = self._model_for(clip)
        if model is None:
            return None
        gt = clip.gt
        neutral = torch.zeros_like(gt["expression"])  # the truth's size: comparable code errors
        closed = torch.zeros(clip.num_frames, 3)
        with torch.no_grad():
            vertices = model(
                FlameParams(
                    shape=gt["shape"],
                    expression=torch.zeros(clip.num_frames, model.num_expression),
                    global_pose=gt["global_pose"],
                )
            ).vertices.float()
        return ClipPrediction(
            landmarks68=None,
            landmarks_mp=None,
            vertices=vertices,
            global_pose=gt["global_pose"].float(),
            jaw_pose=closed,
            expression=neutral,
            render=None,
            au_probabilities=None,
            seconds=0.0,
        )


class _References:
    """The reference rows, filled once while the first method's clips are loaded: ``input``
    (the tracked landmarks' and true mesh's temporal metrics) and ``mean-face`` (the neutral
    truth, clips with ground truth only)."""

    def __init__(self, gt: _GroundTruth) -> None:
        self.gt = gt
        self.input = MethodResult(
            name="input",
            kind="reference",
            description="temporal metrics of the tracked input landmarks (and of the "
            "ground-truth mesh of synthetic clips): the reference for the "
            "smoothness columns",
        )
        self.mean_face = MethodResult(
            name="mean-face",
            kind="reference",
            description="the ground-truth identity and head pose with a neutral expression and "
            "closed jaw: the floor of the expression, jaw and vertex errors",
        )
        self.filled = False

    def add(self, clip: PreparedClip, ids: torch.Tensor | None, gt_vertices: torch.Tensor | None):
        """Both rows' series of ``clip`` (the first method's pass only)."""
        series = reference_series(clip, mediapipe_ids=ids, gt_vertices=gt_vertices)
        self.input.clips[clip.name] = ClipResult(
            series=series,
            au_probabilities=None,
            au_labels=clip.au,
            fps=clip.fps,
            frames=int(clip.valid.sum()),
            seconds=0.0,
        )
        pred = self.gt.mean_face(clip)
        if pred is not None:
            series = clip_series(
                pred,
                clip,
                mediapipe_ids=None,
                gt_vertices=gt_vertices,
                expression_meshes=self.gt.expression_meshes(clip, pred),
            )
            self.mean_face.clips[clip.name] = _clip_result(pred, clip, series)

    def rows(self) -> list[MethodResult]:
        """``input``, then ``mean-face`` when a clip had ground truth."""
        return [self.input] + ([self.mean_face] if self.mean_face.clips else [])


def _clip_result(pred: ClipPrediction, clip: PreparedClip, series: dict) -> ClipResult:
    return ClipResult(
        series=series,
        au_probabilities=pred.au_probabilities,
        au_labels=clip.au,
        fps=clip.fps,
        frames=int(clip.valid.sum()),
        seconds=pred.seconds,
    )


def _load_clips(paths: list[Path]):
    """Yield loaded clips with at least one valid frame (others are skipped with a warning)."""
    for path in paths:
        clip = load_clip(path)
        if not bool(clip.valid.any()):
            log.warning("clip %s has no valid frame: skipped", clip.name)
            continue
        yield clip


def _network_rows(
    opts: EvalOptions,
    paths: list[Path],
    gt: _GroundTruth,
    taken: set[str],
    references: _References,
) -> list[MethodResult]:
    """Rows of every checkpoint (and its per-frame variant); fills ``references`` if empty."""
    inference = opts.config.inference
    results: list[MethodResult] = []
    for checkpoint in opts.checkpoints:
        loaded = load_model(checkpoint, device=opts.device, config=opts.config)
        window = network_window(loaded, _requested_window(opts))
        name = method_name(checkpoint, taken)
        taken.add(name)
        description = f"{describe_config(loaded)}; window {window}"
        parameters = sum(p.numel() for p in loaded.model.parameters())
        variants = [(name, False, None)]
        if opts.per_frame and loaded.model.use_temporal:
            variants.append((f"{name}+per-frame", True, None))
        variants += [(f"{name}+per-frame+{spec}", True, spec) for spec in opts.filters]
        rows = {
            n: MethodResult(
                name=n,
                kind="network",
                parameters=parameters,
                description=description
                + ("; evaluated per frame (T=1)" if pf else "")
                + (f", codes smoothed over time by {spec}" if spec else ""),
            )
            for n, pf, spec in variants
        }
        ids = loaded.model.face_model.mediapipe_ids
        ids = None if ids is None else ids.cpu()
        detail = _detail_sources(loaded)
        fill_reference, references.filled = not references.filled, True
        for clip in tqdm(
            _load_clips(paths), total=len(paths), desc=name, unit="clip", disable=not opts.progress
        ):
            gt_vertices = gt.vertices(clip)
            if not rows[name].clips:  # untimed warm-up (allocations, kernel selection)
                first = int(torch.nonzero(clip.valid)[0])
                predict_frames(
                    loaded.model,
                    clip.frames.to(opts.device),
                    clip.valid,
                    window=window,
                    centres=[first],
                )
            for n, per_frame, spec in variants:
                pred = predict_network(
                    loaded,
                    clip,
                    window=window,
                    per_frame=per_frame,
                    batch_size=inference.batch_size,
                    device=opts.device,
                    smooth=parse_filter(spec, fps=clip.fps) if spec else None,
                )
                series = clip_series(
                    pred,
                    clip,
                    mediapipe_ids=ids,
                    gt_vertices=gt_vertices,
                    expression_meshes=gt.expression_meshes(clip, pred),
                )
                if n == name and detail is not None and has_detail_truth(clip):
                    series |= _detail_series(loaded, clip, detail, opts)
                rows[n].clips[clip.name] = _clip_result(pred, clip, series)
            if fill_reference:
                references.add(clip, ids, gt_vertices)
        results += rows.values()
        del loaded
    return results


def _detail_sources(loaded: LoadedModel) -> DetailSources | None:
    """Where a detail-stage checkpoint's coarse codes and AU condition come from; None for a
    checkpoint not trained through the detail stage (its generator is untrained)."""
    if loaded.kind != "seqdeca" or loaded.config.train.stage != "detail":
        return None
    return DetailSources.from_config(loaded.config.train)


def _detail_series(
    loaded: LoadedModel, clip: PreparedClip, sources: DetailSources, opts: EvalOptions
) -> dict[str, torch.Tensor]:
    """(T,) displacement and detail-normal errors (and the AU condition against the truth) of
    a detail-stage checkpoint on a clip with ground-truth detail."""
    model = loaded.model.eval()
    batch = max(1, opts.config.inference.batch_size)
    series, _ = detail_clip_series(
        model, clip, sources=sources, device=opts.device, batch_size=batch
    )
    return series


def _fit_rows(
    opts: EvalOptions, paths: list[Path], gt: _GroundTruth, references: _References
) -> list[MethodResult]:
    """The fit-mode row (face model of ``opts.config``) and, with ``inference.fit.texture``
    extract, the ``fit+extract`` row (photometric metrics of the odd frames rendered with a map
    extracted from the even ones); fills ``references`` if empty."""
    cfg = copy.deepcopy(opts.config)
    cfg.inference.window = _requested_window(opts)
    fit = cfg.inference.fit
    extract = fit.texture == "extract"
    if extract:
        fit.texture = "model"  # the fit row renders the model albedo; the map is its own row
    engine = build_fit_engine(cfg, device=opts.device)
    row = MethodResult(name="fit", kind="fit", description=_fit_description(engine))
    extracted = MethodResult(
        name="fit+extract",
        kind="fit",
        description="the fit row's meshes and lights rendered with a UV texture map extracted "
        "from the EVEN frames only (holes: the model albedo); photometric metrics "
        "of the ODD frames",
    )
    ids = engine.face_model.mediapipe_ids
    ids = None if ids is None else ids.cpu()
    fill_reference, references.filled = not references.filled, True
    threads = torch.get_num_threads()
    if engine.threads:
        torch.set_num_threads(engine.threads)  # as video2mesh: many small operations
    try:
        for clip in tqdm(
            _load_clips(paths), total=len(paths), desc="fit", unit="clip", disable=not opts.progress
        ):
            gt_vertices = gt.vertices(clip)
            start = time.perf_counter()
            pred, renders = predict_fit(engine, clip, extract=extract)
            series = clip_series(
                pred,
                clip,
                mediapipe_ids=ids,
                gt_vertices=gt_vertices,
                expression_meshes=gt.expression_meshes(clip, pred),
            )
            row.clips[clip.name] = _clip_result(pred, clip, series)
            if renders is not None:
                pred = replace(pred, render=renders, seconds=time.perf_counter() - start)
                series = photometric_series(pred, clip)
                extracted.clips[clip.name] = _clip_result(pred, clip, series)
            if fill_reference:
                references.add(clip, ids, gt_vertices)
    finally:
        torch.set_num_threads(threads)
    return [row, extracted] if extract else [row]


def _fit_description(engine: FitEngine) -> str:
    """One line: the fit settings and how the row renders."""
    fit = engine.fit
    settings = (
        f"window {engine.window}, shape_prior={fit.shape_prior:g}, "
        f"expression_prior={fit.expression_prior:g}, jaw_prior={fit.jaw_prior:g}, "
        f"smoothness={fit.smoothness:g}, iterations={fit.iterations}, "
        f"refine_steps={fit.refine_steps}, contour_weight={fit.contour_weight:g}"
    )
    if fit.texture == "mean":
        render = "rendered with the mean albedo under the fixed fit-mode light"
    else:
        render = (
            "rendered with the model albedo of texture coefficients estimated per clip "
            f"(texture_prior={fit.texture_prior:g}) under an SH light estimated per "
            "frame"
        )
    return (
        f"face model '{engine.face_model.name}' fitted to the tracked landmarks as in "
        f"video2mesh ({settings}); {render}"
    )


def _requested_window(opts: EvalOptions) -> int:
    """The window asked for: ``opts.window``, else ``inference.window`` (0 = trained/default)."""
    return int(opts.window if opts.window is not None else opts.config.inference.window)


def _check_options(opts: EvalOptions) -> list[Path]:
    if opts.mode not in ("network", "fit"):
        raise UserError(f"unknown evaluation mode {opts.mode!r}: use network or fit")
    if opts.mode == "network" and not opts.checkpoints:
        raise UserError("nothing to evaluate: give --checkpoint PATH, or --mode fit")
    window = _requested_window(opts)
    if window < 0:
        raise UserError(f"window must be >= 1 frame (0: the trained window), got {window}")
    for spec in opts.filters:
        parse_filter(spec)  # one-line error before any work
    for checkpoint in opts.checkpoints:
        if not Path(checkpoint).is_file():
            raise UserError(f"checkpoint {checkpoint} not found: give a model.pt or deca_model.tar")
    return find_eval_clips(opts.data)


def evaluate(opts: EvalOptions) -> dict:
    """Evaluate every method on every clip and write the report (see the module docstring).

    Returns:
        The ``metrics.json`` content.

    Raises:
        UserError: missing data / no prepared clips / missing or unreadable checkpoint / bad
            options (one line).
    """
    paths = _check_options(opts)
    gt = _GroundTruth(opts.config)
    references = _References(gt)
    taken = set(RESERVED_NAMES)
    results = _network_rows(opts, paths, gt, taken, references)
    if opts.mode == "fit":
        results += _fit_rows(opts, paths, gt, references)
    results += references.rows()
    inference = opts.config.inference
    settings = {
        "data": str(opts.data),
        "mode": opts.mode,
        "per_frame": opts.per_frame,
        "filters": list(opts.filters),
        "window": _requested_window(opts),
        "batch_size": inference.batch_size,
        "device": opts.device,
        "checkpoints": [str(c) for c in opts.checkpoints],
        "clips": len(paths),
    }
    return write_report(
        results, opts.out, settings=settings, tensorboard=opts.tensorboard, plots=opts.plots
    )
