"""Pretraining the per-frame encoders on synthetic ground truth: the code and AU supervision
terms, the batches that carry gt.npz, and the one-line refusals on data without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from prepared_factory import make_prepared_clip

from seqdeca.config import load_config
from seqdeca.config.schema import DataSourceConfig
from seqdeca.data.dataset import SequenceDataset, collate_windows
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.losses.supervision import au_intensity_loss, code_supervision_loss
from seqdeca.train.loop import train

TINY = Path(__file__).resolve().parents[1] / "configs" / "synthetic_tiny.yaml"
PRETRAIN = [
    "loss.landmark=0",
    "loss.landmark_mediapipe=0",
    "loss.shape_reg=0",
    "loss.expression_reg=0",
    "loss.texture_reg=0",
    "loss.light_reg=0",
    "loss.code_supervision=1",
    "data.window=1",
    "data.min_window=0",
    "model.use_temporal=false",
    "train.lr=1e-3",
    "train.warmup_steps=0",
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, load_config(TINY), clips=4, frames=6, seed=2, progress=False)
    return root


def test_code_supervision_is_zero_for_the_truth_and_pads_sizes():
    gen = torch.Generator().manual_seed(0)
    truth = {
        "expression": torch.randn(2, 3, 6, generator=gen),
        "cam": torch.randn(2, 3, 3, generator=gen),
    }
    assert float(code_supervision_loss(truth, truth, None)) == 0.0
    short = {"expression": truth["expression"][..., :4], "cam": truth["cam"]}
    missing = truth["expression"][..., 4:].abs().mean() * 2 / 6  # zero-padded components
    torch.testing.assert_close(code_supervision_loss(short, truth, None), missing)
    valid = torch.tensor([[True, False, True], [True, True, True]])
    moved = {k: v.clone() for k, v in truth.items()}
    moved["cam"][0, 1] += 3.0
    assert float(code_supervision_loss(moved, truth, valid)) == 0.0
    assert float(au_intensity_loss(torch.full((1, 2, 27), 0.5), torch.ones(1, 2, 27), None)) == 0.25


def test_batches_carry_the_ground_truth(synthetic):
    ds = SequenceDataset(sources=[synthetic], window=3, train=False, ground_truth=True)
    batch = collate_windows([ds[0], ds[1]])
    assert batch.gt["expression"].shape[:2] == (2, 3)
    assert batch.gt["light"].shape == (2, 3, 9, 3)
    with np.load(ds.clips[0].path / "gt.npz") as gt:
        np.testing.assert_allclose(batch.gt["cam"][0].numpy(), gt["cam"][:3], rtol=1e-6)
    assert (
        collate_windows([ds[0]]).gt
        and not collate_windows([SequenceDataset(sources=[synthetic], window=3, train=False)[0]]).gt
    )


def test_refusals_in_one_line(synthetic, tmp_path):
    make_prepared_clip(tmp_path / "real", "c0", [1] * 5)
    with pytest.raises(UserError, match="has no gt.npz") as err:
        SequenceDataset(sources=[tmp_path / "real"], window=3, ground_truth=True)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="flip_prob=0"):
        SequenceDataset(
            sources=[synthetic],
            window=3,
            ground_truth=True,
            augmentation=load_config().data.augmentation,
        )


def test_code_supervision_trains_the_coarse_encoder(synthetic, tmp_path):
    cfg = load_config(
        TINY,
        [
            *PRETRAIN,
            "train.max_steps=40",
            "data.batch_size=4",
            f"run.output_dir={tmp_path / 'run'}",
        ],
    )
    cfg.data.sources = [DataSourceConfig(root=str(synthetic))]
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    losses = [line["code_supervision"] for line in lines]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses


def test_au_head_supervision_trains_the_detail_condition(tmp_path):
    data = tmp_path / "au_clips"
    make_synthetic_dataset(
        data,
        load_config(TINY, ["synthetic.expression=au"]),
        clips=2,
        frames=6,
        seed=3,
        progress=False,
    )
    cfg = load_config(
        TINY,
        [
            *PRETRAIN,
            "loss.code_supervision=0",
            "loss.au_label=0",
            "loss.au_head_supervision=1",
            "train.max_steps=30",
            "data.batch_size=4",
            f"run.output_dir={tmp_path / 'run'}",
        ],
    )
    cfg.data.sources = [DataSourceConfig(root=str(data))]
    train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    losses = [line["au_head_supervision"] for line in lines]
    assert "au_supervision" not in lines[0] and len(losses) == 30
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6]), losses
