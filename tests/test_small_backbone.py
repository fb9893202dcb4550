"""The CPU-experiment encoders: timm's ResNet-18 trunk and ``model.encoder_size`` (the per-frame
encoders see resized crops while rendering keeps the crop size)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqdeca.config import load_config
from seqdeca.models.coarse_encoder import CoarseEncoder
from seqdeca.models.from_config import build_model

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


def test_resnet18_encoder_gives_the_2048_feature_and_learns():
    torch.manual_seed(0)
    encoder = CoarseEncoder(20, backbone="resnet18")
    out = encoder(torch.rand(2, 3, 64, 64))
    assert out.features.shape == (2, 2048) and out.codes.shape == (2, 20)
    out.codes.sum().backward()
    assert encoder.encoder.conv1.weight.grad.abs().sum() > 0
    # The 2 x 2 pool keeps where things are: a bright left half and a bright right half differ.
    left, right = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    left[..., :32], right[..., 32:] = 1.0, 1.0
    encoder.eval()
    assert not torch.allclose(encoder(left).features, encoder(right).features)
    with pytest.raises(ValueError, match="too small"):
        encoder(torch.rand(1, 3, 16, 16))


def test_encoder_size_resizes_encoder_inputs_only():
    cfg = load_config(
        [TINY], ["model.backbone=resnet18", "model.au_backbone=resnet18", "model.encoder_size=48"]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    seen: list[tuple[int, ...]] = []
    for module in (model.coarse_encoder, model.au_net):
        module.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    images = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
    assert seen == [(2, 3, 48, 48), (2, 3, 48, 48)]
    assert tuple(out.decoded.render.shape[-2:]) == (cfg.render.image_size,) * 2
    # Resizing is what the encoders see: feeding the pre-resized crops gives the same codes.
    small = torch.nn.functional.interpolate(
        images[0], size=(48, 48), mode="bilinear", align_corners=False, antialias=True
    )[None]
    model.encoder_size = 0
    with torch.no_grad():
        direct = model.encode(small)
    model.encoder_size = 48
    with torch.no_grad():
        resized = model.encode(images)
    torch.testing.assert_close(direct.codes, resized.codes)


def test_negative_encoder_size_is_refused():
    cfg = load_config([TINY], ["model.encoder_size=-1"])
    with pytest.raises(ValueError, match="encoder_size"):
        build_model(cfg)
