"""One critic step and one generator step of the detail stage (a WGAN-GP cGAN in UV space).

What the critic compares (the "real" sample, chosen as the simplest defensible one):

* **fake**: :meth:`ConditionedDetailCritic.detail_render` of the model's detail outputs, i.e.
  the UV shading of the generated detail normals (3 channels) and the UV displacement (1).
* **real**: the input image unwrapped into UV through the coarse mesh (``uv_input``), turned
  into the same 4 channels: its grey level (ITU-R 601 luma) repeated in the 3 shading channels
  and a zero displacement channel. A photograph's grey level is the nearest observable thing to
  "shading with real detail" (it also carries albedo, as DECA's UV photometric target does), and
  a real face has no displacement to show, so the channel is zero. Consequences: the
  adversarial term also pulls the displacement towards 0 (like ``z_reg``), and the critic learns
  what real wrinkles look like in the shading channels, which is what the generator must match.

Both samples are conditioned on the same AU condition (the frozen AU head's intensities of the
frame, ``au_condition``), so GANimation's AU regression trains the critic's AU head on real
samples and pushes generated samples towards the condition.

Losses (weights from :func:`critic_weights` / :func:`detail_weights`):

* critic: ``critic`` (WGAN, or hinge via ``kind``) + lambda_gp x ``gradient_penalty`` +
  ``au_regression`` x MSE(AU head on real, condition);
* generator: ``adversarial`` x ``-E[D(fake)]`` + ``au_regression`` x MSE(AU head on fake,
  condition) + ``detail_photometric`` x masked UV L1(albedo x detail shading, ``uv_input``) +
  ``z_reg`` + ``z_diff`` + ``z_sym``. The generator's critic pass runs on the unwrapped critic and
  backpropagates only into the generator's parameters (``inputs=``), so the critic's gradients
  stay those of its own loss.

The optimizer steps (n_critic critic steps per generator step, clipping, non-finite handling)
live in :mod:`seqdeca.train.loop`.
"""

from __future__ import annotations

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
    shading_smoothness,
    symmetry_loss,
    uv_photometric_loss,
    weighted_sum,
)
from seqdeca.models.seqdeca_model import ConditionedDetailCritic
from seqdeca.train.steps import SkipLog, _resize_to

__all__ = ["critic_step", "detail_forward", "generator_step", "real_detail_render"]

#: ITU-R BT.601 luma weights (R, G, B) for the grey level of the real sample.
_LUMA = (0.299, 0.587, 0.114)
#: Generator terms not computed yet (they need extra weight files).
_NOT_WIRED = {"id_mrf": "the ID-MRF network (loss.id_mrf_weights) is not wired into training yet"}


def _fold(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b t ... -> (b t) ...")


def real_detail_render(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, 4, Huv, Wuv) "real" critic input: grey level of ``uv_input`` x 3, zero displacement.

    Args:
        outputs: detail-stage outputs (B, T, ...) with "uv_input" (3, Huv, Wuv) in [0, 1].
    """
    uv = _fold(outputs["uv_input"]).detach()
    luma = torch.tensor(_LUMA, dtype=uv.dtype, device=uv.device).reshape(1, 3, 1, 1)
    grey = (uv * luma).sum(dim=1, keepdim=True)
    return torch.cat([grey.expand(-1, 3, -1, -1), torch.zeros_like(grey)], dim=1)


def detail_forward(
    accelerator: Accelerator, model: nn.Module, images: torch.Tensor, valid: torch.Tensor, *,
    with_grad: bool,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The model's detail-stage outputs in float32 (under ``no_grad`` when ``with_grad`` is False),
    plus "valid" (B, T) bool.

    Args:
        images: (B, T, 3, H, W) in [0, 1]; valid: (B, T) bool.
    """
    with torch.set_grad_enabled(with_grad), accelerator.autocast():
        out = model(images, valid, "detail")
    out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
    out["valid"] = valid.to(device=images.device, dtype=torch.bool)
    return out


def critic_step(
    accelerator: Accelerator,
    critic: nn.Module,
    outputs: dict[str, torch.Tensor],
    *,
    loss_cfg: LossConfig,
    kind: str = "wgan",
    generator: torch.Generator | None = None,
) -> WeightedLoss:
    """Critic loss on real vs (detached) generated UV detail renders, and its backward pass.

    Args:
        accelerator: the run's accelerator.
        critic: the prepared :class:`ConditionedDetailCritic` (possibly DDP-wrapped).
        outputs: detail-stage outputs (B, T, ...): "uv_input", "uv_shading", "displacement",
            "au_condition" (K) and "valid"; detached here.
        loss_cfg: weights (``gradient_penalty`` = lambda_gp, ``au_regression``).
        kind: "wgan" or "hinge".
        generator: CPU RNG of the gradient penalty's interpolation weights (the loop seeds one
            per batch from the step, so a resumed run draws the same weights; the global RNG is
            also consumed by the data loader's iterator creation, which differs after a resume).

    Returns:
        :class:`WeightedLoss` (logged: "critic", "gradient_penalty", "au_regression", "total").
    """
    weights = critic_weights(loss_cfg)
    real = real_detail_render(outputs)
    fake = ConditionedDetailCritic.detail_render(outputs).detach()
    condition = _fold(outputs["au_condition"]).detach()
    valid = _fold(outputs["valid"])
    n = real.shape[0]
    with accelerator.autocast():  # one forward for both (one DDP forward before the backward)
        both = critic(torch.cat([real, fake]), torch.cat([condition, condition]))
    realism, au = both["realism"].float(), both["au"].float()
    terms = {"critic": critic_loss(realism[:n], realism[n:], kind=kind)}
    if weights["gradient_penalty"] > 0:
        terms["gradient_penalty"] = gradient_penalty(
            lambda x, c: critic(x, c)["realism"].float(),
            real,
            fake,
            condition,
            generator=generator,
        )
    if weights["au_regression"] > 0:
        terms["au_regression"] = au_regression_loss(au[:n], condition, valid)
    result = weighted_sum(terms, weights)
    accelerator.backward(result.total)
    return result


def generator_terms(
    outputs: dict[str, torch.Tensor],
    critic: ConditionedDetailCritic,
    uv_mask: torch.Tensor,
    *,
    loss_cfg: LossConfig,
    skips: SkipLog,
    kind: str = "wgan",
) -> dict[str, torch.Tensor]:
    """Unweighted generator terms whose weight is > 0 (see the module docstring).

    Args:
        outputs: detail-stage outputs (B, T, ...) with gradients to the generator.
        critic: the UNWRAPPED critic (its parameters get no gradient from these terms' backward
            when the caller restricts ``inputs``).
        uv_mask: (Huv, Wuv) UV face mask in [0, 1].
    """
    on = {k for k, w in detail_weights(loss_cfg).items() if w > 0}
    valid = _fold(outputs["valid"])
    mask = uv_mask[None, None]
    terms: dict[str, torch.Tensor] = {}
    if on & {"adversarial", "au_regression"}:
        condition = _fold(outputs["au_condition"]).detach()
        scores = critic(ConditionedDetailCritic.detail_render(outputs), condition)
        if "adversarial" in on:
            terms["adversarial"] = generator_loss(scores["realism"].float(), kind=kind)
        if "au_regression" in on:
            terms["au_regression"] = au_regression_loss(scores["au"].float(), condition, valid)
    shading, z = _fold(outputs["uv_shading"]), _fold(outputs["displacement"])
    if "detail_photometric" in on:
        if "albedo" in outputs:  # the face model's UV albedo, resized to the UV size
            albedo = _resize_to(outputs["albedo"], tuple(shading.shape[-2:]))
            texture = _fold(albedo) * shading
            target = _fold(outputs["uv_input"]).detach()
            terms["detail_photometric"] = uv_photometric_loss(texture, target, mask, valid)
        else:
            skips.skip("detail_photometric", "the face model has no texture space (UV albedo)")
    if "z_reg" in on:
        terms["z_reg"] = displacement_regulariser(z, valid=valid)
    if "z_diff" in on:
        terms["z_diff"] = shading_smoothness(shading, mask, valid)
    if "z_sym" in on:
        terms["z_sym"] = symmetry_loss(z, mask, valid)
    for name in on & set(_NOT_WIRED):
        skips.skip(name, _NOT_WIRED[name])
    return terms


def generator_step(
    accelerator: Accelerator,
    outputs: dict[str, torch.Tensor],
    critic: ConditionedDetailCritic,
    uv_mask: torch.Tensor,
    *,
    parameters: list[nn.Parameter],
    loss_cfg: LossConfig,
    skips: SkipLog,
    kind: str = "wgan",
) -> WeightedLoss:
    """Weighted generator loss and its backward pass into ``parameters`` only.

    The backward pass runs even for a non-finite total (every process must join the all-reduce);
    the loop then discards the gradients.

    Args:
        outputs: detail-stage outputs (B, T, ...) computed with gradients.
        critic: the unwrapped critic; uv_mask: (Huv, Wuv) UV face mask.
        parameters: the detail encoder's and generator's parameters.

    Returns:
        :class:`WeightedLoss` (logged: the unweighted generator terms and "total").
    """
    terms = generator_terms(outputs, critic, uv_mask, loss_cfg=loss_cfg, skips=skips, kind=kind)
    result = weighted_sum(terms, detail_weights(loss_cfg))
    if result.total.requires_grad:
        accelerator.backward(result.total, inputs=parameters)
    return result
