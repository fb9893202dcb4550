"""Writing a synthetic clip folder: the prepared layout, ``gt.npz`` and ``meta.json``.

Used by :func:`seqdeca.data.synthetic.write_synthetic_clip`; see :mod:`seqdeca.data.synthetic`
for the layout and the ``gt.npz`` keys.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import seqdeca
from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.config.schema import SyntheticConfig
from seqdeca.data.synthetic_corrupt import CorruptionDraws, scaled_records
from seqdeca.data.synthetic_track import ClipArrays, cam_to_crop, landmarks_to_crop
from seqdeca.face_model.layer import FaceModel

__all__ = ["clip_meta", "ground_truth", "write_layout"]

DATASET = "synthetic"


def write_layout(folder: Path, arrays: ClipArrays, au: np.ndarray, jpeg_quality: int) -> None:
    """Write frames, masks and the per-frame ``.npy`` files of a clip into ``folder``."""
    (folder / "frames").mkdir(parents=True)
    (folder / "masks").mkdir()
    for t, image in enumerate(arrays.images):
        Image.fromarray(image).save(folder / "frames" / f"{t:06d}.jpg", quality=jpeg_quality)
        Image.fromarray(arrays.masks[t]).save(folder / "masks" / f"{t:06d}.png")
    np.save(folder / "landmarks.npy", arrays.landmarks)
    np.save(folder / "landmarks68.npy", arrays.landmarks68)
    np.save(folder / "valid.npy", arrays.valid)
    np.save(folder / "transforms.npy", arrays.transforms)
    np.save(folder / "au.npy", au)
    np.save(folder / "au_proxy.npy", arrays.au_proxy)


def ground_truth(
    codes: dict[str, torch.Tensor],
    rendered: dict[str, np.ndarray],
    arrays: ClipArrays,
    draws: CorruptionDraws | None,
    frame_size: int,
    tracked: bool,
) -> dict[str, np.ndarray]:
    """gt.npz arrays: codes, exact landmarks and corruption records, all for the crops."""
    gt = {k: v.numpy().astype(np.float32) for k, v in codes.items()}
    landmarks, landmarks68 = rendered["landmarks"][..., :2], rendered["landmarks68"]
    if arrays.crops is not None:
        size = arrays.images.shape[1]
        gt["cam"] = cam_to_crop(gt["cam"], arrays.crops, frame_size, size)
        landmarks = landmarks_to_crop(landmarks, arrays.crops)
        landmarks68 = landmarks_to_crop(landmarks68, arrays.crops)
    gt["landmarks"], gt["landmarks68"] = landmarks, landmarks68
    if tracked:
        gt["tracked"] = arrays.found
    if draws is not None:
        gt.update(
            scaled_records(draws, rendered["occluder_boxes"], rendered["landmarks68"], arrays.crops)
        )
    return gt


def clip_meta(
    clip_id: str,
    model: FaceModel,
    seed: int,
    settings: SyntheticConfig,
    arrays: ClipArrays,
    frame_size: int,
) -> dict:
    """The clip's meta.json (prepared-clip keys plus the seed, face model and settings)."""
    from seqdeca.prep.au_proxy import AU_PROXY_NAMES

    ids = None if model.mediapipe_ids is None else model.mediapipe_ids.tolist()
    t_count, size = len(arrays.images), arrays.images.shape[1]
    return {
        "dataset": DATASET,
        "clip_id": clip_id,
        "subject": clip_id,
        "emotion": None,
        "level": None,
        "view": "front",
        "fps": settings.fps,
        "num_frames": t_count,
        "source": f"synthetic:{model.name}",
        "source_size": [frame_size] * 2,
        "crop": {"size": size},
        "seqdeca_version": seqdeca.__version__,
        "au_proxy_names": list(AU_PROXY_NAMES) if arrays.au_proxy.shape[1] else [],
        "au_names": list(AFFWILD2_AU_NAMES),
        "has_au_labels": settings.expression == "au",
        "counts": {
            "valid_frames": int(arrays.valid.sum()),
            "interpolated_frames": int(arrays.interpolated.sum()),
            "tracked_frames": int(arrays.found.sum()),
        },
        "seed": seed,
        "face_model": model.name,
        "landmark_ids": ids,
        "synthetic": _settings_record(settings),
    }


def _settings_record(settings: SyntheticConfig) -> dict:
    """The settings as meta.json records them; ``detail`` only when on (so clips without
    detail keep the meta.json of the clips written before it existed)."""
    record = asdict(settings)
    if settings.detail.scale <= 0:
        del record["detail"]
    return record
