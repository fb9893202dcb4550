"""One critic step and one generator step of the detail stage (a cGAN in UV space, WGAN-GP by
default).

What the critic compares. A critic can only teach the generator about detail if real and fake
samples differ in nothing else; any other difference (brightness, colour, contrast, the coarse
fit, a channel one side cannot have) is learnt in a few steps, the critic's scores then grow
without bound and the adversarial gradient says nothing about wrinkles. So both samples are the
same quantity, the part of the shading that the COARSE model does not explain, measured the same
way (DECA's image model: image = albedo x shading of the detail normals):

* **fake** (:meth:`ConditionedDetailCritic.detail_render`): ``uv_shading / uv_coarse_shading``,
  the SH shading of the generated detail normals over that of the coarse normals, both under
  the frame's estimated light (1 everywhere for a zero displacement);
* **real** (:meth:`ConditionedDetailCritic.real_render`): ``uv_input / (albedo x
  uv_coarse_shading)``, the photo unwrapped into UV through the coarse mesh over the coarse
  render of the same texels (1 everywhere for a photo the coarse model explains exactly);
* **normalisation** (:func:`seqdeca.models.critic.detail_contrast`): grey levels, then
  each ratio divided by its local Gaussian mean (a few texels) minus 1, inside the same mask:
  the UV face-and-eye mask times the texels facing the camera (``uv_visible_mask``; elsewhere the
  unwrapped photo shows the occluder or the background). Errors of the coarse stage that are
  smooth over the face (light intensity, colour and direction, albedo, geometry misfit) divide
  out; wrinkles and folds, a few texels wide, remain.

A photo rendered from the coarse model itself (e.g. a synthetic clip fitted exactly) then gives
the same critic input as a zero displacement; what is left to tell real from fake is detail the
photo has and the generator lacks, plus image noise and albedo detail (also in DECA's
photometric target). The displacement map is not shown to the critic: a photo has no
displacement to compare with (a constant "zero displacement" real channel only teaches the
critic to read that channel). With an untrained coarse stage the unwrapped photo is unrelated to
the mesh and the critic still wins easily: train the detail stage from a trained coarse model
(``train.init_from`` or DECA weights).

Both samples are conditioned on the same AU condition (the frozen AU head's intensities of the
frame, or the ground truth: ``train.detail_condition``, :mod:`seqdeca.models.detail_sources`;
``detail.au_condition``), so GANimation's AU regression trains the critic's AU head on real samples and
pushes generated samples towards the condition. With ``model.critic_au: false`` the critic sees
no AU (no heatmap channels, no AU head) and both ``au_regression`` terms are skipped, whatever
the generator's condition (``model.detail_au_condition``).

Losses (weights from :func:`critic_weights` / :func:`detail_weights`):

* critic: ``critic`` (WGAN, hinge or non-saturating BCE: ``loss.gan_type``) + lambda_gp x
  ``gradient_penalty`` + ``au_regression`` x MSE(AU head on real, condition);
* generator: ``adversarial`` x the generator's GAN loss (``-E[D(fake)]``; BCE:
  ``E[softplus(-D(fake))]``) + ``au_regression`` x MSE(AU head on fake, condition) +
  ``detail_photometric`` x UV L1(albedo x detail shading, ``uv_input``) within the UV mask
  times ``uv_visible_mask`` (DECA's ``uv_vis_mask``) + ``detail_contrast`` x L1(fake, real) of
  the critic's two inputs above, in the same mask less its borders and the albedo's edges
  (:func:`~seqdeca.models.critic.contrast_loss_mask`: the photometric error with the smooth errors
  of the coarse stage divided out; needs no critic) + ``z_reg`` + ``z_diff`` + ``z_sym``
  (``loss.z_sym_region``: the mean over the UV face mask, or DECA's sum over the texels not
  visible, :mod:`seqdeca.losses.detail`) + ``id_mrf`` x ID-MRF(the same UV texture,
  ``uv_input``), masked as the photometric term (DECA's ``detail_mrf``; needs the user's VGG19
  file, :func:`seqdeca.losses.optional.build_id_mrf_loss`). The generator's critic pass runs on
  the unwrapped critic and backpropagates only into the generator's parameters (``inputs=``), so
  the critic's gradients stay those of its own loss.

Without a critic (``loss.adversarial: 0``, DECA's detail training) only the generator's
reconstruction and regularisation terms remain: no critic exists and no critic step runs.

The optimizer steps (n_critic critic steps per generator step, clipping, non-finite handling)
live in :mod:`seqdeca.train.stages` (the step objects) and :mod:`seqdeca.train.trainer`.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator
from einops import rearrange
from torch import nn

from seqdeca.config.schema import LossConfig
from seqdeca.losses import (
    WeightedLoss,
    au_regression_loss,
    critic_loss,
    critic_weights,
    detail_weights,
    displacement_regulariser,
    generator_loss,
    gradient_penalty,
    invisible_mask,
    shading_smoothness,
    symmetry_loss,
    uv_photometric_loss,
    weighted_sum,
)
from seqdeca.losses.detail import CRITIC_REGIONS, Z_SYM_REGIONS
from seqdeca.models.critic import ConditionedDetailCritic, contrast_loss_mask
from seqdeca.models.outputs import DetailOutput, SeqDECAOutput
from seqdeca.render.resize import resize_maps
from seqdeca.train.steps import SkipLog

__all__ = ["critic_step", "detail_forward", "generator_step", "real_detail_render"]


def _fold(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b t ... -> (b t) ...")


def _detail(outputs: SeqDECAOutput) -> DetailOutput:
    """The detail stage's part of ``outputs`` (an error for temporal-stage outputs)."""
    if outputs.detail is None:
        raise ValueError("the outputs have no detail stage: run the model with stage='detail'")
    return outputs.detail


def real_detail_render(outputs: SeqDECAOutput) -> torch.Tensor:
    """(N, 1, Huv, Wuv) "real" critic input (:meth:`ConditionedDetailCritic.real_render`).

    Args:
        outputs: detail-stage outputs (B, T, ...): the detail maps and, when the face model has
            a texture space, ``decoded.albedo``.
    """
    return ConditionedDetailCritic.real_render(_detail(outputs), outputs.decoded.albedo)


def compared_region(outputs: SeqDECAOutput) -> torch.Tensor:
    """(N, 1, Huv, Wuv) texels where the detail contrast loss compares, and the critic's views
    with ``loss.critic_region: compared`` (:func:`~seqdeca.models.critic.contrast_loss_mask` of
    the visible face texels and the albedo). Detached."""
    albedo = outputs.decoded.albedo
    flat_albedo = _fold(albedo).detach() if albedo is not None else None
    return contrast_loss_mask(_fold(_detail(outputs).uv_visible_mask).detach(), flat_albedo)


def critic_views(outputs: SeqDECAOutput, region: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's (fake, real) inputs, (N, 1, Huv, Wuv) each: the generated detail's shading
    contrast (with gradients to the generator) and the photo's (detached), within the visible
    face texels (``region`` "visible") or also away from borders and albedo edges ("compared",
    :func:`compared_region`)."""
    fake = fake_view(outputs, region)
    real = real_detail_render(outputs)
    return fake, real * compared_region(outputs) if region == "compared" else real


def fake_view(outputs: SeqDECAOutput, region: str) -> torch.Tensor:
    """The critic's fake input alone (what the generator's adversarial term scores), as in
    :func:`critic_views`."""
    if region not in CRITIC_REGIONS:
        raise ValueError(f"unknown critic region {region!r}; choose one of {CRITIC_REGIONS}")
    fake = ConditionedDetailCritic.detail_render(_detail(outputs))
    return fake * compared_region(outputs) if region == "compared" else fake


def detail_forward(
    accelerator: Accelerator,
    model: nn.Module,
    images: torch.Tensor,
    valid: torch.Tensor,
    *,
    with_grad: bool,
    given: dict[str, Any] | None = None,
) -> SeqDECAOutput:
    """The model's detail-stage outputs in float32 (under ``no_grad`` when ``with_grad`` is False);
    ``encoded.valid`` is ``valid`` (B, T) bool.

    Args:
        images: (B, T, 3, H, W) in [0, 1]; valid: (B, T) bool.
        given: ``coarse_codes`` / ``condition_au`` for the model
            (:meth:`~seqdeca.models.detail_sources.DetailSources.forward_kwargs`), or None.
    """
    with torch.set_grad_enabled(with_grad), accelerator.autocast():
        out = model(images, valid, "detail", **(given or {}))
    return out.map_tensors(lambda v: v.float() if v.is_floating_point() else v)


def critic_step(
    accelerator: Accelerator,
    critic: nn.Module,
    outputs: SeqDECAOutput,
    *,
    loss_cfg: LossConfig,
    kind: str | None = None,
    generator: torch.Generator | None = None,
) -> WeightedLoss:
    """Critic loss on real vs (detached) generated UV detail renders, and its backward pass.

    Args:
        accelerator: the run's accelerator.
        critic: the prepared :class:`ConditionedDetailCritic` (possibly DDP-wrapped).
        outputs: detail-stage outputs (B, T, ...): the detail maps, ``decoded.albedo`` (when
            the model has one), ``detail.au_condition`` (K) and ``encoded.valid``; detached
            here.
        loss_cfg: weights (``gradient_penalty`` = lambda_gp, ``au_regression``: skipped when
            the critic has no AU head).
        kind: "wgan", "hinge" or "bce"; None = ``loss_cfg.gan_type``.
        generator: CPU RNG of the gradient penalty's interpolation weights (the loop seeds one
            per batch from the step, so a resumed run draws the same weights; the global RNG is
            also consumed by the data loader's iterator creation, which differs after a resume).

    Returns:
        :class:`WeightedLoss` (logged: "critic", "gradient_penalty", "au_regression", "total").
    """
    weights = critic_weights(loss_cfg)
    kind = loss_cfg.gan_type if kind is None else kind
    detail = _detail(outputs)
    fake, real = critic_views(outputs, loss_cfg.critic_region)
    fake = fake.detach()
    condition = _fold(detail.au_condition).detach()
    valid = _fold(outputs.encoded.valid)
    n = real.shape[0]
    with accelerator.autocast():  # one forward for both (one DDP forward before the backward)
        both = critic(torch.cat([real, fake]), torch.cat([condition, condition]))
    realism = both["realism"].float()
    terms = {"critic": critic_loss(realism[:n], realism[n:], kind=kind)}
    if weights["gradient_penalty"] > 0:
        terms["gradient_penalty"] = gradient_penalty(
            lambda x: critic(x, condition)["realism"].float(), real, fake, generator=generator
        )
    if weights["au_regression"] > 0 and "au" in both:  # no "au": the critic has no AU head
        terms["au_regression"] = au_regression_loss(both["au"][:n].float(), condition, valid)
    result = weighted_sum(terms, weights)
    accelerator.backward(result.total)
    return result


def _adversarial_terms(
    outputs: SeqDECAOutput,
    critic: ConditionedDetailCritic | None,
    on: set[str],
    *,
    kind: str,
    region: str,
    skips: SkipLog,
) -> dict[str, torch.Tensor]:
    """The generator's "adversarial" and "au_regression" terms among ``on`` (skipped, with a
    log line, when there is no critic or it has no AU head); ``region``: see
    :func:`critic_views`."""
    wanted = on & {"adversarial", "au_regression"}
    if critic is None:
        for name in sorted(wanted):
            skips.skip(name, "the detail stage has no critic (loss.adversarial=0)")
        return {}
    if "au_regression" in wanted and not critic.conditioned:
        skips.skip("au_regression", "the critic has no AU head (model.critic_au=false)")
        wanted.discard("au_regression")
    if not wanted:
        return {}
    detail = _detail(outputs)
    condition = _fold(detail.au_condition).detach()
    scores = critic(fake_view(outputs, region), condition)
    terms = {}
    if "adversarial" in wanted:
        terms["adversarial"] = generator_loss(scores["realism"].float(), kind=kind)
    if "au_regression" in wanted:
        valid = _fold(outputs.encoded.valid)
        terms["au_regression"] = au_regression_loss(scores["au"].float(), condition, valid)
    return terms


def _z_sym(
    detail: DetailOutput, mask: torch.Tensor, valid: torch.Tensor, *, region: str
) -> torch.Tensor:
    """z_sym over ``loss.z_sym_region``: "face" (mean over the (1, 1, Huv, Wuv) UV face
    ``mask``) or "invisible" (DECA: summed over the texels outside the eroded visibility)."""
    z = _fold(detail.displacement)
    if region == "face":
        return symmetry_loss(z, mask, valid)
    if region == "invisible":
        hidden = invisible_mask(_fold(detail.uv_visible_mask).detach())
        return symmetry_loss(z, hidden, valid, summed=True)
    raise ValueError(f"unknown z_sym region {region!r}; choose one of {Z_SYM_REGIONS}")


def generator_terms(
    outputs: SeqDECAOutput,
    critic: ConditionedDetailCritic | None,
    uv_mask: torch.Tensor,
    *,
    loss_cfg: LossConfig,
    skips: SkipLog,
    kind: str | None = None,
    id_mrf_net: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Unweighted generator terms whose weight is > 0 (see the module docstring).

    Args:
        outputs: detail-stage outputs (B, T, ...) with gradients to the generator.
        critic: the UNWRAPPED critic (its parameters get no gradient from these terms' backward
            when the caller restricts ``inputs``); None without a critic (``loss.adversarial``
            0: the adversarial and AU-regression terms are skipped).
        uv_mask: (Huv, Wuv) UV face mask in [0, 1].
        kind: "wgan", "hinge" or "bce"; None = ``loss_cfg.gan_type``.
        id_mrf_net: the frozen ID-MRF loss, needed when ``loss.id_mrf > 0``.
    """
    on = {k for k, w in detail_weights(loss_cfg).items() if w > 0}
    kind = loss_cfg.gan_type if kind is None else kind
    detail, albedo = _detail(outputs), outputs.decoded.albedo
    valid = _fold(outputs.encoded.valid)
    mask = uv_mask[None, None]
    terms = _adversarial_terms(
        outputs, critic, on, kind=kind, region=loss_cfg.critic_region, skips=skips
    )
    shading, z = _fold(detail.uv_shading), _fold(detail.displacement)
    textured = on & {"detail_photometric", "id_mrf"}
    if textured and albedo is None:
        for name in textured:
            skips.skip(name, "the face model has no texture space (UV albedo)")
    elif textured:
        uv_size = tuple(shading.shape[-2:])
        uv_albedo = resize_maps(albedo, uv_size, mode="bilinear", antialias=True)
        texture = _fold(uv_albedo) * shading
        target = _fold(detail.uv_input).detach()
        seen = mask * _fold(detail.uv_visible_mask)  # (N, 1, Huv, Wuv)
        if "detail_photometric" in on:
            terms["detail_photometric"] = uv_photometric_loss(texture, target, seen, valid)
        if "id_mrf" in on and id_mrf_net is None:
            skips.skip("id_mrf", "no ID-MRF network was given (loss.id_mrf_weights)")
        elif "id_mrf" in on:
            terms["id_mrf"] = id_mrf_net(texture * seen, target * seen, valid)
    if "detail_contrast" in on:  # the critic's two views, away from borders and albedo edges
        fake, real = critic_views(outputs, "visible")
        compared = mask * compared_region(outputs)
        terms["detail_contrast"] = uv_photometric_loss(fake, real, compared, valid)
    if "z_reg" in on:
        terms["z_reg"] = displacement_regulariser(z, valid=valid)
    if "z_diff" in on:
        terms["z_diff"] = shading_smoothness(shading, mask, valid)
    if "z_sym" in on:
        terms["z_sym"] = _z_sym(detail, mask, valid, region=loss_cfg.z_sym_region)
    return terms


def generator_step(
    accelerator: Accelerator,
    outputs: SeqDECAOutput,
    critic: ConditionedDetailCritic | None,
    uv_mask: torch.Tensor,
    *,
    parameters: list[nn.Parameter],
    loss_cfg: LossConfig,
    skips: SkipLog,
    kind: str | None = None,
    id_mrf_net: nn.Module | None = None,
) -> WeightedLoss:
    """Weighted generator loss and its backward pass into ``parameters`` only.

    The backward pass runs even for a non-finite total (every process must join the all-reduce);
    the loop then discards the gradients.

    Args:
        outputs: detail-stage outputs (B, T, ...) computed with gradients.
        critic: the unwrapped critic, or None (no critic); uv_mask: (Huv, Wuv) UV face mask.
        parameters: the detail encoder's and generator's parameters.
        id_mrf_net: see :func:`generator_terms`.

    Returns:
        :class:`WeightedLoss` (logged: the unweighted generator terms and "total").
    """
    terms = generator_terms(
        outputs, critic, uv_mask, loss_cfg=loss_cfg, skips=skips, kind=kind, id_mrf_net=id_mrf_net
    )
    result = weighted_sum(terms, detail_weights(loss_cfg))
    if result.total.requires_grad:
        accelerator.backward(result.total, inputs=parameters)
    return result
