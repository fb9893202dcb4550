"""Which faces of a clip video2mesh reconstructs: ``inference.faces`` / ``--faces``.

* ``largest`` (default): one face, the largest and most central one at the start, followed by
  :class:`~seqdeca.prep.tracking.FaceTracker` (nearest to where it was); outputs directly in
  ``<out>/<clip>/``.
* ``all``: up to ``inference.max_faces`` faces; ``N`` (an integer >= 1): up to N faces. Faces are
  followed with stable identities by :class:`~seqdeca.prep.face_association.FaceAssociator`
  (numbered by first appearance, left to right within a frame) and each gets its own folder
  ``<out>/<clip>/face_K/`` (see :mod:`seqdeca.inference.outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from seqdeca.config.schema import Config
from seqdeca.errors import UserError

__all__ = ["FACE_CHOICES", "LARGEST", "FaceSelection", "face_folder", "face_selection"]

FACE_CHOICES = ("largest", "all")


@dataclass(frozen=True)
class FaceSelection:
    """The faces a clip is reconstructed for.

    Attributes:
        request: "largest", "all" or the number asked for, as text.
        limit: faces followed at most (1 for "largest").
    """

    request: str = "largest"
    limit: int = 1

    @property
    def separate(self) -> bool:
        """Faces are tracked with stable identities and written to one folder each."""
        return self.request != "largest"


LARGEST = FaceSelection()


def face_folder(face: int) -> str:
    """The folder name of face ``face`` (0-based) inside a clip's folder."""
    return f"face_{face}"


def face_selection(cfg: Config) -> FaceSelection:
    """``inference.faces`` and ``inference.max_faces`` checked and resolved.

    Raises:
        UserError: an unknown choice, a number below 1, or max_faces below 1.
    """
    request = str(cfg.inference.faces).strip().lower()
    max_faces = int(cfg.inference.max_faces)
    if max_faces < 1:
        raise UserError(f"inference.max_faces={max_faces} must be >= 1 (--max-faces)")
    if request == "largest":
        return LARGEST
    if request == "all":
        return FaceSelection("all", max_faces)
    if request.isdigit() and int(request) >= 1:
        return FaceSelection(str(int(request)), int(request))
    raise UserError(
        f"--faces / inference.faces {cfg.inference.faces!r}: use 'largest', 'all' "
        "or a number of faces >= 1"
    )
