"""Synthetic face clips with ground truth, written in the prepared clip layout.

Each clip renders one random identity (shape and texture coefficients) of the configured face
model over a random smooth background, with smooth random trajectories (sums of a few
low-frequency sinusoids) of global pose (yaw/pitch/roll within +-30/20/10 degrees), expression,
jaw opening, camera jitter and SH lighting. The clip folder is the same as a prepared real clip
(``seqdeca.data.prepare``): frames, landmarks (the model's MediaPipe set projected to crop
pixels), landmarks68, masks, valid (all true), identity transforms, au (all -1), au_proxy (T, 0)
and meta.json (dataset "synthetic"), plus ``gt.npz`` with the per-frame codes:

| key | shape |
| --- | --- |
| shape, expression, texture | (T, S), (T, E), (T, K) (constant over time for shape/texture) |
| global_pose, jaw_pose | (T, 3) axis-angle radians |
| cam | (T, 3) weak perspective (s, tx, ty) |
| light | (T, 9, 3) SH coefficients |
| landmarks, landmarks68 | (T, L, 2), (T, 68, 2) crop pixels |

Clip ``k`` of seed ``s`` depends only on ``(s, k)``; folders are written atomically.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import seqdeca
from seqdeca.config.schema import Config
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

DATASET = "synthetic"


@dataclass(frozen=True)
class SyntheticSettings:
    """Ranges of the random clips (angles in degrees, codes in unit-variance units)."""

    frames: int = 50
    fps: float = 25.0
    max_yaw: float = 30.0
    max_pitch: float = 20.0
    max_roll: float = 10.0
    expression_scale: float = 1.5
    shape_scale: float = 1.0
    texture_scale: float = 1.0
    max_jaw: float = 0.3  # radians of mouth opening
    fill: float = 0.8  # fraction of the crop the neutral face spans
    scale_jitter: float = 0.05  # per-clip relative change of that size, +-
    shift_jitter: float = 0.04  # per-frame face offset, +- fraction of the crop's half side
    image_size: int = 224
    jpeg_quality: int = 95


def smooth_trajectory(
    gen: torch.Generator, frames: int, dims: int, *, fps: float = 25.0, components: int = 3
) -> torch.Tensor:
    """(frames, dims) smooth random curves in [-1, 1]: sums of sinusoids of 0.1-1 Hz.

    Amplitudes are normalised per dimension so that their absolute sum is 1 (hence the range).
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


def sample_clip_codes(
    model: FaceModel, gen: torch.Generator, settings: SyntheticSettings
) -> dict[str, torch.Tensor]:
    """Random per-frame codes of one clip (see the module docstring for the keys and shapes)."""
    t = settings.frames
    shape = (torch.randn(model.num_shape, generator=gen) * settings.shape_scale).expand(t, -1)
    texture = (torch.randn(model.num_texture, generator=gen) * settings.texture_scale).expand(t, -1)
    expression = smooth_trajectory(gen, t, model.num_expression, fps=settings.fps)
    expression = expression * settings.expression_scale * math.sqrt(3)  # about unit variance
    limits = torch.tensor([settings.max_pitch, settings.max_yaw, settings.max_roll])
    global_pose = smooth_trajectory(gen, t, 3, fps=settings.fps) * torch.deg2rad(limits)
    jaw = (smooth_trajectory(gen, t, 1, fps=settings.fps) + 1) / 2 * settings.max_jaw
    jaw_pose = torch.cat([jaw, torch.zeros(t, 2)], dim=-1)
    neutral = model(shape=shape[:1]).vertices[0]
    lo, hi = neutral[:, :2].amin(0), neutral[:, :2].amax(0)
    size_factor = 1 + settings.scale_jitter * (2 * _rand(gen, 1) - 1)
    scale = 2 * settings.fill / float((hi - lo).max()) * size_factor
    jitter = smooth_trajectory(gen, t, 2, fps=settings.fps) * settings.shift_jitter / scale
    cam = torch.cat([scale.expand(t, 1), -(lo + hi) / 2 + jitter], dim=-1)
    return {
        "shape": shape.contiguous(), "expression": expression, "global_pose": global_pose,
        "jaw_pose": jaw_pose, "cam": cam, "light": _light(gen, t, settings.fps),
        "texture": texture.contiguous(),
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


def _write_layout(folder: Path, rendered: dict[str, np.ndarray], settings: SyntheticSettings
                  ) -> None:  # fmt: skip
    (folder / "frames").mkdir(parents=True)
    (folder / "masks").mkdir()
    for t, image in enumerate(rendered["images"]):
        Image.fromarray(image).save(folder / "frames" / f"{t:06d}.jpg",
                                    quality=settings.jpeg_quality)  # fmt: skip
        Image.fromarray(rendered["masks"][t]).save(folder / "masks" / f"{t:06d}.png")
    t_count = len(rendered["images"])
    np.save(folder / "landmarks.npy", rendered["landmarks"])
    np.save(folder / "landmarks68.npy", rendered["landmarks68"])
    np.save(folder / "valid.npy", np.ones(t_count, dtype=bool))
    np.save(folder / "transforms.npy", np.repeat(np.eye(3, dtype=np.float32)[None], t_count, 0))
    np.save(folder / "au.npy", np.full((t_count, 12), -1.0, np.float32))
    np.save(folder / "au_proxy.npy", np.zeros((t_count, 0), np.float32))


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


def write_synthetic_clip(
    out_root: Path,
    clip_id: str,
    *,
    model: FaceModel,
    renderer: Renderer,
    seed: int,
    settings: SyntheticSettings,
) -> Path:
    """Render and atomically write ``out_root/synthetic/clip_id`` (skipped if it exists).

    Returns:
        The clip folder.
    """
    from seqdeca.data.dataset import mixed_seed

    final = Path(out_root) / DATASET / clip_id
    if final.is_dir():
        return final
    gen = torch.Generator().manual_seed(mixed_seed(seed))
    codes = sample_clip_codes(model, gen, settings)
    rendered = render_clip(model, renderer, codes, random_background(gen, settings.image_size))
    tmp = final.parent / f".{clip_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_layout(tmp, rendered, settings)
        gt = {k: v.numpy().astype(np.float32) for k, v in codes.items()}
        gt["landmarks"] = rendered["landmarks"][..., :2]
        gt["landmarks68"] = rendered["landmarks68"]
        np.savez(tmp / "gt.npz", **gt)
        (tmp / "meta.json").write_text(json.dumps(_meta(clip_id, model, seed, settings), indent=1))
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _meta(clip_id: str, model: FaceModel, seed: int, settings: SyntheticSettings) -> dict:
    ids = None if model.mediapipe_ids is None else model.mediapipe_ids.tolist()
    return {
        "dataset": DATASET, "clip_id": clip_id, "subject": clip_id, "emotion": None,
        "level": None, "view": "front", "fps": settings.fps, "num_frames": settings.frames,
        "source": f"synthetic:{model.name}", "source_size": [settings.image_size] * 2,
        "crop": {"size": settings.image_size}, "seqdeca_version": seqdeca.__version__,
        "au_proxy_names": [],
        "counts": {"valid_frames": settings.frames, "interpolated_frames": 0},
        "seed": seed, "face_model": model.name, "landmark_ids": ids,
    }  # fmt: skip


def make_synthetic_dataset(
    out_root: str | Path, cfg: Config, *, clips: int, frames: int, seed: int,
    progress: bool = True, ranges: dict[str, float] | None = None,
) -> list[Path]:  # fmt: skip
    """Write ``clips`` synthetic clips of ``frames`` frames under ``out_root/synthetic``.

    The face model comes from ``cfg.face_model``, the renderer backend and UV size from
    ``cfg.render``, the crop size from ``cfg.crop.size`` and the JPEG quality from
    ``cfg.prepare.jpeg_quality``. Clip k is ``synth_{k:05d}``, seeded by ``(seed, k)``.
    ``ranges`` overrides other :class:`SyntheticSettings` fields (e.g. ``{"max_yaw": 5.0}``).

    Returns:
        The clip folders, in order.
    """
    from tqdm import tqdm

    from seqdeca.data.dataset import mixed_seed

    model = face_model_from_config(cfg.face_model)
    if model.verts_uvs is None:
        raise UserError(f"face model '{model.name}' has no UV layout: set face_model.head_template")
    renderer = Renderer(
        faces=model.faces, verts_uvs=model.verts_uvs, faces_uvs=model.faces_uvs,
        image_size=cfg.crop.size, uv_size=cfg.render.uv_size, backend=cfg.render.backend,
    )  # fmt: skip
    known = {f.name for f in fields(SyntheticSettings)} - {"frames", "image_size", "jpeg_quality"}
    unknown = sorted(set(ranges or {}) - known)
    if unknown:
        raise UserError(f"unknown synthetic setting(s) {unknown}; known: {sorted(known)}")
    settings = SyntheticSettings(frames=frames, image_size=cfg.crop.size,
                                 jpeg_quality=cfg.prepare.jpeg_quality, **(ranges or {}))  # fmt: skip
    (Path(out_root) / DATASET).mkdir(parents=True, exist_ok=True)
    paths = []
    for k in tqdm(range(clips), desc="synthetic clips", unit="clip", disable=not progress):
        paths.append(write_synthetic_clip(
            Path(out_root), f"synth_{k:05d}", model=model, renderer=renderer,
            seed=mixed_seed(seed, k), settings=settings,
        ))  # fmt: skip
    return paths
