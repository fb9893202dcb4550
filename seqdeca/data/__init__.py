"""Video decoding, MediaPipe face tracking, landmark index tables and the face-model builder.

``seqdeca.data.face_model_builder`` and its parts (``model_alignment``, ``model_statistics``,
``model_rig``), which need the renderer, are imported on their own; this package only re-exports
the light-weight pieces.
"""

from seqdeca.data.tracking import FaceTracker, TrackResult, track_video
from seqdeca.data.video import VideoError, VideoReader

__all__ = ["FaceTracker", "TrackResult", "VideoError", "VideoReader", "track_video"]
