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

Items are dicts of tensors (DataLoader-friendly); :func:`collate_windows` makes a
:class:`WindowBatch`. Images and masks are read lazily from the JPEG/PNG files; the small
per-clip arrays are memory-mapped and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seqdeca.config.schema import AugmentationConfig, DataConfig, DataSourceConfig
from seqdeca.data.augment import augment_window, draw_augmentation
from seqdeca.errors import UserError
from seqdeca.geometry.camera import pixels_to_ndc

__all__ = [
    "ClipIndex",
    "SequenceDataset",
    "WindowBatch",
    "WindowCollator",
    "collate_windows",
    "window_loader",
    "window_starts",
]

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant for seed mixing


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
                g for g in sorted(child.iterdir())
                if g.is_dir() and not g.name.startswith(".") and _is_clip(g)
            ]  # fmt: skip
    return found


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
            raise UserError(f"manifest {source.manifest} names clips not under {root}: "
                            f"{missing[:5]} (prepare them or fix the manifest)")  # fmt: skip
        clips = [by_id[c] for c in wanted]
    return [
        ClipIndex(path=p, clip_id=p.name, source=number,
                  starts=window_starts(np.load(p / "valid.npy"), window))
        for p in clips
    ]  # fmt: skip


class SequenceDataset(torch.utils.data.Dataset):
    """Windows of T consecutive valid frames from one or more prepared sources.

    Args:
        sources: the sources (root, weight, optional manifest), or plain root folders.
        weights: optional per-source weights overriding those of ``sources``.
        window: T >= 1 frames per window.
        train: training mode (weighted epoch plan and augmentation) or evaluation (every window
            in order, no augmentation).
        augmentation: augmentation settings (default settings when None; unused if not train).
        seed: base seed of the epoch plan and augmentation.
        epoch_size: windows per training epoch (default: the total number of windows).
        image_size: crop size the prepared data was written at (for pixel -> normalised).
    """

    def __init__(
        self,
        *,
        sources: list[DataSourceConfig | str | Path],
        weights: list[float] | None = None,
        window: int = 3,
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
        self.window = window
        self.train = train
        self.augmentation = augmentation or AugmentationConfig()
        self.seed = seed
        self.image_size = image_size
        sources = [
            s if isinstance(s, DataSourceConfig) else DataSourceConfig(root=str(s)) for s in sources
        ]
        if weights is not None:
            if len(weights) != len(sources):
                raise ValueError(f"{len(weights)} weights for {len(sources)} sources")
            sources = [DataSourceConfig(root=s.root, weight=float(w), manifest=s.manifest)
                       for s, w in zip(sources, weights)]  # fmt: skip
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
            raise UserError(f"no window of {window} consecutive valid frames in "
                            f"{[s.root for s in sources]}: prepare data or lower data.window")  # fmt: skip
        self.epoch_size = int(epoch_size or len(self.windows))
        self._arrays: dict[int, dict[str, np.ndarray]] = {}
        self.set_epoch(0)

    # ----------------------------------------------------------------------------- epoch plan

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: rebuilds the training plan and reseeds augmentation."""
        self.epoch = int(epoch)
        self.plan = self._make_plan() if self.train else np.arange(len(self.windows))

    def source_counts(self) -> list[int]:
        """Windows per source in one training epoch (weights of empty sources are dropped)."""
        weights = np.asarray([
            w if len(idx) else 0.0 for w, idx in zip(self.weights, self.source_windows)
        ])  # fmt: skip
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
        """Memory-mapped per-clip arrays (cached per process)."""
        if number not in self._arrays:
            path = self.clips[number].path
            arrays = {
                name: np.load(path / f"{name}.npy", mmap_mode="r")
                for name in ("landmarks", "landmarks68", "valid", "au")
            }
            proxy = path / "au_proxy.npy"
            t = arrays["valid"].shape[0]
            arrays["au_proxy"] = (
                np.load(proxy, mmap_mode="r") if proxy.is_file() else np.zeros((t, 0), np.float32)
            )
            self._arrays[number] = arrays
        return self._arrays[number]

    def _read_frames(self, path: Path, frames: range) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = [], []
        for t in frames:
            with Image.open(path / "frames" / f"{t:06d}.jpg") as im:
                images.append(np.asarray(im.convert("RGB")))
            with Image.open(path / "masks" / f"{t:06d}.png") as im:
                masks.append(np.asarray(im.convert("L")))
        image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        return image, torch.from_numpy(np.stack(masks))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One window: images (T,3,H,W) [0,1], landmarks (T,L,2) and landmarks68 (T,68,2)
        normalised, masks (T,H,W) uint8, valid (T,) bool, au (T,12), au_proxy (T,P),
        frames (T,) int64, clip (()) int64 clip number."""
        number, start = (int(v) for v in self.windows[self.plan[index]])
        clip = self.clips[number]
        arrays = self._clip_arrays(number)
        frames = range(start, start + self.window)
        sl = slice(start, start + self.window)
        images, masks = self._read_frames(clip.path, frames)
        sample = {
            "images": images,
            "masks": masks,
            "landmarks": self._normalised(arrays["landmarks"][sl]),
            "landmarks68": self._normalised(arrays["landmarks68"][sl]),
            "valid": torch.from_numpy(np.array(arrays["valid"][sl], dtype=bool)),
            "au": torch.from_numpy(np.array(arrays["au"][sl], dtype=np.float32)),
            "au_proxy": torch.from_numpy(np.array(arrays["au_proxy"][sl], dtype=np.float32)),
            "frames": torch.arange(start, start + self.window, dtype=torch.int64),
            "clip": torch.tensor(number, dtype=torch.int64),
        }  # fmt: skip
        if self.train:
            gen = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch, index))
            sample = augment_window(sample, draw_augmentation(self.augmentation, gen))
        return sample

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

    def to(self, device: torch.device | str) -> WindowBatch:
        """A copy with every tensor on ``device``."""
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        return WindowBatch(**moved)


class WindowCollator:
    """Picklable collate function: dict items -> :class:`WindowBatch` (clip ids by number)."""

    def __init__(self, clip_ids: list[str]) -> None:
        self.clip_ids = clip_ids

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> WindowBatch:
        return collate_windows(items, self.clip_ids)


def collate_windows(
    items: list[dict[str, torch.Tensor]], clip_ids: list[str] | None = None
) -> WindowBatch:
    """Stack window items into a :class:`WindowBatch`.

    Args:
        items: :meth:`SequenceDataset.__getitem__` outputs.
        clip_ids: clip id of each clip number (``dataset.clip_ids``); numbers as text if None.
    """

    def stack(key: str) -> torch.Tensor:
        return torch.stack([item[key] for item in items])

    width = max(item["au_proxy"].shape[-1] for item in items)
    proxy = torch.stack([
        torch.nn.functional.pad(item["au_proxy"], (0, width - item["au_proxy"].shape[-1]),
                                value=float("nan"))
        for item in items
    ])  # fmt: skip
    numbers = [int(item["clip"]) for item in items]
    return WindowBatch(
        images=stack("images"), landmarks=stack("landmarks"), landmarks68=stack("landmarks68"),
        masks=stack("masks"), valid=stack("valid"), au=stack("au"), au_proxy=proxy,
        clip_ids=[clip_ids[n] if clip_ids else str(n) for n in numbers], frames=stack("frames"),
    )  # fmt: skip


def window_loader(
    cfg: DataConfig, *, train: bool, seed: int = 0, shuffle_eval: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader over the configured sources (the data section's builder).

    The dataset's epoch plan already orders the windows, so the loader does not shuffle; call
    ``loader.dataset.set_epoch(e)`` before each epoch.
    """
    dataset = SequenceDataset(
        sources=list(cfg.sources), window=cfg.window, train=train,
        augmentation=cfg.augmentation, seed=seed,
    )  # fmt: skip
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle_eval and not train,
        num_workers=cfg.num_workers, collate_fn=WindowCollator(dataset.clip_ids),
        drop_last=train,
    )  # fmt: skip
