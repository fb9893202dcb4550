"""Action-unit ground truth of synthetic clips: AU intensity trajectories and the AU -> code map.

Shapes: T frames, K = 27 AUs (:data:`seqdeca.au_names.MAIN_AU_NAMES` order), E expression
coefficients of the face model.

**The map** (:func:`au_expression_map`). Each AU gets a target motion of the iBUG-68 landmarks at
full intensity (1.0), written below from the FACS descriptions as 2D displacements in image axes
(x right, y down) in units of ``r``, the inner eye-corner distance (points 39-42); "out" moves a
point away from the face's vertical midline, "in" towards it. The AU's expression direction is
the ridge-regularised least-squares fit of those displacements by the model's expression basis,
on the model's mean face seen from the front (the landmarks are linear in the expression, so the
fit is exact linear algebra, no optimisation). AU19, AU25, AU26 and AU27 also open the jaw by a
fixed angle (:data:`AU_JAW_RADIANS`); their expression direction fits what the jaw leaves of the
target. The model's landmark proxies (``seqdeca.prep.au_proxy``) cover only 11 AUs, hence the
explicit table. How much of each target the expression basis can reproduce depends on the model
(``AUMap.explained``). The bundled model (24 expression components learnt from tracked
video) reproduces the mouth and upper-lid AUs well (AU5, AU10, AU12-AU18, AU25: 0.8-0.98 of the
target motion), the brow, cheek and nose AUs partly (AU1, AU2, AU6, AU7, AU9: 0.36-0.44) and
the nostril AUs hardly (AU38, AU39: 0.21).

**The trajectories** (:func:`au_trajectories`). Expression events arrive at random (a Poisson
number per clip, ``events_per_second``); an event is either a prototypical AU group (a smile
6+12+25, surprise 1+2+5+26, sadness 1+4+15+17, anger 4+5+7+23, disgust 9+10+17, fear
1+2+4+5+20+25, a dimpler 12+14, lip press 23+24, speech 25+26 with the jaw beating at 3-5 Hz)
or one random AU. Each event rises with a raised cosine in 0.15-0.6 s, holds 0.2-1.5 s and
decays in 0.2-0.8 s, at a peak intensity drawn in [0.2, 1] (per AU of the group x 0.7-1);
overlapping events combine by their maximum. Intensities lie in [0, 1] and are mostly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seqdeca.au_names import AFFWILD2_MAIN_INDICES, MAIN_AU_NAMES
from seqdeca.face_model.layer import FaceModel, FlameParams

__all__ = [
    "AU_JAW_RADIANS",
    "AU_TARGETS",
    "AUMap",
    "affwild2_labels",
    "au_expression_map",
    "au_trajectories",
]

# AU name -> [(iBUG-68 points, dx, dy)], dx > 0 "out" (away from the midline), dy > 0 down; r units.
AU_TARGETS: dict[str, list[tuple[tuple[int, ...], float, float]]] = {
    "AU1": [((21, 22), 0.0, -0.25), ((20, 23), 0.0, -0.12)],
    "AU2": [((17, 18, 25, 26), 0.0, -0.25), ((19, 24), 0.0, -0.12)],
    "AU4": [((19, 20, 23, 24), 0.0, 0.15), ((21, 22), -0.1, 0.15)],
    "AU5": [((37, 38, 43, 44), 0.0, -0.1)],
    "AU6": [((40, 41, 46, 47), 0.0, -0.08), ((36, 45), 0.0, -0.03)],
    "AU7": [((40, 41, 46, 47), 0.0, -0.1), ((37, 38, 43, 44), 0.0, 0.04)],
    "AU9": [((31, 32, 34, 35), 0.0, -0.1), ((50, 52), 0.0, -0.05), ((21, 22), 0.0, 0.05)],
    "AU10": [((50, 51, 52), 0.0, -0.15), ((61, 62, 63), 0.0, -0.12)],
    "AU11": [((49, 53), 0.0, -0.1), ((50, 52), 0.0, -0.06)],
    "AU12": [((48, 54), 0.2, -0.2), ((60, 64), 0.15, -0.15)],
    "AU13": [((48, 54), 0.08, -0.25), ((60, 64), 0.05, -0.2)],
    "AU14": [((48, 54), 0.08, 0.0), ((60, 64), 0.05, 0.0), ((51,), 0.0, 0.03), ((57,), 0.0, -0.03)],
    "AU15": [((48, 54), 0.0, 0.2), ((60, 64), 0.0, 0.12)],
    "AU16": [((55, 56, 57, 58, 59), 0.0, 0.12), ((65, 66, 67), 0.0, 0.12)],
    "AU17": [((56, 57, 58), 0.0, -0.1), ((65, 66, 67), 0.0, -0.08), ((7, 8, 9), 0.0, -0.06)],
    "AU18": [((48, 54), -0.15, 0.0), ((60, 64), -0.12, 0.0)],
    "AU19": [((56, 57, 58, 65, 66, 67), 0.0, 0.15), ((8,), 0.0, 0.1)],
    "AU20": [((48, 54), 0.2, 0.03), ((60, 64), 0.15, 0.03)],
    "AU22": [((48, 54), -0.12, 0.0), ((51, 62), 0.0, -0.05), ((57, 66), 0.0, 0.05)],
    "AU23": [((48, 54), -0.05, 0.0), ((50, 51, 52), 0.0, 0.04), ((56, 57, 58), 0.0, -0.04)],
    "AU24": [((50, 51, 52), 0.0, 0.06), ((56, 57, 58), 0.0, -0.06)],
    "AU25": [((61, 62, 63), 0.0, -0.05), ((65, 66, 67), 0.0, 0.15), ((56, 57, 58), 0.0, 0.1)],
    "AU26": [((56, 57, 58, 65, 66, 67), 0.0, 0.25), ((6, 7, 8, 9, 10), 0.0, 0.25)],
    "AU27": [
        ((56, 57, 58, 65, 66, 67), 0.0, 0.4),
        ((6, 7, 8, 9, 10), 0.0, 0.4),
        ((48, 54), -0.05, 0.0),
    ],
    "AU32": [((56, 57, 58), 0.0, -0.08), ((65, 66, 67), 0.0, -0.1)],
    "AU38": [((31, 35), 0.06, 0.0)],
    "AU39": [((31, 35), -0.05, 0.0)],
}

# Jaw opening (radians about the jaw's x axis) at full intensity.
AU_JAW_RADIANS: dict[str, float] = {"AU19": 0.1, "AU25": 0.03, "AU26": 0.15, "AU27": 0.3}

# Prototypical AU groups of an expression event (the last one is speech: see the docstring).
_GROUPS: tuple[tuple[str, ...], ...] = (
    ("AU6", "AU12", "AU25"),
    ("AU1", "AU2", "AU5", "AU26"),
    ("AU1", "AU4", "AU15", "AU17"),
    ("AU4", "AU5", "AU7", "AU23"),
    ("AU9", "AU10", "AU17"),
    ("AU1", "AU2", "AU4", "AU5", "AU20", "AU25"),
    ("AU12", "AU14"),
    ("AU23", "AU24"),
    ("AU25", "AU26"),
)
_SPEECH = len(_GROUPS) - 1
_GROUP_SHARE = 0.6  # share of events that are groups (the rest: one random AU)
_INNER_EYE_CORNERS = (39, 42)


@dataclass(frozen=True)
class AUMap:
    """The fixed AU -> face-code map of one face model.

    Attributes:
        expression: (K, E) expression coefficients of each AU at intensity 1.
        jaw: (K,) jaw opening, radians, of each AU at intensity 1.
        explained: (K,) share of the AU's target landmark motion the map reproduces, [0, 1].
    """

    expression: torch.Tensor
    jaw: torch.Tensor
    explained: torch.Tensor

    def codes(self, intensity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, K) intensities -> (expression (T, E), jaw opening (T,) radians)."""
        return intensity @ self.expression, intensity @ self.jaw


def _target(names: tuple[str, ...], points: torch.Tensor, r: float) -> torch.Tensor:
    """(K, 68, 2) target displacements in model axes (y up) from :data:`AU_TARGETS`."""
    mid_x = float(points[:, 0].mean())
    out = torch.zeros(len(names), 68, 2, dtype=torch.float64)
    for k, name in enumerate(names):
        for ids, dx, dy in AU_TARGETS[name]:
            for i in ids:
                side = 1.0 if float(points[i, 0]) >= mid_x else -1.0
                out[k, i, 0] += side * dx * r
                out[k, i, 1] -= dy * r  # image y down -> model y up
    return out


def _landmarks68(model: FaceModel, expression: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
    """(N, 68, 2) frontal landmark x, y of the mean identity, float64."""
    n = expression.shape[0]
    params = FlameParams(
        shape=torch.zeros(n, model.num_shape),
        expression=expression.float(),
        global_pose=torch.zeros(n, 3),
        jaw_pose=torch.cat([jaw.float()[:, None], torch.zeros(n, 2)], dim=-1),
    )
    with torch.no_grad():
        return model(params).landmarks68[..., :2].double()


def au_expression_map(model: FaceModel, *, ridge: float = 1e-3) -> AUMap:
    """The AU -> (expression, jaw) map of ``model`` (see the module docstring).

    Args:
        model: a face model with iBUG-68 landmarks.
        ridge: Tikhonov weight relative to the mean squared column norm of the landmark basis.

    Returns:
        The :class:`AUMap` (K = 27 rows, MAIN_AU_NAMES order).
    """
    if not model.has_landmarks68:
        raise ValueError(f"face model '{model.name}' has no iBUG-68 landmarks for the AU map")
    e_count = model.num_expression
    zero = torch.zeros(1, e_count)
    base = _landmarks68(model, zero, torch.zeros(1))[0]
    basis = _landmarks68(model, torch.eye(e_count), torch.zeros(e_count)) - base  # (E, 68, 2)
    r = float((base[_INNER_EYE_CORNERS[0]] - base[_INNER_EYE_CORNERS[1]]).norm())
    target = _target(MAIN_AU_NAMES, base, r)
    jaw = torch.tensor(
        [AU_JAW_RADIANS.get(name, 0.0) for name in MAIN_AU_NAMES], dtype=torch.float64
    )
    jaw_motion = _landmarks68(model, zero.expand(len(jaw), -1), jaw) - base  # (K, 68, 2)
    a = basis.reshape(e_count, -1).T  # (136, E)
    b = (target - jaw_motion).reshape(len(jaw), -1).T  # (136, K)
    lam = ridge * float((a**2).sum(0).mean())
    coef = torch.linalg.solve(a.T @ a + lam * torch.eye(e_count, dtype=a.dtype), a.T @ b)  # (E, K)
    reached = (a @ coef).T.reshape(target.shape) + jaw_motion
    residual = ((reached - target) ** 2).sum((1, 2))
    explained = (1 - residual / (target**2).sum((1, 2))).clamp(0, 1)
    return AUMap(expression=coef.T.float(), jaw=jaw.float(), explained=explained.float())


def _ramp(x: torch.Tensor) -> torch.Tensor:
    """Raised-cosine step: 0 for x <= 0, 1 for x >= 1, smooth in between."""
    return 0.5 - 0.5 * torch.cos(math.pi * x.clamp(0, 1))


def _event(gen: torch.Generator, t: torch.Tensor, duration: float) -> torch.Tensor:
    """(T,) one event's envelope in [0, 1] starting at a random time (may start before 0)."""
    start, rise, hold, fall = torch.rand(4, generator=gen, dtype=torch.float64) * torch.tensor(
        [duration + 1.0, 0.45, 1.3, 0.6], dtype=torch.float64
    ) + torch.tensor([-1.0, 0.15, 0.2, 0.2], dtype=torch.float64)
    up = _ramp((t - start) / rise)
    down = 1 - _ramp((t - start - rise - hold) / fall)
    return up * down


def au_trajectories(
    gen: torch.Generator, frames: int, *, fps: float = 25.0, events_per_second: float = 0.6
) -> torch.Tensor:
    """(frames, 27) float32 smooth, sparse AU intensities in [0, 1] (see the module docstring)."""
    t = torch.arange(frames, dtype=torch.float64) / fps
    duration = frames / fps
    rate = torch.tensor([events_per_second * (duration + 1.0)], dtype=torch.float64)
    count = int(torch.poisson(rate, generator=gen).item())
    out = torch.zeros(frames, len(MAIN_AU_NAMES), dtype=torch.float64)
    index = {name: k for k, name in enumerate(MAIN_AU_NAMES)}
    for _ in range(count):
        envelope = _event(gen, t, duration)
        peak = 0.2 + 0.8 * float(torch.rand(1, generator=gen))
        if float(torch.rand(1, generator=gen)) < _GROUP_SHARE:
            g = int(torch.randint(len(_GROUPS), (1,), generator=gen))
            members = [index[name] for name in _GROUPS[g]]
        else:
            g, members = -1, [int(torch.randint(len(MAIN_AU_NAMES), (1,), generator=gen))]
        scale = 0.7 + 0.3 * torch.rand(len(members), generator=gen, dtype=torch.float64)
        for k, s in zip(members, scale):
            curve = envelope * peak * s
            if g == _SPEECH and MAIN_AU_NAMES[k] == "AU26":  # the jaw beats while talking
                freq = 3.0 + 2.0 * float(torch.rand(1, generator=gen))
                curve = curve * (0.5 + 0.5 * torch.sin(2 * math.pi * freq * t))
            out[:, k] = torch.maximum(out[:, k], curve)
    return out.clamp(0, 1).float()


def affwild2_labels(intensity: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(T, 27) intensities -> (T, 12) float32 0/1 labels of the Aff-Wild2 AUs (>= threshold)."""
    return (intensity[:, list(AFFWILD2_MAIN_INDICES)] >= threshold).float()
