"""Rotations, the weak-perspective camera, mesh normals and 2D similarity transforms."""

from seqdeca.geometry.camera import ndc_to_pixels, pixels_to_ndc, project_weak_perspective
from seqdeca.geometry.mesh import face_normals, face_vertices, vertex_normals
from seqdeca.geometry.rotation import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)

__all__ = [
    "axis_angle_to_matrix",
    "face_normals",
    "face_vertices",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "ndc_to_pixels",
    "pixels_to_ndc",
    "project_weak_perspective",
    "rot6d_to_matrix",
    "vertex_normals",
]
