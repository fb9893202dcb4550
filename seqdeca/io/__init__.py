"""File formats: OBJ/MTL/PNG meshes, streaming ``.npz`` archives, video reading and MP4 writing,
weight files (strict loading, :mod:`seqdeca.io.weights`)."""

from seqdeca.io.npz import NpzStreamWriter
from seqdeca.io.obj import ObjMesh, read_obj, write_obj
from seqdeca.io.video import VideoError, VideoReader, VideoWriter

__all__ = [
    "NpzStreamWriter",
    "ObjMesh",
    "VideoError",
    "VideoReader",
    "VideoWriter",
    "read_obj",
    "write_obj",
]
