"""Import OpenGraphAU (MEFARG) stage-1 / stage-2 checkpoints into :class:`AUNet`, strictly.

A released checkpoint is ``torch.save(dict(epoch=..., state_dict=..., optimizer=...))`` written
from a DataParallel model, so every key starts with ``module.``. Our module names equal theirs,
so after stripping the prefix the key map is the identity. Unlike OpenGraphAU's own loader
(``strict=False``, which silently leaves a head random when the stage does not match), a file
whose graph head is the other stage is refused with a one-line :class:`WeightsError`, and any
missing, unexpected or mis-shaped key is refused by :func:`load_weights`.

Key families: ``backbone.*`` (ResNet-50, no ``fc``), ``global_linear.{fc,bn}.*``,
``head.main_class_linears.{k}.{fc,bn}.*``, ``head.main_sc`` (27, C), ``head.sub_sc`` (14, C);
stage 1 ``head.gnn.{U,V,bnv}.*``; stage 2 ``head.edge_extractor.*`` and
``head.gnn.graph_layers.{0,1}.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from seqdeca.io.weights import LoadReport, WeightsError, load_weights, read_checkpoint
from seqdeca.models.au_net import AUNet

PREFIX = "module."
WHAT = "OpenGraphAU checkpoint"


def checkpoint_stage(keys: list[str] | tuple[str, ...]) -> int | None:
    """The graph stage a set of (un-prefixed) keys belongs to: 1, 2, or None if neither head."""
    if any(k.startswith(("head.edge_extractor.", "head.gnn.graph_layers.")) for k in keys):
        return 2
    if any(k.startswith(("head.gnn.U.", "head.gnn.V.", "head.gnn.bnv.")) for k in keys):
        return 1
    return None


def strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a leading ``module.`` (DataParallel) from every key that has one."""
    return {k.removeprefix(PREFIX): v for k, v in state.items()}


def _state_from_file(data: dict, path: Path) -> dict[str, torch.Tensor]:
    state = data.get("state_dict", data)
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: no tensor state_dict found in the {WHAT}")
    return strip_prefix(state)


def _check_compatible(keys: list[str], au_net: AUNet, path: Path) -> None:
    """One-line refusals for the mismatches that a key diff would only describe obscurely."""
    if any(k.startswith(("backbone.patch_embed.", "backbone.layers.")) for k in keys):
        raise WeightsError(
            f"{path} has a Swin-Transformer backbone; AUNet supports the ResNet-50 checkpoints only"
        )
    stage = checkpoint_stage(keys)
    if stage is not None and stage != au_net.stage:
        raise WeightsError(
            f"{path} looks like an OpenGraphAU stage-{stage} checkpoint but the AUNet is stage "
            f"{au_net.stage}: build AUNet(stage={stage}) to load it"
        )


def load_opengraphau_checkpoint(path: str | Path, au_net: AUNet) -> LoadReport:
    """Load an OpenGraphAU checkpoint into ``au_net`` with every key accounted for.

    Files written by torch < 0.4.1 lack BatchNorm ``num_batches_tracked`` counters; when the file
    has none at all, the module's own counters are kept (they do not affect eval() outputs) and
    are not reported as missing. Any other gap is an error.

    Args:
        path: the checkpoint (``.pth``), a dict with ``state_dict`` (``module.``-prefixed keys);
            a bare state_dict is accepted too.
        au_net: the destination, built with the checkpoint's stage and backbone.

    Returns:
        The :class:`LoadReport` (``complete`` is true on success).

    Raises:
        WeightsError: unreadable file, Swin backbone, stage mismatch, or any missing, unexpected
            or mis-shaped key.
    """
    path = Path(path)
    state = _state_from_file(read_checkpoint(path, WHAT), path)
    keys = list(state)
    _check_compatible(keys, au_net, path)
    if not any(k.endswith("num_batches_tracked") for k in keys):
        counters = {
            k: v for k, v in au_net.state_dict().items() if k.endswith("num_batches_tracked")
        }
        state = state | counters
    return load_weights(au_net, state, source=f"{WHAT} {path}")
