"""The bundled default face model (seqdeca's own FLAME-format model on the MediaPipe mesh).

FLAME cannot be shipped, so seqdeca ships a model it builds itself from video with
``tools/build_face_model.py``. It is an ordinary seqdeca face-model ``.npz`` and goes through
exactly the same layer as a real FLAME file.
"""

from __future__ import annotations

from pathlib import Path

from seqdeca.face_model.assets import AssetError, FaceModelAssets, load_assets

DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "default_face_model.npz"


def load_default_assets() -> FaceModelAssets:
    """Read the bundled model; a one-line :class:`AssetError` if it has not been built."""
    if not DEFAULT_MODEL_PATH.is_file():
        raise AssetError(
            f"bundled default face model not found at {DEFAULT_MODEL_PATH}: build it with "
            "`python tools/build_face_model.py`, or set face_model.path to a FLAME "
            "generic_model.pkl (https://flame.is.tue.mpg.de)"
        )
    return load_assets(DEFAULT_MODEL_PATH)
