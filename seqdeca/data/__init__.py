"""Video decoding, face tracking, the shared crop, masks, dataset preparation and windows.

Re-exported here: the pieces most users touch. The face-model builder
(``seqdeca.data.face_model_builder`` and its parts ``model_alignment``, ``model_statistics``,
``model_rig``), preparation (``prepare``, ``prepare_run``, ``sources``, ``annotations``) and
synthetic data (``synthetic``) are imported from their modules.
"""

from seqdeca.data.dataset import SequenceDataset, WindowBatch, collate_windows, window_loader
from seqdeca.data.tracking import FaceTracker, TrackResult, track_video
from seqdeca.data.video import VideoError, VideoReader

__all__ = [
    "FaceTracker",
    "SequenceDataset",
    "TrackResult",
    "VideoError",
    "VideoReader",
    "WindowBatch",
    "collate_windows",
    "track_video",
    "window_loader",
]
