"""Read pickles that hold chumpy objects (FLAME / SMPL model files) without chumpy.

chumpy does not install with numpy >= 1.24, yet the official FLAME ``generic_model.pkl``
stores several arrays as ``chumpy.ch.Ch`` objects. A Ch object pickles as "create an empty
instance of chumpy.ch.Ch, then restore its ``__dict__``"; the array itself is the ``'x'`` entry
of that state dict. :class:`ChumpyFreeUnpickler` resolves every ``chumpy.*`` class to a shim
that just keeps the state, and :func:`to_array` turns a shim back into its numpy array.

Old pickles name numpy's internals ``numpy.core.*`` (``numpy._core`` since numpy 2; mapped
when available) and scipy's sparse classes by module paths that newer scipy releases may
deprecate or drop (``scipy.sparse.csc.csc_matrix``); those resolve to the class of the same
name in the ``scipy.sparse`` namespace.
"""

from __future__ import annotations

import contextlib
import pickle
from typing import IO, Any

import numpy as np


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


class ChumpyFreeUnpickler(pickle.Unpickler):
    """An unpickler that maps ``chumpy.*`` classes to :class:`ChumpyShim` subclasses."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _shim_class(module, name)
        if module == "numpy.core" or module.startswith("numpy.core."):
            # numpy 2 renamed numpy.core to numpy._core (the old name is a deprecated alias).
            renamed = "numpy._core" + module[len("numpy.core") :]
            with contextlib.suppress(ImportError, AttributeError):
                return super().find_class(renamed, name)
        if module.startswith("scipy.sparse."):
            import scipy.sparse

            if hasattr(scipy.sparse, name):  # e.g. scipy.sparse.csc.csc_matrix
                return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def load_pickle_without_chumpy(file: IO[bytes]) -> Any:
    """Unpickle a (Python 2 era) model file: latin1 strings, chumpy objects as shims."""
    return ChumpyFreeUnpickler(file, encoding="latin1").load()


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
