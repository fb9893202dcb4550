"""Load a trained network for inference: a seqdeca ``model.pt`` export or DECA's ``deca_model.tar``.

A seqdeca export (:mod:`seqdeca.models.export`) holds the weights, the resolved config YAML of
the run and the face model's name. The model is rebuilt from that YAML (the face-model files may
be replaced by the caller's config, e.g. the same FLAME on another machine) and the weights are
loaded strictly; a face model of another name is refused.

A DECA ``deca_model.tar`` holds only network weights: the caller's config names the face model
(FLAME with DECA's 100/50/50 layout) and the model is built as the per-frame baseline
(``model.use_temporal=False``; the untrained temporal fusion adds nothing, so the result is
DECA's per-frame answer).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.io.weights import load_weights, read_checkpoint
from seqdeca.models.export import (
    ExportError,
    check_face_model,
    export_config,
    export_from_payload,
    is_export_payload,
)
from seqdeca.models.from_config import build_model
from seqdeca.models.seqdeca_model import SeqDECA

__all__ = ["LoadedModel", "load_model"]

log = logging.getLogger(__name__)

#: Top-level keys by which a DECA checkpoint is recognised (at least one must be present).
DECA_KEYS = ("E_flame", "E_detail", "D_detail")


@dataclass
class LoadedModel:
    """A network ready for inference.

    Attributes:
        model: the :class:`SeqDECA`, in eval mode, on ``device``.
        config: the resolved config the model was built from.
        kind: "seqdeca" (a ``model.pt`` export) or "deca" (``deca_model.tar``).
        path: the checkpoint file.
    """

    model: SeqDECA
    config: Config
    kind: str
    path: Path


def _build(cfg: Config, path: Path, *, load_checkpoints: bool) -> SeqDECA:
    """:func:`build_model` with its ValueErrors (bad sizes, unknown backbone) as one line."""
    try:
        return build_model(cfg, load_checkpoints=load_checkpoints)
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(f"cannot build the model of {path}: {exc}") from None


def _load_export(payload: dict, path: Path, config: Config | None) -> tuple[SeqDECA, Config]:
    """The model of a seqdeca export (its saved config; the caller's face-model files if given)."""
    record = export_from_payload(payload, path)
    cfg = export_config(record, path)
    if config is not None and config.face_model.path:
        cfg.face_model = copy.deepcopy(config.face_model)  # the caller's copies of the files
    cfg.model.deca_checkpoint = cfg.model.au_checkpoint = ""  # the export holds every weight
    model = _build(cfg, path, load_checkpoints=False)
    check_face_model(
        record,
        model.face_model.name,
        source=str(path),
        fix="set face_model.path to the model it was trained with",
    )
    report = load_weights(model, record.weights, source=str(path))
    log.info("loaded %s (stage %s, step %s): %s", path, record.stage, record.step, report.summary())
    return model, cfg


def _load_deca(path: Path, config: Config | None) -> tuple[SeqDECA, Config]:
    cfg = copy.deepcopy(config) if config is not None else Config()
    cfg.model.deca_checkpoint = str(path)
    cfg.model.use_temporal = False  # the per-frame DECA baseline
    if not cfg.model.au_checkpoint:
        # Without AU weights the AU net only feeds the (untrained, zero) fusion residual and the
        # AU head: the small trunk gives the same meshes at a fraction of the cost.
        cfg.model.au_backbone = "tiny"
    return _build(cfg, path, load_checkpoints=True), cfg


def load_model(
    path: str | Path, *, device: str = "cpu", config: Config | None = None
) -> LoadedModel:
    """Load a seqdeca ``model.pt`` export or a DECA ``deca_model.tar`` for inference.

    Args:
        path: the checkpoint file.
        device: torch device of the returned model ("cpu", "cuda", "cuda:1", ...).
        config: for a seqdeca export, optional: its ``face_model`` section (when it names a file)
            replaces the saved one. For a DECA checkpoint: the face model (FLAME with DECA's
            100/50/50 layout and side files) and model settings; default :class:`Config`.

    Returns:
        :class:`LoadedModel` (model in eval mode on ``device``).

    Raises:
        WeightsError: the file is missing or unreadable, or its weights do not fit (one line).
        ExportError: a file of neither kind, a damaged seqdeca export, a saved config that does
            not fit this version, or a face model other than the one the export was trained
            with (one line).
        UserError: a model that cannot be built, a bad device.
    """
    path = Path(path)
    # The kind is known only once the file is read: read it once, then parse it as that kind.
    payload = read_checkpoint(path, "model checkpoint (seqdeca model.pt or DECA deca_model.tar)")
    if is_export_payload(payload):
        model, cfg = _load_export(payload, path, config)
        kind = "seqdeca"
    elif any(k in payload for k in DECA_KEYS):
        model, cfg = _load_deca(path, config)
        kind = "deca"
    else:
        keys = ", ".join(sorted(map(str, payload))[:5]) or "none"
        raise ExportError(
            f"{path} is neither a seqdeca model.pt nor a DECA deca_model.tar (top-level keys: "
            f"{keys})"
        )
    try:
        model = model.to(torch.device(device)).eval()
    except (RuntimeError, AssertionError) as exc:
        raise UserError(f"cannot move the model to device {device!r} ({exc})") from None
    cfg.run.device = device
    return LoadedModel(model=model, config=cfg, kind=kind, path=path)
