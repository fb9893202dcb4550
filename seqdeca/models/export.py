"""The seqdeca export ``model.pt``: one record, one writer, one reader, one error type.

A training run ends by writing ``run_dir/model.pt`` (also ``tools/train_seq.py --export`` and
``export.request``); inference, evaluation, ``train.init_from`` and the experiments read it. The
file is a ``torch.save`` dict with exactly these keys, in this order::

    "model"        dict[str, Tensor]  the network's state_dict (CPU tensors)
    "config_yaml"  str                the resolved config of the run (``config_to_yaml``)
    "face_model"   str                the face model's ``name`` (its identity)
    "stage"        str                the stage that was trained ("temporal", "detail", ...)
    "step"         int                optimizer steps done

:class:`ModelExport` is that dict as a typed record; :func:`save_export` writes it atomically and
:func:`load_export` reads it with ``torch.load(weights_only=True)`` (nothing in the file is run;
a file that asks for code is refused with :class:`~seqdeca.io.safe_pickle.UnsafeFileError`).
Every other problem is one :class:`ExportError` line: a missing file, a file that is not a
seqdeca export, or a damaged one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.io.weights import WeightsError, read_checkpoint

__all__ = [
    "EXPORT_KEYS",
    "ExportError",
    "ModelExport",
    "check_face_model",
    "export_config",
    "export_from_payload",
    "is_export_payload",
    "load_export",
    "save_export",
]

#: Top-level keys of a ``model.pt``, in the order they are written.
EXPORT_KEYS = ("model", "config_yaml", "face_model", "stage", "step")
#: Keys only a seqdeca export has: a dict with one of them is an export (complete or damaged).
_MARKER_KEYS = ("config_yaml", "face_model")
_REEXPORT = "re-export it with tools/train_seq.py --export RUN_DIR OUT.pt"


class ExportError(UserError):
    """A ``model.pt`` is missing, is not a seqdeca export, is damaged or does not fit (one line)."""


@dataclass(frozen=True)
class ModelExport:
    """What a ``model.pt`` holds.

    Attributes:
        weights: the network's ``state_dict()`` (saved as key "model"; moved to CPU on save).
        config_yaml: the resolved config of the training run, as YAML text.
        face_model: the face model's ``name``; a model built with another one is refused.
        stage: the training stage that produced the weights.
        step: optimizer steps done when the weights were exported.
    """

    weights: dict[str, torch.Tensor]
    config_yaml: str
    face_model: str
    stage: str
    step: int

    def to_payload(self) -> dict[str, Any]:
        """The on-disk dict (keys :data:`EXPORT_KEYS`, in order; tensors detached, on CPU)."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.weights.items()},
            "config_yaml": self.config_yaml,
            "face_model": self.face_model,
            "stage": self.stage,
            "step": int(self.step),
        }


def save_export(path: str | Path, record: ModelExport) -> Path:
    """Write ``record`` to ``path`` atomically (a temporary file renamed over the target).

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(record.to_payload(), tmp)
    tmp.replace(path)
    return path


def is_export_payload(payload: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint dict is a seqdeca export (it has one of its marker keys)."""
    return any(k in payload for k in _MARKER_KEYS)


def _damaged(path: Path, what: str, why: str) -> ExportError:
    return ExportError(f"{path} is a damaged {what} ({why}); {_REEXPORT}")


def _check_types(payload: Mapping[str, Any], path: Path, what: str) -> None:
    """Raise a damaged-file error when a value of ``payload`` has the wrong type."""
    weights = payload["model"]
    if not isinstance(weights, dict):
        raise _damaged(path, what, f"'model' is a {type(weights).__name__}, not a state_dict")
    bad = [
        str(k)
        for k, v in weights.items()
        if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if bad:
        raise _damaged(path, what, f"'model' holds non-tensor entries: {', '.join(bad[:3])}")
    for key in ("config_yaml", "face_model", "stage"):
        if not isinstance(payload[key], str):
            raise _damaged(path, what, f"'{key}' is a {type(payload[key]).__name__}, not text")
    step = payload["step"]
    if isinstance(step, bool) or not isinstance(step, int):
        raise _damaged(path, what, f"'step' is a {type(step).__name__}, not an integer")


def export_from_payload(
    payload: Mapping[str, Any], path: str | Path, *, what: str = "seqdeca model.pt"
) -> ModelExport:
    """The record of an already loaded ``model.pt`` dict (for readers that take several formats).

    Args:
        payload: the dict ``torch.load`` returned.
        path: the file it came from (for messages).
        what: what the file is, for messages (e.g. "train.init_from model.pt").

    Raises:
        ExportError: not a seqdeca export, a missing key or a value of the wrong type.
    """
    path = Path(path)
    if not is_export_payload(payload):
        keys = ", ".join(sorted(map(str, payload))[:5]) or "none"
        raise ExportError(
            f"{path} is not a {what} export (top-level keys: {keys}); give the "
            "model.pt a seqdeca training run wrote"
        )
    missing = [k for k in EXPORT_KEYS if k not in payload]
    if missing:
        raise _damaged(path, what, f"missing {', '.join(missing)}")
    _check_types(payload, path, what)
    return ModelExport(
        weights=dict(payload["model"]),
        config_yaml=payload["config_yaml"],
        face_model=payload["face_model"],
        stage=payload["stage"],
        step=int(payload["step"]),
    )


def load_export(path: str | Path, *, what: str = "seqdeca model.pt") -> ModelExport:
    """Read a ``model.pt`` on CPU with ``torch.load(..., weights_only=True)``.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. "train.init_from model.pt").

    Raises:
        ExportError: the file is missing, is not a seqdeca export, or is damaged (one line).
        UnsafeFileError: the file asks for code or objects that are not data (nothing was run).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{what} not found: {path}; give the model.pt a training run wrote")
    try:
        payload = read_checkpoint(path, what)
    except WeightsError as exc:  # unreadable or not a dict: the export's one error type
        raise ExportError(str(exc)) from None
    return export_from_payload(payload, path, what=what)


def export_config(record: ModelExport, path: str | Path) -> Config:
    """The typed :class:`Config` saved in ``record`` (read from ``path``).

    Raises:
        ExportError: the saved config does not fit this version's schema (e.g. a removed key).
    """
    try:
        node = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(record.config_yaml))
        return OmegaConf.to_object(node)  # type: ignore[return-value]
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"{path}: the config saved in the checkpoint does not fit this seqdeca ({first}); "
            "re-export it with this version"
        ) from None


def check_face_model(record: ModelExport, face_model: str, *, source: str, fix: str) -> None:
    """Refuse weights trained with another face model than ``face_model`` (its ``name``).

    Args:
        record: the export.
        face_model: the name of the face model the weights are about to be used with.
        source: how messages name the export (e.g. its path, "train.init_from PATH").
        fix: what the user should do, for the message.

    Raises:
        ExportError: the names differ (one line).
    """
    if record.face_model != face_model:
        raise ExportError(
            f"{source} was trained with face model '{record.face_model}' but this "
            f"model uses '{face_model}': {fix}"
        )
