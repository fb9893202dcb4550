"""Temporal filters for per-frame codes: what users of per-frame methods are told to do.

Two standard filters over a clip's codes, each run separately on every stretch of consecutive
valid frames (a gap restarts it; invalid frames are returned unchanged):

* :func:`savgol_smooth`: Savitzky-Golay (a least-squares polynomial of ``order`` over a centred
  window of ``window`` frames; non-causal, keeps polynomials of that order exactly);
* :func:`one_euro_smooth`: the one-euro filter of Casiez, Roussel and Vogel (CHI 2012), a causal
  low-pass whose cut-off rises with the speed of the signal (``min_cutoff`` in Hz at rest,
  ``beta`` per unit of speed), so slow motion is smoothed and fast motion keeps up.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.signal import savgol_filter

from seqdeca.errors import UserError

__all__ = ["CodeFilter", "one_euro_smooth", "parse_filter", "savgol_smooth", "valid_runs"]

#: A filter of (T, ...) codes given their (T,) valid mask.
CodeFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def valid_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the stretches of consecutive True values of a (T,) mask."""
    edges = np.diff(np.concatenate([[0], np.asarray(valid, dtype=np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def savgol_smooth(
    codes: np.ndarray, valid: np.ndarray | None = None, *, window: int = 9, order: int = 2
) -> np.ndarray:
    """Savitzky-Golay filter along time (axis 0).

    Args:
        codes: (T, ...) per-frame values.
        valid: (T,) bool, frames with a prediction (None: all).
        window: frames of the centred window (odd); a shorter run of valid frames uses the
            longest odd window that fits it.
        order: polynomial order (< window).

    Returns:
        (T, ...) float64 filtered codes (runs too short for ``order`` are unchanged).
    """
    if window < 1 or window % 2 == 0 or order >= window:
        raise ValueError(f"need an odd window > order, got window={window}, order={order}")
    out = np.array(codes, dtype=np.float64)
    mask = np.ones(len(out), bool) if valid is None else np.asarray(valid, bool)
    for start, stop in valid_runs(mask):
        size = min(window, (stop - start) - (1 - (stop - start) % 2))  # longest odd that fits
        if size > order:
            out[start:stop] = savgol_filter(out[start:stop], size, order, axis=0, mode="interp")
    return out


def _alpha(cutoff: np.ndarray | float, fps: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with ``cutoff`` Hz sampled at ``fps``."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * fps)


def one_euro_smooth(
    codes: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    fps: float = 25.0,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """One-euro filter along time (axis 0), every component separately.

    Args:
        codes: (T, ...) per-frame values.
        valid: (T,) bool, frames with a prediction (None: all).
        fps: frame rate (Hz).
        min_cutoff: cut-off at rest (Hz); lower = smoother.
        beta: speed coefficient; higher = less lag on fast motion.
        d_cutoff: cut-off of the speed estimate (Hz).

    Returns:
        (T, ...) float64 filtered codes.
    """
    out = np.array(codes, dtype=np.float64)
    mask = np.ones(len(out), bool) if valid is None else np.asarray(valid, bool)
    a_d = _alpha(d_cutoff, fps)
    for start, stop in valid_runs(mask):
        previous, speed = out[start].copy(), np.zeros_like(out[start])
        for t in range(start + 1, stop):
            raw_speed = (out[t] - previous) * fps
            speed = a_d * raw_speed + (1 - a_d) * speed
            a = _alpha(min_cutoff + beta * np.abs(speed), fps)
            previous = a * out[t] + (1 - a) * previous
            out[t] = previous
    return out


def parse_filter(spec: str, *, fps: float = 25.0) -> CodeFilter:
    """A filter from its text: ``savgol:WINDOW:ORDER`` or ``one_euro:MIN_CUTOFF:BETA``.

    Raises:
        UserError: an unknown filter or bad numbers (one line).
    """
    name, *args = spec.split(":")
    try:
        if name == "savgol" and len(args) == 2:
            window, order = int(args[0]), int(args[1])
            savgol_smooth(np.zeros((1, 1)), window=window, order=order)  # checks the numbers
            return lambda x, valid: savgol_smooth(x, valid, window=window, order=order)
        if name == "one_euro" and len(args) == 2:
            cutoff, beta = float(args[0]), float(args[1])
            if cutoff <= 0 or beta < 0:
                raise ValueError("need MIN_CUTOFF > 0 and BETA >= 0")
            return lambda x, valid: one_euro_smooth(x, valid, fps=fps, min_cutoff=cutoff, beta=beta)
    except ValueError as exc:
        raise UserError(f"bad filter {spec!r}: {exc}") from None
    raise UserError(f"unknown filter {spec!r}: use savgol:WINDOW:ORDER or one_euro:MIN_CUTOFF:BETA")
