"""Per-frame corruptions of synthetic clips, drawn apart from the clean clip and recorded.

Five kinds, each with its own rate (``synthetic.corruption``, :class:`SyntheticCorruptionConfig`:
the expected share of frames it affects) and drawn from the corruption generator alone, so the
clean draws of a clip (identity, motion, light, background) never depend on them. A corruption
comes in events of a few frames (an occluder stays 3-20 frames, blur 1-4, noise and JPEG 2-10,
flicker 1-2) with the same parameters throughout; events start with a per-frame probability
``-log(1 - rate) / mean length``, so that about ``rate`` of the frames are covered.

| kind | what | parameters |
| --- | --- | --- |
| occluder | a hand-sized ellipse (flat skin-like or random colour, or a photo texture) or a textured box over the mouth, an eye, both eyes or the nose; placed relative to the face's iBUG-68 landmarks, so it moves with the face | half sizes 0.15-0.45 x 0.1-0.35 face widths (one in five 0.5-0.8 x 0.4-0.6), offset +-0.1 |
| blur | motion blur: a line kernel in a random direction | length 0.03-0.12 face widths (one in seven 0.2-0.4) |
| noise | additive Gaussian noise | sigma 4-16 (8-bit levels) |
| jpeg | the frame is JPEG-compressed at a low quality | quality 8-30 |
| flicker | brightness gain | x 0.55-0.8 or x 1.25-1.6 |

They are applied in that order to the rendered source frame, before tracking (as in a real
video); "face width" is the width of the exact iBUG-68 landmarks' box. The occluder's pixels are
exactly :func:`occluder_mask` of its recorded box (hard edges), every other pixel is untouched.
MediaPipe keeps tracking through the usual sizes (it guesses the hidden points); the large
occluders over the eyes or nose and the heavy blur make it lose the face, as on real video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from seqdeca.config.schema import SyntheticCorruptionConfig

__all__ = [
    "CORRUPTIONS",
    "REALISTIC_MIX",
    "CorruptionDraws",
    "apply_corruptions",
    "draw_corruptions",
    "occluder_boxes",
    "occluder_mask",
    "scaled_records",
]

CORRUPTIONS: tuple[str, ...] = ("occluder", "blur", "noise", "jpeg", "flicker")
#: ``--corrupt``: about one frame in four has at least one corruption (1 - 0.92*0.93*0.95^2*0.96).
REALISTIC_MIX: dict[str, float] = {
    "occluder": 0.08,
    "blur": 0.07,
    "noise": 0.05,
    "jpeg": 0.05,
    "flicker": 0.04,
}
_EVENT_FRAMES = {
    "occluder": (3, 20),
    "blur": (1, 4),
    "noise": (2, 10),
    "jpeg": (2, 10),
    "flicker": (1, 2),
}
# Occluder kinds and targets (iBUG-68 point ranges whose mean is the occluder's centre).
FLAT_ELLIPSE, TEXTURED_ELLIPSE, TEXTURED_BOX = 1, 2, 3
_TARGETS = (range(48, 68), range(36, 42), range(42, 48), range(27, 36), range(36, 48))
# Half sizes (width, height) in face widths: usual and large ranges, share of large ones.
_OCCLUDER_SIZE, _OCCLUDER_LARGE = ([0.15, 0.1], [0.45, 0.35]), ([0.5, 0.4], [0.8, 0.6])
_LARGE_OCCLUDER = 0.2
_BLUR, _BLUR_HEAVY, _HEAVY_BLUR = (0.03, 0.12), (0.2, 0.4), 0.15  # lengths, face widths
_SKIN = np.array([[224, 172, 140], [198, 134, 100], [141, 85, 60], [90, 56, 40]], np.float64)


@dataclass(frozen=True)
class CorruptionDraws:
    """Corruption parameters of the T frames of one clip ("none" values where off).

    Attributes:
        occluder: (T,) int8 kind: 0 none, 1 flat ellipse, 2 textured ellipse, 3 textured box.
        target: (T,) int8 occluded part: 0 mouth, 1 image-left eye, 2 image-right eye, 3 nose,
            4 both eyes.
        size: (T, 2) half width, half height, in face widths.
        offset: (T, 2) centre offset from the target, in face widths.
        colour: (T, 3) flat colour, 0-255.
        texture: (T, 3) photo index, then the patch's relative x, y in the photo, [0, 1].
        blur: (T, 2) blur length in face widths (0 = none) and direction, radians.
        noise: (T,) noise sigma, 8-bit levels (0 = none).
        noise_seed: (T,) int64 seed of each frame's noise.
        jpeg: (T,) JPEG quality (0 = none).
        brightness: (T,) gain (1 = none).
    """

    occluder: np.ndarray
    target: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    colour: np.ndarray
    texture: np.ndarray
    blur: np.ndarray
    noise: np.ndarray
    noise_seed: np.ndarray
    jpeg: np.ndarray
    brightness: np.ndarray

    def active(self) -> dict[str, np.ndarray]:
        """{kind: (T,) bool} frames each kind of corruption affects."""
        return {
            "occluder": self.occluder > 0,
            "blur": self.blur[:, 0] > 0,
            "noise": self.noise > 0,
            "jpeg": self.jpeg > 0,
            "flicker": self.brightness != 1.0,
        }

    def corrupted(self) -> np.ndarray:
        """(T,) bool: any corruption."""
        return np.logical_or.reduce(list(self.active().values()))


def _events(
    rng: np.random.Generator, frames: int, rate: float, lengths: tuple[int, int]
) -> list[tuple[int, int]]:
    """(start, stop) frame ranges of one kind's events covering about ``rate`` of the frames."""
    if rate <= 0:
        return []
    p = -math.log(max(1e-9, 1 - min(rate, 0.99))) / ((lengths[0] + lengths[1]) / 2)
    # Events may begin before the clip so that the first frames are covered like the others.
    starts = np.flatnonzero(rng.random(frames + lengths[1]) < p) - lengths[1]
    stops = starts + rng.integers(lengths[0], lengths[1] + 1, size=len(starts))
    return [(max(0, a), min(frames, b)) for a, b in zip(starts, stops) if b > 0]


def _empty(frames: int) -> CorruptionDraws:
    z = np.zeros(frames)
    return CorruptionDraws(
        occluder=z.astype(np.int8),
        target=z.astype(np.int8),
        size=np.zeros((frames, 2)),
        offset=np.zeros((frames, 2)),
        colour=np.zeros((frames, 3)),
        texture=np.zeros((frames, 3)),
        blur=np.zeros((frames, 2)),
        noise=z.copy(),
        noise_seed=z.astype(np.int64),
        jpeg=z.copy(),
        brightness=np.ones(frames),
    )


def draw_corruptions(
    rng: np.random.Generator, frames: int, rates: SyntheticCorruptionConfig, *, photos: int = 1
) -> CorruptionDraws:
    """Draw the corruptions of one clip of ``frames`` frames (no image needed).

    Args:
        rng: the clip's corruption generator.
        frames: T.
        rates: share of frames per kind (``rates.occluder`` ... ``rates.flicker``).
        photos: number of texture photographs to choose from.
    """
    d = {f.name: getattr(_empty(frames), f.name).copy() for f in fields(CorruptionDraws)}
    for a, b in _events(rng, frames, rates.occluder, _EVENT_FRAMES["occluder"]):
        kind = rng.choice([FLAT_ELLIPSE, TEXTURED_ELLIPSE, TEXTURED_BOX], p=[0.5, 0.3, 0.2])
        d["occluder"][a:b], d["target"][a:b] = kind, rng.integers(len(_TARGETS))
        large = rng.random() < _LARGE_OCCLUDER  # a hand over most of the face
        d["size"][a:b] = rng.uniform(*(_OCCLUDER_LARGE if large else _OCCLUDER_SIZE))
        d["offset"][a:b] = rng.uniform(-0.1, 0.1, size=2)
        skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.85, 1.1)
        d["colour"][a:b] = skin if rng.random() < 0.7 else rng.uniform(0, 255, size=3)
        d["texture"][a:b] = [rng.integers(photos), rng.random(), rng.random()]
    for a, b in _events(rng, frames, rates.blur, _EVENT_FRAMES["blur"]):
        length = rng.uniform(*(_BLUR_HEAVY if rng.random() < _HEAVY_BLUR else _BLUR))
        d["blur"][a:b] = [length, rng.uniform(0, math.pi)]
    for a, b in _events(rng, frames, rates.noise, _EVENT_FRAMES["noise"]):
        d["noise"][a:b] = rng.uniform(4, 16)
        d["noise_seed"][a:b] = rng.integers(2**62, size=b - a)
    for a, b in _events(rng, frames, rates.jpeg, _EVENT_FRAMES["jpeg"]):
        d["jpeg"][a:b] = rng.integers(8, 31)
    for a, b in _events(rng, frames, rates.flicker, _EVENT_FRAMES["flicker"]):
        d["brightness"][a:b] = (
            rng.uniform(0.55, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.6)
        )
    return CorruptionDraws(**d)


def _face_width(landmarks68: np.ndarray) -> np.ndarray:
    """(T,) width of the iBUG-68 box, pixels."""
    return landmarks68[..., 0].max(-1) - landmarks68[..., 0].min(-1)


def occluder_boxes(draws: CorruptionDraws, landmarks68: np.ndarray) -> np.ndarray:
    """(T, 4) occluder boxes (centre x, centre y, half width, half height) in the landmarks'
    pixels; NaN where there is none.

    Args:
        draws: the clip's draws.
        landmarks68: (T, 68, 2) exact iBUG-68 landmarks of the frames, pixels.
    """
    width = _face_width(landmarks68)[:, None]
    centre = np.stack(
        [landmarks68[t, list(_TARGETS[k])].mean(0) for t, k in enumerate(draws.target)]
    )
    boxes = np.concatenate([centre + draws.offset * width, draws.size * width], axis=1)
    boxes[draws.occluder == 0] = np.nan
    return boxes


def occluder_mask(kind: int, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) bool pixels whose centre (j + 0.5, i + 0.5) lies in the occluder."""
    if kind == 0:
        return np.zeros((height, width), bool)
    y, x = np.mgrid[0:height, 0:width] + 0.5
    dx, dy = (x - box[0]) / box[2], (y - box[1]) / box[3]
    if kind == TEXTURED_BOX:
        return (np.abs(dx) <= 1) & (np.abs(dy) <= 1)
    return dx**2 + dy**2 <= 1


def _patch(photo: np.ndarray, u: float, v: float, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 patch of ``photo`` at relative position (u, v)."""
    import cv2

    ph, pw = photo.shape[:2]
    side = 0.6 * min(ph, pw) / max(h, w)  # photo pixels per patch pixel: a busy view
    side_h, side_w = max(8, min(ph, int(side * h))), max(8, min(pw, int(side * w)))
    top, left = int((ph - side_h) * v), int((pw - side_w) * u)
    crop = np.ascontiguousarray(photo[top : top + side_h, left : left + side_w])
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)


def _occlude(
    image: np.ndarray,
    kind: int,
    box: np.ndarray,
    draws: CorruptionDraws,
    t: int,
    photos: tuple[np.ndarray, ...],
) -> None:
    """Paint frame t's occluder into ``image`` (H, W, 3) uint8, in place."""
    mask = occluder_mask(kind, box, *image.shape[:2])
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if kind == FLAT_ELLIPSE or not photos:
        fill = np.broadcast_to(
            draws.colour[t].round().clip(0, 255).astype(np.uint8), (y1 - y0, x1 - x0, 3)
        )
    else:
        index, u, v = draws.texture[t]
        fill = _patch(photos[int(index) % len(photos)], u, v, y1 - y0, x1 - x0)
    region = image[y0:y1, x0:x1]
    region[mask[y0:y1, x0:x1]] = fill[mask[y0:y1, x0:x1]]


def _motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    import cv2

    n = max(3, math.ceil(length) | 1)
    kernel = np.zeros((n, n), np.float32)
    c, dx, dy = n // 2, math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def apply_corruptions(
    frames: np.ndarray,
    draws: CorruptionDraws,
    landmarks68: np.ndarray,
    photos: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt rendered frames as drawn.

    Args:
        frames: (T, H, W, 3) uint8 RGB frames (not modified).
        draws: from :func:`draw_corruptions`.
        landmarks68: (T, 68, 2) exact iBUG-68 landmarks in the frames' pixels.
        photos: texture photographs (:func:`seqdeca.data.synthetic_scene.photo_pool`); empty =
            every occluder is flat.

    Returns:
        (corrupted frames (T, H, W, 3) uint8, occluder boxes (T, 4) pixels, NaN where none;
        see :func:`occluder_boxes`).
    """
    out = np.array(frames, copy=True)
    boxes = occluder_boxes(draws, landmarks68)
    width = _face_width(landmarks68)
    for t in np.flatnonzero(draws.corrupted()):
        image = out[t]
        if draws.occluder[t]:
            _occlude(image, int(draws.occluder[t]), boxes[t], draws, t, photos)
        if draws.blur[t, 0] > 0:
            image = _motion_blur(image, draws.blur[t, 0] * width[t], draws.blur[t, 1])
        if draws.brightness[t] != 1.0 or draws.noise[t] > 0:
            level = image.astype(np.float32) * np.float32(draws.brightness[t])
            if draws.noise[t] > 0:
                noise = np.random.default_rng(int(draws.noise_seed[t])).normal(size=image.shape)
                level += (noise * draws.noise[t]).astype(np.float32)
            image = level.round().clip(0, 255).astype(np.uint8)
        if draws.jpeg[t] > 0:
            image = _jpeg(image, int(draws.jpeg[t]))
        out[t] = image
    return out, boxes


def scaled_records(
    draws: CorruptionDraws, boxes: np.ndarray, landmarks68: np.ndarray, crops: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The per-frame records written to ``gt.npz`` (``corrupt_*`` keys), in crop pixels.

    Args:
        draws: the clip's draws; boxes: (T, 4) occluder boxes in frame pixels.
        landmarks68: (T, 68, 2) exact landmarks in frame pixels (for the blur length).
        crops: (T, 3, 3) crop_from_frame scale-and-shift matrices, or None (identity).
    """
    k = np.ones(len(boxes)) if crops is None else crops[:, 0, 0]
    shift = np.zeros((len(boxes), 2)) if crops is None else crops[:, :2, 2]
    box = np.concatenate([boxes[:, :2] * k[:, None] + shift, boxes[:, 2:] * k[:, None]], axis=1)
    blur = draws.blur.copy()
    blur[:, 0] *= _face_width(landmarks68) * k
    return {
        "corrupted": draws.corrupted(),
        "corrupt_occluder": draws.occluder.astype(np.int8),
        "corrupt_occluder_box": box.astype(np.float32),
        "corrupt_blur": blur.astype(np.float32),
        "corrupt_noise": draws.noise.astype(np.float32),
        "corrupt_jpeg": draws.jpeg.astype(np.int16),
        "corrupt_brightness": draws.brightness.astype(np.float32),
    }
