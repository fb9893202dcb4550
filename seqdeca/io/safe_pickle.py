"""Read pickles and torch checkpoints without running anything a file asks for.

A pickle is a small program: it names Python callables ("globals") and calls them with
arguments it supplies, so ``pickle.load`` of a hostile ``generic_model.pkl`` can run
``os.system``. Every pickle-based file seqdeca reads therefore goes through one of two strict
readers:

* :class:`RestrictedUnpickler` (plain pickles: the FLAME model, VGGFace2's
  ``resnet50_ft_weight.pkl``, DECA's ``landmark_embedding.npy``) resolves a global only when it
  is in :data:`ALLOWED_GLOBALS` -- numpy array / scalar / dtype reconstruction (``numpy.core``
  and ``numpy._core`` names), scipy's csc / csr / coo matrices (any ``scipy.sparse.*`` module
  path), builtin sets and ``OrderedDict``, Python 2's ``copy_reg._reconstructor``, ``bytes``
  written at protocol 2 (``_codecs.encode`` with latin1 only), and torch tensors (rebuilt from
  storages that are themselves read with ``weights_only=True``). Any other global is refused with
  :class:`UnsafeFileError` before it is imported.
* :func:`load_torch` (``torch.save`` files: DECA ``deca_model.tar``, OpenGraphAU ``.pth``,
  seqdeca ``model.pt``, VGG19 weights, training-checkpoint pickles) is ``torch.load`` with
  ``weights_only=True`` (tensors, containers and numbers only); a refused global becomes the same
  :class:`UnsafeFileError`.

Neither reader imports a module the file names unless the name is allowed, so a refused file
has run nothing.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import copyreg
import io
import pickle
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from seqdeca.errors import UserError

__all__ = [
    "ALLOWED_GLOBALS",
    "RestrictedUnpickler",
    "UnsafeFileError",
    "describe_error",
    "load_npy",
    "load_pickle",
    "load_torch",
    "refusal_error",
    "refused_global",
]

#: ``module.name`` of every global a plain pickle may name (after the renames of
#: :func:`canonical_global`); what each resolves to is in :func:`_allowed`.
ALLOWED_GLOBALS = (
    "numpy._core.multiarray._reconstruct",  # ndarray.__reduce__
    "numpy._core.multiarray.scalar",  # numpy scalars (np.float64(1.0))
    "numpy._core.numeric._frombuffer",  # ndarrays at pickle protocol 5
    "numpy.ndarray",
    "numpy.dtype",
    "scipy.sparse.csc_matrix",  # FLAME's J_regressor
    "scipy.sparse.csr_matrix",
    "scipy.sparse.coo_matrix",
    "builtins.object",  # only useful as copyreg._reconstructor's base
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytearray",
    "builtins.bytes",  # empty bytes at protocol <= 2
    "collections.OrderedDict",
    "copyreg._reconstructor",  # protocol 0/1 objects (Python 2 model files)
    "_codecs.encode",  # bytes at protocol <= 2, latin1 only
    "torch._utils._rebuild_tensor_v2",  # torch tensors (DECA's landmark_embedding.npy)
    "torch.storage._load_from_bytes",  # their storages, read with weights_only=True
)

_SPARSE = ("csc_matrix", "csr_matrix", "coo_matrix")


class UnsafeFileError(UserError):
    """A file asks to run or build something its format never holds; nothing of it was run."""


def refusal_error(source: str, what: str, name: str) -> UnsafeFileError:
    """The one-line :class:`UnsafeFileError` for ``source`` asking for the global ``name``."""
    return UnsafeFileError(
        f"{source}: refused to read {what}: it asks for the Python object '{name}', which is not "
        "data this format holds (a damaged or malicious file; nothing from it was run); use the "
        "official file"
    )


def canonical_global(module: str, name: str) -> tuple[str, str]:
    """The name a pickled global is checked under.

    Python 2 names (``__builtin__``, ``copy_reg``) become Python 3 ones, numpy 1's
    ``numpy.core.*`` becomes ``numpy._core.*`` and every ``scipy.sparse.*`` module path (e.g. the
    old ``scipy.sparse.csc``) becomes ``scipy.sparse``.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core") :]
    if module.startswith("scipy.sparse."):
        module = "scipy.sparse"
    return module, name


def _latin1_bytes(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol <= 2 (always with latin1)."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not pickled bytes")
    return text.encode("latin1", errors)


def _storage_from_bytes(data: bytes) -> Any:
    """A torch storage pickled inside a plain pickle (its bytes are a ``torch.save`` file)."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"a torch storage needs bytes, got {type(data).__name__}")
    return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)


def _rebuild_tensor(
    storage: Any,
    offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` restricted to a real storage and no hooks."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(
            f"a tensor needs a torch storage, got {type(storage).__name__}"
        )
    if backward_hooks or not isinstance(metadata, (dict, type(None))):
        raise pickle.UnpicklingError("a pickled tensor carries hooks or odd metadata")
    return torch._utils._rebuild_tensor_v2(
        storage, offset, size, stride, bool(requires_grad), collections.OrderedDict(), metadata
    )


@cache
def _allowed() -> dict[str, Any]:
    """``module.name`` -> the object it resolves to, for :data:`ALLOWED_GLOBALS`."""
    import scipy.sparse

    array = np.zeros(1)
    table: dict[str, Any] = {
        "numpy._core.multiarray._reconstruct": array.__reduce__()[0],
        "numpy._core.multiarray.scalar": np.float64(0).__reduce__()[0],
        "numpy._core.numeric._frombuffer": array.__reduce_ex__(5)[0],
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
        "builtins.object": object,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.bytearray": bytearray,
        "builtins.bytes": bytes,
        "collections.OrderedDict": collections.OrderedDict,
        "copyreg._reconstructor": copyreg._reconstructor,
        "_codecs.encode": _latin1_bytes,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
        "torch.storage._load_from_bytes": _storage_from_bytes,
    }
    table |= {f"scipy.sparse.{name}": getattr(scipy.sparse, name) for name in _SPARSE}
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (plus :meth:`resolve` of a subclass).

    Args:
        file: the open binary file, positioned at the pickle.
        source: the file's name for messages.
        what: what the file should be, for messages (e.g. "a FLAME model pickle").
        encoding: how Python 2 ``str`` objects are decoded (latin1 keeps numpy buffers intact).
    """

    def __init__(self, file: IO[bytes], *, source: str, what: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source, self.what = source, what

    def resolve(self, module: str, name: str) -> Any | None:
        """The object for an (already canonical) global, or None to refuse it."""
        return _allowed().get(f"{module}.{name}")

    def find_class(self, module: str, name: str) -> Any:
        module, name = canonical_global(module, name)
        found = self.resolve(module, name)
        if found is None:
            raise refusal_error(self.source, self.what, f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise refusal_error(self.source, self.what, f"persistent id {str(pid)[:40]}")


def _with_torch_refusals(source: str, what: str, read: Callable[[], Any]) -> Any:
    """Call ``read``; a torch ``weights_only`` refusal inside becomes :class:`UnsafeFileError`."""
    try:
        return read()
    except pickle.UnpicklingError as exc:
        name = refused_global(exc)
        if name is None:
            raise
        raise refusal_error(source, what, name) from None


def load_pickle(
    path: str | Path, *, what: str, unpickler: type[RestrictedUnpickler] = RestrictedUnpickler
) -> Any:
    """Unpickle a whole file with a restricted unpickler (Python 2 strings as latin1).

    Raises:
        UnsafeFileError: the file names a global that is not allowed.
        OSError, pickle.UnpicklingError, ...: an unreadable file (callers word these).
    """
    path = Path(path)
    with path.open("rb") as handle:
        reader = unpickler(handle, source=str(path), what=what)
        return _with_torch_refusals(str(path), what, reader.load)


def load_npy(path: str | Path, *, what: str) -> Any:
    """``numpy.load`` of a ``.npy`` file whose object arrays are unpickled restrictedly.

    Returns:
        The array (for an object array, e.g. a 0-d array holding a dict, the array itself).
    """
    path = Path(path)
    fmt = np.lib.format
    with path.open("rb") as handle:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            _, _, dtype = fmt.read_array_header_1_0(handle)
        elif version == (2, 0):
            _, _, dtype = fmt.read_array_header_2_0(handle)
        else:
            raise ValueError(f".npy format version {version} is not supported here")
        if not dtype.hasobject:
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        reader = RestrictedUnpickler(handle, source=str(path), what=what)
        return _with_torch_refusals(str(path), what, reader.load)


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def describe_error(exc: BaseException) -> str:
    """The informative part of a read error as one short line.

    ``torch.load(weights_only=True)`` wraps its reason (e.g. "Unsupported operand 110" for a
    file that is not a torch checkpoint) in paragraphs about PyTorch 2.6 and its documentation;
    only the reason is kept.
    """
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Weights only load failed")]
    return (lines[0] if lines else type(exc).__name__)[:200]


def refused_global(exc: BaseException) -> str | None:
    """The global a ``torch.load(weights_only=True)`` refusal names, or None for other errors."""
    found = _GLOBAL_RE.search(str(exc))
    return found.group(1) if found else None


def load_torch(path: str | Path, *, what: str, loader: Callable[..., Any] | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``.

    Args:
        path: the file.
        what: what it should be, for messages.
        loader: a replacement for ``torch.load`` with the same signature (e.g. Accelerate's
            ``load``, which also allows the numpy objects of its RNG states); it must keep
            ``weights_only=True``.

    Raises:
        UnsafeFileError: the file names a global the strict reader refuses.
        Exception: any other read error, unchanged (callers word it).
    """
    path = Path(path)
    read = loader or torch.load
    return _with_torch_refusals(
        str(path), what, lambda: read(path, map_location="cpu", weights_only=True)
    )
