"""One training step per stage: compute the loss terms from model outputs and a batch.

:func:`coarse_terms` maps the model outputs of the temporal stage and a
:class:`~seqdeca.data.dataset.WindowBatch` to unweighted loss terms (functions of
:mod:`seqdeca.losses`); :func:`temporal_step` runs the forward pass, weights the terms and
backpropagates. A term whose inputs the batch or the model does not provide is skipped, with one
log line per run (``skipped`` collects the reasons). The optimizer step itself (clipping,
non-finite handling) is :class:`~seqdeca.train.stages.Update`, gradient accumulation
:class:`~seqdeca.train.trainer.Trainer`.
"""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator
from torch import nn

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.config.schema import LossConfig
from seqdeca.data.dataset import WindowBatch
from seqdeca.errors import UserError
from seqdeca.losses import (
    WeightedLoss,
    au_consistency_loss,
    au_supervision_loss,
    coarse_options,
    coarse_weights,
    code_l2,
    eye_closure_loss,
    jaw_regulariser,
    landmark_loss,
    landmark_point_weights,
    light_regulariser,
    lip_closure_loss,
    mediapipe_landmark_loss,
    photometric_loss,
    temporal_smoothness,
    weighted_sum,
)
from seqdeca.losses.supervision import au_intensity_loss, code_supervision_loss
from seqdeca.losses.temporal import binomial_smooth
from seqdeca.models.au_head import select_affwild2
from seqdeca.models.outputs import SeqDECAOutput
from seqdeca.prep.au_proxy import AU_PROXY_NAMES
from seqdeca.render.resize import resize_maps

log = logging.getLogger(__name__)

#: Main-AU index of each proxy in ``AU_PROXY_NAMES`` order (-1: the AU is not a main AU).
_PROXY_TO_MAIN = tuple(
    MAIN_AU_NAMES.index(n.removesuffix("_proxy"))
    if n.removesuffix("_proxy") in MAIN_AU_NAMES
    else -1
    for n in AU_PROXY_NAMES
)


class SkipLog:
    """Remembers which terms were skipped and logs each reason once."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def skip(self, term: str, reason: str) -> None:
        if term not in self.reasons:
            self.reasons[term] = reason
            log.info("loss term %s skipped: %s", term, reason)


def _resize_to(x: torch.Tensor, size: tuple[int, int], *, nearest: bool = False) -> torch.Tensor:
    """(B, T, C, H, W) images (bilinear, antialiased) or (B, T, H, W) masks (``nearest``) resized
    to ``size`` with :func:`~seqdeca.render.resize.resize_maps` (unchanged when equal)."""
    if x.dim() == 4:  # (B, T, H, W): one channel
        return resize_maps(
            x[:, :, None], size, mode="nearest" if nearest else "bilinear", antialias=not nearest
        )[:, :, 0]
    return resize_maps(x, size, mode="nearest" if nearest else "bilinear", antialias=not nearest)


def _au_terms(out: SeqDECAOutput, batch: WindowBatch, skips: SkipLog) -> torch.Tensor | None:
    """``au_label``: AU head vs Aff-Wild2 labels and/or landmark proxies, when present."""
    valid = batch.valid
    labels = batch.au if bool((batch.au >= 0).any()) else None
    proxies = proxy_pred = None
    if batch.au_proxy.shape[-1] == len(AU_PROXY_NAMES) and bool(
        torch.isfinite(batch.au_proxy).any()
    ):
        keep = [k for k, m in enumerate(_PROXY_TO_MAIN) if m >= 0]
        index = torch.tensor([_PROXY_TO_MAIN[k] for k in keep], device=valid.device)
        proxy_pred = out.fused.au_intensities.index_select(-1, index)
        proxies = batch.au_proxy[..., keep]
    if labels is None and proxies is None:
        skips.skip("au_label", "the batch has neither AU labels nor AU proxies")
        return None
    label_pred = select_affwild2(out.fused.au_intensities) if labels is not None else None
    return au_supervision_loss(
        label_pred=label_pred, labels=labels, proxy_pred=proxy_pred, proxies=proxies, valid=valid
    )


def _ground_truth_terms(
    out: SeqDECAOutput, batch: WindowBatch, on: set[str]
) -> dict[str, torch.Tensor]:
    """``code_supervision``, ``au_supervision`` (the AU net's outputs) and
    ``au_head_supervision`` (the AU head's intensities, the detail stage's condition) against
    ``batch.gt`` (synthetic clips; the loader refuses data without it when these terms are on).

    Code supervision scores the coarse encoder's per-frame codes AND the fused ones (expression,
    jaw, light): pretraining the encoders (temporal model per frame) trains both towards the
    truth, and with frozen encoders it trains the temporal model alone (an upper bound).
    """
    terms: dict[str, torch.Tensor] = {}
    if "code_supervision" in on:
        enc = out.encoded
        coarse = {
            "expression": enc.expression,
            "global_pose": enc.pose[..., :3],
            "jaw_pose": enc.pose[..., 3:],
            "shape": out.shape,
            "cam": out.cam,
            "light": enc.light,
        }
        fused = {"expression": out.expression, "jaw_pose": out.jaw_pose, "light": out.light}
        terms["code_supervision"] = code_supervision_loss(
            coarse, batch.gt, batch.valid
        ) + code_supervision_loss(fused, batch.gt, batch.valid)
    for term, part in (("au_supervision", "encoded"), ("au_head_supervision", "fused")):
        if term not in on:
            continue
        if "au_intensity" not in batch.gt:
            raise UserError(
                f"loss.{term} needs AU ground truth (au_intensity in gt.npz): "
                "make the clips with AU trajectories (tools/make_synthetic_data.py)"
            )
        # the AU net's 41 probabilities, or the AU head's 27 intensities
        pred = out.encoded.au_probabilities if part == "encoded" else out.fused.au_intensities
        truth = batch.gt["au_intensity"]
        terms[term] = au_intensity_loss(pred[..., : truth.shape[-1]], truth, batch.valid)
    return terms


def _clean(batch: WindowBatch) -> torch.Tensor:
    """(B, T, 3, H, W) the image targets: the crops before on-the-fly corruption, if any."""
    return batch.images if batch.clean_images is None else batch.clean_images


def coarse_terms(
    out: SeqDECAOutput,
    batch: WindowBatch,
    *,
    loss_cfg: LossConfig,
    mediapipe_ids: torch.Tensor | None,
    skips: SkipLog,
    identity_net: nn.Module | None = None,
    teacher: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Unweighted coarse / temporal terms whose weight is > 0 and whose inputs exist.

    Args:
        out: :meth:`SeqDECA.forward` outputs, (B, T, ...).
        batch: the window batch (images (B, T, 3, H, W) at the crop size; renders may be
            smaller: images and masks are resized to the render size).
        loss_cfg: weights and options.
        mediapipe_ids: (L,) MediaPipe ids of the model's "landmarks_mp" points, or None.
        skips: collects (and logs once) the terms skipped for missing inputs.
        identity_net: the frozen identity loss
            (:func:`seqdeca.losses.optional.build_identity_loss`), needed when
            ``loss.identity > 0``.
        teacher: (B, T, ...) "expression" and "jaw_pose" of the frozen per-frame encoder on
            the clean crops (:func:`temporal_step`), the ``clean_consistency`` target; None
            skips that term.

    Returns:
        term name (``LossConfig`` field) -> 0-dim tensor.
    """
    weights = coarse_weights(loss_cfg)
    on = {k for k, w in weights.items() if w > 0}
    valid = batch.valid
    terms: dict[str, torch.Tensor] = {}
    if on & {"landmark", "eye_closure", "lip_closure"}:
        pred68, target68 = out.decoded.landmarks68, batch.landmarks68
        if "landmark" in on:  # jaw contour weights follow loss.landmark_source
            terms["landmark"] = landmark_loss(
                pred68, target68, valid, landmark_point_weights(loss_cfg)
            )
        for name, fn in (("eye_closure", eye_closure_loss), ("lip_closure", lip_closure_loss)):
            if name in on:
                terms[name] = fn(pred68, target68, valid)
    if "landmark_mediapipe" in on:
        if out.decoded.landmarks_mp is not None and mediapipe_ids is not None:
            terms["landmark_mediapipe"] = mediapipe_landmark_loss(
                out.decoded.landmarks_mp, batch.landmarks, valid, target_index=mediapipe_ids
            )
        else:
            skips.skip("landmark_mediapipe", "the face model has no MediaPipe landmark embedding")
    if "clean_consistency" in on:
        if teacher is not None:  # per-frame codes of the clean crops (temporal_step)
            fused = {"expression": out.expression, "jaw_pose": out.jaw_pose}
            terms["clean_consistency"] = code_supervision_loss(fused, teacher, valid)
        else:
            skips.skip(
                "clean_consistency",
                "the batch has no clean crops (data.augmentation.corruption is 0)",
            )
    if "photometric" in on:
        size = tuple(out.decoded.render.shape[-2:])
        terms["photometric"] = photometric_loss(
            out.decoded.render,
            _resize_to(_clean(batch), size),
            _resize_to(batch.masks, size, nearest=True),
            out.decoded.render_mask,
            valid,
            important_region_weight=coarse_options(loss_cfg)["important_region_weight"],
        )
    regs = {"shape_reg": "shape", "expression_reg": "expression", "texture_reg": "texture"}
    for name, code in regs.items():
        if name in on:
            terms[name] = code_l2(getattr(out, code), valid)
    if "light_reg" in on:
        terms["light_reg"] = light_regulariser(out.light, valid)
    if "jaw_reg" in on:
        terms["jaw_reg"] = jaw_regulariser(out.jaw_pose, valid)
    if "residual_reg" in on:  # the per-frame codes as the prior of the fused ones
        terms["residual_reg"] = code_l2(out.fused.residual, valid)
    if "temporal" in on:
        codes = torch.cat([out.expression, out.jaw_pose, out.light.flatten(-2)], dim=-1)
        terms["temporal"] = temporal_smoothness(codes, valid)
    if "au_render" in on:
        if out.render_au_probabilities is not None:
            terms["au_render"] = au_consistency_loss(
                out.render_au_probabilities, out.encoded.au_probabilities, valid
            )
        else:
            skips.skip("au_render", "the model outputs have no render_au_probabilities")
    if "identity" in on:
        if identity_net is None:
            skips.skip("identity", "no identity network was given (loss.identity_weights)")
        else:
            size = tuple(out.decoded.render.shape[-2:])
            terms["identity"] = identity_net(
                out.decoded.render.flatten(0, 1),
                _resize_to(_clean(batch), size).flatten(0, 1),
                valid.flatten(),
            )
    terms |= _ground_truth_terms(out, batch, on)
    if "au_label" in on:
        au = _au_terms(out, batch, skips)
        if au is not None:
            terms["au_label"] = au
    return terms


def temporal_step(
    accelerator: Accelerator,
    model: nn.Module,
    batch: WindowBatch,
    *,
    loss_cfg: LossConfig,
    mediapipe_ids: torch.Tensor | None,
    skips: SkipLog,
    identity_net: nn.Module | None = None,
) -> WeightedLoss:
    """Forward, weighted coarse loss and backward for one batch of the temporal stage.

    The backward pass runs even for a non-finite total (every process must join the gradient
    all-reduce); the loop then discards the gradients instead of stepping.

    Args:
        accelerator: the run's accelerator (``backward`` handles scaling and DDP).
        model: the prepared (possibly DDP-wrapped) :class:`SeqDECA`.
        batch: a window batch on the accelerator's device.
        identity_net: see :func:`coarse_terms`.

    Returns:
        :class:`WeightedLoss` of the batch (``logged`` holds the unweighted terms and "total").
    """
    with accelerator.autocast():
        au_render = coarse_weights(loss_cfg)["au_render"] > 0
        out = model(batch.images, batch.valid, "temporal", au_render=au_render)
    out = out.map_tensors(lambda v: v.float() if v.is_floating_point() else v)
    teacher = None
    if batch.clean_images is not None and coarse_weights(loss_cfg)["clean_consistency"] > 0:
        with torch.no_grad():  # the frozen per-frame encoder on the clean crops: the teacher
            codes = accelerator.unwrap_model(model).per_frame_codes(batch.clean_images)
        expression, jaw = codes["expression"].float(), codes["pose"][..., 3:].float()
        if loss_cfg.clean_consistency_smooth:
            expression = binomial_smooth(expression, batch.valid)
            jaw = binomial_smooth(jaw, batch.valid)
        teacher = {"expression": expression, "jaw_pose": jaw}
    terms = coarse_terms(
        out,
        batch,
        loss_cfg=loss_cfg,
        mediapipe_ids=mediapipe_ids,
        skips=skips,
        identity_net=identity_net,
        teacher=teacher,
    )
    result = weighted_sum(terms, coarse_weights(loss_cfg))
    if result.total.requires_grad:
        accelerator.backward(result.total)
    return result
