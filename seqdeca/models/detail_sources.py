"""Where the detail stage's coarse codes and AU condition come from, in training and in
evaluation (:class:`DetailSources`, :func:`ground_truth_codes`).

``train.detail_coarse``, the coarse codes the detail stage renders with (the mesh, camera, light
and albedo behind its UV unwrapping, shading, critic inputs and photometric target):

* "encoder" (default): the frozen coarse encoder and temporal model;
* "ground_truth": the synthetic clips' ``gt.npz`` (:func:`ground_truth_codes`): shape,
  expression, global and jaw pose, camera, SH light and texture. A ``gt.npz`` without light or
  texture keeps the model's own for that part (the temporal model's light, the encoder's
  texture); one without a geometric part (shape, expression, poses, camera) is refused.

``train.detail_condition``, the AU condition of generator and critic:

* "head" (default): the frozen AU head's 27 intensities (the 12 Aff-Wild2 ones for
  ``model.detail_au_condition: affwild12``);
* "ground_truth": ``gt.npz``'s ``au_intensity`` (T, 27) in [0, 1] (clips made with
  ``synthetic.expression: au``), selected the same way.

Either ground-truth source makes the loaders read ``gt.npz``: the dataset then refuses, in one
line, sources without it and geometric augmentation in training (the true pose and camera
would not follow). Training, validation, the image grids and the evaluation use the same sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seqdeca.config.schema import Config, TrainConfig
from seqdeca.errors import UserError
from seqdeca.models.code_layout import CodeLayout

__all__ = [
    "DETAIL_COARSE",
    "DETAIL_CONDITION",
    "DetailSources",
    "detail_sources",
    "ground_truth_codes",
]

#: ``train.detail_coarse`` settings.
DETAIL_COARSE = ("encoder", "ground_truth")
#: ``train.detail_condition`` settings.
DETAIL_CONDITION = ("head", "ground_truth")
#: ``gt.npz`` arrays the ground-truth coarse source cannot do without.
_GEOMETRY = ("shape", "expression", "global_pose", "jaw_pose", "cam")


@dataclass(frozen=True)
class DetailSources:
    """The sources of the detail stage's coarse codes and AU condition (module docstring).

    Attributes:
        coarse: ``train.detail_coarse``, "encoder" or "ground_truth".
        condition: ``train.detail_condition``, "head" or "ground_truth".
    """

    coarse: str = "encoder"
    condition: str = "head"

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> DetailSources:
        """The sources of ``cfg``.

        Raises:
            UserError: an unknown setting (one line).
        """
        for key, value, choices in (
            ("detail_coarse", cfg.detail_coarse, DETAIL_COARSE),
            ("detail_condition", cfg.detail_condition, DETAIL_CONDITION),
        ):
            if value not in choices:
                raise UserError(f"unknown train.{key}={value!r}; choose one of {choices}")
        return cls(coarse=cfg.detail_coarse, condition=cfg.detail_condition)

    @property
    def ground_truth(self) -> bool:
        """Whether batches must carry ``gt.npz`` (:attr:`WindowBatch.gt`)."""
        return self.coarse == "ground_truth" or self.condition == "ground_truth"

    def settings(self) -> str:
        """The settings that ask for ``gt.npz``, for messages (empty when none does)."""
        names = [
            f"train.detail_{k}=ground_truth"
            for k, v in (("coarse", self.coarse), ("condition", self.condition))
            if v == "ground_truth"
        ]
        return " and ".join(names)

    def forward_kwargs(self, gt: dict[str, torch.Tensor], layout: CodeLayout) -> dict[str, Any]:
        """Keyword arguments of :meth:`SeqDECA.forward` for a batch: ``coarse_codes`` and/or
        ``condition_au`` from its ground truth (empty for the model's own sources).

        Args:
            gt: :attr:`WindowBatch.gt`, (B, T, ...) ``gt.npz`` arrays.
            layout: the model's code layout.

        Raises:
            UserError: the ground truth lacks what the sources need, or does not fit the model.
        """
        kwargs: dict[str, Any] = {}
        if self.ground_truth and not gt:
            raise UserError(f"{self.settings()} needs batches with gt.npz; none was loaded")
        if self.coarse == "ground_truth":
            kwargs["coarse_codes"] = ground_truth_codes(gt, layout)
        if self.condition == "ground_truth":
            if "au_intensity" not in gt:
                raise UserError(
                    "train.detail_condition=ground_truth needs au_intensity in gt.npz: "
                    "make the clips with synthetic.expression=au"
                )
            kwargs["condition_au"] = gt["au_intensity"]
        return kwargs


def detail_sources(cfg: Config) -> DetailSources | None:
    """The run's :class:`DetailSources` in the detail stage, None in the others.

    Raises:
        UserError: an unknown ``train.detail_coarse`` / ``train.detail_condition``.
    """
    return DetailSources.from_config(cfg.train) if cfg.train.stage == "detail" else None


def _fit(value: torch.Tensor, size: int, name: str) -> torch.Tensor:
    """(..., S) true coefficients -> (..., size): zero-padded when the model has more components.

    Raises:
        UserError: the model has fewer (it could not reproduce the true face).
    """
    if value.shape[-1] > size:
        raise UserError(
            f"train.detail_coarse=ground_truth: gt.npz has {value.shape[-1]} {name} components but "
            f"the model {size}; make the clips with the run's face_model settings"
        )
    return F.pad(value, (0, size - value.shape[-1]))


def ground_truth_codes(gt: dict[str, torch.Tensor], layout: CodeLayout) -> dict[str, torch.Tensor]:
    """The model's coarse codes from ``gt.npz`` arrays (see the module docstring).

    Args:
        gt: (B, T, ...) "shape" (S), "expression" (E), "global_pose" (3), "jaw_pose" (3),
            "cam" (3), and when present "light" (9, 3) and "texture" (K).
        layout: the model's code layout (coefficients padded with zeros up to its sizes).

    Returns:
        (B, T, ...) "shape", "expression", "pose" (6: global then jaw, axis-angle radians),
        "jaw_pose", "cam", and "light" / "texture" when ``gt`` has them.

    Raises:
        UserError: a geometric part is missing, or ``gt`` has more components than the model.
    """
    missing = [k for k in _GEOMETRY if k not in gt]
    if missing:
        raise UserError(
            f"train.detail_coarse=ground_truth: gt.npz lacks {', '.join(missing)}; "
            "make the clips again (tools/make_synthetic_data.py)"
        )
    codes = {
        "shape": _fit(gt["shape"], layout.n_shape, "shape"),
        "expression": _fit(gt["expression"], layout.n_expression, "expression"),
        "pose": torch.cat([gt["global_pose"], gt["jaw_pose"]], dim=-1),
        "jaw_pose": gt["jaw_pose"],
        "cam": gt["cam"],
    }
    if "light" in gt:
        codes["light"] = gt["light"]
    if "texture" in gt and layout.n_texture > 0:
        codes["texture"] = _fit(gt["texture"], layout.n_texture, "texture")
    return codes
