"""Code mixing: the transformer-weighted pull of a frame's codes towards its neighbours'."""

from __future__ import annotations

import torch

from seqdeca.models.code_mixing import CodeMixing
from seqdeca.models.temporal_fusion import TemporalFusion

DIM, D = 16, 5


def _open_gate(mixing: CodeMixing, gate: float) -> None:
    """Gate ``gate`` on every frame and uniform weights over the other frames."""
    with torch.no_grad():
        mixing.gate.bias.fill_(gate / mixing.gate_scale)
        mixing.query.weight.zero_()
        mixing.query.bias.zero_()


def test_untrained_mixing_is_zero_and_fusion_returns_per_frame_codes() -> None:
    torch.manual_seed(0)
    mixing = CodeMixing(DIM, max_frames=5)
    out = mixing(torch.randn(2, 3, DIM), torch.randn(2, 3, D), torch.ones(2, 3, dtype=torch.bool))
    assert out.abs().max() == 0
    fusion = TemporalFusion(
        n_expression=4,
        feature_dim=8,
        au_dim=8,
        num_aus=3,
        dim=DIM,
        depth=1,
        heads=4,
        max_frames=5,
        code_mixing=True,
    )
    codes = {
        "expression": torch.randn(1, 3, 4),
        "pose": torch.randn(1, 3, 6),
        "light": torch.randn(1, 3, 9, 3),
    }
    fused = fusion(torch.randn(1, 3, 8), torch.randn(1, 3, 3, 8), codes)
    torch.testing.assert_close(fused.expression, codes["expression"], rtol=0, atol=0)


def test_open_gate_averages_the_other_valid_frames() -> None:
    torch.manual_seed(0)
    mixing = CodeMixing(DIM, max_frames=5)
    _open_gate(mixing, 0.5)
    codes = torch.randn(1, 4, D)
    valid = torch.tensor([[True, True, False, True]])
    mix = mixing(torch.randn(1, 4, DIM), codes, valid)
    # frame 1: the other valid frames are 0 and 3 (frame 2 is padding), equal weights
    expected = 0.5 * ((codes[0, 0] + codes[0, 3]) / 2 - codes[0, 1])
    torch.testing.assert_close(mix[0, 1], expected)
    assert mix[0, 2].abs().max() == 0  # padding frames are left alone
    # a frame alone in its window has nothing to mix with
    alone = mixing(torch.randn(1, 3, DIM), codes[:, :3], torch.tensor([[False, True, False]]))
    assert alone.abs().max() == 0


def test_gate_and_weights_learn_to_smooth_a_jittering_code() -> None:
    """Trained towards the 1-2-1 average of its window, the fused code smooths within steps."""
    torch.manual_seed(0)
    fusion = TemporalFusion(
        n_expression=4,
        feature_dim=8,
        au_dim=8,
        num_aus=3,
        dim=DIM,
        depth=1,
        heads=4,
        max_frames=3,
        code_mixing=True,
    )
    opt = torch.optim.Adam(fusion.parameters(), lr=3e-3)
    for _ in range(60):
        expression = torch.randn(8, 3, 4)
        codes = {
            "expression": expression,
            "pose": torch.zeros(8, 3, 6),
            "light": torch.zeros(8, 3, 9, 3),
        }
        target = (expression[:, 0] + 2 * expression[:, 1] + expression[:, 2]) / 4
        out = fusion(torch.randn(8, 3, 8), torch.randn(8, 3, 3, 8), codes)
        loss = (out.expression[:, 1] - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    untrained = (expression[:, 1] - target).abs().mean()
    assert float(loss) < 0.5 * float(untrained)
