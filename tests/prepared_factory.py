"""Tiny prepared clip folders in the exact prepared layout, for data-pipeline tests.

``make_prepared_clip`` writes random frames, landmarks (a jittered frontal face: the bundled
model's template landmarks when ``template`` is given, else random points), masks, a valid
pattern with gaps, au.npy with -1s and an empty or small au_proxy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 224


def template_landmarks(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(478, 3) frontal MediaPipe landmarks of the bundled model in crop pixels, and (68, 2)."""
    from seqdeca.face_model import load_default_assets
    from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE

    v = load_default_assets().v_template.astype(np.float64)
    span = (v[:, :2].max(0) - v[:, :2].min(0)).max()
    centre = (v[:, :2].max(0) + v[:, :2].min(0)) / 2
    xy = (v[:, :2] - centre) / span * 0.7 * size
    points = np.stack([size / 2 + xy[:, 0], size / 2 - xy[:, 1], -v[:, 2] / span * size], -1)
    return points.astype(np.float32), points[IBUG68_FROM_MEDIAPIPE, :2].astype(np.float32)


def make_prepared_clip(
    root: Path,
    clip_id: str,
    valid: list[bool] | np.ndarray,
    *,
    dataset: str = "videos",
    seed: int = 0,
    au_proxy_width: int = 0,
    with_au: bool = False,
) -> Path:
    """Write ``root/dataset/clip_id`` with len(valid) frames; returns the clip folder.

    Frame t's image encodes t in its mean brightness (pixel value ~ 10 + 20 * (t % 10)), so a
    test can check which frame was read.
    """
    rng = np.random.default_rng(seed)
    valid = np.asarray(valid, dtype=bool)
    t_count = len(valid)
    folder = root / dataset / clip_id
    (folder / "frames").mkdir(parents=True)
    (folder / "masks").mkdir()
    lmk, lmk68 = template_landmarks()
    landmarks = np.repeat(lmk[None], t_count, 0) + rng.normal(0, 0.5, (t_count, 478, 3))
    landmarks = landmarks.astype(np.float32)
    landmarks[~valid] = np.nan
    landmarks68 = np.repeat(lmk68[None], t_count, 0).astype(np.float32)
    landmarks68[~valid] = np.nan
    for t in range(t_count):
        noise = rng.integers(0, 8, (SIZE, SIZE, 3))
        image = np.clip(10 + 20 * (t % 10) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "frames" / f"{t:06d}.jpg", quality=95)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        if valid[t]:
            mask[60:170, 60:170] = 1
            mask[90:110, 80:140] = 2
        Image.fromarray(mask).save(folder / "masks" / f"{t:06d}.png")
    np.save(folder / "landmarks.npy", landmarks)
    np.save(folder / "landmarks68.npy", landmarks68)
    np.save(folder / "valid.npy", valid)
    np.save(folder / "transforms.npy", np.repeat(np.eye(3, dtype=np.float32)[None], t_count, 0))
    au = np.full((t_count, 12), -1.0, np.float32)
    if with_au:
        au[valid] = rng.integers(0, 2, (int(valid.sum()), 12))
    np.save(folder / "au.npy", au)
    proxy = rng.uniform(0, 1, (t_count, au_proxy_width)).astype(np.float32)
    proxy[~valid] = np.nan
    np.save(folder / "au_proxy.npy", proxy)
    meta = {
        "dataset": dataset,
        "clip_id": clip_id,
        "fps": 25.0,
        "num_frames": t_count,
        "au_proxy_names": [f"p{k}" for k in range(au_proxy_width)],
        "counts": {"valid_frames": int(valid.sum()), "interpolated_frames": 0},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder
