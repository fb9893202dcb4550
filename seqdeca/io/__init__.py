"""File formats: OBJ/MTL/PNG meshes (more writers join as the pipeline grows)."""

from seqdeca.io.obj import ObjMesh, read_obj, write_obj

__all__ = ["ObjMesh", "read_obj", "write_obj"]
