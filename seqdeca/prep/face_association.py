"""Several faces through a clip: per-frame detections associated into tracks with stable ids.

:class:`FaceAssociator` takes the faces found in each frame (any order, as MediaPipe returns
them) one frame at a time, so it streams, and puts every face in the slot of the track it
continues. Slots are numbered by first appearance: slot 0 is the first face seen; faces first
seen in the same frame are numbered left to right (box centre x). A slot never changes person
on purpose; there is no appearance-based re-identification, only geometry.

Per frame, in this order:

1. **Duplicates**: a face whose landmark box overlaps a larger one by IoU > ``duplicate_iou``
   is dropped (one person found twice).
2. **Live tracks** (seen within the last ``max_gap + 1`` frames) are matched to the faces by
   minimum total cost (Hungarian, :func:`scipy.optimize.linear_sum_assignment`), with

   ``cost = |c_face - c_pred| / s + landmark_weight * d_layout + size_weight * |ln(s_face / s)|``

   where ``c`` is the landmark-box centre, ``s`` the track's face size (square root of its box
   area, pixels), ``c_pred`` the last centre moved by the track's velocity over the frames
   since it was seen, and ``d_layout`` the mean distance between the two faces' landmarks
   after removing position and size (pose and expression continuity, in face sizes). A pair
   is allowed only when ``cost <= gate * (1 + gate_growth * (dt - 1))`` (dt: frames since
   the track was seen), so a track lost for a few frames searches a wider area.
3. **Dormant tracks** (lost for longer) are matched to the remaining faces the same way,
   from their last position without velocity, with ``revive_gate``: a person who looked away
   and comes back near where they were keeps their slot. Their frames in between stay
   without a face (only gaps up to ``max_gap`` frames are interpolated, downstream).
4. **New tracks**: remaining faces open new slots while fewer than ``max_faces`` exist, the
   largest first (so with one slot left, the largest new face gets it). Once every slot is
   taken, a face that matches no track is left out (counted, per frame, in ``unassigned``).

Gaps of up to ``max_gap`` frames inside a track are filled later by
:func:`seqdeca.prep.tracking.interpolate_gaps`, exactly as for one face.

Units: landmark coordinates in pixels (any frame size; costs are in face sizes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from seqdeca.prep.tracking import NUM_LANDMARKS

__all__ = ["FaceAssociator", "associate_frames", "face_geometry"]

#: Gate on the association cost of a track seen in the previous frame (about one face size).
GATE = 1.0
#: Relative widening of the gate per additional frame the track was not seen.
GATE_GROWTH = 0.5
#: Gate of a dormant track (lost longer than max_gap frames), from its last position.
REVIVE_GATE = 1.5
#: Weight of the layout distance and of the log size ratio in the cost.
LANDMARK_WEIGHT = 1.0
SIZE_WEIGHT = 0.5
#: Two faces overlapping by more than this box IoU are one face found twice.
DUPLICATE_IOU = 0.5
#: Velocity cap, face sizes per frame (a bad match cannot fling the prediction away).
MAX_SPEED = 0.5
_FORBIDDEN = 1e6


def face_geometry(points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Landmark-box centre (2,), face size (square root of the box area, pixels) and the
    landmarks' layout (P, 2): position and size removed, in face sizes.

    Args:
        points: (P, >=2) landmarks in pixels (finite).
    """
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    centre = (lo + hi) / 2
    size = float(np.sqrt(max(np.prod(hi - lo), 1e-12)))
    return centre, size, (xy - centre) / size


@dataclass
class _Face:
    """One detection of a frame."""

    index: int
    points: np.ndarray
    centre: np.ndarray
    size: float
    layout: np.ndarray
    box: np.ndarray  # (4,) x0, y0, x1, y1


@dataclass
class _Track:
    """A slot's state: where its face was last seen and how it moved."""

    slot: int
    centre: np.ndarray
    size: float
    layout: np.ndarray
    last_seen: int
    velocity: np.ndarray

    def predicted(self, frame: int) -> np.ndarray:
        return self.centre + self.velocity * (frame - self.last_seen)

    def follow(self, face: _Face, frame: int) -> None:
        dt = max(frame - self.last_seen, 1)
        step = (face.centre - self.centre) / dt
        cap = MAX_SPEED * self.size
        step *= min(1.0, cap / max(float(np.linalg.norm(step)), 1e-12))
        self.velocity = 0.5 * self.velocity + 0.5 * step
        self.centre, self.size, self.layout = face.centre, face.size, face.layout
        self.last_seen = frame


def _faces(detections: Iterable[np.ndarray], point_shape: tuple[int, int]) -> list[_Face]:
    faces = []
    for i, det in enumerate(detections):
        det = np.asarray(det)
        if det.shape != point_shape:
            raise ValueError(f"a face's landmarks must be {point_shape}, got {det.shape}")
        if not np.isfinite(det[:, :2]).all():
            continue
        centre, size, layout = face_geometry(det)
        xy = det[:, :2]
        faces.append(_Face(i, det, centre, size, layout, np.r_[xy.min(0), xy.max(0)]))
    return faces


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union) if union > 0 else 0.0


def _drop_duplicates(faces: list[_Face], threshold: float) -> list[_Face]:
    """The faces without those overlapping a larger one by IoU > threshold."""
    kept: list[_Face] = []
    for face in sorted(faces, key=lambda f: -f.size):
        if all(_iou(face.box, k.box) <= threshold for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: f.index)


class FaceAssociator:
    """Online association of per-frame faces into at most ``max_faces`` stable slots.

    See the module docstring for the rule. Keyword arguments other than ``max_faces`` and
    ``max_gap`` default to the module constants.

    Args:
        max_faces: slots (faces followed at most), >= 1.
        max_gap: a track lost for up to this many frames is live (``track.max_gap``).
        point_shape: (P, C) of one face's landmarks (default MediaPipe's (478, 3)).

    Attributes:
        frame: frames seen so far.
        num_tracks: slots opened so far (slots ``0 .. num_tracks - 1``).
        unassigned: detections left out so far (faces, counted once per frame, that matched
            no track while every slot was taken).
    """

    def __init__(
        self,
        *,
        max_faces: int,
        max_gap: int,
        point_shape: tuple[int, int] = (NUM_LANDMARKS, 3),
        gate: float = GATE,
        gate_growth: float = GATE_GROWTH,
        revive_gate: float = REVIVE_GATE,
        landmark_weight: float = LANDMARK_WEIGHT,
        size_weight: float = SIZE_WEIGHT,
        duplicate_iou: float = DUPLICATE_IOU,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.max_faces, self.max_gap = int(max_faces), max(int(max_gap), 0)
        self.gate, self.gate_growth, self.revive_gate = gate, gate_growth, revive_gate
        self.landmark_weight, self.size_weight = landmark_weight, size_weight
        self.duplicate_iou = duplicate_iou
        self.point_shape = (int(point_shape[0]), int(point_shape[1]))
        self.frame = 0
        self.unassigned = 0
        self._tracks: list[_Track] = []

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    def _cost(self, track: _Track, face: _Face, *, moving: bool) -> float:
        centre = track.predicted(self.frame) if moving else track.centre
        cost = np.linalg.norm(face.centre - centre) / track.size
        cost += self.landmark_weight * np.linalg.norm(face.layout - track.layout, axis=-1).mean()
        return float(cost + self.size_weight * abs(np.log(face.size / track.size)))

    def _match(self, tracks: list[_Track], faces: list[_Face], *, live: bool) -> dict[int, int]:
        """slot -> position in ``faces`` of the minimum-cost gated matching."""
        if not tracks or not faces:
            return {}
        cost = np.full((len(tracks), len(faces)), _FORBIDDEN)
        for i, track in enumerate(tracks):
            dt = self.frame - track.last_seen
            gate = self.gate * (1 + self.gate_growth * (dt - 1)) if live else self.revive_gate
            for j, face in enumerate(faces):
                c = self._cost(track, face, moving=live)
                if c <= gate:
                    cost[i, j] = c
        rows, cols = linear_sum_assignment(cost)
        return {tracks[r].slot: c for r, c in zip(rows, cols) if cost[r, c] < _FORBIDDEN}

    def update(self, detections: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Associate the faces of the next frame.

        Args:
            detections: the frame's faces, each ``point_shape`` landmarks in pixels, any
                order (faces with non-finite points are ignored).

        Returns:
            (points (max_faces, P, C) float32 per slot, NaN for a slot without a face this
            frame; found (max_faces,) bool).
        """
        faces = _drop_duplicates(_faces(detections, self.point_shape), self.duplicate_iou)
        assigned: dict[int, _Face] = {}
        recent = self.max_gap + 1
        for live in (True, False):
            tracks = [t for t in self._tracks if (self.frame - t.last_seen <= recent) == live]
            free = _free(faces, assigned)
            for slot, j in self._match(tracks, free, live=live).items():
                assigned[slot] = free[j]
        self._open(_free(faces, assigned), assigned)
        points = np.full((self.max_faces, *self.point_shape), np.nan, dtype=np.float32)
        found = np.zeros(self.max_faces, dtype=bool)
        for slot, face in assigned.items():
            self._tracks[slot].follow(face, self.frame)
            points[slot], found[slot] = face.points, True
        self.frame += 1
        return points, found

    def _open(self, free: list[_Face], assigned: dict[int, _Face]) -> None:
        """New slots for unmatched faces: the largest first, numbered left to right."""
        room = max(self.max_faces - len(self._tracks), 0)
        chosen = sorted(free, key=lambda f: -f.size)[:room]
        self.unassigned += len(free) - len(chosen)
        for face in sorted(chosen, key=lambda f: f.centre[0]):
            slot = len(self._tracks)
            self._tracks.append(
                _Track(slot, face.centre, face.size, face.layout, self.frame, np.zeros(2))
            )
            assigned[slot] = face


def _free(faces: list[_Face], assigned: dict[int, _Face]) -> list[_Face]:
    """The faces not assigned to a slot yet."""
    taken = {face.index for face in assigned.values()}
    return [f for f in faces if f.index not in taken]


def associate_frames(
    detections: Iterable[Sequence[np.ndarray]],
    *,
    max_faces: int,
    max_gap: int,
    point_shape: tuple[int, int] = (NUM_LANDMARKS, 3),
) -> tuple[np.ndarray, np.ndarray]:
    """:class:`FaceAssociator` over a whole sequence (tests and offline use).

    Args:
        detections: per frame, that frame's faces, each ``point_shape`` pixels.
        max_faces, max_gap, point_shape: see :class:`FaceAssociator`.

    Returns:
        (points (T, max_faces, P, C) float32, NaN where a slot has no face; found
        (T, max_faces) bool).
    """
    assoc = FaceAssociator(max_faces=max_faces, max_gap=max_gap, point_shape=point_shape)
    rows = [assoc.update(frame) for frame in detections]
    if not rows:
        return np.zeros((0, max_faces, *point_shape), np.float32), np.zeros((0, max_faces), bool)
    return np.stack([p for p, _ in rows]), np.stack([f for _, f in rows])
