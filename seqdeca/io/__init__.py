"""File formats: OBJ/MTL/PNG meshes, streaming ``.npz`` archives and MP4 writing."""

from seqdeca.io.npz import NpzStreamWriter
from seqdeca.io.obj import ObjMesh, read_obj, write_obj
from seqdeca.io.video import VideoWriter

__all__ = ["NpzStreamWriter", "ObjMesh", "VideoWriter", "read_obj", "write_obj"]
