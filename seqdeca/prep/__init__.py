"""Offline preparation of clips: MediaPipe face tracking, the one crop, masks, AU proxies,
landmark index tables and contours, the association of several faces, raw dataset discovery and
annotation files, and the preparation of a clip (``prepare``) or a whole dataset
(``prepare_run``). Video decoding is :mod:`seqdeca.io.video`.

Re-exported here: the pieces most users touch. Preparation (``prepare``, ``prepare_run``,
``sources``, ``annotations``) is imported from its modules.
"""

from seqdeca.prep.tracking import FaceTracker, TrackResult, track_video

__all__ = ["FaceTracker", "TrackResult", "track_video"]
