"""The temporal ablations as config choices: the SPECTRE-style convolution and the transformer
without AU tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqdeca.config import load_config
from seqdeca.models.from_config import build_model
from seqdeca.models.temporal_conv import TemporalConv
from seqdeca.models.temporal_fusion import TemporalFusion

E, FEAT, AU_DIM, K = 7, 32, 16, 27
TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


def _inputs(b: int, t: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    codes = {
        "expression": torch.randn(b, t, E, generator=g),
        "pose": torch.randn(b, t, 6, generator=g) * 0.1,
        "light": torch.randn(b, t, 9, 3, generator=g),
    }
    return torch.randn(b, t, FEAT, generator=g), torch.randn(b, t, K, AU_DIM, generator=g), codes


def _conv(**kwargs) -> TemporalConv:
    torch.manual_seed(0)
    options = {
        "n_expression": E,
        "feature_dim": FEAT,
        "au_dim": AU_DIM,
        "dim": 16,
        "depth": 2,
        "kernel": 5,
        "max_frames": 16,
    } | kwargs
    return TemporalConv(**options).eval()


def _perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        module.residual_head.weight.normal_(0, 0.1)
        module.residual_head.bias.normal_(0, 0.1)


def test_conv_starts_at_the_per_frame_codes_and_keeps_light():
    model = _conv()
    feats, aus, codes = _inputs(2, 9)
    out = model(feats, aus, codes)
    torch.testing.assert_close(out.expression, codes["expression"], rtol=0, atol=0)
    torch.testing.assert_close(out.pose, codes["pose"], rtol=0, atol=0)
    _perturb(model)
    out = model(feats, aus, codes)
    assert not torch.allclose(out.expression, codes["expression"])
    torch.testing.assert_close(out.light, codes["light"], rtol=0, atol=0)
    torch.testing.assert_close(out.pose[..., :3], codes["pose"][..., :3], rtol=0, atol=0)
    assert out.au_tokens.shape == (2, 9, K, model.au_token_dim)
    assert out.residual.shape == (2, 9, E + 30) and bool((out.residual[..., E + 3 :] == 0).all())


def test_conv_sees_exactly_its_kernel_of_neighbours():
    """Frame t's output changes with frames within depth * (kernel // 2) and not beyond."""
    model = _conv(depth=1, kernel=5)
    _perturb(model)
    feats, aus, codes = _inputs(1, 11)
    base = model(feats, aus, codes).expression[0, 5]
    for other, reach in ((7, True), (8, (False)), (3, True), (2, False)):
        moved = feats.clone()
        moved[0, other] += 1.0
        changed = not torch.allclose(model(moved, aus, codes).expression[0, 5], base)
        assert changed == reach, other


def test_conv_ignores_padding_frames():
    model = _conv()
    _perturb(model)
    feats, aus, codes = _inputs(1, 5)
    valid = torch.tensor([[True, False, True, True, True]])
    out = model(feats, aus, codes, valid)
    moved = feats.clone()
    moved[0, 1] += 10.0
    again = model(moved, aus, codes, valid)
    torch.testing.assert_close(out.expression, again.expression)
    torch.testing.assert_close(out.expression[0, 1], codes["expression"][0, 1], rtol=0, atol=0)


def test_transformer_without_au_tokens_ignores_them_in_the_codes():
    torch.manual_seed(0)
    model = TemporalFusion(
        n_expression=E,
        feature_dim=FEAT,
        au_dim=AU_DIM,
        dim=32,
        depth=1,
        heads=4,
        max_frames=8,
        use_au_tokens=False,
    ).eval()
    _perturb(model)
    feats, aus, codes = _inputs(2, 3)
    out = model(feats, aus, codes)
    other = model(feats, aus + 1.0, codes)
    torch.testing.assert_close(out.expression, other.expression)
    assert out.au_tokens.shape == (2, 3, K, 32)
    assert not torch.allclose(out.au_tokens, other.au_tokens), "the AU head still sees AUs"


@pytest.mark.parametrize("overrides", [["model.temporal=conv"], ["model.fusion_au_tokens=false"]])
def test_config_builds_each_variant(overrides):
    cfg = load_config(TINY, overrides)
    model = build_model(cfg, load_checkpoints=False).eval()
    images = torch.rand(1, 3, 3, 64, 64)
    out = model(images)
    assert out.expression.shape == (1, 3, cfg.face_model.n_expression)
    assert out.fused.au_intensities.shape == (1, 3, 27)


def test_unknown_temporal_model_is_refused():
    with pytest.raises(ValueError, match="model.temporal"):
        build_model(load_config(TINY, ["model.temporal=lstm"]), load_checkpoints=False)


def test_init_modules_take_the_encoders_under_a_new_temporal_model(tmp_path):
    from seqdeca.config import config_to_yaml
    from seqdeca.errors import UserError
    from seqdeca.train.state import export_inference_checkpoint, load_initial_weights

    torch.manual_seed(0)
    cfg = load_config(TINY)
    source = build_model(cfg, load_checkpoints=False)
    path = export_inference_checkpoint(
        tmp_path / "model.pt",
        state_dict=source.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=source.face_model.name,
        stage="temporal",
        step=1,
    )
    torch.manual_seed(1)
    conv = build_model(load_config(TINY, ["model.temporal=conv"]), load_checkpoints=False)
    before = {k: v.clone() for k, v in conv.temporal_fusion.state_dict().items()}
    with pytest.raises(UserError):  # strict: the transformer's keys do not fit the conv
        load_initial_weights(conv, path)
    load_initial_weights(conv, path, modules=["coarse_encoder", "au_net"])
    for key, value in source.coarse_encoder.state_dict().items():
        torch.testing.assert_close(conv.coarse_encoder.state_dict()[key], value, rtol=0, atol=0)
    for key, value in conv.temporal_fusion.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    with pytest.raises(UserError, match="init_modules"):
        load_initial_weights(conv, path, modules=["encoder"])
