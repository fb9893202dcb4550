"""Load a trained network for inference: a seqdeca ``model.pt`` export or DECA's ``deca_model.tar``.

A seqdeca export (:func:`seqdeca.train.state.export_inference_checkpoint`) holds the weights, the
resolved config YAML of the run and the face model's name. The model is rebuilt from that YAML
(the face-model files may be replaced by the caller's config, e.g. the same FLAME on another
machine) and the weights are loaded strictly; a face model of another name is refused.

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
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.models.from_config import build_model
from seqdeca.models.seqdeca_model import SeqDECA
from seqdeca.models.weights import load_weights, read_checkpoint

__all__ = ["CheckpointKindError", "LoadedModel", "load_model"]

log = logging.getLogger(__name__)

#: Keys of a seqdeca ``model.pt`` payload.
EXPORT_KEYS = ("model", "config_yaml", "face_model", "stage", "step")
#: Top-level keys by which a DECA checkpoint is recognised (at least one must be present).
DECA_KEYS = ("E_flame", "E_detail", "D_detail")


class CheckpointKindError(UserError):
    """A file is neither a seqdeca export nor a DECA checkpoint, or it does not fit (one line)."""


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


def _config_from_yaml(text: str, path: Path) -> Config:
    """The typed Config saved inside an export (unknown keys of older runs are an error)."""
    try:
        node = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(text))
        return OmegaConf.to_object(node)  # type: ignore[return-value]
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointKindError(
            f"{path}: the config saved in the checkpoint does not fit this seqdeca ({first}); "
            "re-export it with this version"
        ) from None


def _build(cfg: Config, path: Path, *, load_checkpoints: bool) -> SeqDECA:
    """:func:`build_model` with its ValueErrors (bad sizes, unknown backbone) as one line."""
    try:
        return build_model(cfg, load_checkpoints=load_checkpoints)
    except UserError:
        raise
    except ValueError as exc:
        raise CheckpointKindError(f"cannot build the model of {path}: {exc}") from None


def _load_export(payload: dict, path: Path, config: Config | None) -> tuple[SeqDECA, Config]:
    missing = [k for k in EXPORT_KEYS if k not in payload]
    if missing:
        raise CheckpointKindError(
            f"{path} is an incomplete seqdeca checkpoint (missing {', '.join(missing)}); "
            "use the model.pt written by tools/train_seq.py"
        )
    cfg = _config_from_yaml(str(payload["config_yaml"]), path)
    if config is not None and config.face_model.path:
        cfg.face_model = copy.deepcopy(config.face_model)  # the caller's copies of the files
    cfg.model.deca_checkpoint = cfg.model.au_checkpoint = ""  # the export holds every weight
    model = _build(cfg, path, load_checkpoints=False)
    want = str(payload["face_model"])
    if model.face_model.name != want:
        raise CheckpointKindError(
            f"{path} was trained with face model '{want}' but the configured face model is "
            f"'{model.face_model.name}': set face_model.path to the model it was trained with"
        )
    report = load_weights(model, payload["model"], source=str(path))
    log.info("loaded %s (stage %s, step %s): %s", path, payload["stage"], payload["step"],
             report.summary())  # fmt: skip
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
        UserError: one line for a missing, corrupt or unrecognised file, weights that do not
            fit, or a face model other than the one the export was trained with.
    """
    path = Path(path)
    payload = read_checkpoint(path, "model checkpoint (seqdeca model.pt or DECA deca_model.tar)")
    if "config_yaml" in payload or "face_model" in payload:
        model, cfg = _load_export(payload, path, config)
        kind = "seqdeca"
    elif any(k in payload for k in DECA_KEYS):
        model, cfg = _load_deca(path, config)
        kind = "deca"
    else:
        keys = ", ".join(sorted(map(str, payload))[:5]) or "none"
        raise CheckpointKindError(
            f"{path} is neither a seqdeca model.pt nor a DECA deca_model.tar (top-level keys: "
            f"{keys})"
        )
    try:
        model = model.to(torch.device(device)).eval()
    except (RuntimeError, AssertionError) as exc:
        raise UserError(f"cannot move the model to device {device!r} ({exc})") from None
    cfg.run.device = device
    return LoadedModel(model=model, config=cfg, kind=kind, path=path)
