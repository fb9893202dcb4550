"""A streaming ``.npz`` writer: per-frame arrays appended chunk by chunk, memory O(chunk).

Each key's rows go to a raw temporary file as they arrive; :meth:`NpzStreamWriter.close` copies
them into the archive behind a ``.npy`` header that states the final leading length T. The
result is an ordinary ``.npz`` (``numpy.load`` reads it) whose arrays all share the leading T
axis of the frames appended. Nothing is held in memory but the current chunk.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["NpzStreamWriter"]

_COPY_BLOCK = 1 << 22  # bytes copied at a time into the archive


class NpzStreamWriter:
    """Append rows of named arrays; write them as one ``.npz`` at :meth:`close`.

    Args:
        path: the ``.npz`` to write (written under a temporary name, renamed at close).
        scratch: folder for the per-key temporary files (default: next to ``path``).

    Every :meth:`append` must give the same keys with the same row shape and dtype, and the
    same number of rows for every key.
    """

    def __init__(self, path: str | Path, *, scratch: str | Path | None = None) -> None:
        self.path = Path(path)
        self.scratch = Path(scratch) if scratch is not None else self.path.parent
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, tuple[Path, np.dtype, tuple[int, ...]]] = {}
        self._handles: dict[str, object] = {}
        self.rows = 0

    def append(self, **arrays: np.ndarray) -> None:
        """Add ``n`` rows to every key (arrays of shape (n, ...))."""
        counts = {k: len(np.asarray(v)) for k, v in arrays.items()}
        if len(set(counts.values())) > 1:
            raise ValueError(f"NpzStreamWriter.append: keys disagree on the row count {counts}")
        if self._files and set(arrays) != set(self._files):
            raise ValueError(
                f"NpzStreamWriter.append: keys {sorted(arrays)} differ from {sorted(self._files)}"
            )
        for key, value in arrays.items():
            value = np.ascontiguousarray(value)
            if key not in self._files:
                raw = self.scratch / f".{self.path.stem}.{key}.raw"
                self._files[key] = (raw, value.dtype, value.shape[1:])
                self._handles[key] = open(raw, "wb")  # noqa: SIM115 - closed in close()
            _, dtype, row = self._files[key]
            if value.shape[1:] != row or value.dtype != dtype:
                raise ValueError(
                    f"NpzStreamWriter.append: {key} rows {value.shape[1:]} {value.dtype}, "
                    f"expected {row} {dtype}"
                )
            self._handles[key].write(value.tobytes())  # type: ignore[attr-defined]
        self.rows += next(iter(counts.values()), 0)

    def close(self) -> Path:
        """Write the archive and delete the temporary files; returns the ``.npz`` path."""
        for handle in self._handles.values():
            handle.close()  # type: ignore[attr-defined]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, (raw, dtype, row) in self._files.items():
                header = {
                    "descr": np.lib.format.dtype_to_descr(dtype),
                    "fortran_order": False,
                    "shape": (self.rows, *row),
                }
                with zf.open(f"{key}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array_header_2_0(out, header)
                    with open(raw, "rb") as src:
                        shutil.copyfileobj(src, out, _COPY_BLOCK)
                raw.unlink()
        tmp.replace(self.path)
        self._files, self._handles = {}, {}
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary files without writing the archive."""
        for handle in self._handles.values():
            handle.close()  # type: ignore[attr-defined]
        for raw, _, _ in self._files.values():
            raw.unlink(missing_ok=True)
        self._files, self._handles = {}, {}
