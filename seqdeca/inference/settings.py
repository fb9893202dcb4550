"""What inference takes from a trained checkpoint: its window lengths and its crop.

A seqdeca ``model.pt`` saves the resolved config of its training run. The temporal fusion has
seen windows of the odd lengths ``data.min_window .. data.window`` only (a frame embedding
beyond them never received a gradient), and the coarse encoder has seen crops made with that
run's ``crop`` section. So, for a network:

* the window defaults to the longest trained one (``inference.window = 0``); a window the
  caller gives explicitly must be odd and no longer than the longest trained one;
* the crop (size, scale, box smoothing) is the checkpoint's; a crop key the caller set
  explicitly (in a config file or as ``crop.key=value``) wins, with a warning when it differs.

Fit mode and DECA's ``deca_model.tar`` (which saves no config) keep the caller's crop, and the
window defaults to :data:`FIT_WINDOW`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection
from dataclasses import fields

from seqdeca.config.schema import Config
from seqdeca.data.dataset import training_window_lengths
from seqdeca.errors import UserError
from seqdeca.inference.checkpoint import LoadedModel

__all__ = ["FIT_WINDOW", "inference_config", "network_window", "trained_windows"]

log = logging.getLogger(__name__)

#: Window of fit mode (and of a network without saved windows) when ``inference.window`` is 0.
FIT_WINDOW = 3


def trained_windows(loaded: LoadedModel) -> list[int]:
    """The window lengths a checkpoint's temporal fusion was trained on, ascending.

    A seqdeca export: ``data.min_window .. data.window`` of its saved config (odd lengths; a
    run of an older version with an even ``data.window`` trained that length only). A DECA
    checkpoint or a per-frame model (``model.use_temporal=False``): ``[1]``.
    """
    if loaded.kind != "seqdeca" or not loaded.model.use_temporal:
        return [1]
    data = loaded.config.data
    if data.window % 2 == 0:  # a run of an older version: that one length
        return [int(data.window)]
    return training_window_lengths(data.window, data.min_window)


def network_window(loaded: LoadedModel, requested: int = 0) -> int:
    """The window a network runs with.

    Args:
        loaded: the checkpoint.
        requested: frames per window asked for; 0 = the longest trained odd window.

    Returns:
        An odd window length no longer than the longest trained one (1 for per-frame models).

    Raises:
        UserError: an even window, or one longer than any the checkpoint was trained on.
    """
    lengths = trained_windows(loaded)
    odd = [w for w in lengths if w % 2] or [1]
    if not requested:
        return max(odd)
    if requested < 1 or requested % 2 == 0:
        raise UserError(
            f"window {requested} must be an odd number of frames (the predicted "
            "frame is the window's centre)"
        )
    if lengths == [1] and requested > 1:
        log.info("%s predicts per frame: window %d ignored", loaded.path, requested)
        return 1
    if requested > max(lengths):
        raise UserError(
            f"window {requested} is longer than any window {loaded.path} was trained "
            f"on ({', '.join(map(str, lengths))}): use inference.window <= "
            f"{max(lengths)} or 0 (the trained one)"
        )
    return int(requested)


def inference_config(
    cfg: Config, loaded: LoadedModel | None, *, explicit: Collection[str] = ()
) -> Config:
    """A copy of ``cfg`` with the window and crop that inference uses.

    Args:
        cfg: the caller's config.
        loaded: the network checkpoint, or None for fit mode.
        explicit: dotted keys the caller set on purpose (see
            :func:`seqdeca.config.given_keys`); those ``crop.*`` keys keep the caller's value.

    Returns:
        The resolved config (``inference.window`` > 0; for a seqdeca export the checkpoint's
        ``crop`` except the explicit keys).

    Raises:
        UserError: see :func:`network_window`; a negative window.
    """
    out = copy.deepcopy(cfg)
    requested = int(cfg.inference.window)
    if requested < 0:
        raise UserError(f"inference.window={requested} must be >= 0 (0 = the trained window)")
    if loaded is None:
        out.inference.window = requested or FIT_WINDOW
        return out
    out.inference.window = network_window(loaded, requested)
    if loaded.kind == "seqdeca":
        trained = loaded.config.crop
        for f in fields(trained):
            mine, theirs = getattr(cfg.crop, f.name), getattr(trained, f.name)
            if f"crop.{f.name}" not in explicit:
                setattr(out.crop, f.name, theirs)
            elif mine != theirs:
                log.warning(
                    "crop.%s=%s differs from the %s the checkpoint was trained with",
                    f.name,
                    mine,
                    theirs,
                )
    return out
