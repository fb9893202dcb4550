"""What :class:`~seqdeca.models.seqdeca_model.SeqDECA` returns: frozen dataclasses of tensors.

Every tensor is (B, T, ...) (B windows of T frames) unless the model's caller reshaped it:
inference slices the centre frame of each window and concatenates chunks, giving (n, ...). A
field typed ``Tensor | None`` is None when the model or the call does not produce it (stated per
field). Shapes use the glossary of :mod:`seqdeca` (E expression coefficients, V vertices, ...).

The classes are registered with :func:`torch.utils._pytree.register_dataclass`, so DDP's output
hooks (``find_unused_parameters``) reach every tensor inside them, and so is
:meth:`TensorFields.map_tensors`, the one way to transform all tensors of an output (to float,
to a device, detach, slice frames); :func:`cat_outputs` concatenates outputs along a dimension.

The codes the model *takes* (``SeqDECA.decode`` / ``SeqDECA.detail`` inputs, the ``coarse_codes``
given to ``forward``, ``SeqDECA.per_frame_codes``) stay ``dict[str, Tensor]`` keyed by
:class:`~seqdeca.models.code_layout.CodeLayout` part names: callers build them from ground truth,
smoothed or partial codes, and any subset is meaningful there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils import _pytree as pytree

__all__ = ["Decoded", "DetailOutput", "Encoded", "Fused", "SeqDECAOutput", "cat_outputs"]

T = TypeVar("T", bound="TensorFields")


class TensorFields:
    """Shared behaviour of the output dataclasses (nested outputs and None fields included)."""

    def map_tensors(self: T, fn: Callable[[torch.Tensor], torch.Tensor]) -> T:  # noqa: PYI019 (typing.Self needs 3.11)
        """A copy with ``fn`` applied to every tensor (nested outputs too; None stays None).

        Other changes are :func:`dataclasses.replace` (e.g. ``replace(out, valid=...)``).
        """
        return pytree.tree_map(fn, self)


def cat_outputs(parts: list[T], dim: int = 0) -> T:
    """Outputs of one class with the same None fields, each tensor concatenated along ``dim``."""
    return pytree.tree_map(lambda *xs: torch.cat(xs, dim=dim), parts[0], *parts[1:])


@dataclass(frozen=True)
class Encoded(TensorFields):
    """Per-frame encodings (``SeqDECA.encode``): coarse codes, features and AU outputs.

    Attributes:
        codes: (B, T, D) the coarse encoder's code vector (D = ``CodeLayout.total``).
        shape: (B, T, n_shape) identity coefficients.
        texture: (B, T, n_texture) albedo coefficients (n_texture may be 0).
        expression: (B, T, E) per-frame expression coefficients.
        pose: (B, T, 6) global 3 + jaw 3, axis-angle (radians).
        cam: (B, T, 3) weak-perspective camera (scale, tx, ty).
        light: (B, T, 9, 3) SH light coefficients per colour.
        global_features: (B, T, 2048) the coarse encoder's pooled features.
        au_tokens: (B, T, 27, C) the AU network's per-AU tokens.
        au_probabilities: (B, T, 41) AU probabilities (cosine similarities in [0, 1]).
        valid: (B, T) bool, False on padding frames.
    """

    codes: torch.Tensor
    shape: torch.Tensor
    texture: torch.Tensor
    expression: torch.Tensor
    pose: torch.Tensor
    cam: torch.Tensor
    light: torch.Tensor
    global_features: torch.Tensor
    au_tokens: torch.Tensor
    au_probabilities: torch.Tensor
    valid: torch.Tensor


@dataclass(frozen=True)
class Fused(TensorFields):
    """The temporal model's codes and the AU head (``SeqDECA.fuse``).

    Attributes:
        expression: (B, T, E) fused expression.
        jaw_pose: (B, T, 3) fused jaw pose, axis-angle.
        pose: (B, T, 6) the coarse encoder's global pose + the fused jaw pose.
        light: (B, T, 9, 3) fused SH light.
        residual: (B, T, E + 30) the residual added to the per-frame codes (expression, jaw,
            light).
        au_intensities: (B, T, 27) the AU head's intensities in [0, 1].
    """

    expression: torch.Tensor
    jaw_pose: torch.Tensor
    pose: torch.Tensor
    light: torch.Tensor
    residual: torch.Tensor
    au_intensities: torch.Tensor


@dataclass(frozen=True)
class Decoded(TensorFields):
    """Face model, projected landmarks and render (``SeqDECA.decode``).

    Attributes:
        vertices: (B, T, V, 3) posed vertices, metres.
        landmarks68: (B, T, 68, 2) iBUG-68 landmarks in normalised image coordinates [-1, 1]
            (y down); None when the face model has no 68-point set.
        landmarks_mp: (B, T, L, 2) MediaPipe landmarks, same coordinates; None when the face
            model has no MediaPipe embedding.
        render: (B, T, 3, H, W) textured, lit render, RGB.
        render_mask: (B, T, 1, H, W) coverage in {0, 1}.
        albedo: (B, T, 3, Ht, Wt) UV albedo; None when the face model has no texture space.
        shape_image: (B, T, 3, H, W) grey shape render (no gradient); None unless asked for
            (``render_shape=True``).
    """

    vertices: torch.Tensor
    landmarks68: torch.Tensor | None
    landmarks_mp: torch.Tensor | None
    render: torch.Tensor
    render_mask: torch.Tensor
    albedo: torch.Tensor | None = None
    shape_image: torch.Tensor | None = None


@dataclass(frozen=True)
class DetailOutput(TensorFields):
    """The detail stage of a window (``SeqDECA.detail``); UV maps are (Huv, Wuv) =
    ``render.uv_size``.

    Attributes:
        detail_code: (B, T, n_detail) the detail encoder's code.
        au_condition: (B, T, K) in [0, 1], the generator's AU condition (K = 27 or 12; the 27
            intensities the critic sees when the condition is "none").
        displacement: (B, T, 1, Huv, Wuv) UV displacement, metres, within
            +-``model.detail_max_displacement`` (DECA: 0.01).
        detail_normals: (B, T, 3, Huv, Wuv) unit normals with the displacement.
        uv_shading: (B, T, 3, Huv, Wuv) SH shading of the detail normals.
        uv_coarse_shading: (B, T, 3, Huv, Wuv) SH shading of the coarse normals under the same
            light (no gradient).
        uv_input: (B, T, 3, Huv, Wuv) the input image sampled into UV through the coarse mesh.
        uv_visible_mask: (B, T, 1, Huv, Wuv) in {0, 1}: the face-and-eye UV mask times the
            texels whose coarse normal faces the camera.
        uv_path_offset: (B, T, 1, Huv, Wuv) what the photo's path (render, unwrap) leaves in the
            detail contrast of a face without detail (``model.detail_path_offset``;
            :mod:`seqdeca.models.detail_path`), or None when not measured.
    """

    detail_code: torch.Tensor
    au_condition: torch.Tensor
    displacement: torch.Tensor
    detail_normals: torch.Tensor
    uv_shading: torch.Tensor
    uv_coarse_shading: torch.Tensor
    uv_input: torch.Tensor
    uv_visible_mask: torch.Tensor
    uv_path_offset: torch.Tensor | None = None


@dataclass(frozen=True)
class SeqDECAOutput(TensorFields):
    """``SeqDECA.forward``: the codes that were decoded, and each part's own outputs.

    The seven codes are the fused ones (shape, texture and cam from the coarse encoder;
    expression, jaw pose, pose and light from the temporal model), or the codes given to
    ``forward`` in their place (``coarse_codes``).

    Attributes:
        shape: (B, T, n_shape); texture: (B, T, n_texture); expression: (B, T, E);
        pose: (B, T, 6) global + jaw, axis-angle; jaw_pose: (B, T, 3); cam: (B, T, 3);
        light: (B, T, 9, 3).
        encoded: the per-frame encodings (the coarse codes ``encoded.expression``,
            ``encoded.pose``, ``encoded.light``; ``encoded.au_probabilities``;
            ``encoded.valid``).
        fused: the temporal model's outputs (``fused.residual``, ``fused.au_intensities``).
        decoded: vertices, landmarks and render of the seven codes.
        detail: the detail stage's outputs; None in the temporal stage.
        render_au_probabilities: (B, T, 41) AU probabilities of the render pasted over the input
            (``SeqDECA.render_au``); None unless asked for (``au_render=True``).
    """

    shape: torch.Tensor
    texture: torch.Tensor
    expression: torch.Tensor
    pose: torch.Tensor
    jaw_pose: torch.Tensor
    cam: torch.Tensor
    light: torch.Tensor
    encoded: Encoded
    fused: Fused
    decoded: Decoded
    detail: DetailOutput | None = None
    render_au_probabilities: torch.Tensor | None = None

    def codes(self) -> dict[str, torch.Tensor]:
        """The seven decoded codes by name (the input form of ``SeqDECA.decode``)."""
        return {name: getattr(self, name) for name in CODE_NAMES}


#: The codes :class:`SeqDECAOutput` holds at its top level (and ``SeqDECA.decode`` reads).
CODE_NAMES = ("shape", "texture", "expression", "pose", "jaw_pose", "cam", "light")

for _cls in (Encoded, Fused, Decoded, DetailOutput, SeqDECAOutput):
    pytree.register_dataclass(_cls)
