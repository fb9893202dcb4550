"""The strict weight loader: every key accounted for, or a one-line refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqdeca.io.weights import WeightsError, load_weights, read_checkpoint


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_complete_load_copies_everything():
    src, dst = _net(), _net()
    report = load_weights(dst, src.state_dict())
    assert report.complete and len(report.loaded) == len(src.state_dict())
    for a, b in zip(src.state_dict().values(), dst.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_rename_and_drop():
    src, dst = _net(), _net()
    state = {f"module.{k}": v for k, v in src.state_dict().items()} | {
        "module.extra": torch.zeros(1)
    }
    report = load_weights(dst, state, rename=lambda k: None if k.endswith("extra") else k[7:])
    assert report.complete


def test_missing_unexpected_and_mis_shaped_are_refused():
    src, dst = _net(), _net()
    state = dict(src.state_dict())
    del state["0.weight"]
    with pytest.raises(WeightsError, match=r"1 missing \(0\.weight\)"):
        load_weights(dst, state, source="ckpt")
    report = load_weights(dst, state, allow_missing=True)
    assert report.missing == ["0.weight"]
    state = dict(src.state_dict()) | {"zzz": torch.zeros(1)}
    with pytest.raises(WeightsError, match="1 unexpected"):
        load_weights(dst, state)
    state = dict(src.state_dict()) | {"2.weight": torch.zeros(5, 4)}
    with pytest.raises(WeightsError, match=r"mis-shaped \(2\.weight \(5, 4\) vs \(2, 4\)\)"):
        load_weights(dst, state, allow_missing=True, allow_unexpected=True)


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        read_checkpoint(tmp_path / "x.tar", "DECA deca_model.tar")
    (tmp_path / "bad.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        read_checkpoint(tmp_path / "bad.tar", "DECA deca_model.tar")
