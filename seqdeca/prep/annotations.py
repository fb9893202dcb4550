"""Readers of the Aff-Wild2 (ABAW) per-video annotation files.

Every file follows the same pattern: the first line is a header naming the columns, and line
``i + 1`` holds the labels of frame ``i`` (the organisers' ``cropped_aligned/{video}/{i+1:05d}.jpg``
numbering starts at 1, so frame ``i`` of the video is image ``i + 1``). Values outside the label
set mark a frame as unknown:

| challenge folder | header | columns | unknown |
| --- | --- | --- | --- |
| ``AU_Detection_Challenge`` | ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26`` | 12 of 0/1 | -1 |
| ``EXPR_Classification_Challenge`` (older: ``EXPR_Recognition_Challenge``) | 8 class names | one class id 0..7 | -1 |
| ``VA_Estimation_Challenge`` | ``valence,arousal`` | 2 floats in [-1, 1] | -5 |

All readers return float32 arrays (time first) and raise :class:`AnnotationError` (one line,
naming the file) for a wrong header or a malformed line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqdeca.au_names import AFFWILD2_AU_NAMES
from seqdeca.errors import UserError

__all__ = [
    "AFFWILD2_AU_NAMES",
    "AFFWILD2_EXPRESSIONS",
    "AU_INVALID",
    "EXPRESSION_INVALID",
    "VA_INVALID",
    "AnnotationError",
    "read_au_file",
    "read_expression_file",
    "read_va_file",
]


AFFWILD2_EXPRESSIONS: tuple[str, ...] = (
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
)
"""The 8 expression classes (ids 0..7) of the Aff-Wild2 expression track."""

AU_INVALID = -1.0
EXPRESSION_INVALID = -1
VA_INVALID = -5.0


class AnnotationError(UserError):
    """An annotation file is missing or does not have the official format (one-line message)."""


def _norm(name: str) -> str:
    return name.strip().lower()


def _read_lines(
    path: Path, expected_header: tuple[str, ...], columns: int, what: str
) -> list[list[str]]:
    """The value rows (``columns`` cells each) of ``path`` after checking its header.

    The header comparison ignores case and spaces.
    """
    if not path.is_file():
        raise AnnotationError(f"{what} file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"cannot read {what} file {path}: {exc}") from None
    header = lines[0].split(",") if lines else []
    if [_norm(c) for c in header] != [_norm(c) for c in expected_header]:
        got = lines[0].strip()[:80] if lines else "(empty file)"
        raise AnnotationError(
            f"{path} is not an Aff-Wild2 {what} file: header '{got}', expected "
            f"'{','.join(expected_header)}'"
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # trailing blank lines
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != columns:
            raise AnnotationError(f"{path} line {number}: {len(cells)} values, expected {columns}")
        rows.append(cells)
    return rows


def _to_array(rows: list[list[str]], path: Path, columns: int) -> np.ndarray:
    try:
        values = np.asarray(rows, dtype=np.float64).reshape(len(rows), columns)
    except ValueError:
        bad = next(i for i, r in enumerate(rows) if not all(_is_number(c) for c in r))
        raise AnnotationError(f"{path} line {bad + 2}: non-numeric value {rows[bad]}") from None
    return values.astype(np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_au_file(path: str | Path) -> np.ndarray:
    """Read an AU-detection annotation file.

    Args:
        path: ``AU_Detection_Challenge/{Train_Set,Validation_Set}/{video}.txt``.

    Returns:
        (T, 12) float32, columns in :data:`AFFWILD2_AU_NAMES` order; row ``i`` is frame ``i``;
        values 0 (absent), 1 (present) or -1 (unknown: no face or not annotated).

    Raises:
        AnnotationError: the file is missing, its header is not the AU header, or a value is not
            one of -1, 0, 1.
    """
    path = Path(path)
    labels = _to_array(_read_lines(path, AFFWILD2_AU_NAMES, 12, "AU annotation"), path, 12)
    bad = ~np.isin(labels, (AU_INVALID, 0.0, 1.0))
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise AnnotationError(f"{path} line {row + 2}: AU values must be -1, 0 or 1")
    return labels


def read_expression_file(path: str | Path) -> np.ndarray:
    """Read an expression-classification annotation file.

    Args:
        path: ``EXPR_Classification_Challenge/{Train_Set,Validation_Set}/{video}.txt``; the
            header lists the 8 classes of :data:`AFFWILD2_EXPRESSIONS`.

    Returns:
        (T,) int64 class id in 0..7 per frame, -1 = unknown.

    Raises:
        AnnotationError: missing file, wrong header or a value outside -1..7.
    """
    path = Path(path)
    rows = _read_lines(path, AFFWILD2_EXPRESSIONS, 1, "expression annotation")
    labels = _to_array(rows, path, 1)[:, 0]
    ok = np.isin(labels, np.arange(-1, len(AFFWILD2_EXPRESSIONS), dtype=np.float32))
    if not ok.all():
        row = int(np.argwhere(~ok)[0, 0])
        raise AnnotationError(f"{path} line {row + 2}: expression ids must be -1 or 0..7")
    return labels.astype(np.int64)


def read_va_file(path: str | Path) -> np.ndarray:
    """Read a valence/arousal annotation file.

    Args:
        path: ``VA_Estimation_Challenge/{Train_Set,Validation_Set}/{video}.txt`` with header
            ``valence,arousal``.

    Returns:
        (T, 2) float32 valence and arousal in [-1, 1]; -5 marks an unknown frame (both columns).

    Raises:
        AnnotationError: missing file, wrong header, or a value neither in [-1, 1] nor -5.
    """
    path = Path(path)
    values = _to_array(_read_lines(path, ("valence", "arousal"), 2, "valence/arousal"), path, 2)
    ok = (np.abs(values) <= 1.0) | (values == VA_INVALID)
    if not ok.all():
        row = int(np.argwhere(~ok)[0, 0])
        raise AnnotationError(f"{path} line {row + 2}: valence/arousal must be in [-1, 1] or -5")
    return values
