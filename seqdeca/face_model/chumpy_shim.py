"""Read pickles that hold chumpy objects (FLAME / SMPL model files) without chumpy.

chumpy does not install with numpy >= 1.24, yet the official FLAME ``generic_model.pkl``
stores several arrays as ``chumpy.ch.Ch`` objects. A Ch object pickles as "create an empty
instance of chumpy.ch.Ch, then restore its ``__dict__``"; the array itself is the ``'x'`` entry
of that state dict. :class:`ChumpyFreeUnpickler` resolves every ``chumpy.*`` class to a shim
that just keeps the state, and :func:`to_array` turns a shim back into its numpy array.

The unpickler is :class:`~seqdeca.io.safe_pickle.RestrictedUnpickler` plus the chumpy names:
besides them a model file may only hold numpy arrays, scipy sparse matrices and builtin
containers (old ``numpy.core.*`` and ``scipy.sparse.csc.*`` names are understood); anything
else is refused with :class:`~seqdeca.io.safe_pickle.UnsafeFileError` before it runs.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np

from seqdeca.io.safe_pickle import RestrictedUnpickler


class ChumpyShim:
    """Stand-in for any pickled chumpy object; ``state`` is its pickled ``__dict__``."""

    chumpy_class = "chumpy.ch.Ch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        # chumpy's own __setstate__ receives the instance dict; keep it as it came.
        self.state = state if isinstance(state, dict) else {"state": state}


def _shim_class(module: str, name: str) -> type:
    """A subclass of :class:`ChumpyShim` that remembers which chumpy class it replaces."""
    return type(name, (ChumpyShim,), {"chumpy_class": f"{module}.{name}"})


class ChumpyFreeUnpickler(RestrictedUnpickler):
    """The restricted unpickler that also maps ``chumpy.*`` classes to :class:`ChumpyShim`s."""

    def resolve(self, module: str, name: str) -> Any | None:
        if module == "chumpy" or module.startswith("chumpy."):
            return _shim_class(module, name)
        return super().resolve(module, name)


def load_pickle_without_chumpy(
    file: IO[bytes], *, source: str = "model file", what: str = "a FLAME model pickle"
) -> Any:
    """Unpickle a (Python 2 era) model file: latin1 strings, chumpy objects as shims.

    Args:
        file: the open binary file.
        source, what: the file's name and expected content, for the refusal message.

    Raises:
        UnsafeFileError: the pickle names anything but numpy / scipy / chumpy data.
    """
    return ChumpyFreeUnpickler(file, source=source, what=what).load()


def to_array(value: Any) -> Any:
    """Resolve chumpy shims (recursively) to numpy arrays; other values pass through.

    Raises:
        ValueError: for a chumpy expression (an operation, not a stored array) that cannot be
            evaluated without chumpy.
    """
    if not isinstance(value, ChumpyShim):
        return value
    if "x" not in value.state:
        raise ValueError(
            f"{value.chumpy_class} object without a stored array (a chumpy expression needs "
            "chumpy to evaluate)"
        )
    return np.asarray(to_array(value.state["x"]))
