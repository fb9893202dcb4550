"""Temporal fusion (window transformer) and the AU head."""

from __future__ import annotations

import pytest
import torch

from seqdeca.au_names import AFFWILD2_AU_NAMES, AFFWILD2_TO_MAIN, MAIN_AU_NAMES
from seqdeca.models.au_head import AUHead, select_affwild2
from seqdeca.models.temporal_fusion import TemporalFusion

E, FEAT, AU_DIM, K = 7, 32, 16, 27


def make_model(**kwargs) -> TemporalFusion:
    torch.manual_seed(0)
    options = {"n_expression": E, "feature_dim": FEAT, "au_dim": AU_DIM, "num_aus": K, "dim": 32}
    options.update(depth=2, heads=4, max_frames=8)
    options.update(kwargs)
    return TemporalFusion(**options).eval()


def make_inputs(b: int, t: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    codes = {
        "expression": torch.randn(b, t, E, generator=g),
        "pose": torch.randn(b, t, 6, generator=g) * 0.1,
        "light": torch.randn(b, t, 9, 3, generator=g),
    }
    return torch.randn(b, t, FEAT, generator=g), torch.randn(b, t, K, AU_DIM, generator=g), codes


def perturb_last_layer(model: TemporalFusion) -> None:
    with torch.no_grad():
        model.residual_head.weight.normal_(0, 0.1)
        model.residual_head.bias.normal_(0, 0.1)


@pytest.mark.parametrize("t", [1, 3, 5])
def test_shapes(t: int) -> None:
    model = make_model()
    out = model(*make_inputs(2, t))
    assert out.expression.shape == (2, t, E)
    assert out.jaw_pose.shape == (2, t, 3)
    assert out.pose.shape == (2, t, 6)
    assert out.light.shape == (2, t, 9, 3)
    assert out.au_tokens.shape == (2, t, K, model.au_token_dim)
    assert out.residual.shape == (2, t, E + 30)


def test_untrained_returns_per_frame_codes_exactly() -> None:
    model = make_model()
    feats, aus, codes = make_inputs(2, 5)
    out = model(feats, aus, codes)
    torch.testing.assert_close(out.expression, codes["expression"], rtol=0, atol=0)
    torch.testing.assert_close(out.jaw_pose, codes["pose"][..., 3:], rtol=0, atol=0)
    torch.testing.assert_close(out.pose, codes["pose"], rtol=0, atol=0)
    torch.testing.assert_close(out.light, codes["light"], rtol=0, atol=0)


def test_gradients_reach_every_parameter_after_perturbing_last_layer() -> None:
    model = make_model(max_frames=5).train()
    perturb_last_layer(model)
    feats, aus, codes = make_inputs(2, 5)
    out = model(feats, aus, codes)
    loss = out.expression.square().sum() + out.light.square().sum() + out.jaw_pose.sum()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    # The residual actually changes the output once the last layer is non-zero.
    assert not torch.allclose(out.expression, codes["expression"])


def test_invalid_frames_do_not_change_valid_outputs() -> None:
    model = make_model()
    perturb_last_layer(model)
    feats, aus, codes = make_inputs(2, 5)
    valid = torch.tensor([[True, True, False, True, False], [True, True, True, True, True]])
    before = model(feats, aus, codes, valid)
    feats2, aus2 = feats.clone(), aus.clone()
    codes2 = {k: v.clone() for k, v in codes.items()}
    for tensor in (feats2, aus2, *codes2.values()):
        tensor[0, 2] += torch.randn(tensor[0, 2].shape)
        tensor[0, 4] -= torch.randn(tensor[0, 4].shape)
    after = model(feats2, aus2, codes2, valid)
    for name in ("expression", "jaw_pose", "light", "au_tokens"):
        a, b = getattr(before, name), getattr(after, name)
        torch.testing.assert_close(a[valid], b[valid], msg=name)
    # Invalid frames return their own per-frame codes and zero AU tokens.
    torch.testing.assert_close(after.expression[0, 2], codes2["expression"][0, 2], rtol=0, atol=0)
    assert after.au_tokens[0, 4].abs().sum() == 0
    # And attention is not trivially local: a VALID frame's change does reach other frames.
    feats3 = feats.clone()
    feats3[0, 3] += torch.randn(FEAT)
    moved = model(feats3, aus, codes, valid)
    assert not torch.allclose(moved.expression[0, 0], before.expression[0, 0])


def test_all_invalid_clip_is_finite() -> None:
    model = make_model()
    perturb_last_layer(model)
    valid = torch.tensor([[False, False, False], [True, False, True]])
    out = model(*make_inputs(2, 3), valid=valid)
    assert torch.isfinite(out.expression).all() and torch.isfinite(out.au_tokens).all()


def test_t1_window_equals_per_frame_path() -> None:
    model = make_model()
    perturb_last_layer(model)
    feats, aus, codes = make_inputs(6, 1)
    window = model(feats, aus, codes)
    frames = model.forward_frames(feats[:, 0], aus[:, 0], {k: v[:, 0] for k, v in codes.items()})
    torch.testing.assert_close(window.expression, frames.expression)
    torch.testing.assert_close(window.light, frames.light)
    # Per-frame: frame i's output does not depend on the other images of the batch.
    single = model(feats[2:3], aus[2:3], {k: v[2:3] for k, v in codes.items()})
    torch.testing.assert_close(single.expression, window.expression[2:3])


def test_window_longer_than_max_frames_is_refused() -> None:
    model = make_model(max_frames=4)
    with pytest.raises(ValueError, match="1..4"):
        model(*make_inputs(1, 5))


def test_code_dim_is_checked() -> None:
    with pytest.raises(ValueError, match="code_dim"):
        make_model(code_dim=E + 6 + 27)


@pytest.mark.parametrize("hidden", [0, 24])
def test_au_head_shapes_and_range(hidden: int) -> None:
    torch.manual_seed(0)
    head = AUHead(token_dim=32, num_aus=K, hidden=hidden)
    tokens = torch.randn(2, 3, K, 32) * 10
    out = head(tokens)
    assert out.shape == (2, 3, K)
    assert (out >= 0).all() and (out <= 1).all()
    assert head.affwild2(tokens).shape == (2, 3, 12)
    # AU k reads only token k.
    tokens2 = tokens.clone()
    tokens2[..., 5, :] += torch.randn(32)
    changed = (head(tokens2) != out).any(dim=(0, 1))
    assert changed.nonzero().flatten().tolist() == [5]


def test_affwild2_selection() -> None:
    assert len(MAIN_AU_NAMES) == 27 and len(AFFWILD2_AU_NAMES) == 12
    for name, index in AFFWILD2_TO_MAIN.items():
        assert MAIN_AU_NAMES[index] == name
    values = torch.arange(27.0).expand(2, 27)
    picked = select_affwild2(values)
    assert picked[0].tolist() == [0, 1, 2, 4, 5, 7, 9, 12, 19, 20, 21, 22]


def test_fusion_feeds_au_head() -> None:
    model = make_model()
    out = model(*make_inputs(2, 3))
    head = AUHead(token_dim=model.au_token_dim, num_aus=K)
    assert head(out.au_tokens).shape == (2, 3, K)
