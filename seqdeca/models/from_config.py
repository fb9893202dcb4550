"""Build the composed model and the detail critic from a :class:`~seqdeca.config.schema.Config`.

The only readers of the ``model`` config section (:class:`~seqdeca.config.schema.ModelConfig`).
Building blocks take explicit keyword arguments; these builders translate the config into them,
and load the configured checkpoints strictly (DECA ``deca_model.tar``, OpenGraphAU ``.pth``).
"""

from __future__ import annotations

import logging

from seqdeca.config.schema import Config, ModelConfig
from seqdeca.face_model.from_config import face_model_assets_from_config, face_model_from_config
from seqdeca.io.weights import LoadReport, WeightsError
from seqdeca.models.au_head import AUHead
from seqdeca.models.au_heatmaps import AUHeatmaps
from seqdeca.models.au_import import load_opengraphau_checkpoint
from seqdeca.models.au_net import AUNet
from seqdeca.models.coarse_encoder import FEATURE_DIM, CoarseEncoder
from seqdeca.models.code_layout import CodeLayout
from seqdeca.models.critic import CRITIC_CHANNELS, ConditionedDetailCritic, DetailCritic
from seqdeca.models.deca_import import load_deca_checkpoint
from seqdeca.models.detail import JAW_DIM, DetailEncoder, DetailGenerator
from seqdeca.models.seqdeca_model import SeqDECA, au_condition_names
from seqdeca.models.temporal_conv import TemporalConv
from seqdeca.models.temporal_fusion import TemporalFusion
from seqdeca.render.from_config import renderer_from_config

log = logging.getLogger(__name__)

AU_CHANNELS = 512  # OpenGraphAU's node-token width (ResNet-50: 2048 // 4)


def build_model(cfg: Config, *, load_checkpoints: bool = True) -> SeqDECA:
    """The composed :class:`SeqDECA` of ``cfg`` (face model, renderer, all networks).

    Args:
        cfg: the whole config (``face_model``, ``render`` and ``model`` sections are read).
        load_checkpoints: load ``model.deca_checkpoint`` / ``model.au_checkpoint`` when set
            (the load reports are logged; :func:`load_checkpoints` returns them).

    Raises:
        WeightsError: a configured checkpoint does not fit (one line).
        ValueError: an unknown backbone, stage or AU condition.
    """
    m = cfg.model
    face_model = face_model_from_config(cfg.face_model)
    layout = CodeLayout.for_face_model(
        face_model.num_shape, face_model.num_texture, face_model.num_expression
    )
    names = au_condition_names(m.detail_au_condition)
    au_dim = 0 if m.detail_au_condition == "none" else len(names)
    fusion = temporal_model(m, layout.n_expression)
    model = SeqDECA(
        face_model=face_model,
        renderer=renderer_from_config(cfg.render, face_model),
        coarse_encoder=CoarseEncoder(layout.total, backbone=m.backbone),
        au_net=AUNet(backbone=m.au_backbone, channels=AU_CHANNELS, stage=m.au_stage),
        temporal_fusion=fusion,
        au_head=AUHead(token_dim=fusion.au_token_dim),
        detail_encoder=DetailEncoder(n_detail=m.n_detail, backbone=m.backbone),
        detail_generator=DetailGenerator(
            latent_dim=JAW_DIM + layout.n_expression + m.n_detail,
            au_dim=au_dim,
            uv_size=m.detail_uv_size,
            max_displacement=m.detail_max_displacement,
            au_form=m.detail_au_form,
        ),
        detail_au_condition=m.detail_au_condition,
        freeze_coarse=m.freeze_coarse,
        freeze_au_net=m.freeze_au_net,
        use_temporal=m.use_temporal,
        crop_scale=cfg.crop.scale,
        encoder_size=m.encoder_size,
        detail_encoder_size=m.detail_encoder_size if m.detail_encoder_size >= 0 else None,
        detail_path_offset=m.detail_path_offset,
    )
    if load_checkpoints:
        for name, report in load_checkpoints_into(model, m).items():
            log.info("loaded %s: %s", name, report.summary())
    return model


def temporal_model(m: ModelConfig, n_expression: int) -> TemporalFusion | TemporalConv:
    """The ``model.temporal`` module: the window transformer or the SPECTRE-style convolution.

    Raises:
        ValueError: an unknown ``model.temporal``.
    """
    common = {
        "n_expression": n_expression,
        "feature_dim": FEATURE_DIM,
        "au_dim": AU_CHANNELS,
        "dim": m.fusion_dim,
        "depth": m.fusion_depth,
        "max_frames": m.max_frames,
    }
    if m.temporal == "transformer":
        return TemporalFusion(
            **common,
            heads=m.fusion_heads,
            use_au_tokens=m.fusion_au_tokens,
            code_mixing=m.fusion_code_mixing,
        )
    if m.temporal == "conv":
        return TemporalConv(**common, kernel=m.conv_kernel)
    raise ValueError(f"unknown model.temporal {m.temporal!r}: use 'transformer' or 'conv'")


def check_deca_compatible(model: SeqDECA, m: ModelConfig) -> None:
    """Refuse, in one line, a DECA checkpoint that cannot fit the configured model.

    Raises:
        WeightsError: the face model's code layout is not DECA's 236 (100/50/50), the encoders
            are not ResNet-50, or the detail code is not 128 or the generator's map not 256.
    """
    deca = CodeLayout.deca()
    if model.layout != deca:
        s, k, e = model.layout.n_shape, model.layout.n_texture, model.layout.n_expression
        raise WeightsError(
            f"model.deca_checkpoint {m.deca_checkpoint} needs DECA's code layout (shape 100, "
            f"texture 50, expression 50 = 236 codes; generator latent 181) but face model "
            f"'{model.face_model.name}' gives shape {s}, texture {k}, expression {e}: use FLAME "
            f"(face_model.path=generic_model.pkl with its texture) or set model.deca_checkpoint=''"
        )
    if m.backbone != "resnet50" or m.n_detail != 128 or m.detail_uv_size != 256:
        raise WeightsError(
            f"model.deca_checkpoint {m.deca_checkpoint} needs model.backbone=resnet50, "
            f"model.n_detail=128 and model.detail_uv_size=256 (got {m.backbone}, {m.n_detail}, "
            f"{m.detail_uv_size})"
        )


def load_checkpoints_into(model: SeqDECA, m: ModelConfig) -> dict[str, LoadReport]:
    """Load ``m.deca_checkpoint`` and ``m.au_checkpoint`` (when set) into ``model``, strictly.

    Returns:
        ``{"coarse_encoder" | "detail_encoder" | "detail_generator" | "au_net": LoadReport}``
        for what was loaded (empty when nothing is configured).

    Raises:
        WeightsError: one line, before anything is loaded when the DECA layout does not fit.
    """
    reports: dict[str, LoadReport] = {}
    if m.deca_checkpoint:
        check_deca_compatible(model, m)
        reports |= load_deca_checkpoint(
            m.deca_checkpoint,
            coarse_encoder=model.coarse_encoder,
            detail_encoder=model.detail_encoder,
            detail_generator=model.detail_generator,
        )
    if m.au_checkpoint:
        if m.au_backbone != "resnet50":
            raise WeightsError(
                f"model.au_checkpoint {m.au_checkpoint} needs model.au_backbone=resnet50 "
                f"(got {m.au_backbone})"
            )
        reports["au_net"] = load_opengraphau_checkpoint(m.au_checkpoint, model.au_net)
    return reports


def build_critic(cfg: Config, model: SeqDECA) -> ConditionedDetailCritic:
    """The detail critic for ``model``: :class:`DetailCritic` on the one-channel UV detail render
    (:data:`CRITIC_CHANNELS`, the shading contrast of
    :func:`~seqdeca.models.critic.detail_contrast`) at ``render.uv_size``, conditioned by AU
    heatmaps of the model's AU condition (27 or 12 AUs) and with an AU head, or with neither when
    ``model.critic_au`` is false (whatever ``model.detail_au_condition`` says).

    Raises:
        ValueError: the configured face model is not the one ``model`` was built with, or it has
            no UV layout / "ibug68" landmarks.
    """
    assets = face_model_assets_from_config(cfg.face_model)
    if assets.name != model.face_model.name or assets.num_vertices != model.face_model.num_vertices:
        raise ValueError(
            f"build_critic: config face model '{assets.name}' ({assets.num_vertices} vertices) "
            f"is not the model's '{model.face_model.name}'; build both from the same config"
        )
    uv_size = model.renderer.uv_size[0]
    heatmaps = None
    if cfg.model.critic_au:
        heatmaps = AUHeatmaps.from_face_model(
            assets, au_names=model.au_condition_names, size=uv_size
        )
    num_aus = 0 if heatmaps is None else heatmaps.num_aus
    critic = DetailCritic(
        in_channels=CRITIC_CHANNELS, num_aus=num_aus, uv_size=uv_size, base=cfg.model.critic_width
    )
    return ConditionedDetailCritic(critic=critic, heatmaps=heatmaps)
