"""Synthetic face clips with ground truth, written in the prepared clip layout.

Each clip renders one random identity (shape and texture coefficients) of the configured face
model over a background, with smooth random trajectories (sums of a few low-frequency sinusoids)
of global pose (yaw/pitch/roll within +-30/20/10 degrees), expression, jaw opening, camera
jitter and SH lighting. The clip folder is the same as a prepared real clip
(``seqdeca.data.prepare``): frames, landmarks, landmarks68, masks, valid, transforms, au,
au_proxy and meta.json (dataset "synthetic"), plus ``gt.npz`` with the per-frame ground truth.

The settings are the ``synthetic`` section of the config (:class:`SyntheticSettings`, the
schema's ``SyntheticConfig``). Its defaults give clean clips rendered at the crop size whose
``landmarks.npy`` (the model's MediaPipe set) and ``landmarks68.npy`` are the exact projections
(valid all true, identity transforms, au all -1, au_proxy (T, 0)). For clips like real data:

* ``landmarks: tracked``: the rendered source frame (``frame_size`` pixels, the face spanning
  ``fill`` of it) is tracked and cropped exactly as data preparation does
  (:mod:`seqdeca.data.synthetic_track`): landmarks, valid (frames MediaPipe misses are invalid,
  short gaps interpolated), transforms, masks and AU proxies come from MediaPipe. ``exact`` with
  a ``frame_size`` crops by the exact landmarks instead.
* ``corruption``: occluders, motion blur, noise, JPEG drops, flicker per frame
  (:mod:`seqdeca.data.synthetic_corrupt`), from a generator of their own.
* ``expression: au``: expression and jaw driven by 27 AU intensity curves
  (:mod:`seqdeca.data.synthetic_au`) plus a residual; ``au.npy`` holds the 12 Aff-Wild2 AUs
  thresholded at 0.5.
* ``background: photo``, ``fast_turns``, ``min_frames`` (:mod:`seqdeca.data.synthetic_scene`).

``gt.npz`` (codes and landmarks always refer to the written crops):

| key | shape |
| --- | --- |
| shape, expression, texture | (T, S), (T, E), (T, K) (constant over time for shape/texture) |
| global_pose, jaw_pose | (T, 3) axis-angle radians |
| cam | (T, 3) weak perspective (s, tx, ty) of the crop |
| light | (T, 9, 3) SH coefficients |
| landmarks, landmarks68 | (T, L, 2), (T, 68, 2) exact projections, crop pixels |
| au_intensity | (T, 27) AU intensities in [0, 1] (``expression: au`` only) |
| tracked | (T,) bool, MediaPipe found the face in the frame (``landmarks: tracked`` only) |
| corrupted, corrupt_* | (T,) per-frame corruption records (with corruption only, see
  :func:`seqdeca.data.synthetic_corrupt.scaled_records`) |

Clip ``k`` of seed ``s`` depends only on ``(s, k)``; folders are written atomically.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.config.schema import Config, SyntheticConfig
from seqdeca.data.synthetic_au import AUMap, affwild2_labels, au_expression_map, au_trajectories
from seqdeca.data.synthetic_corrupt import (
    CORRUPTIONS,
    CorruptionDraws,
    apply_corruptions,
    draw_corruptions,
)
from seqdeca.data.synthetic_layout import DATASET, clip_meta, ground_truth, write_layout
from seqdeca.data.synthetic_scene import clip_length, head_turns, photo_background, photo_pool
from seqdeca.data.synthetic_track import crop_clip
from seqdeca.errors import UserError
from seqdeca.face_model.from_config import face_model_from_config
from seqdeca.face_model.layer import FaceModel, FlameParams
from seqdeca.geometry.camera import ndc_to_pixels, project_weak_perspective
from seqdeca.render.renderer import Renderer

__all__ = [
    "SyntheticSettings",
    "make_synthetic_dataset",
    "sample_clip_codes",
    "smooth_trajectory",
    "write_synthetic_clip",
]

_CORRUPTION_STREAM = 0xC0DE  # mixed into the corruption generator's seed
_CHOICES = {"landmarks": ("exact", "tracked"), "expression": ("smooth", "au"),
            "background": ("noise", "photo")}  # fmt: skip

#: The synthetic settings: the schema's ``synthetic`` section (angles in degrees, codes in
#: unit-variance units; see :class:`seqdeca.config.schema.SyntheticConfig`).
SyntheticSettings = SyntheticConfig


def _mixed_seed(*parts: int) -> int:
    """:func:`seqdeca.data.dataset.mixed_seed` (imported late: the dataset module is heavier)."""
    from seqdeca.data.dataset import mixed_seed as mix

    return mix(*parts)


def smooth_trajectory(
    gen: torch.Generator, frames: int, dims: int, *, fps: float = 25.0, components: int = 3
) -> torch.Tensor:
    """(frames, dims) smooth random curves in [-1, 1]: sums of sinusoids of 0.1-1 Hz.

    Amplitudes are normalised per dimension so that their absolute sum is 1 (hence the range);
    the mean square is then about 0.2.
    """
    t = torch.arange(frames, dtype=torch.float64)[:, None, None] / fps
    freq = 0.1 + 0.9 * torch.rand(1, dims, components, generator=gen, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(1, dims, components, generator=gen, dtype=torch.float64)
    amp = torch.rand(1, dims, components, generator=gen, dtype=torch.float64) + 0.1
    amp = amp / amp.sum(-1, keepdim=True)
    return (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(-1).float()


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


def _light(gen: torch.Generator, frames: int, fps: float) -> torch.Tensor:
    """(T, 9, 3) SH light: tinted ambient plus a moving directional part and small extras."""
    light = torch.zeros(frames, 9, 3)
    tint = 1 + 0.15 * (2 * _rand(gen, 3) - 1)
    light[:, 0] = (2.4 + 0.5 * _rand(gen, 1)) * tint
    direction = smooth_trajectory(gen, frames, 3, fps=fps) * torch.tensor([0.4, 0.3, 0.2])
    light[:, 1:4] = (direction + torch.tensor([0.0, 0.1, 0.35]))[:, :, None] * tint
    light[:, 4:] = 0.08 * (2 * _rand(gen, 1, 5, 1) - 1)
    return light


def _au_expression(model: FaceModel, gen: torch.Generator, settings: SyntheticSettings,
                   frames: int, au_map: AUMap) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """(AU intensities (T, 27), expression (T, E), jaw opening (T, 1)) of ``expression: au``.

    The AU-driven part (expression and jaw) is multiplied by ``au_scale``. The residual is a
    smooth curve per coefficient scaled to an RMS of ``residual_expression``
    (the smooth curves' mean square is about 0.2, hence the factor sqrt(5)).
    """
    au = au_trajectories(gen, frames, fps=settings.fps, events_per_second=settings.au_events)
    expression, jaw = au_map.codes(au)
    expression, jaw = expression * settings.au_scale, jaw * settings.au_scale
    residual = smooth_trajectory(gen, frames, model.num_expression, fps=settings.fps)
    expression = expression + residual * math.sqrt(5) * settings.residual_expression
    return au, expression, jaw.clamp(0, settings.max_jaw)[:, None]


def sample_clip_codes(
    model: FaceModel, gen: torch.Generator, settings: SyntheticSettings, *,
    frames: int | None = None, au_map: AUMap | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Random per-frame codes of one clip (see the module docstring for the keys and shapes).

    ``frames`` overrides ``settings.frames``; ``au_map`` is needed with ``expression: au`` (the
    codes then include ``au_intensity``). Fast turns are drawn after the other codes, so that
    those do not depend on them.
    """
    t = settings.frames if frames is None else frames
    shape = (torch.randn(model.num_shape, generator=gen) * settings.shape_scale).expand(t, -1)
    texture = (torch.randn(model.num_texture, generator=gen) * settings.texture_scale).expand(t, -1)
    extra = {}
    if settings.expression == "au":
        if au_map is None:
            raise ValueError("expression 'au' needs the face model's AU map")
        extra["au_intensity"], expression, jaw = _au_expression(model, gen, settings, t, au_map)
    else:
        expression = smooth_trajectory(gen, t, model.num_expression, fps=settings.fps)
        expression = expression * settings.expression_scale * math.sqrt(3)
    limits = torch.deg2rad(torch.tensor([settings.max_pitch, settings.max_yaw, settings.max_roll]))
    global_pose = smooth_trajectory(gen, t, 3, fps=settings.fps) * limits
    if settings.expression != "au":
        jaw = (smooth_trajectory(gen, t, 1, fps=settings.fps) + 1) / 2 * settings.max_jaw
    jaw_pose = torch.cat([jaw, torch.zeros(t, 2)], dim=-1)
    neutral = model(shape=shape[:1]).vertices[0]
    lo, hi = neutral[:, :2].amin(0), neutral[:, :2].amax(0)
    size_factor = 1 + settings.scale_jitter * (2 * _rand(gen, 1) - 1)
    scale = 2 * settings.fill / float((hi - lo).max()) * size_factor
    jitter = smooth_trajectory(gen, t, 2, fps=settings.fps) * settings.shift_jitter / scale
    cam = torch.cat([scale.expand(t, 1), -(lo + hi) / 2 + jitter], dim=-1)
    light = _light(gen, t, settings.fps)
    if settings.fast_turns > 0:
        turns = head_turns(gen, t, settings.fps, settings.fast_turns, limits, global_pose)
        global_pose = torch.maximum(torch.minimum(global_pose + turns, limits), -limits)
    return {
        "shape": shape.contiguous(), "expression": expression, "global_pose": global_pose,
        "jaw_pose": jaw_pose, "cam": cam, "light": light, "texture": texture.contiguous(),
        **extra,
    }  # fmt: skip


def random_background(gen: torch.Generator, size: int) -> torch.Tensor:
    """(3, size, size) smooth background: a random colour gradient plus low-frequency noise."""
    corners = _rand(gen, 1, 3, 2, 2)
    gradient = torch.nn.functional.interpolate(corners, size=(size, size), mode="bilinear",
                                               align_corners=True)  # fmt: skip
    noise = torch.nn.functional.interpolate(_rand(gen, 1, 3, 6, 6) - 0.5, size=(size, size),
                                            mode="bicubic", align_corners=False)  # fmt: skip
    return (gradient + 0.3 * noise)[0].clamp(0, 1)


def project_landmarks(
    model: FaceModel, codes: dict[str, torch.Tensor], size: int
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Pose the model and project its landmarks to crop pixels.

    Returns:
        MediaPipe landmarks (T, L, 3) (x, y pixels, z = depth in the same pixel scale) or None,
        iBUG-68 landmarks (T, 68, 2) pixels or None, and the vertices (T, V, 3).
    """
    out = model(
        FlameParams(
            shape=codes["shape"],
            expression=codes["expression"],
            global_pose=codes["global_pose"],
            jaw_pose=codes["jaw_pose"],
        )
    )

    def to_pixels(points: torch.Tensor | None) -> torch.Tensor | None:
        if points is None:
            return None
        screen = project_weak_perspective(points, codes["cam"])
        return torch.cat([ndc_to_pixels(screen[..., :2], size), screen[..., 2:] * size / 2], -1)

    lmk68 = to_pixels(out.landmarks68)
    return to_pixels(out.landmarks_mp), None if lmk68 is None else lmk68[..., :2], out.vertices


def _masks(alpha: np.ndarray, landmarks: np.ndarray | None, size: int) -> np.ndarray:
    """(T, H, W) uint8: face = coverage, refined by the MediaPipe region polygons if available."""
    masks = (alpha > 0.5).astype(np.uint8)
    if landmarks is None or landmarks.shape[1] < 468:
        return masks
    try:
        from seqdeca.data.masks import region_masks
    except ImportError:
        return masks
    regions = np.stack([region_masks(points, size) for points in landmarks])
    return np.maximum(masks, regions)


def render_clip(
    model: FaceModel,
    renderer: Renderer,
    codes: dict[str, torch.Tensor],
    background: torch.Tensor,
) -> dict[str, np.ndarray]:
    """Render one clip's codes.

    Returns:
        images (T, H, W, 3) uint8, masks (T, H, W) uint8, landmarks (T, L, 3) float32 crop
        pixels (L = the model's MediaPipe set, 0 if it has none), landmarks68 (T, 68, 2) float32.
    """
    size = renderer.image_size[0]
    t_count = codes["cam"].shape[0]
    with torch.no_grad():
        lmk_mp, lmk68, vertices = project_landmarks(model, codes, size)
        albedo = None
        if model.texture_mean is not None:
            albedo = model.albedo(codes["texture"]).clamp(0, 1)
        out = renderer(vertices, codes["cam"], light=codes["light"], albedo=albedo,
                       background=background.expand(t_count, -1, -1, -1))  # fmt: skip
    images = (out.image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    landmarks = lmk_mp.numpy() if lmk_mp is not None else np.zeros((t_count, 0, 3))
    landmarks68 = lmk68.numpy() if lmk68 is not None else np.full((t_count, 68, 2), np.nan)
    alpha = out.alpha[:, 0].numpy()
    return {
        "images": images.numpy(),
        "masks": _masks(alpha, landmarks if model.mediapipe_set == "mediapipe478" else None, size),
        "landmarks": landmarks.astype(np.float32),
        "landmarks68": landmarks68.astype(np.float32),
    }


def _corrupt(rendered: dict[str, np.ndarray], settings: SyntheticSettings, seed: int
             ) -> CorruptionDraws | None:  # fmt: skip
    """Corrupt ``rendered["images"]`` in place of the clean ones; returns the draws (or None)."""
    rates = settings.corruption
    if not any(getattr(rates, kind) > 0 for kind in CORRUPTIONS):
        return None
    rng = np.random.default_rng(_mixed_seed(seed, rates.seed, _CORRUPTION_STREAM))
    draws = draw_corruptions(rng, len(rendered["images"]), rates, photos=len(photo_pool()))
    rendered["images"], rendered["occluder_boxes"] = apply_corruptions(
        rendered["images"], draws, rendered["landmarks68"], photo_pool()
    )
    return draws


def write_synthetic_clip(
    out_root: Path,
    clip_id: str,
    *,
    model: FaceModel,
    renderer: Renderer,
    seed: int,
    settings: SyntheticSettings,
    cfg: Config,
    au_map: AUMap | None = None,
) -> Path:
    """Render and atomically write ``out_root/synthetic/clip_id`` (skipped if it exists).

    Args:
        out_root: root of the synthetic data.
        clip_id: the clip folder's name.
        model, renderer: the face model and a renderer at the source frame size.
        seed: the clip's seed (the clip depends on nothing else).
        settings: the synthetic settings.
        cfg: reads ``crop``, ``track`` and ``prepare.jpeg_quality``.
        au_map: the model's AU map (needed with ``expression: au``).

    Returns:
        The clip folder.
    """
    final = Path(out_root) / DATASET / clip_id
    if final.is_dir():
        return final
    frames = clip_length(seed, settings.frames, settings.min_frames)
    gen = torch.Generator().manual_seed(_mixed_seed(seed))
    codes = sample_clip_codes(model, gen, settings, frames=frames, au_map=au_map)
    size = renderer.image_size[0]
    background = (photo_background(gen, size) if settings.background == "photo"
                  else random_background(gen, size))  # fmt: skip
    rendered = render_clip(model, renderer, codes, background)
    draws = _corrupt(rendered, settings, seed)
    tracked = settings.landmarks == "tracked"
    arrays = crop_clip(rendered, cfg, tracked=tracked)
    au = np.full((frames, len(AFFWILD2_AU_NAMES)), -1.0, np.float32)
    if "au_intensity" in codes:
        au = affwild2_labels(codes["au_intensity"]).numpy()
    tmp = final.parent / f".{clip_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_layout(tmp, arrays, au, cfg.prepare.jpeg_quality)
        np.savez(tmp / "gt.npz", **ground_truth(codes, rendered, arrays, draws, size, tracked))
        meta = clip_meta(clip_id, model, seed, settings, arrays, size)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_settings(cfg: Config, *, frames: int | None = None,
                     ranges: dict[str, float] | None = None) -> SyntheticSettings:  # fmt: skip
    """``cfg.synthetic`` with ``frames`` and ``ranges`` (other fields) overridden and checked.

    Raises:
        UserError: an unknown field in ``ranges`` or a value outside its choices.
    """
    known = {f.name for f in fields(SyntheticSettings)} - {"frames", "corruption"}
    unknown = sorted(set(ranges or {}) - known)
    if unknown:
        raise UserError(f"unknown synthetic setting(s) {unknown}; known: {sorted(known)}")
    settings = replace(cfg.synthetic, **(ranges or {}))
    if frames is not None:
        settings = replace(settings, frames=int(frames))
    for name, choices in _CHOICES.items():
        if getattr(settings, name) not in choices:
            raise UserError(f"synthetic.{name} must be one of {list(choices)}, "
                            f"got {getattr(settings, name)!r}")  # fmt: skip
    if settings.frames < 1:
        raise UserError(f"synthetic.frames must be >= 1, got {settings.frames}")
    return settings


def make_synthetic_dataset(
    out_root: str | Path, cfg: Config, *, clips: int, frames: int | None = None, seed: int,
    progress: bool = True, ranges: dict[str, float] | None = None, workers: int = 1,
) -> list[Path]:  # fmt: skip
    """Write ``clips`` synthetic clips under ``out_root/synthetic``.

    The settings come from ``cfg.synthetic``; ``frames`` overrides its ``frames`` and ``ranges``
    its other fields (e.g. ``{"max_yaw": 5.0}``, the presets of
    :data:`seqdeca.train.learning_check.SYNTHETIC_PRESETS`). The face model comes from
    ``cfg.face_model``, the renderer backend and UV size from ``cfg.render``, the crop from
    ``cfg.crop``, tracking from ``cfg.track`` and the JPEG quality from
    ``cfg.prepare.jpeg_quality``. Clip k is ``synth_{k:05d}``, seeded by ``(seed, k)``.
    ``workers`` > 1 writes clips in that many processes of one thread each (the clips do not
    depend on it beyond float rounding: a clip is always rendered by one thread there).

    Returns:
        The clip folders, in order.
    """
    import importlib.util

    from tqdm import tqdm

    settings = resolve_settings(cfg, frames=frames, ranges=ranges)
    if settings.landmarks == "tracked" and importlib.util.find_spec("mediapipe") is None:
        raise UserError(
            "synthetic.landmarks=tracked needs mediapipe: pip install mediapipe==0.10.14"
        )
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    (Path(out_root) / DATASET).mkdir(parents=True, exist_ok=True)
    if workers > 1 and clips > 1:
        return _write_in_processes(Path(out_root), cfg, settings, clips=clips, seed=seed,
                                   workers=workers, progress=progress)  # fmt: skip
    writer = _ClipWriter.build(cfg, settings)
    return [writer.write(Path(out_root), k, seed)
            for k in tqdm(range(clips), desc="synthetic clips", unit="clip", disable=not progress)]


@dataclass(frozen=True)
class _ClipWriter:
    """What writing clips needs besides the clip's name and seed, built once per process."""

    cfg: Config
    settings: SyntheticSettings
    model: FaceModel
    renderer: Renderer
    au_map: AUMap | None

    @classmethod
    def build(cls, cfg: Config, settings: SyntheticSettings) -> _ClipWriter:
        model = face_model_from_config(cfg.face_model)
        if model.verts_uvs is None:
            raise UserError(
                f"face model '{model.name}' has no UV layout: set face_model.head_template"
            )
        renderer = Renderer(
            faces=model.faces, verts_uvs=model.verts_uvs, faces_uvs=model.faces_uvs,
            image_size=settings.frame_size or cfg.crop.size, uv_size=cfg.render.uv_size,
            backend=cfg.render.backend,
        )  # fmt: skip
        au_map = au_expression_map(model) if settings.expression == "au" else None
        return cls(cfg=cfg, settings=settings, model=model, renderer=renderer, au_map=au_map)

    def write(self, out_root: Path, k: int, seed: int) -> Path:
        """Clip ``k`` of ``seed`` (``synth_{k:05d}``)."""
        return write_synthetic_clip(
            out_root, f"synth_{k:05d}", model=self.model, renderer=self.renderer,
            seed=_mixed_seed(seed, k), settings=self.settings, cfg=self.cfg, au_map=self.au_map,
        )  # fmt: skip


# The writer of a worker process of _write_in_processes.
_WORKER: dict[str, _ClipWriter] = {}


def _start_worker(cfg: Config, settings: SyntheticSettings) -> None:
    torch.set_num_threads(1)
    _WORKER["writer"] = _ClipWriter.build(cfg, settings)


def _write_one(out_root: Path, k: int, seed: int) -> Path:
    return _WORKER["writer"].write(out_root, k, seed)


def _write_in_processes(out_root: Path, cfg: Config, settings: SyntheticSettings, *, clips: int,
                        seed: int, workers: int, progress: bool) -> list[Path]:  # fmt: skip
    """:func:`make_synthetic_dataset`'s clips written by ``workers`` spawned processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    with ProcessPoolExecutor(max_workers=min(workers, clips), mp_context=context,
                             initializer=_start_worker, initargs=(cfg, settings)) as pool:  # fmt: skip
        futures = [pool.submit(_write_one, out_root, k, seed) for k in range(clips)]
        try:
            for future in tqdm(futures, desc="synthetic clips", unit="clip",
                               disable=not progress):  # fmt: skip
                future.result()  # raises a worker's error here
        except BaseException:
            pool.shutdown(cancel_futures=True)  # do not write the remaining clips first
            raise
    return [f.result() for f in futures]
