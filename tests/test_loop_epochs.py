"""The training loop's loader reads the plan of the epoch it is in (not epoch 0's again)."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from prepared_factory import make_prepared_clip

from seqdeca.data.dataset import SequenceDataset, WindowCollator
from seqdeca.train.state import TrainState
from seqdeca.train.trainer import epoch_loader


def test_each_epoch_reads_its_own_plan_also_when_resumed_mid_epoch(tmp_path) -> None:
    make_prepared_clip(tmp_path, "a", [True] * 12, seed=1)
    ds = SequenceDataset(sources=[tmp_path / "videos"], window=1, train=True, seed=0)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, drop_last=True, collate_fn=WindowCollator(ds.clip_ids)
    )
    accelerator = Accelerator(cpu=True)
    loader = accelerator.prepare(loader)
    read = {}
    for epoch in range(3):
        state = TrainState(epoch=epoch)
        read[epoch] = [int(f) for b in epoch_loader(accelerator, loader, state) for f in b.frames]
        ds.set_epoch(epoch)  # the plan a fresh dataset draws for that epoch
        assert read[epoch] == ds.plan.tolist(), epoch
    assert read[0] != read[1] != read[2]
    # Resumed in epoch 2 after one batch: the rest of epoch 2's plan.
    state = TrainState(epoch=2, batches_in_epoch=1)
    rest = [int(f) for b in epoch_loader(accelerator, loader, state) for f in b.frames]
    assert rest == read[2][4:]
