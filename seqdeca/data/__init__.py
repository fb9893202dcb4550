"""What training reads: prepared clip files, the window dataset with its augmentation and input
corruptions, and the synthetic clips with ground truth (``synthetic`` and its ``synthetic_*``
parts).

Re-exported here: the pieces most users touch. Synthetic data (``synthetic``) is imported from
its module. Preparing clips from video is :mod:`seqdeca.prep`; reading video is
:mod:`seqdeca.io.video`.
"""

from seqdeca.data.dataset import SequenceDataset, WindowBatch, collate_windows, window_loader

__all__ = [
    "SequenceDataset",
    "WindowBatch",
    "collate_windows",
    "window_loader",
]
