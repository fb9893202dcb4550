"""Proxy action-unit intensities from landmark geometry (NOT AU labels).

These numbers are crude, deterministic geometric cues for clips without AU labels (MEAD etc.).
They are always named ``"AU<k>_proxy"`` and stored apart from real labels (``au_proxy.npy`` vs
``au.npy``); never mix them.

Definition. Landmarks are reduced to the iBUG-68 subset, rotated so that the line through the
outer eye corners (36, 45) is horizontal (removes head roll) and divided by the outer
inter-ocular distance (removes scale). Per frame a geometric feature ``f`` is measured (table
below; y grows DOWN, "height" = upward distance); the clip's own baseline ``b`` is a low
percentile (``baseline_percentile``, default 10) of ``f`` over the valid frames (a high
percentile for features that DEcrease with the action), and the proxy is
``clip((f - b) / range, 0, 1)`` with a fixed ``range`` in inter-ocular units. A clip in which an
action is present throughout therefore reads low: the proxies measure change within a clip.

| name | feature (iBUG-68 indices) | direction | range |
| --- | --- | --- | --- |
| AU1_proxy  | height of inner brows 21, 22 above inner eye corners 39, 42 | up | 0.06 |
| AU2_proxy  | height of outer brows 17, 26 above outer eye corners 36, 45 | up | 0.06 |
| AU4_proxy  | inner-brow height plus horizontal gap 21-22 | down | 0.06 |
| AU6_proxy  | height of lower lids 40, 41, 46, 47 above the eye-corner line | up | 0.03 |
| AU7_proxy  | eye aperture (upper lids 37, 38, 43, 44 to lower lids) | down | 0.5 x open aperture |
| AU45_proxy | eye aperture beyond half closure | down | 0.4 x open aperture |
| AU12_proxy | height of mouth corners 48, 54 above the lip centre (51+57)/2 | up | 0.06 |
| AU15_proxy | height of mouth corners above the lip centre | down | 0.06 |
| AU20_proxy | mouth width 48-54 | up | 0.10 |
| AU25_proxy | inner-lip gap 62-66 | up | 0.08 |
| AU26_proxy | distance nose tip 30 to chin 8 | up | 0.15 |

The eye proxies use the open aperture ``a0`` (high percentile) instead: closure
``c = 1 - aperture / a0``; AU7 = clip(c / 0.5), AU45 = clip((c - 0.5) / 0.4).
"""

from __future__ import annotations

import numpy as np

from seqdeca.prep.landmark_sets import mediapipe_to_ibug68

__all__ = ["AU_PROXY_NAMES", "au_proxies", "proxy_features"]

# (name, feature, sign (+1 grows with the action), range in inter-ocular units)
_LINEAR = (
    ("AU1_proxy", "inner_brow", +1, 0.06),
    ("AU2_proxy", "outer_brow", +1, 0.06),
    ("AU4_proxy", "brow_lower", -1, 0.06),
    ("AU6_proxy", "lower_lid", +1, 0.03),
    ("AU12_proxy", "corner_height", +1, 0.06),
    ("AU15_proxy", "corner_height", -1, 0.06),
    ("AU20_proxy", "mouth_width", +1, 0.10),
    ("AU25_proxy", "lip_gap", +1, 0.08),
    ("AU26_proxy", "jaw", +1, 0.15),
)
AU_PROXY_NAMES: tuple[str, ...] = (
    "AU1_proxy",
    "AU2_proxy",
    "AU4_proxy",
    "AU6_proxy",
    "AU7_proxy",
    "AU12_proxy",
    "AU15_proxy",
    "AU20_proxy",
    "AU25_proxy",
    "AU26_proxy",
    "AU45_proxy",
)


def _normalise(points68: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> same, roll removed, origin at the eye-corner midpoint, unit = outer IOD."""
    right, left = points68[:, 36], points68[:, 45]
    d = left - right
    iod = np.linalg.norm(d, axis=-1)
    cos, sin = d[:, 0] / iod, d[:, 1] / iod
    rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)  # (T, 2, 2)
    centred = points68 - ((right + left) / 2)[:, None]
    return np.einsum("tij,tpj->tpi", rot, centred) / iod[:, None, None]


def proxy_features(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame geometric features in inter-ocular units (y down; NaN where invalid).

    Args:
        landmarks: (T, 478 or 468, C>=2) MediaPipe landmarks in any pixel frame.

    Returns:
        {feature name: (T,) float64} (names used in the module table).
    """
    p = _normalise(mediapipe_to_ibug68(np.asarray(landmarks, np.float64)[..., :2]))
    y = p[..., 1]
    x = p[..., 0]
    inner_brow = (y[:, 39] + y[:, 42]) / 2 - (y[:, 21] + y[:, 22]) / 2
    aperture = (y[:, [41, 40, 47, 46]] - y[:, [37, 38, 43, 44]]).mean(1)
    return {
        "inner_brow": inner_brow,
        "outer_brow": (y[:, 36] + y[:, 45]) / 2 - (y[:, 17] + y[:, 26]) / 2,
        "brow_lower": inner_brow + (x[:, 22] - x[:, 21]),
        "lower_lid": -y[:, [40, 41, 46, 47]].mean(1),
        "aperture": aperture,
        "corner_height": (y[:, 51] + y[:, 57]) / 2 - (y[:, 48] + y[:, 54]) / 2,
        "mouth_width": np.linalg.norm(p[:, 54] - p[:, 48], axis=-1),
        "lip_gap": y[:, 66] - y[:, 62],
        "jaw": np.linalg.norm(p[:, 8] - p[:, 30], axis=-1),
    }


def au_proxies(
    landmarks: np.ndarray, valid: np.ndarray, *, baseline_percentile: float = 10.0
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Proxy AU intensities of a clip (see the module docstring for the definitions).

    Args:
        landmarks: (T, 478 or 468, C>=2) MediaPipe landmarks (any pixel frame; NaN = invalid).
        valid: (T,) bool.
        baseline_percentile: percentile of the clip's valid frames used as the neutral baseline
            (100 minus it for features that decrease with the action).

    Returns:
        ((T, P) float32 proxies in [0, 1], NaN on invalid frames; the P names
        :data:`AU_PROXY_NAMES`).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(landmarks[..., :2]).all(axis=(1, 2))
    out = np.full((len(landmarks), len(AU_PROXY_NAMES)), np.nan, dtype=np.float32)
    if not valid.any():
        return out, AU_PROXY_NAMES
    with np.errstate(invalid="ignore", divide="ignore"):
        feats = proxy_features(landmarks[valid])
    values: dict[str, np.ndarray] = {}
    for name, key, sign, rng in _LINEAR:
        f = sign * feats[key]
        base = np.percentile(f, baseline_percentile)
        values[name] = (f - base) / rng
    open_aperture = np.percentile(feats["aperture"], 100 - baseline_percentile)
    closure = 1 - feats["aperture"] / max(open_aperture, 1e-6)
    values["AU7_proxy"] = closure / 0.5
    values["AU45_proxy"] = (closure - 0.5) / 0.4
    for j, name in enumerate(AU_PROXY_NAMES):
        out[valid, j] = np.clip(values[name], 0.0, 1.0)
    return out, AU_PROXY_NAMES
