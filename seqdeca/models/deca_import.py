"""Import DECA's released ``deca_model.tar`` into seqdeca's modules, strictly.

The file is a ``torch.save`` dict whose parts ``E_flame``, ``E_detail`` and ``D_detail`` are the
state dicts of the coarse encoder, detail encoder and detail generator (docs/design.md, "DECA and
OpenGraphAU compatibility"). Our modules keep DECA's attribute names, so the mapping is the
identity up to a possible ``module.`` prefix (checkpoints saved from a DataParallel wrapper). Every
key must match: the only module keys a DECA checkpoint may leave unset are the detail generator's
AU layers (FiLM, ``film.*``, or the linear form's ``au_maps.*`` and ``au_templates``), which stay
at their zero initialisation so that the generator reproduces DECA's output exactly.

Legacy part names to seqdeca modules:

=========  ==================================================
E_flame    :class:`~seqdeca.models.coarse_encoder.CoarseEncoder` (236 codes)
E_detail   :class:`~seqdeca.models.detail.DetailEncoder` (128 codes)
D_detail   :class:`~seqdeca.models.detail.DetailGenerator`
=========  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from seqdeca.io.weights import LoadReport, WeightsError, load_weights, read_checkpoint

WHAT = "DECA deca_model.tar"

#: seqdeca argument name -> part key in deca_model.tar.
PARTS: dict[str, str] = {
    "coarse_encoder": "E_flame",
    "detail_encoder": "E_detail",
    "detail_generator": "D_detail",
}

#: Module keys a DECA checkpoint never provides, by part: the generator's AU layers only (FiLM,
#: or the linear form's AU maps).
_MAY_BE_ABSENT: dict[str, Callable[[str], bool]] = {
    "coarse_encoder": lambda key: False,
    "detail_encoder": lambda key: False,
    "detail_generator": lambda key: key.startswith(("film.", "au_maps.", "au_templates")),
}

_PREFIX = "module."


def _strip_prefix(key: str) -> str:
    """DataParallel's ``module.`` prefix, if any, removed."""
    return key.removeprefix(_PREFIX)


def load_deca_part(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    may_be_absent: Callable[[str], bool],
    source: str,
) -> LoadReport:
    """Load one DECA state dict into ``module``; only keys accepted by ``may_be_absent`` may miss.

    The module is left untouched when the load is refused.

    Raises:
        WeightsError: a mis-shaped, unexpected or (not allowed) missing key.
    """
    provided = {_strip_prefix(k) for k in state}
    gaps = [k for k in module.state_dict() if k not in provided and not may_be_absent(k)]
    # With gaps, the strict call below refuses (naming every missing key); without, the only
    # missing keys are the allowed ones and the report lists them.
    return load_weights(module, state, source=source, rename=_strip_prefix, allow_missing=not gaps)


def load_deca_checkpoint(
    path: str | Path,
    *,
    coarse_encoder: nn.Module | None = None,
    detail_encoder: nn.Module | None = None,
    detail_generator: nn.Module | None = None,
) -> dict[str, LoadReport]:
    """Copy the requested parts of DECA's ``deca_model.tar`` into our modules.

    Args:
        path: the ``deca_model.tar`` file.
        coarse_encoder: receives ``E_flame`` (a ``CoarseEncoder(236)`` with the ResNet-50 trunk).
        detail_encoder: receives ``E_detail`` (a ``DetailEncoder()`` with the ResNet-50 trunk).
        detail_generator: receives ``D_detail`` (a ``DetailGenerator(latent_dim=181)``); its AU
            layers' parameters are not in the file and keep their zero initialisation.

    Returns:
        ``{argument name: LoadReport}`` for every module given. Encoder reports are complete;
        the generator's ``missing`` holds exactly its ``film.*`` (or ``au_maps.*`` and
        ``au_templates``) keys.

    Raises:
        WeightsError: unreadable file, a requested part absent, or any key that does not fit.
        ValueError: no module given.
    """
    targets = {
        "coarse_encoder": coarse_encoder,
        "detail_encoder": detail_encoder,
        "detail_generator": detail_generator,
    }
    targets = {name: module for name, module in targets.items() if module is not None}
    if not targets:
        raise ValueError("load_deca_checkpoint: give at least one module to load into")
    checkpoint = read_checkpoint(path, WHAT)
    for name in targets:  # every requested part present before anything is loaded
        part = PARTS[name]
        state = checkpoint.get(part)
        if state is None:
            found = ", ".join(sorted(map(str, checkpoint))) or "nothing"
            raise WeightsError(
                f"{path} has no '{part}' part for the {name.replace('_', ' ')} (found: {found}); "
                f"use DECA's released {Path(path).name or 'deca_model.tar'}"
            )
        if not isinstance(state, Mapping):
            raise WeightsError(
                f"{path}: part '{part}' is a {type(state).__name__}, not a state dict"
            )
    reports: dict[str, LoadReport] = {}
    for name, module in targets.items():
        part = PARTS[name]
        reports[name] = load_deca_part(
            module, checkpoint[part], may_be_absent=_MAY_BE_ABSENT[name], source=f"{path} [{part}]"
        )
    return reports
