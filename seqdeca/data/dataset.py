"""Windows of T consecutive valid frames from prepared clip folders (the training unit).

Indexing: every start ``s`` of every prepared clip such that frames ``s .. s+T-1`` are all valid
(``valid.npy``) is a window; a window never crosses an invalid frame or a clip boundary.

Mixing sources (the choice made here): in training, an EPOCH is a fixed plan of ``epoch_size``
windows (default: the total number of windows of all sources) in which source ``k`` gets
``round(epoch_size * w_k / sum(w))`` windows, drawn from its own windows without replacement
while they last (then again from a fresh permutation), and the whole plan shuffled. The plan is
a pure function of ``(seed, epoch)``: call :meth:`SequenceDataset.set_epoch` before each epoch
(with non-persistent DataLoader workers, which receive a fresh copy of the dataset each epoch).
At evaluation (``train=False``) the dataset is every window of every source in order, weights
are ignored and nothing is augmented.

Window lengths and gaps (training only): every batch of ``batch_size`` consecutive plan
positions gets one odd length drawn from ``min_window .. window`` (a pure function of seed, epoch
and batch number, so every loader worker and process agrees); an item of a shorter length is the
centred part of its full window. Each frame other than the centre is then marked invalid with
probability ``frame_mask_prob`` (a gap, as a frame without a face is at inference): the temporal
fusion ignores it and the losses skip it.

Items are dicts of tensors (DataLoader-friendly); :func:`collate_windows` makes a
:class:`WindowBatch`. Images and masks are read lazily from the JPEG/PNG files; the small
per-clip arrays are memory-mapped, and those of the newest few clips stay open.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqdeca.config.schema import AugmentationConfig, CropConfig, DataConfig, DataSourceConfig
from seqdeca.data.augment import augment_window, draw_augmentation
from seqdeca.data.clip_files import (
    READ_ERRORS,
    BadWindow,
    UnreadableFileError,
    open_clip_arrays,
    read_ground_truth,
    read_image,
)
from seqdeca.data.corrupt_crops import corrupt_window, corruption_rates
from seqdeca.errors import UserError
from seqdeca.geometry.camera import pixels_to_ndc

__all__ = [
    "READ_ERRORS",
    "BadWindow",
    "ClipIndex",
    "SequenceDataset",
    "UnreadableFileError",
    "WindowBatch",
    "WindowCollator",
    "check_crop",
    "collate_windows",
    "training_window_lengths",
    "window_loader",
    "window_starts",
]

log = logging.getLogger(__name__)

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant for seed mixing
#: What reads ``gt.npz`` unless told otherwise (named when a source lacks it).
GROUND_TRUTH_TERMS = "the ground-truth loss terms (loss.code_supervision, loss.au_supervision)"


def mixed_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (seed, epoch, index, ...)."""
    value = 0x2545F4914F6CDD1D
    for part in parts:
        value = ((value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * _MIX) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 29
    return value & 0x7FFFFFFFFFFFFFFF


@dataclass(frozen=True)
class ClipIndex:
    """One prepared clip folder and where its windows start.

    Attributes:
        path: the clip folder.
        clip_id: its name.
        source: index of the source it belongs to.
        starts: (W,) int64 first frame of each window.
    """

    path: Path
    clip_id: str
    source: int
    starts: np.ndarray


def window_starts(valid: np.ndarray, window: int) -> np.ndarray:
    """(W,) starts s with valid[s:s+window] all true, for a (T,) bool array."""
    good = np.concatenate([[0], np.cumsum(np.asarray(valid, dtype=np.int64))])
    count = good[window:] - good[:-window] if len(valid) >= window else np.zeros(0, np.int64)
    return np.flatnonzero(count == window).astype(np.int64)


def _is_clip(folder: Path) -> bool:
    return (folder / "valid.npy").is_file() and (folder / "frames").is_dir()


def find_clips(root: Path) -> list[Path]:
    """Prepared clip folders under ``root``: root itself, its children or grandchildren
    (``<out_root>/<dataset>/<clip_id>``); hidden (in-progress) folders are skipped."""
    if _is_clip(root):
        return [root]
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _is_clip(child):
            found.append(child)
        else:
            found += [
                g
                for g in sorted(child.iterdir())
                if g.is_dir() and not g.name.startswith(".") and _is_clip(g)
            ]
    return found


def training_window_lengths(window: int, min_window: int = 0) -> list[int]:
    """The odd window lengths a training run draws from (``data.min_window .. data.window``).

    Args:
        window: the longest window (odd, >= 1).
        min_window: the shortest (odd, 1 .. window); 0 = ``window`` only.

    Returns:
        The odd lengths, ascending.

    Raises:
        UserError: an even or out-of-range length (one line).
    """
    low = int(min_window) or int(window)
    if window < 1 or window % 2 == 0:
        raise UserError(
            f"data.window={window} must be odd (the predicted frame is the window's "
            "centre): use e.g. 3, or a range with data.min_window"
        )
    if not 1 <= low <= window or low % 2 == 0:
        raise UserError(
            f"data.min_window={min_window} must be odd and in 1..data.window={window} "
            "(0 = data.window only)"
        )
    return list(range(low, int(window) + 1, 2))


def _read_manifest(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"manifest {path} not found: give a file with one clip id per line")
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def index_source(source: DataSourceConfig, number: int, window: int) -> list[ClipIndex]:
    """Index the windows of one source (all clips, or those of its manifest)."""
    root = Path(source.root)
    if not root.is_dir():
        raise UserError(f"data source {root} is not a folder: set data.sources[].root")
    clips = find_clips(root)
    if source.manifest:
        by_id = {p.name: p for p in clips}
        wanted = _read_manifest(Path(source.manifest))
        missing = [c for c in wanted if c not in by_id]
        if missing:
            raise UserError(
                f"manifest {source.manifest} names clips not under {root}: "
                f"{missing[:5]} (prepare them or fix the manifest)"
            )
        clips = [by_id[c] for c in wanted]
    return [
        ClipIndex(
            path=p, clip_id=p.name, source=number, starts=window_starts(_read_valid(p), window)
        )
        for p in clips
    ]


def _read_valid(clip: Path) -> np.ndarray:
    """The clip's (T,) valid flags; one-line error for a damaged file."""
    path = clip / "valid.npy"
    try:
        valid = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(
            f"{path} is unreadable ({type(exc).__name__}): prepare the clip again "
            "or remove it from the source"
        ) from None
    if valid.ndim != 1:
        raise UserError(f"{path} holds shape {valid.shape}, not (T,): prepare the clip again")
    return valid


class SequenceDataset(torch.utils.data.Dataset):
    """Windows of T consecutive valid frames from one or more prepared sources.

    Args:
        sources: the sources (root, weight, optional manifest), or plain root folders.
        weights: optional per-source weights overriding those of ``sources``.
        window: T >= 1 frames per window (in training with ``min_window``: the longest).
        min_window: training: the shortest odd length drawn per batch; 0 = always ``window``.
        batch_size: training: items per batch (consecutive plan positions share one length).
        frame_mask_prob: training: probability that a non-centre frame is marked invalid.
        ground_truth: items carry the clips' ``gt.npz`` codes ("gt_<key>"); every clip must
            have one, and training may not move the face geometrically (flip, rotation,
            scale/shift jitter), which the true pose and camera would not follow.
        ground_truth_for: the settings that need the ground truth, named in those two
            refusals (default: the ground-truth loss terms).
        train: training mode (weighted epoch plan and augmentation) or evaluation (every window
            in order, no augmentation).
        augmentation: augmentation settings (default settings when None; unused if not train).
        seed: base seed of the epoch plan and augmentation.
        epoch_size: windows per training epoch (default: the total number of windows).
        image_size: crop size the prepared data was written at (for pixel -> normalised).

    Open files: the per-clip arrays of the newest ``max_open_clips`` clips stay memory-mapped
    (5 file descriptors per clip and process); older ones are closed, so a loader worker holds a
    bounded number of descriptors however many clips an epoch touches.

    Unreadable files: a missing, cut or corrupt file of a window raises
    :class:`UnreadableFileError` (one line) in evaluation; in training the window comes back as
    a :class:`BadWindow` (and one warning line is logged) for :func:`collate_windows` to drop.
    """

    max_open_clips: int = 4  # clips whose arrays stay memory-mapped (LRU), per dataset copy

    def __init__(
        self,
        *,
        sources: list[DataSourceConfig | str | Path],
        weights: list[float] | None = None,
        window: int = 3,
        min_window: int = 0,
        batch_size: int = 1,
        frame_mask_prob: float = 0.0,
        ground_truth: bool = False,
        ground_truth_for: str = GROUND_TRUTH_TERMS,
        train: bool = True,
        augmentation: AugmentationConfig | None = None,
        seed: int = 0,
        epoch_size: int | None = None,
        image_size: int = 224,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not sources:
            raise UserError("no data sources: set data.sources (root, weight, manifest)")
        if not 0.0 <= frame_mask_prob < 1.0:
            raise UserError(f"data.frame_mask_prob={frame_mask_prob} must be in [0, 1)")
        self.window = window
        self.lengths = training_window_lengths(window, min_window) if min_window else [window]
        self.batch_size = max(1, int(batch_size))
        self.frame_mask_prob = float(frame_mask_prob)
        self.train = train
        self.augmentation = augmentation or AugmentationConfig()
        corruption = self.augmentation.corruption
        if corruption < 0:
            raise UserError(f"data.augmentation.corruption={corruption} must be >= 0")
        self.corruption = corruption_rates(corruption) if train and corruption > 0 else None
        self.seed = seed
        self.image_size = image_size
        sources = [
            s if isinstance(s, DataSourceConfig) else DataSourceConfig(root=str(s)) for s in sources
        ]
        if weights is not None:
            if len(weights) != len(sources):
                raise ValueError(f"{len(weights)} weights for {len(sources)} sources")
            sources = [
                DataSourceConfig(root=s.root, weight=float(w), manifest=s.manifest)
                for s, w in zip(sources, weights)
            ]
        self.weights = [float(s.weight) for s in sources]
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise UserError(f"data source weights {self.weights} must be >= 0 with a positive sum")
        self.clips: list[ClipIndex] = []
        for k, source in enumerate(sources):
            self.clips += index_source(source, k, window)
        # Flat table of windows: (clip number, start frame), and the windows of each source.
        rows = [(c, int(s)) for c, clip in enumerate(self.clips) for s in clip.starts]
        self.windows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        clip_source = np.asarray([c.source for c in self.clips], dtype=np.int64)
        owner = clip_source[self.windows[:, 0]] if len(self.windows) else np.zeros(0, np.int64)
        self.source_windows = [np.flatnonzero(owner == k) for k in range(len(sources))]
        if len(self.windows) == 0:
            raise UserError(
                f"no window of {window} consecutive valid frames in "
                f"{[s.root for s in sources]}: prepare data or lower data.window"
            )
        self.epoch_size = int(epoch_size or len(self.windows))
        self.ground_truth = ground_truth
        self.ground_truth_for = ground_truth_for
        if ground_truth:
            self._check_ground_truth()
        self._arrays: dict[int, dict[str, np.ndarray]] = {}
        self.set_epoch(0)

    # ----------------------------------------------------------------------------- epoch plan

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: rebuilds the training plan and reseeds augmentation."""
        self.epoch = int(epoch)
        self.plan = self._make_plan() if self.train else np.arange(len(self.windows))

    def source_counts(self) -> list[int]:
        """Windows per source in one training epoch (weights of empty sources are dropped)."""
        weights = np.asarray(
            [w if len(idx) else 0.0 for w, idx in zip(self.weights, self.source_windows)]
        )
        share = weights / weights.sum() * self.epoch_size
        counts = np.floor(share).astype(np.int64)
        # Largest remainders get the leftover windows so that the counts sum to epoch_size.
        for k in np.argsort(-(share - counts), kind="stable")[: self.epoch_size - counts.sum()]:
            counts[k] += 1
        return counts.tolist()

    def _make_plan(self) -> np.ndarray:
        gen = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch, -1))
        parts = []
        for count, idx in zip(self.source_counts(), self.source_windows):
            if count == 0:
                continue
            rounds = -(-count // len(idx))
            order = torch.cat([torch.randperm(len(idx), generator=gen) for _ in range(rounds)])
            parts.append(idx[order[:count].numpy()])
        plan = np.concatenate(parts)
        return plan[torch.randperm(len(plan), generator=gen).numpy()]

    def __len__(self) -> int:
        return len(self.plan)

    # ---------------------------------------------------------------------------------- items

    def _clip_arrays(self, number: int) -> dict[str, np.ndarray]:
        """Memory-mapped per-clip arrays, (T, ...) each; the newest ``max_open_clips`` clips
        stay open (least recently used first out, each map holding one file descriptor).

        Raises:
            UnreadableFileError: an array file is missing, cut or of the wrong length.
        """
        arrays = self._arrays.pop(number, None)
        if arrays is None:
            clip = self.clips[number]
            arrays = open_clip_arrays(clip.path, clip.clip_id)
            while len(self._arrays) >= max(1, self.max_open_clips):
                del self._arrays[next(iter(self._arrays))]  # the map closes with its last user
        self._arrays[number] = arrays  # (re)inserted last: dicts keep insertion order
        return arrays

    def _read_frames(self, path: Path, frames: range) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (T, 3, H, W) float [0, 1] and masks (T, H, W) uint8 of ``frames``.

        Raises:
            UnreadableFileError: a JPEG or PNG is missing, cut or corrupt.
        """
        images = [read_image(path, f"frames/{t:06d}.jpg", "RGB") for t in frames]
        masks = [read_image(path, f"masks/{t:06d}.png", "L") for t in frames]
        image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        return image, torch.from_numpy(np.stack(masks))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | BadWindow:
        """One window: images (T,3,H,W) [0,1], landmarks (T,L,2) and landmarks68 (T,68,2)
        normalised, masks (T,H,W) uint8, valid (T,) bool, au (T,12), au_proxy (T,P),
        frames (T,) int64, clip (()) int64 clip number (training: a :class:`BadWindow` when a
        file of the window cannot be read)."""
        number, start = (int(v) for v in self.windows[self.plan[index]])
        length = self.window_length(index)
        start += (self.window - length) // 2  # the centred part of the full window
        clip = self.clips[number]
        frames = range(start, start + length)
        sl = slice(start, start + length)
        try:
            arrays = self._clip_arrays(number)
            images, masks = self._read_frames(clip.path, frames)
            truth = read_ground_truth(clip.path, clip.clip_id, sl) if self.ground_truth else {}
        except UnreadableFileError as exc:
            return self._unreadable(index, clip, exc)
        sample = {
            "images": images,
            "masks": masks,
            "landmarks": self._normalised(arrays["landmarks"][sl]),
            "landmarks68": self._normalised(arrays["landmarks68"][sl]),
            "valid": torch.from_numpy(np.array(arrays["valid"][sl], dtype=bool)),
            "au": torch.from_numpy(np.array(arrays["au"][sl], dtype=np.float32)),
            "au_proxy": torch.from_numpy(np.array(arrays["au_proxy"][sl], dtype=np.float32)),
            "frames": torch.arange(start, start + length, dtype=torch.int64),
            "clip": torch.tensor(number, dtype=torch.int64),
        }
        sample |= {f"gt_{k}": torch.from_numpy(v) for k, v in truth.items()}
        if self.train:
            gen = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch, index))
            sample = augment_window(sample, draw_augmentation(self.augmentation, gen))
            sample["valid"] = sample["valid"] & ~self._frame_gaps(index, length)
            if self.corruption is not None:  # the input only: targets keep the clean crops
                rng = np.random.default_rng(mixed_seed(self.seed, self.epoch, index, -4))
                sample["clean_images"] = sample["images"]
                sample["images"] = corrupt_window(
                    sample["images"], sample["landmarks68"], self.corruption, rng
                )
        return sample

    def _check_ground_truth(self) -> None:
        """One-line errors for a clip without ``gt.npz`` or a geometric augmentation."""
        lacking = next((c for c in self.clips if not (c.path / "gt.npz").is_file()), None)
        if lacking is not None:
            raise UserError(
                f"{lacking.path} has no gt.npz: {self.ground_truth_for} need(s) "
                "synthetic clips (tools/make_synthetic_data.py) in every data "
                "source"
            )
        a = self.augmentation
        moved = {
            "flip_prob": a.flip_prob,
            "max_rotation_deg": a.max_rotation_deg,
            "scale_jitter": a.scale_jitter,
            "shift_jitter": a.shift_jitter,
        }
        moved = [k for k, v in moved.items() if v > 0]
        if self.train and moved:
            raise UserError(
                f"{self.ground_truth_for} need(s) data.augmentation.{moved[0]}=0 "
                f"(and {', '.join(moved[1:]) or 'nothing else'}): the true pose "
                "and camera do not follow a geometric augmentation"
            )

    def _unreadable(self, index: int, clip: ClipIndex, exc: UnreadableFileError) -> BadWindow:
        """Training: log one line and return the marker; evaluation: raise ``exc``."""
        if not self.train:
            raise exc
        log.warning("skipping training window %d: cannot read %s (%s)", index, exc.file, exc.reason)
        return BadWindow(
            clip_id=clip.clip_id, file=exc.file.relative_to(clip.path).as_posix(), reason=exc.reason
        )

    def window_length(self, index: int) -> int:
        """Frames of item ``index``: ``window``, or in training with a range, the length drawn
        for its batch (plan positions ``index // batch_size``)."""
        if not self.train or len(self.lengths) == 1:
            return self.window
        gen = torch.Generator().manual_seed(
            mixed_seed(self.seed, self.epoch, index // self.batch_size, -2)
        )
        return self.lengths[int(torch.randint(len(self.lengths), (1,), generator=gen))]

    def _frame_gaps(self, index: int, length: int) -> torch.Tensor:
        """(length,) bool, True on the frames marked as gaps (never the centre frame)."""
        gaps = torch.zeros(length, dtype=torch.bool)
        if self.frame_mask_prob <= 0 or length < 2:
            return gaps
        gen = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch, index, -3))
        gaps = torch.rand(length, generator=gen) < self.frame_mask_prob
        gaps[(length - 1) // 2] = False
        return gaps

    def _normalised(self, points: np.ndarray) -> torch.Tensor:
        """(T, L, >=2) crop pixels -> (T, L, 2) float32 normalised coordinates."""
        xy = torch.from_numpy(np.array(points[..., :2], dtype=np.float32))
        return pixels_to_ndc(xy, self.image_size)

    @property
    def clip_ids(self) -> list[str]:
        """Clip id of every clip number."""
        return [clip.clip_id for clip in self.clips]

    def clip_id(self, number: int) -> str:
        """The clip id of clip number ``number`` (the ``clip`` entry of an item)."""
        return self.clips[number].clip_id


@dataclass
class WindowBatch:
    """A batch of windows (B windows of T frames).

    Attributes:
        images: (B, T, 3, H, W) float RGB in [0, 1].
        landmarks: (B, T, 478, 2) MediaPipe landmarks, normalised [-1, 1] (y down); NaN unknown.
        landmarks68: (B, T, 68, 2) iBUG-68 landmarks, normalised.
        masks: (B, T, H, W) uint8 classes 0 background, 1 face, 2 eyes/brows/mouth.
        valid: (B, T) bool.
        au: (B, T, 12) Aff-Wild2 AU labels, -1 = missing.
        au_proxy: (B, T, P) proxy AU intensities in [0, 1], NaN = missing (P = the widest in
            the batch; narrower sources are NaN-padded).
        clip_ids: B clip ids.
        frames: (B, T) int64 frame indices in their clips.
        gt: ground truth of synthetic clips when the dataset was asked for it
            (``gt.npz`` names, (B, T, ...) each: "expression", "global_pose", "jaw_pose",
            "shape", "cam", "light", "texture", "au_intensity", those the clip has); empty
            otherwise.
        read_ok: one flag per window the loader drew for this batch, in order; False where a
            file could not be read and the window was dropped (B = its number of True).
        unreadable: ``clip_id/file (reason)`` of each dropped window.
        clean_images: (B, T, 3, H, W) the crops before ``data.augmentation.corruption`` (the
            targets of the photometric and consistency terms), or None when not corrupted.

    When no window of a batch could be read, B = 0 and every tensor is empty (shape (0,)):
    the training loop skips such a batch.
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    landmarks68: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor
    au: torch.Tensor
    au_proxy: torch.Tensor
    clip_ids: list[str]
    frames: torch.Tensor
    gt: dict[str, torch.Tensor] = field(default_factory=dict)
    read_ok: list[bool] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    clean_images: torch.Tensor | None = None

    @property
    def bad_samples(self) -> int:
        """Windows dropped from this batch because a file could not be read."""
        return len(self.unreadable)

    def to(self, device: torch.device | str) -> WindowBatch:
        """A copy with every tensor on ``device``."""
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        moved["gt"] = {k: v.to(device) for k, v in self.gt.items()}
        return WindowBatch(**moved)


class WindowCollator:
    """Picklable collate function: dict items -> :class:`WindowBatch` (clip ids by number)."""

    def __init__(self, clip_ids: list[str]) -> None:
        self.clip_ids = clip_ids

    def __call__(self, items: list[dict[str, torch.Tensor] | BadWindow]) -> WindowBatch:
        return collate_windows(items, self.clip_ids)


def collate_windows(
    items: list[dict[str, torch.Tensor] | BadWindow], clip_ids: list[str] | None = None
) -> WindowBatch:
    """Stack window items into a :class:`WindowBatch`, dropping (and counting) unreadable ones.

    Args:
        items: :meth:`SequenceDataset.__getitem__` outputs (:class:`BadWindow` markers included).
        clip_ids: clip id of each clip number (``dataset.clip_ids``); numbers as text if None.
    """
    read_ok = [not isinstance(item, BadWindow) for item in items]
    unreadable = [item.note for item in items if isinstance(item, BadWindow)]
    items = [item for item in items if not isinstance(item, BadWindow)]
    if not items:
        empty = torch.zeros(0)
        return WindowBatch(
            images=empty,
            landmarks=empty,
            landmarks68=empty,
            masks=empty,
            valid=empty.bool(),
            au=empty,
            au_proxy=empty,
            clip_ids=[],
            frames=empty.long(),
            read_ok=read_ok,
            unreadable=unreadable,
        )

    def stack(key: str) -> torch.Tensor:
        return torch.stack([item[key] for item in items])

    width = max(item["au_proxy"].shape[-1] for item in items)
    proxy = torch.stack(
        [
            torch.nn.functional.pad(
                item["au_proxy"], (0, width - item["au_proxy"].shape[-1]), value=float("nan")
            )
            for item in items
        ]
    )
    numbers = [int(item["clip"]) for item in items]
    return WindowBatch(
        images=stack("images"),
        landmarks=stack("landmarks"),
        landmarks68=stack("landmarks68"),
        masks=stack("masks"),
        valid=stack("valid"),
        au=stack("au"),
        au_proxy=proxy,
        clip_ids=[clip_ids[n] if clip_ids else str(n) for n in numbers],
        frames=stack("frames"),
        gt={k.removeprefix("gt_"): stack(k) for k in items[0] if k.startswith("gt_")},
        read_ok=read_ok,
        unreadable=unreadable,
        clean_images=stack("clean_images") if "clean_images" in items[0] else None,
    )


def check_crop(dataset: SequenceDataset, crop: CropConfig) -> None:
    """Refuse data prepared with another crop than ``crop`` (the run's, saved in its export).

    Reads ``meta.json`` of the first clip of every source; keys a clip does not record are not
    compared.

    Raises:
        UserError: one line naming the clip, the key and both values.
    """
    firsts: dict[int, ClipIndex] = {}
    for clip in dataset.clips:
        firsts.setdefault(clip.source, clip)
    for clip in firsts.values():
        try:
            recorded = json.loads((clip.path / "meta.json").read_text()).get("crop") or {}
        except (OSError, ValueError):
            continue
        for key, value in recorded.items():
            mine = getattr(crop, key, None)
            if mine is not None and value is not None and float(mine) != float(value):
                raise UserError(
                    f"{clip.path} was prepared with crop.{key}={value} but the "
                    f"config says crop.{key}={mine}: set crop.{key}={value} (the "
                    "export records the crop inference will use)"
                )


def window_loader(
    cfg: DataConfig,
    *,
    train: bool,
    seed: int = 0,
    shuffle_eval: bool = False,
    crop: CropConfig | None = None,
    ground_truth: bool = False,
    ground_truth_for: str = GROUND_TRUTH_TERMS,
) -> torch.utils.data.DataLoader:
    """A DataLoader over the configured sources (the data section's builder).

    The dataset's epoch plan already orders the windows, so the loader does not shuffle; call
    ``set_epoch(e)`` before each epoch (on the dataset, or on the loader Accelerate prepared).
    ``crop``: the run's crop section (crop size of the data; checked against the clips'
    recorded crop, see :func:`check_crop`). ``ground_truth``: batches carry ``gt.npz`` codes
    (:attr:`WindowBatch.gt`) for ``ground_truth_for`` (the settings named when refused).
    """
    if train:
        training_window_lengths(cfg.window, cfg.min_window)  # odd lengths, one-line error
    dataset = SequenceDataset(
        sources=list(cfg.sources),
        window=cfg.window,
        train=train,
        min_window=cfg.min_window if train else 0,
        batch_size=cfg.batch_size,
        frame_mask_prob=cfg.frame_mask_prob if train else 0.0,
        augmentation=cfg.augmentation,
        seed=seed,
        ground_truth=ground_truth,
        ground_truth_for=ground_truth_for,
        image_size=crop.size if crop is not None else 224,
    )
    if crop is not None:
        check_crop(dataset, crop)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle_eval and not train,
        num_workers=cfg.num_workers,
        collate_fn=WindowCollator(dataset.clip_ids),
        drop_last=train,
    )
