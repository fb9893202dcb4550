"""Training state, atomic ``save_state`` checkpoints and the exported inference checkpoint.

A run directory holds::

    run_dir/config.yaml                 the resolved config of the run
    run_dir/losses.jsonl                one JSON line per optimizer step (losses, lr, skipped)
    run_dir/tb/                         TensorBoard event files
    run_dir/checkpoints/step_NNNNNN/    Accelerate ``save_state`` folders (+ train_state.json)
    run_dir/model.pt                    the export (:mod:`seqdeca.models.export`)
    run_dir/val.jsonl, images/, exports/  validation metrics, image grids, exports on request

A checkpoint folder is written under a temporary name and renamed when complete, so a folder
named ``step_NNNNNN`` is always whole; only the newest ``keep`` are kept.
:func:`export_from_checkpoint` turns any such folder into an inference ``model.pt`` without
training (``tools/train_seq.py --export``).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqdeca.config.loader import config_to_yaml, load_config
from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.io.safe_pickle import (
    UnsafeFileError,
    describe_error,
    load_torch,
    refusal_error,
    refused_global,
)
from seqdeca.io.weights import load_weights
from seqdeca.models.export import ModelExport, check_face_model, load_export, save_export
from seqdeca.models.from_config import build_model

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "train_state.json"
_STEP_RE = re.compile(r"^step_(\d{6,})$")
#: Files every complete ``save_state`` folder of ours holds (model weights in either format).
_REQUIRED = (STATE_FILE, "optimizer.bin")
_MODEL_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(UserError):
    """A checkpoint folder is missing, incomplete, corrupt or does not fit the model."""


@dataclass
class TrainState:
    """Loop counters saved with every checkpoint (registered with ``register_for_checkpointing``).

    Attributes:
        step: optimizer steps done (skipped non-finite steps included).
        epoch: current epoch of the window loader.
        batches_in_epoch: batches of ``epoch`` already consumed (for ``skip_first_batches``).
        bad_steps: consecutive non-finite steps so far.
    """

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    bad_steps: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key, value in state.items():
            setattr(self, key, int(value))


def checkpoint_name(step: int) -> str:
    """``step_NNNNNN`` (zero-padded to 6 digits)."""
    return f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of ``run_dir``, oldest first (temporary folders ignored)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` (>= 1) checkpoints; returns the deleted folders."""
    old = list_checkpoints(run_dir)[: -max(1, keep)]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def check_checkpoint(path: str | Path) -> dict[str, int]:
    """Validate a checkpoint folder and return its train state.

    Raises:
        CheckpointError: one line naming the folder and what is wrong.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}; pass an existing step_NNNNNN")
    missing = [n for n in _REQUIRED if not (path / n).is_file()]
    if not any((path / n).is_file() for n in _MODEL_FILES):
        missing.append(" or ".join(_MODEL_FILES))
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is incomplete (missing {', '.join(missing)}); "
            "resume from an earlier step_NNNNNN or start a new run"
        )
    try:
        state = json.loads((path / STATE_FILE).read_text())
        return {k: int(state[k]) for k in ("step", "epoch", "batches_in_epoch", "bad_steps")}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} has a corrupt {STATE_FILE} ({type(exc).__name__}); "
            "resume from an earlier step_NNNNNN or start a new run"
        ) from None


#: Pickles of a ``save_state`` folder that Accelerate would unpickle without ``weights_only``
#: (registered objects) or whose failure it would only log (RNG states).
_CHECKED_PICKLES = ("custom_checkpoint_*.pkl", "random_states_*.pkl")


def check_checkpoint_pickles(path: str | Path) -> None:
    """Read the registered-object and RNG pickles of a checkpoint strictly, before ``load_state``.

    Accelerate (1.x) loads model, optimizer, scheduler and RNG files with ``weights_only=True``
    but registered objects (our :class:`TrainState`, ``custom_checkpoint_N.pkl``) with full
    unpickling, and it skips RNG states it cannot read with only a log line (the resumed run
    would then silently differ). Both kinds hold only numbers, tuples, dicts and numpy arrays,
    so reading them here with ``weights_only=True`` (plus the numpy names Accelerate allows for
    RNG states) first means ``load_state`` unpickles nothing that could run code.

    Raises:
        UnsafeFileError: a file names a global that is not data (a tampered checkpoint).
        CheckpointError: a file cannot be read.
    """
    try:  # Accelerate's reader adds the numpy names its RNG states need to weights_only
        from accelerate.utils import load as accelerate_load
    except ImportError:  # older Accelerate releases: plain torch.load(weights_only=True)
        accelerate_load = None

    path = Path(path)
    for pattern in _CHECKED_PICKLES:
        for file in sorted(path.glob(pattern)):
            try:
                load_torch(file, what="a training checkpoint file", loader=accelerate_load)
            except UnsafeFileError:
                raise
            except Exception as exc:  # noqa: BLE001 - torch raises many types
                raise CheckpointError(
                    f"checkpoint {path} has an unreadable {file.name} ({describe_error(exc)}); "
                    "resume from an earlier step_NNNNNN or start a new run"
                ) from None


def strict_load_state_kwargs(accelerator: Any) -> dict[str, Any]:
    """Keyword arguments that make ``accelerator.load_state`` read optimizer, scheduler and
    sampler states with ``weights_only=True`` explicitly (``load_kwargs``, Accelerate >= 1.7;
    older releases rely on their own and torch's ``weights_only`` default)."""
    if "load_kwargs" in inspect.signature(accelerator.load_state).parameters:
        return {"load_kwargs": {"weights_only": True}}
    return {}


def load_state_strictly(accelerator: Any, path: Path) -> None:
    """``accelerator.load_state(path)`` with no pickle of the folder read beyond plain data.

    :func:`check_checkpoint_pickles` first, then ``load_state`` with
    :func:`strict_load_state_kwargs`; registered objects (our :class:`TrainState`) are restored
    through their ``load_state_dict``.

    Raises:
        UnsafeFileError: a file of the folder asks for anything but data.
        CheckpointError: one line when a file is unreadable or does not fit the prepared objects.
    """
    check_checkpoint_pickles(path)
    try:
        accelerator.load_state(str(path), **strict_load_state_kwargs(accelerator))
    except Exception as exc:  # noqa: BLE001 - torch / safetensors raise many types
        unsafe = refused_global(exc)
        if unsafe is not None:
            raise refusal_error(str(path), "a training checkpoint", unsafe) from None
        raise CheckpointError(
            f"cannot load checkpoint {path}: {describe_error(exc)}; is it from this config's model?"
        ) from None


def resolve_resume(run_dir: str | Path, resume: str) -> Path | None:
    """The checkpoint folder to resume from: ``"latest"`` or an explicit folder.

    ``"latest"`` in a folder without a checkpoint is None (start from scratch): a job that
    always passes ``--resume`` also survives being killed before its first checkpoint.
    """
    if resume != "latest":
        return Path(resume)
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def trim_log(path: Path, step: int) -> None:
    """Drop the lines of a JSON-lines log (``losses.jsonl``, ``val.jsonl``) whose "step" is past
    ``step``, and any line a kill cut short: a resumed run logs those steps again."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                keep.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue  # torn by the kill
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep))
    tmp.replace(path)


def write_state_json(folder: Path, state: TrainState) -> None:
    """Human-readable copy of the train state inside a checkpoint folder."""
    (folder / STATE_FILE).write_text(json.dumps(state.state_dict(), indent=1) + "\n")


def temporary_checkpoint_dir(run_dir: str | Path, step: int) -> tuple[Path, Path]:
    """``(temporary folder, final folder)`` for the checkpoint of ``step`` (temp one cleared)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(step)
    tmp = root / f".tmp_{checkpoint_name(step)}"
    return tmp, final


def publish_checkpoint(tmp: Path, final: Path) -> Path:
    """Rename a complete temporary checkpoint folder to its final name (replacing one there)."""
    _sync_tree(tmp)  # the files are on disk before the name says the checkpoint is complete
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _sync_dir(final.parent)
    return final


def _sync_dir(folder: Path) -> None:
    """fsync a folder (its entries: a rename inside it survives a power loss)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. a platform without directory file descriptors
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then the folders themselves."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        _sync_dir(path)


def export_inference_checkpoint(
    path: str | Path,
    *,
    state_dict: dict[str, torch.Tensor],
    config_yaml: str,
    face_model: str,
    stage: str,
    step: int,
) -> Path:
    """:func:`~seqdeca.models.export.save_export` of a :class:`ModelExport` given by its parts.

    Kept under this name for callers that hold a bare state_dict (tests, benchmarks).

    Args:
        path: target file.
        state_dict: the unwrapped model's ``state_dict()`` (tensors are moved to CPU).
        config_yaml: :func:`seqdeca.config.config_to_yaml` of the run's config.
        face_model: the face model's ``name`` (its identity; inference refuses another).
        stage: the stage that was trained.
        step: optimizer steps done.
    """
    record = ModelExport(
        weights=state_dict,
        config_yaml=config_yaml,
        face_model=face_model,
        stage=stage,
        step=int(step),
    )
    return save_export(path, record)


def export_model(model: nn.Module, cfg: Config, path: str | Path, *, step: int) -> Path:
    """Write ``model.pt`` (:func:`~seqdeca.models.export.save_export`) of an unwrapped
    :class:`SeqDECA` trained with ``cfg``: weights, resolved config, face-model name, stage, step."""
    record = ModelExport(
        weights=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage=cfg.train.stage,
        step=int(step),
    )
    return save_export(path, record)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the newest checkpoint of a run folder.

    Raises:
        CheckpointError: neither a checkpoint folder nor a run folder with checkpoints.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file() or _STEP_RE.match(path.name):
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(
            f"{path} is neither a checkpoint folder (step_NNNNNN) nor a run folder with "
            f"checkpoints under {CHECKPOINT_DIR}/"
        )
    return found[-1]


def _read_model_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The model weights of a ``save_state`` folder (safetensors or torch format)."""
    try:
        if (folder / _MODEL_FILES[0]).is_file():
            from safetensors.torch import load_file

            return load_file(str(folder / _MODEL_FILES[0]))
        return torch.load(folder / _MODEL_FILES[1], map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors / torch raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"cannot read the model weights of {folder}: {first}") from None


def export_from_checkpoint(
    checkpoint: str | Path, out: str | Path, *, cfg: Config | None = None
) -> Path:
    """Write an inference ``model.pt`` from a saved training checkpoint, without training.

    Args:
        checkpoint: a ``step_NNNNNN`` folder, or a run folder (its newest checkpoint).
        out: the ``.pt`` file to write.
        cfg: the run's config; default: ``config.yaml`` of the run folder holding the checkpoint.

    Returns:
        ``out``.

    Raises:
        CheckpointError: the checkpoint is incomplete, unreadable or does not fit the model.
        UserError: the run's config is missing.
    """
    folder = find_checkpoint(checkpoint)
    state = check_checkpoint(folder)
    if cfg is None:
        config_file = folder.parent.parent / "config.yaml"
        if not config_file.is_file():
            raise UserError(f"no run config at {config_file}: pass the run's --config files")
        cfg = load_config(config_file)
    model = build_model(cfg, load_checkpoints=False)
    model.set_stage(cfg.train.stage)
    try:
        load_weights(model, _read_model_weights(folder), source=str(folder))
    except UserError as exc:
        raise CheckpointError(f"{exc}; is the checkpoint from this config's model?") from None
    return export_model(model, cfg, out, step=state["step"])


def load_initial_weights(
    model: nn.Module, path: str | Path, *, modules: Sequence[str] = ()
) -> None:
    """Start a run from an exported ``model.pt`` (``train.init_from``), strictly.

    Args:
        model: the run's :class:`~seqdeca.models.SeqDECA`.
        path: the export.
        modules: names of top-level modules to take (``train.init_modules``), each completely;
            the others keep their initialisation. Empty: every weight.

    Raises:
        ExportError: the file is missing, not a seqdeca export, damaged, or was trained with
            another face model (one line).
        UserError: an unknown module is named, or its weights do not fit (one line).
    """
    record = load_export(path, what="train.init_from model.pt")
    check_face_model(
        record,
        model.face_model.name,
        source=f"train.init_from {path}",
        fix="use the same face_model settings",
    )
    if not modules:
        load_weights(model, record.weights, source=f"train.init_from {path}")
        return
    children = dict(model.named_children())
    for name in modules:
        if name not in children:
            raise UserError(
                f"train.init_modules names {name!r}, not a module of the model "
                f"({', '.join(children)})"
            )
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in record.weights.items() if k.startswith(prefix)}
        load_weights(children[name], part, source=f"train.init_from {path} ({name})")
