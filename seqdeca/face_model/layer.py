"""The FLAME-format face model as a stateless ``nn.Module`` over buffers.

:class:`FaceModel` is built from a :class:`~seqdeca.face_model.assets.FaceModelAssets` (real
FLAME + DECA files, or seqdeca's bundled model) and maps :class:`FlameParams` with ANY leading
batch shape ``(...)`` -- typically ``(B, T)`` -- to a :class:`FlameOutput` with the same leading
shape. The batch is folded into one axis for the computation; nothing loops over frames.

Full pose (15 numbers, axis-angle radians) = global 3, neck 3, jaw 3, eyes 6 (left, right), in
the joint order of ``JOINT_NAMES``. DECA's 6-number pose code is global 3 + jaw 3
(:func:`deca_pose_to_params`).

All asset buffers are registered with ``persistent=False``: they come from the asset files, so
they never bloat or constrain the checkpoints of models that contain a ``FaceModel``. The module
has no parameters and does not move itself to a device.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from seqdeca.face_model.assets import JOINT_NAMES, FaceModelAssets
from seqdeca.face_model.landmarks import (
    barycentric_points,
    chain_yaw_degrees,
    contour_rows,
    kinematic_chain,
)
from seqdeca.face_model.lbs import lbs
from seqdeca.geometry.rotation import axis_angle_to_matrix

# (field, width) of the full pose, in joint order.
_POSE_FIELDS = (("global_pose", 3), ("neck_pose", 3), ("jaw_pose", 3), ("eye_pose", 6))
# Landmark sets that may serve as the model's MediaPipe landmarks, most complete first.
_MEDIAPIPE_SETS = ("mediapipe478", "mediapipe105")


@dataclass
class FlameParams:
    """Face-model parameters with a common leading batch shape ``(...)``; None means zeros.

    Attributes:
        shape: (..., S') identity coefficients, S' <= the model's S (missing ones are zero).
        expression: (..., E') expression coefficients, E' <= E.
        global_pose: (..., 3) root rotation, axis-angle radians.
        neck_pose: (..., 3) neck rotation.
        jaw_pose: (..., 3) jaw rotation (opens the mouth).
        eye_pose: (..., 6) left then right eyeball rotations.
    """

    shape: torch.Tensor | None = None
    expression: torch.Tensor | None = None
    global_pose: torch.Tensor | None = None
    neck_pose: torch.Tensor | None = None
    jaw_pose: torch.Tensor | None = None
    eye_pose: torch.Tensor | None = None

    def batch_shape(self) -> torch.Size:
        """The common leading shape; ``()`` when every field is None.

        Raises:
            ValueError: if two fields disagree on the leading shape.
        """
        found: dict[str, torch.Size] = {
            f.name: getattr(self, f.name).shape[:-1]
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }
        shapes = set(found.values())
        if len(shapes) > 1:
            raise ValueError(f"FlameParams fields disagree on the batch shape: {found}")
        return shapes.pop() if shapes else torch.Size()


@dataclass
class FlameOutput:
    """What :class:`FaceModel` returns; ``(...)`` is the batch shape of the parameters.

    Attributes:
        vertices: (..., V, 3) posed vertices, metres.
        joints: (..., J, 3) posed joints, metres.
        landmarks68: (..., 68, 3) iBUG-68 landmarks (DECA's dynamic contour + 51 static when the
            model has a contour table, else the static "ibug68" set), or None if the model has
            neither.
        landmarks_mp: (..., L_mp, 3) MediaPipe landmarks (:attr:`FaceModel.mediapipe_set`), or
            None if the model has no MediaPipe landmark set.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    landmarks68: torch.Tensor | None
    landmarks_mp: torch.Tensor | None


def deca_pose_to_params(
    pose6: torch.Tensor,
    *,
    shape: torch.Tensor | None = None,
    expression: torch.Tensor | None = None,
) -> FlameParams:
    """DECA's pose code (..., 6) = global 3 + jaw 3 -> :class:`FlameParams` (neck, eyes zero)."""
    if pose6.shape[-1] != 6:
        raise ValueError(f"DECA pose code must have 6 numbers, got shape {tuple(pose6.shape)}")
    return FlameParams(
        shape=shape, expression=expression, global_pose=pose6[..., :3], jaw_pose=pose6[..., 3:]
    )


def _f32(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)


def _i64(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.int64)


class FaceModel(nn.Module):
    """A FLAME-format face model: blend shapes, linear blend skinning and landmarks.

    Args:
        assets: the model's arrays (any V, S, E, F; five joints in ``JOINT_NAMES`` order).
        n_shape: keep only the first ``n_shape`` identity components (default: all).
        n_expression: keep only the first ``n_expression`` expression components (default: all).
        n_texture: keep only the first ``n_texture`` albedo components (default: all).
    """

    def __init__(
        self,
        assets: FaceModelAssets,
        *,
        n_shape: int | None = None,
        n_expression: int | None = None,
        n_texture: int | None = None,
    ) -> None:
        super().__init__()
        self.name = assets.name
        n_shape = _check_count("n_shape", n_shape, assets.num_shape)
        n_expression = _check_count("n_expression", n_expression, assets.num_expression)
        parents = [int(p) for p in assets.parents]
        if any(p >= i for i, p in enumerate(parents)) or parents[0] != -1:
            raise ValueError(
                f"face model '{assets.name}': parents {parents} are not a tree in order"
            )
        self.parents_list: tuple[int, ...] = tuple(parents)
        self.neck_chain: tuple[int, ...] = tuple(
            kinematic_chain(parents, JOINT_NAMES.index("neck"))
        )

        def buf(name: str, value: torch.Tensor | None) -> None:
            self.register_buffer(name, value, persistent=False)

        buf("v_template", _f32(assets.v_template))
        buf("shapedirs", _f32(assets.shapedirs[..., :n_shape]))
        buf("exprdirs", _f32(assets.exprdirs[..., :n_expression]))
        buf("posedirs", _f32(assets.posedirs))
        buf("j_regressor", _f32(assets.j_regressor))
        buf("lbs_weights", _f32(assets.lbs_weights))
        buf("parents", _i64(assets.parents))
        buf("faces", _i64(assets.faces))
        has_uv = assets.verts_uvs is not None
        buf("verts_uvs", _f32(assets.verts_uvs) if has_uv else None)
        buf("faces_uvs", _i64(assets.faces_uvs) if has_uv else None)
        for key in ("uv_face_mask", "uv_face_eye_mask", "fixed_displacement", "texture_mean"):
            value = getattr(assets, key)
            buf(key, None if value is None else _f32(value))
        basis = assets.texture_basis
        if basis is not None:
            basis = basis[: _check_count("n_texture", n_texture, basis.shape[0])]
        buf("texture_basis", None if basis is None else _f32(basis))
        self._init_landmarks(assets)

    def _init_landmarks(self, assets: FaceModelAssets) -> None:
        self._landmark_buffers: dict[str, tuple[str, str]] = {}
        for i, (lname, emb) in enumerate(sorted(assets.landmarks.items())):
            names = (f"lmk{i}_face_idx", f"lmk{i}_bary")
            self.register_buffer(names[0], _i64(emb.face_idx), persistent=False)
            self.register_buffer(names[1], _f32(emb.bary), persistent=False)
            self._landmark_buffers[lname] = names
        contour = assets.dynamic_contour
        self.register_buffer(
            "contour_face_idx",
            None if contour is None else _i64(contour.face_idx),
            persistent=False,
        )
        self.register_buffer(
            "contour_bary", None if contour is None else _f32(contour.bary), persistent=False
        )
        self.mediapipe_set: str | None = next(
            (s for s in _MEDIAPIPE_SETS if s in assets.landmarks), None
        )
        ids = None
        if self.mediapipe_set is not None:
            ids = assets.landmark_vertex_ids.get(self.mediapipe_set)
            if ids is None and self.mediapipe_set == "mediapipe478":
                ids = np.arange(len(assets.landmarks["mediapipe478"].face_idx))
        # (L_mp,) MediaPipe point id of every model MediaPipe landmark (for matching tracks).
        self.register_buffer("mediapipe_ids", None if ids is None else _i64(ids), persistent=False)

    # ----------------------------------------------------------------------------- properties

    @property
    def num_shape(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def num_expression(self) -> int:
        return int(self.exprdirs.shape[-1])

    @property
    def num_texture(self) -> int:
        return 0 if self.texture_basis is None else int(self.texture_basis.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.parents_list)

    @property
    def landmark_names(self) -> tuple[str, ...]:
        return tuple(self._landmark_buffers)

    @property
    def has_dynamic_contour(self) -> bool:
        return self.contour_face_idx is not None

    @property
    def has_landmarks68(self) -> bool:
        if self.has_dynamic_contour:
            return "ibug68_static" in self._landmark_buffers
        return "ibug68" in self._landmark_buffers

    # -------------------------------------------------------------------------------- forward

    def full_pose(self, params: FlameParams) -> torch.Tensor:
        """(..., 15) full pose of ``params``: global, neck, jaw, eyes (None parts as zeros)."""
        batch = params.batch_shape()
        parts = []
        for name, width in _POSE_FIELDS:
            value = getattr(params, name)
            if value is None:
                value = self.v_template.new_zeros(*batch, width)
            elif value.shape[-1] != width:
                raise ValueError(f"{name} must be (..., {width}), got {tuple(value.shape)}")
            parts.append(value)
        return torch.cat(parts, dim=-1)

    def forward(self, params: FlameParams | None = None, **kwargs: torch.Tensor) -> FlameOutput:
        """Pose and shape the model.

        Args:
            params: the parameters, each (..., width); None fields are zeros.
            **kwargs: :class:`FlameParams` fields, overriding those of ``params``.

        Returns:
            :class:`FlameOutput` with leading shape ``(...)``; all None gives shape ``()``,
            i.e. vertices (V, 3) equal to the template.
        """
        params = dataclasses.replace(params or FlameParams(), **kwargs)
        batch = params.batch_shape()
        n = math.prod(batch)
        shape = self._coeffs(params.shape, n, self.num_shape, "shape")
        expression = self._coeffs(params.expression, n, self.num_expression, "expression")
        full_pose = self.full_pose(params).reshape(n, 3 * self.num_joints)
        vertices, joints, rot_mats = lbs(
            shape,
            expression,
            full_pose,
            v_template=self.v_template,
            shapedirs=self.shapedirs,
            exprdirs=self.exprdirs,
            posedirs=self.posedirs,
            j_regressor=self.j_regressor,
            parents=self.parents_list,
            lbs_weights=self.lbs_weights,
        )
        lmk68 = self._landmarks68_flat(vertices, rot_mats) if self.has_landmarks68 else None
        lmk_mp = None
        if self.mediapipe_set is not None:
            lmk_mp = self._named_landmarks_flat(vertices, self.mediapipe_set)

        def unflatten(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.reshape(*batch, *x.shape[1:])

        return FlameOutput(
            vertices=unflatten(vertices),
            joints=unflatten(joints),
            landmarks68=unflatten(lmk68),
            landmarks_mp=unflatten(lmk_mp),
        )

    def _coeffs(self, value: torch.Tensor | None, n: int, limit: int, name: str) -> torch.Tensor:
        """(..., K) coefficients -> (N, K); None -> (N, 0)."""
        if value is None:
            return self.v_template.new_zeros(n, 0)
        if value.shape[-1] > limit:
            raise ValueError(f"{name} has {value.shape[-1]} coefficients; this model has {limit}")
        return value.reshape(n, value.shape[-1])

    # ------------------------------------------------------------------------------ landmarks

    def landmarks(self, vertices: torch.Tensor, name: str) -> torch.Tensor:
        """A named static landmark set of posed meshes.

        Args:
            vertices: (..., V, 3).
            name: one of :attr:`landmark_names` ("ibug68", "ibug68_static", "mediapipe105", ...).

        Returns:
            (..., L, 3).
        """
        batch = vertices.shape[:-2]
        flat = vertices.reshape(-1, *vertices.shape[-2:])
        return self._named_landmarks_flat(flat, name).reshape(*batch, -1, 3)

    def landmarks68(self, vertices: torch.Tensor, full_pose: torch.Tensor) -> torch.Tensor:
        """iBUG-68 landmarks, DECA style when the model has a dynamic contour.

        With a contour table, the 17 jaw-line points come from the table row of the rounded
        yaw of the composed root->neck rotation (see ``landmarks`` module docstring for the
        sign), clamped to the table's range, followed by the 51 static "ibug68_static" points.
        Without one, the static "ibug68" set.

        Args:
            vertices: (..., V, 3) posed vertices.
            full_pose: (..., 15) the full pose that produced them.

        Returns:
            (..., 68, 3).
        """
        if not self.has_landmarks68:
            raise ValueError(f"face model '{self.name}' has no iBUG-68 landmark set")
        batch = vertices.shape[:-2]
        flat = vertices.reshape(-1, *vertices.shape[-2:])
        rot_mats = axis_angle_to_matrix(full_pose.reshape(flat.shape[0], self.num_joints, 3))
        return self._landmarks68_flat(flat, rot_mats).reshape(*batch, -1, 3)

    def contour_row(self, full_pose: torch.Tensor) -> torch.Tensor:
        """(..., 15) full pose -> (...,) int64 row of the dynamic contour table used."""
        if not self.has_dynamic_contour:
            raise ValueError(f"face model '{self.name}' has no dynamic contour")
        rot_mats = axis_angle_to_matrix(full_pose.reshape(-1, self.num_joints, 3))
        yaw = chain_yaw_degrees(rot_mats, self.neck_chain)
        rows = contour_rows(yaw, self.contour_face_idx.shape[0])
        return rows.reshape(full_pose.shape[:-1])

    def _named_landmarks_flat(self, vertices: torch.Tensor, name: str) -> torch.Tensor:
        if name not in self._landmark_buffers:
            raise KeyError(
                f"face model '{self.name}' has no landmark set {name!r}; "
                f"it has {sorted(self._landmark_buffers)}"
            )
        face_key, bary_key = self._landmark_buffers[name]
        return barycentric_points(
            vertices, self.faces, getattr(self, face_key), getattr(self, bary_key)
        )

    def _landmarks68_flat(self, vertices: torch.Tensor, rot_mats: torch.Tensor) -> torch.Tensor:
        """(N, V, 3), (N, J, 3, 3) -> (N, 68, 3)."""
        if not self.has_dynamic_contour:
            return self._named_landmarks_flat(vertices, "ibug68")
        rows = contour_rows(
            chain_yaw_degrees(rot_mats, self.neck_chain), self.contour_face_idx.shape[0]
        )
        contour = barycentric_points(
            vertices, self.faces, self.contour_face_idx[rows], self.contour_bary[rows]
        )
        static = self._named_landmarks_flat(vertices, "ibug68_static")
        return torch.cat([contour, static], dim=1)

    # -------------------------------------------------------------------------------- texture

    def albedo(self, texture: torch.Tensor) -> torch.Tensor:
        """UV albedo from texture coefficients (DECA's FLAMETex, at the assets' resolution).

        Args:
            texture: (..., K') coefficients, K' <= :attr:`num_texture`.

        Returns:
            (..., 3, H, W) RGB albedo (nominally in [0, 1]; not clamped), row 0 = v 1.
        """
        if self.texture_mean is None:
            raise ValueError(f"face model '{self.name}' has no texture space")
        k = texture.shape[-1]
        if k > self.num_texture:
            raise ValueError(f"texture has {k} coefficients; this model has {self.num_texture}")
        return self.texture_mean + torch.einsum(
            "...k,kchw->...chw", texture, self.texture_basis[:k]
        )


def _check_count(name: str, value: int | None, available: int) -> int:
    if value is None:
        return available
    if not 0 <= value <= available:
        raise ValueError(f"{name}={value} but the face model has {available} components")
    return value
