"""Whole prepared clips for evaluation (one clip in memory at a time; clips are short).

The prepared layout is the one of :mod:`seqdeca.prep.prepare` and :mod:`seqdeca.data.synthetic`:
``frames/NNNNNN.jpg`` crops, ``masks/NNNNNN.png`` (0 background, 1 face, 2 eyes/brows/mouth),
``landmarks.npy`` (T, 478, 3) crop pixels, ``landmarks68.npy`` (T, 68, 2), ``valid.npy`` (T,),
``au.npy`` (T, 12) Aff-Wild2 labels (-1 unknown), ``meta.json`` and, for synthetic clips,
``gt.npz`` with the per-frame codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seqdeca.data.dataset import find_clips
from seqdeca.errors import UserError

__all__ = ["DEFAULT_FPS", "PreparedClip", "find_eval_clips", "load_clip"]

DEFAULT_FPS = 25.0  # when meta.json has no frame rate


@dataclass
class PreparedClip:
    """One prepared clip, fully loaded.

    Attributes:
        path: the clip folder.
        name: ``<dataset>/<clip_id>`` (unique within an evaluation).
        frames: (T, 3, S, S) RGB crops in [0, 1].
        masks: (T, S, S) uint8 classes (0 background, 1 face, 2 eyes/brows/mouth).
        landmarks: (T, 478, 3) tracked MediaPipe points, crop pixels (NaN where invalid).
        landmarks68: (T, 68, 2) iBUG-68 points, crop pixels.
        valid: (T,) bool, frames with a tracked face.
        au: (T, 12) Aff-Wild2 AU labels, 1 / 0 / -1 unknown.
        fps: frames per second.
        gt: synthetic ground truth (``gt.npz`` arrays as float32 tensors) or None.
        meta: the parsed ``meta.json``.
    """

    path: Path
    name: str
    frames: torch.Tensor
    masks: torch.Tensor
    landmarks: torch.Tensor
    landmarks68: torch.Tensor
    valid: torch.Tensor
    au: torch.Tensor
    fps: float
    gt: dict[str, torch.Tensor] | None
    meta: dict

    @property
    def num_frames(self) -> int:
        return int(self.valid.shape[0])

    @property
    def size(self) -> int:
        """Crop size S in pixels."""
        return int(self.frames.shape[-1])


def find_eval_clips(root: str | Path) -> list[Path]:
    """Prepared clip folders under ``root`` (see :func:`seqdeca.data.dataset.find_clips`).

    Raises:
        UserError: ``root`` is not a folder or holds no prepared clip.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} not found: give a prepared dataset folder (--data)")
    clips = find_clips(root)
    if not clips:
        raise UserError(
            f"no prepared clips under {root}: run tools/prepare_data.py or "
            "tools/make_synthetic_data.py first"
        )
    return clips


def _array(folder: Path, name: str) -> np.ndarray:
    path = folder / name
    if not path.is_file():
        raise UserError(f"prepared clip {folder} lacks {name}: prepare it again")
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}): prepare the clip again") from exc


def _read_images(folder: Path, t_count: int) -> tuple[torch.Tensor, torch.Tensor]:
    frames, masks = [], []
    for t in range(t_count):
        frame, mask = folder / "frames" / f"{t:06d}.jpg", folder / "masks" / f"{t:06d}.png"
        try:
            with Image.open(frame) as im:
                frames.append(np.asarray(im.convert("RGB")))
            with Image.open(mask) as im:
                masks.append(np.asarray(im.convert("L")))
        except OSError as exc:
            raise UserError(f"cannot read frame {t} of {folder} ({exc}): prepare it again") from exc
    images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    return images, torch.from_numpy(np.stack(masks))


def load_clip(folder: str | Path) -> PreparedClip:
    """Read one prepared clip folder.

    Raises:
        UserError: a file is missing or unreadable.
    """
    folder = Path(folder)
    valid = _array(folder, "valid.npy").astype(bool)
    t_count = len(valid)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    fps = meta.get("fps")
    fps = float(fps) if isinstance(fps, (int, float)) and math.isfinite(fps) else DEFAULT_FPS
    au_path = folder / "au.npy"
    au = np.load(au_path) if au_path.is_file() else np.full((t_count, 12), -1.0, np.float32)
    gt = None
    if (folder / "gt.npz").is_file():
        with np.load(folder / "gt.npz") as data:
            gt = {k: torch.from_numpy(data[k].astype(np.float32)) for k in data.files}
    frames, masks = _read_images(folder, t_count)
    return PreparedClip(
        path=folder,
        name=f"{meta.get('dataset') or folder.parent.name}/{meta.get('clip_id') or folder.name}",
        frames=frames,
        masks=masks,
        landmarks=torch.from_numpy(_array(folder, "landmarks.npy").astype(np.float32)),
        landmarks68=torch.from_numpy(_array(folder, "landmarks68.npy").astype(np.float32)),
        valid=torch.from_numpy(valid),
        au=torch.from_numpy(np.asarray(au, dtype=np.float32)),
        fps=fps,
        gt=gt,
        meta=meta,
    )
