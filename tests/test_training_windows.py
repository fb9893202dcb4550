"""Training windows: one odd length per batch from a range, gaps marked inside windows, and
losses that skip the gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prepared_factory import make_prepared_clip

from seqdeca.config.schema import DataConfig, DataSourceConfig
from seqdeca.data.dataset import (
    SequenceDataset,
    collate_windows,
    training_window_lengths,
    window_loader,
)
from seqdeca.errors import UserError
from seqdeca.losses import landmark_loss


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("prepared")
    for k in range(3):
        make_prepared_clip(base / "src", f"c{k}", [1] * 12, seed=k)
    return base / "src"


def _dataset(root, **kwargs) -> SequenceDataset:
    args = {"sources": [root], "window": 5, "train": True, "seed": 3, "epoch_size": 48}
    return SequenceDataset(**(args | kwargs))


def test_training_window_lengths_are_odd_and_checked():
    assert training_window_lengths(5, 1) == [1, 3, 5]
    assert training_window_lengths(3) == [3]
    for window, low in ((2, 0), (4, 1), (5, 2), (5, 7)):
        with pytest.raises(UserError):
            training_window_lengths(window, low)


def test_one_length_per_batch_drawn_from_the_range(root):
    ds = _dataset(root, min_window=1, batch_size=4)
    lengths = []
    for b in range(len(ds) // 4):
        items = [ds[4 * b + k] for k in range(4)]
        sizes = {item["images"].shape[0] for item in items}
        assert len(sizes) == 1, "every item of a batch has the batch's length"
        lengths.append(sizes.pop())
        collate_windows(items)  # stacks without padding
    assert set(lengths) == {1, 3, 5}
    ds.set_epoch(0)
    again = [ds[4 * b]["images"].shape[0] for b in range(len(ds) // 4)]
    assert again == lengths, "the draw is a pure function of seed, epoch and batch"


def test_a_shorter_item_is_the_centre_of_its_full_window(root):
    full = _dataset(root, batch_size=1)
    ranged = _dataset(root, min_window=1, batch_size=1)
    for index in range(12):
        item, whole = ranged[index], full[index]
        t = item["frames"].shape[0]
        offset = (5 - t) // 2
        assert item["frames"].tolist() == whole["frames"][offset : offset + t].tolist()


def test_frame_gaps_never_hit_the_centre_and_follow_the_rate(root):
    ds = _dataset(root, frame_mask_prob=0.3, epoch_size=240)
    valid = torch.stack([ds[i]["valid"] for i in range(len(ds))])  # (240, 5)
    assert bool(valid[:, 2].all()), "the centre frame is never a gap"
    rate = 1 - valid[:, [0, 1, 3, 4]].float().mean().item()
    assert 0.25 < rate < 0.35
    ds.set_epoch(0)
    assert torch.equal(valid[:20], torch.stack([ds[i]["valid"] for i in range(20)]))
    evaluation = SequenceDataset(sources=[root], window=5, train=False, frame_mask_prob=0.3)
    assert all(bool(evaluation[i]["valid"].all()) for i in range(len(evaluation)))


def test_loader_refuses_an_even_training_window_in_one_line(root):
    cfg = DataConfig(sources=[DataSourceConfig(root=str(root))], window=2)
    with pytest.raises(UserError, match="must be odd"):
        window_loader(cfg, train=True)
    window_loader(cfg, train=False)  # evaluation windows may be even


def test_default_config_masks_a_tenth_of_the_frames(root):
    loader = window_loader(
        DataConfig(sources=[DataSourceConfig(root=str(root))], window=5, batch_size=4), train=True
    )
    valid = torch.cat([batch.valid for batch in loader])
    assert bool(valid[:, 2].all())
    assert 0.0 < 1 - valid.float().mean().item() < 0.2


def test_losses_skip_the_gaps():
    """A gap's landmarks (whatever they hold) do not change the loss: gaps are not supervised."""
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 68, 2, generator=gen)
    target = torch.rand(2, 3, 68, 2, generator=gen)
    valid = torch.tensor([[True, True, False], [False, True, True]])
    moved = target.clone()
    moved[~valid] += 5.0
    assert torch.allclose(landmark_loss(pred, target, valid), landmark_loss(pred, moved, valid))
    assert not torch.allclose(landmark_loss(pred, target, None), landmark_loss(pred, moved, None))
    assert np.isfinite(float(landmark_loss(pred, target, valid)))
