"""The one way seqdeca loads weights into a module: every key accounted for, or a refusal.

Research code loads with ``strict=False`` or a bare ``except: continue``, which silently leaves
parts of a network random. Here a load produces a :class:`LoadReport` (missing, unexpected and
mis-shaped keys) and raises :class:`WeightsError` unless the caller explicitly allows the gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from seqdeca.errors import UserError
from seqdeca.io.safe_pickle import UnsafeFileError, describe_error, load_torch


class WeightsError(UserError):
    """A checkpoint does not fit the module it is loaded into (one-line message)."""


@dataclass
class LoadReport:
    """What a weight load matched.

    Attributes:
        loaded: keys copied into the module.
        missing: module keys the checkpoint did not provide.
        unexpected: checkpoint keys the module does not have (after renaming).
        mismatched: (key, checkpoint shape, module shape) for keys present in both.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        """One line: counts and the first few offending keys of each kind."""

        def few(keys: list) -> str:
            shown = ", ".join(str(k) for k in keys[:limit])
            return shown + (", ..." if len(keys) > limit else "")

        parts = [f"{len(self.loaded)} loaded"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({few(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({few(self.unexpected)})")
        if self.mismatched:
            shown = [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} mis-shaped ({few(shown)})")
        return "; ".join(parts)


def load_weights(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "checkpoint",
    rename: Callable[[str], str | None] | None = None,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
) -> LoadReport:
    """Copy ``state`` into ``module`` after checking every key.

    Args:
        module: the destination (its ``state_dict`` keys are the reference).
        state: checkpoint tensors by key.
        source: what to call the checkpoint in messages (usually its path and part).
        rename: maps a checkpoint key to a module key, or None to drop it on purpose (dropped
            keys are neither loaded nor reported as unexpected).
        allow_missing: accept module keys absent from the checkpoint (they keep their values).
        allow_unexpected: accept checkpoint keys the module lacks.

    Returns:
        The :class:`LoadReport`.

    Raises:
        WeightsError: mis-shaped keys always; missing / unexpected keys unless allowed.
    """
    target = module.state_dict()
    report = LoadReport()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = rename(key) if rename is not None else key
        if new is not None:
            renamed[new] = value
    for key, value in renamed.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            report.loaded.append(key)
    report.missing = [k for k in target if k not in renamed]
    refuse = bool(report.mismatched) or (report.missing and not allow_missing)
    refuse = refuse or bool(report.unexpected and not allow_unexpected)
    if refuse:
        raise WeightsError(f"{source} does not fit {type(module).__name__}: {report.summary()}")
    module.load_state_dict({k: renamed[k] for k in report.loaded}, strict=False)
    return report


def read_checkpoint(path: str | Path, what: str) -> dict:
    """``torch.load`` a checkpoint on CPU, strictly (``weights_only=True``: tensors, containers
    and numbers; nothing in the file is run), with a one-line error for bad files.

    Args:
        path: the file.
        what: a short description for messages, e.g. "DECA deca_model.tar".

    Raises:
        WeightsError: missing, unreadable or not a dict.
        UnsafeFileError: the file asks for code or objects that are not weights.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}")
    try:
        data = load_torch(path, what=what)
    except UnsafeFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoding failure is the same user error
        raise WeightsError(
            f"{path} is not a readable {what} ({type(exc).__name__}: {describe_error(exc)})"
        ) from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a dict in {what}, found {type(data).__name__}")
    return data
