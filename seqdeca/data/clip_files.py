"""Reading the files of one prepared clip, and what a missing, cut or corrupt file turns into.

A prepared clip folder holds ``frames/NNNNNN.jpg`` (RGB crops), ``masks/NNNNNN.png`` (face
classes), and per-frame arrays ``valid.npy`` (T,), ``landmarks.npy`` (T, 478, 3),
``landmarks68.npy`` (T, 68, 2), ``au.npy`` (T, 12) and optionally ``au_proxy.npy`` (T, P).

Any failure to read one of them becomes :class:`UnreadableFileError` (a one-line
:class:`~seqdeca.errors.UserError` naming the file); a training dataset turns it into a
:class:`BadWindow` marker, which the collate function drops and counts.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from seqdeca.errors import UserError

__all__ = [
    "ARRAY_NAMES",
    "READ_ERRORS",
    "BadWindow",
    "UnreadableFileError",
    "open_clip_arrays",
    "read_image",
]

#: What reading a missing, cut or corrupt prepared file raises (the OS, numpy, PIL, zlib).
READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error)

#: The per-frame arrays of a clip (``<name>.npy``); ``au_proxy`` may be absent.
ARRAY_NAMES = ("valid", "landmarks", "landmarks68", "au", "au_proxy")


class UnreadableFileError(UserError):
    """A file of a prepared clip cannot be read (missing, cut or corrupt); one line.

    Built with :meth:`of`; the constructor takes the message alone, as a DataLoader worker's
    error is re-raised in the main process with its message only (still a :class:`UserError`).
    """

    def __init__(self, message: str, *, file: str | Path = "", reason: str = "") -> None:
        super().__init__(message)
        self.file, self.reason = Path(file), reason

    @classmethod
    def of(cls, clip_id: str, file: Path, cause: BaseException) -> UnreadableFileError:
        """The error for ``file`` of clip ``clip_id`` that raised ``cause``."""
        text = "missing" if isinstance(cause, FileNotFoundError) else str(cause)
        reason = " ".join(text.split())[:200] or type(cause).__name__
        return cls(
            f"cannot read {file} of clip {clip_id} ({reason}): prepare that clip again "
            "or leave it out of the source",
            file=file,
            reason=reason,
        )


@dataclass(frozen=True)
class BadWindow:
    """What a training :class:`~seqdeca.data.dataset.SequenceDataset` returns for a window it
    cannot read; :func:`~seqdeca.data.dataset.collate_windows` drops it and counts it.

    Attributes:
        clip_id: the clip of the window.
        file: the file that failed (relative to the clip folder).
        reason: the error, one line.
    """

    clip_id: str
    file: str
    reason: str

    @property
    def note(self) -> str:
        """``clip_id/file (reason)``."""
        return f"{self.clip_id}/{self.file} ({self.reason})"


def read_image(clip: Path, name: str, mode: str) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 image ``clip/name`` in PIL ``mode`` ("RGB", "L").

    Raises:
        UnreadableFileError: the file is missing, cut or corrupt.
    """
    try:
        with Image.open(clip / name) as im:
            return np.asarray(im.convert(mode))
    except READ_ERRORS as exc:
        raise UnreadableFileError.of(clip.name, clip / name, exc) from exc


#: ``gt.npz`` arrays a batch carries when ground truth is asked for (those the clip has).
GROUND_TRUTH_KEYS = (
    "expression",
    "global_pose",
    "jaw_pose",
    "shape",
    "cam",
    "light",
    "texture",
    "au_intensity",
)


def read_ground_truth(folder: Path, clip_id: str, frames: slice) -> dict[str, np.ndarray]:
    """The :data:`GROUND_TRUTH_KEYS` rows ``frames`` of a clip's ``gt.npz`` (float32).

    Raises:
        UnreadableFileError: ``gt.npz`` is missing or cut.
    """
    file = folder / "gt.npz"
    try:  # a cut archive raises zipfile.BadZipFile, which is not an OSError
        with np.load(file, allow_pickle=False) as data:
            return {
                k: np.asarray(data[k][frames], np.float32)
                for k in GROUND_TRUTH_KEYS
                if k in data.files
            }
    except (*READ_ERRORS, zipfile.BadZipFile) as exc:
        raise UnreadableFileError.of(clip_id, file, exc) from exc


def open_clip_arrays(folder: Path, clip_id: str) -> dict[str, np.ndarray]:
    """The per-frame arrays of a clip (:data:`ARRAY_NAMES`), memory-mapped read-only.

    Each map holds one open file descriptor until the array and its views are gone. A missing
    ``au_proxy.npy`` gives a (T, 0) array.

    Raises:
        UnreadableFileError: an array file is missing, cut, or not of valid.npy's T frames.
    """
    arrays: dict[str, np.ndarray] = {}
    for name in ARRAY_NAMES:
        file = folder / f"{name}.npy"
        if name == "au_proxy" and not file.is_file():
            arrays[name] = np.zeros((len(arrays["valid"]), 0), np.float32)
            continue
        try:
            arrays[name] = np.load(file, mmap_mode="r")
            frames = arrays[name].shape[0] if arrays[name].ndim else 0
            if frames != len(arrays["valid"]):
                raise ValueError(f"{frames} frames, valid.npy has {len(arrays['valid'])}")
        except READ_ERRORS as exc:
            raise UnreadableFileError.of(clip_id, file, exc) from exc
    return arrays
