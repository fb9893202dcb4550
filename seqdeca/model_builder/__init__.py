"""The builder of seqdeca's bundled FLAME-format face model from tracked video: the settings and
orchestration (``build``), alignment of tracked frames (``alignment``), the statistical shape,
expression and albedo spaces (``statistics``) and the topology, rig and UVs (``rig``).

Re-exported here: the entry points of ``tools/build_face_model.py``.
"""

from seqdeca.model_builder.build import (
    BuildConfig,
    build_face_model,
    evaluate_leave_one_out,
    format_residual_table,
)

__all__ = ["BuildConfig", "build_face_model", "evaluate_leave_one_out", "format_residual_table"]
