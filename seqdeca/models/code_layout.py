"""The table that splits a coarse encoder's flat code vector into named parameters.

DECA's encoder (legacy ``E_flame``) predicts one vector of 236 numbers whose meaning is fixed by
position: shape 100, texture 50, expression 50, pose 6, cam 3, light 27. Research code slices it
with hard-coded offsets in several places; here one :class:`CodeLayout` owns the order and the
sizes, is sized from the face model, and converts between the flat vector and named parts.

Vocabulary of the parts (sizes for DECA):

* ``shape`` (100): identity coefficients.
* ``texture`` (50): albedo coefficients.
* ``expression`` (50): expression coefficients.
* ``pose`` (6): axis-angle, global rotation 3 then jaw 3 (radians); see :func:`split_pose`.
* ``cam`` (3): weak perspective ``(s, tx, ty)``.
* ``light`` (27): spherical-harmonics lighting, returned as ``(..., 9, 3)``: 9 SH coefficients x
  RGB (the flat order is coefficient-major, RGB fastest, as in DECA).

Prior codes (:meth:`CodeLayout.prior`, :func:`framing_cam`, :func:`neutral_light`): where an
untrained coarse encoder starts (the mean face, unposed, framed as a prepared crop frames a
face, under white ambient light).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqdeca.face_model.layer import FaceModel
from seqdeca.render.shading import SH_CONSTANTS

#: Part names in DECA's order.
PART_NAMES: tuple[str, ...] = ("shape", "texture", "expression", "pose", "cam", "light")

POSE_SIZE = 6  # global 3 + jaw 3, axis-angle
CAM_SIZE = 3  # weak perspective (s, tx, ty)
SH_BASES = 9  # spherical-harmonics bands 0-2
LIGHT_SIZE = SH_BASES * 3  # RGB per basis
#: DECA's crop rule: crop side = crop scale x 1.1 x mean side of the 68-landmark box. The same
#: number as ``seqdeca.prep.crop.DECA_BOX_FACTOR`` (models may not import data; a test checks).
CROP_BOX_FACTOR = 1.1


@dataclass(frozen=True)
class CodeLayout:
    """Sizes of the parts of a flat code vector, in DECA's order.

    Attributes:
        n_shape: identity coefficients.
        n_texture: albedo coefficients.
        n_expression: expression coefficients.
        n_pose: pose numbers (always 6: global 3 + jaw 3).
        n_cam: camera numbers (always 3).
        n_light: lighting numbers (always 27 = 9 SH x RGB).
    """

    n_shape: int
    n_texture: int
    n_expression: int
    n_pose: int = POSE_SIZE
    n_cam: int = CAM_SIZE
    n_light: int = LIGHT_SIZE

    def __post_init__(self) -> None:
        for name, size in self.sizes.items():
            if size < 0:
                raise ValueError(f"CodeLayout: {name} size must be >= 0, got {size}")
        if (self.n_pose, self.n_cam, self.n_light) != (POSE_SIZE, CAM_SIZE, LIGHT_SIZE):
            raise ValueError(
                f"CodeLayout: pose/cam/light must be {POSE_SIZE}/{CAM_SIZE}/{LIGHT_SIZE}, got "
                f"{self.n_pose}/{self.n_cam}/{self.n_light}"
            )

    @classmethod
    def deca(cls) -> CodeLayout:
        """DECA's layout: shape 100, texture 50, expression 50, pose 6, cam 3, light 27 (236)."""
        return cls(n_shape=100, n_texture=50, n_expression=50)

    @classmethod
    def for_face_model(cls, n_shape: int, n_texture: int, n_expression: int) -> CodeLayout:
        """The layout for a face model with the given numbers of components.

        Args:
            n_shape: identity components the encoder predicts.
            n_texture: albedo components (0 when the model has no texture space).
            n_expression: expression components.
        """
        return cls(n_shape=n_shape, n_texture=n_texture, n_expression=n_expression)

    @property
    def sizes(self) -> dict[str, int]:
        """Flat size of every part, in order."""
        values = (self.n_shape, self.n_texture, self.n_expression)
        values += (self.n_pose, self.n_cam, self.n_light)
        return dict(zip(PART_NAMES, values))

    @property
    def total(self) -> int:
        """Length D of the flat code vector (236 for DECA)."""
        return sum(self.sizes.values())

    def offsets(self) -> dict[str, tuple[int, int]]:
        """``[start, stop)`` of every part in the flat vector."""
        result, start = {}, 0
        for name, size in self.sizes.items():
            result[name] = (start, start + size)
            start += size
        return result

    def prior(
        self, *, cam: torch.Tensor | None = None, light: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A flat code vector that is zero except for the given camera and light.

        Zero shape / texture / expression / pose is the face model's mean face, unposed; the
        camera and light have no meaningful zero (a zero scale projects every point to the
        centre, zero light renders black), so the caller gives them.

        Args:
            cam: (3,) weak perspective ``(s, tx, ty)``, or None for zeros.
            light: (9, 3) or (27,) SH coefficients, or None for zeros.

        Returns:
            (D,) float32 codes, ``D == self.total``.
        """
        parts = {name: torch.zeros(size) for name, size in self.sizes.items()}
        if cam is not None:
            parts["cam"] = torch.as_tensor(cam, dtype=torch.float32).reshape(CAM_SIZE)
        if light is not None:
            parts["light"] = torch.as_tensor(light, dtype=torch.float32).reshape(LIGHT_SIZE)
        return self.join(parts)

    def split(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cut a flat code vector into named parts.

        Args:
            codes: ``(..., D)`` with ``D == self.total``.

        Returns:
            ``{name: (..., size)}`` for every part in :data:`PART_NAMES`, except ``light`` which is
            ``(..., 9, 3)``. Parts are views of ``codes`` (no copy), so gradients flow through.
        """
        if codes.shape[-1] != self.total:
            raise ValueError(
                f"CodeLayout.split: last dimension {codes.shape[-1]} != layout size {self.total}"
            )
        parts = {name: codes[..., a:b] for name, (a, b) in self.offsets().items()}
        # 27 -> (9 SH coefficients, RGB): coefficient-major, colour fastest.
        parts["light"] = parts["light"].reshape(*codes.shape[:-1], SH_BASES, 3)
        return parts

    def join(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`split`.

        Args:
            parts: every name of :data:`PART_NAMES` (no others), with the shapes :meth:`split`
                returns; ``light`` may be ``(..., 9, 3)`` or ``(..., 27)``.

        Returns:
            ``(..., D)`` codes.
        """
        if set(parts) != set(PART_NAMES):
            raise ValueError(
                f"CodeLayout.join: expected parts {list(PART_NAMES)}, got {sorted(parts)}"
            )
        batch = parts["shape"].shape[:-1]
        flat = []
        for name, size in self.sizes.items():
            value = parts[name].reshape(*batch, -1)
            if value.shape[-1] != size:
                raise ValueError(
                    f"CodeLayout.join: {name} has {value.shape[-1]} numbers, not {size}"
                )
            flat.append(value)
        return torch.cat(flat, dim=-1)


def split_pose(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DECA's 6-number pose into ``(global_pose, jaw_pose)``, each ``(..., 3)`` axis-angle (rad)."""
    if pose.shape[-1] != POSE_SIZE:
        raise ValueError(f"split_pose: expected (..., {POSE_SIZE}), got {tuple(pose.shape)}")
    return pose[..., :3], pose[..., 3:]


def framing_cam(face_model: FaceModel, crop_scale: float) -> torch.Tensor:
    """(3,) weak-perspective cam ``(s, tx, ty)`` that frames the mean face as a prepared crop does.

    Prepared crops (``seqdeca.prep.crop``) are squares centred on the iBUG-68 landmark box with
    side ``crop_scale * 1.1 * mean box side``; in normalised coordinates the crop spans 2. So the
    neutral template's 68-landmark box (model units) gives ``s = 2 / (crop_scale * 1.1 * side)``
    and ``t = -box centre`` (``xy = s (X + t)``, y flipped after). Models without the 68 set use
    the box of all vertices.

    Args:
        face_model: the face model (its zero-code template is used).
        crop_scale: ``crop.scale`` (DECA: 1.25).
    """
    with torch.no_grad():
        neutral = face_model()
        points = neutral.landmarks68 if neutral.landmarks68 is not None else neutral.vertices
        lo, hi = points[:, :2].amin(0), points[:, :2].amax(0)
    side = float((hi - lo).mean())
    scale = 2.0 / (crop_scale * CROP_BOX_FACTOR * side)
    return torch.cat([torch.tensor([scale]), -(lo + hi).float().cpu() / 2])


def neutral_light() -> torch.Tensor:
    """(9, 3) SH light whose shading is 1 everywhere: white ambient light (band 0 only), so a
    render shows the albedo unchanged."""
    light = torch.zeros(9, 3)
    light[0] = 1.0 / SH_CONSTANTS[0]
    return light
