"""Find the clips of a raw dataset: MEAD, Aff-Wild2, or a plain folder of videos.

Each finder walks a raw dataset tree (layouts in ``datasets/README.md``) and returns one
:class:`~seqdeca.prep.prepare.ClipSource` per clip to prepare, sorted by ``clip_id``. Finders only
look at names: nothing is decoded, so a broken video is found here and reported later by
:func:`~seqdeca.prep.prepare.prepare_clip`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from seqdeca.errors import UserError
from seqdeca.prep.annotations import read_au_file

__all__ = [
    "AFFWILD2_SETS",
    "MEAD_EMOTIONS",
    "MEAD_VIEWS",
    "VIDEO_EXTENSIONS",
    "affwild2_splits",
    "find_affwild2",
    "find_mead",
    "find_videos",
    "read_mead_split",
    "safe_clip_id",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm")
MEAD_VIEWS: tuple[str, ...] = ("front", "left_30", "left_60", "right_30", "right_60", "top", "down")
MEAD_EMOTIONS: tuple[str, ...] = (
    "angry",
    "contempt",
    "disgusted",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprised",
)
AFFWILD2_SETS: dict[str, str] = {"Train_Set": "train", "Validation_Set": "val"}
"""Aff-Wild2 AU annotation folders and the split each one is."""

_LEVEL = re.compile(r"^level_(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_clip_id(text: str) -> str:
    """A filesystem-safe clip id: runs of characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    out = _UNSAFE.sub("_", text).strip("._")
    return out or "clip"


def _clip_source(**values: Any) -> Any:
    """Build a ClipSource, dropping hints (``face_side``, ``split``) that it does not have yet."""
    from seqdeca.prep.prepare import ClipSource

    names = {f.name for f in fields(ClipSource)}
    return ClipSource(**{k: v for k, v in values.items() if k in names})


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _require_dir(root: str | Path, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{what} input folder not found: {root}")
    return root


# ---------------------------------------------------------------------------------------- MEAD


def _mead_subjects(root: Path) -> list[Path]:
    """Subject folders: children of ``root`` with a ``video`` folder (or ``root`` itself)."""
    if (root / "video").is_dir():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "video").is_dir())


def _parse_mead(rel: tuple[str, ...]) -> tuple[str, str, int, str] | None:
    """(view, emotion, level, number) from a path below ``video/``; None if it does not fit.

    The last four parts are ``{view}/{emotion}/level_{k}/{NNN}.mp4``; anything above them is one
    of the irregular extra folder levels of some subjects (``W021/video/1/front/...``).
    """
    if len(rel) < 4:
        return None
    view, emotion, level, name = rel[-4:]
    match = _LEVEL.match(level)
    if match is None or view not in MEAD_VIEWS:
        return None
    return view, emotion, int(match.group(1)), Path(name).stem


def find_mead(root: str | Path, views: Sequence[str] = ("front",)) -> list[Any]:
    """Every MEAD clip of the given camera views.

    Raw layout: ``{root}/{subject}/video/{view}/{emotion}/level_{k}/{NNN}.mp4``, with possibly
    extra folders between ``video/`` and the view (``W021/video/1/front/...``). ``root`` may
    also be a single subject's folder.

    Args:
        root: the MEAD folder holding the subject folders (M003, W021, ...).
        views: camera views to keep (see :data:`MEAD_VIEWS`); default the frontal camera.

    Returns:
        ClipSources with dataset "mead", subject, emotion, level (int), view, and clip_id
        ``{subject}_{view}_{emotion}_level{k}_{NNN}``, sorted by clip_id. When an extra folder
        level holds the same clip twice, the first in path order is kept.

    Raises:
        UserError: ``root`` is not a folder or a view name is unknown.
    """
    root = _require_dir(root, "MEAD")
    unknown = sorted(set(views) - set(MEAD_VIEWS))
    if unknown:
        raise UserError(f"unknown MEAD view(s) {unknown}; known: {', '.join(MEAD_VIEWS)}")
    found: dict[str, Any] = {}
    for subject_dir in _mead_subjects(root):
        video_dir = subject_dir / "video"
        for path in sorted(video_dir.rglob("*")):
            if not _is_video(path):
                continue
            parsed = _parse_mead(path.relative_to(video_dir).parts)
            if parsed is None or parsed[0] not in views:
                continue
            view, emotion, level, number = parsed
            subject = subject_dir.name
            clip_id = safe_clip_id(f"{subject}_{view}_{emotion}_level{level}_{number}")
            if clip_id not in found:
                found[clip_id] = _clip_source(
                    dataset="mead",
                    clip_id=clip_id,
                    video=path,
                    subject=subject,
                    emotion=emotion,
                    level=level,
                    view=view,
                )
    return [found[k] for k in sorted(found)]


# ---------------------------------------------------------------------------------- Aff-Wild2


@dataclass
class _AffWild2Tree:
    videos: dict[str, Path]  # stem -> file; files in a folder named "videos" win
    cropped: list[Path]  # cropped_aligned folders
    challenges: list[Path]  # AU_Detection_Challenge folders


def _scan_affwild2(root: Path) -> _AffWild2Tree:
    """One walk of ``root`` that never descends into the (huge) ``cropped_aligned`` folders."""
    tree = _AffWild2Tree(videos={}, cropped=[], challenges=[])
    candidates: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        for name in ("cropped_aligned", "AU_Detection_Challenge"):
            if name in dirs:
                dirs.remove(name)
                (tree.cropped if name == "cropped_aligned" else tree.challenges).append(here / name)
        dirs.sort()
        candidates.extend(here / f for f in files if Path(f).suffix.lower() in VIDEO_EXTENSIONS)
    for path in sorted(candidates, key=lambda p: ("videos" not in p.parts[:-1], str(p))):
        tree.videos.setdefault(path.stem, path)
    tree.cropped.sort()
    tree.challenges.sort()
    return tree


def _annotation_files(tree: _AffWild2Tree, sets: Iterable[str]) -> list[tuple[str, Path]]:
    """(split, file) for every ``AU_Detection_Challenge/{set}/*.txt``."""
    out = []
    for challenge in tree.challenges:
        for set_name in sets:
            split = AFFWILD2_SETS.get(set_name, set_name)
            out.extend((split, f) for f in sorted((challenge / set_name).glob("*.txt")))
    return out


def _person(name: str) -> tuple[str, str | None]:
    """(video name, side) of an annotation name: ``v_left`` -> (``v``, "left")."""
    for side in ("left", "right"):
        if name.endswith(f"_{side}"):
            return name[: -len(side) - 1], side
    return name, None


def _frame_folder(tree: _AffWild2Tree, name: str) -> Path | None:
    for cropped in tree.cropped:
        if (cropped / name).is_dir():
            return cropped / name
    return None


def find_affwild2(
    root: str | Path,
    *,
    sets: Sequence[str] = tuple(AFFWILD2_SETS),
    prefer: str = "video",
    unlabelled: bool = False,
) -> list[Any]:
    """The Aff-Wild2 clips with AU labels (and optionally the unlabelled videos).

    Labels come from ``AU_Detection_Challenge/{Train_Set,Validation_Set}/{name}.txt`` (the
    official train/validation split) anywhere below ``root``. A clip's pixels come from the
    video ``{name}.mp4|.avi|.mkv`` (in a ``videos`` folder or anywhere below ``root``) or from
    the organisers' frame folder ``cropped_aligned/{name}/00001.jpg ...``. Two-person videos
    have two annotation files ``{v}_left.txt`` / ``{v}_right.txt`` for ONE video ``{v}.*``:
    each becomes its own clip (clip_id ``{v}_left`` / ``{v}_right``). From the video, which
    face is which needs a position hint (``face_side``, passed only if ClipSource has that
    field; it does not yet, so both clips may show the same person); the per-person
    ``cropped_aligned/{v}_left`` folders need none and are used whenever they exist.

    Args:
        root: the Aff-Wild2 folder.
        sets: annotation set folders to read (``Train_Set``, ``Validation_Set``).
        prefer: "video" or "frames": the input used when a clip has both (two-person clips
            always take their frame folder when it exists).
        unlabelled: also return videos without an AU file (``au_labels`` None).

    Returns:
        ClipSources with dataset "affwild2", subject = clip_id, view "front", and ``au_labels``
        (T, 12) float32 with -1 unknown (see :func:`~seqdeca.prep.annotations.read_au_file`),
        sorted by clip_id. Annotations with neither a video nor a frame folder are left out.

    Raises:
        UserError: ``root`` is not a folder, ``prefer`` is unknown, or an AU file is malformed.
    """
    root = _require_dir(root, "Aff-Wild2")
    if prefer not in ("video", "frames"):
        raise UserError(f"prefer must be 'video' or 'frames', got '{prefer}'")
    tree = _scan_affwild2(root)
    videos = tree.videos
    found: dict[str, Any] = {}
    used_videos: set[str] = set()
    for split, path in _annotation_files(tree, sets):
        name = path.stem
        base, side = _person(name)
        video = videos.get(name) or videos.get(base)
        frames = _frame_folder(tree, name)
        if video is None and frames is None:
            continue
        # Two-person videos: the per-person frame folder is unambiguous, the video is not.
        use_frames = frames is not None and (video is None or prefer == "frames" or bool(side))
        found[safe_clip_id(name)] = _clip_source(
            dataset="affwild2",
            clip_id=safe_clip_id(name),
            subject=name,
            view="front",
            video=None if use_frames else video,
            frames_dir=frames if use_frames else None,
            au_labels=read_au_file(path),
            face_side=side if not use_frames else None,
            split=split,
        )
        used_videos.update({name, base})
    if unlabelled:
        for stem, video in videos.items():
            if stem not in used_videos and safe_clip_id(stem) not in found:
                found[safe_clip_id(stem)] = _clip_source(
                    dataset="affwild2",
                    clip_id=safe_clip_id(stem),
                    subject=stem,
                    view="front",
                    video=video,
                )
    return [found[k] for k in sorted(found)]


# ----------------------------------------------------------------------------- plain folders


def find_videos(folder: str | Path) -> list[Any]:
    """Every video file below ``folder`` (recursive), dataset "videos".

    Args:
        folder: any folder; extensions :data:`VIDEO_EXTENSIONS` (case-insensitive).

    Returns:
        ClipSources with clip_id = the file stem, or the path below ``folder`` joined with ``_``
        when two files share a stem; sorted by clip_id.

    Raises:
        UserError: ``folder`` is not a folder.
    """
    folder = _require_dir(folder, "video")
    paths = sorted(p for p in folder.rglob("*") if _is_video(p))
    stems = [p.stem for p in paths]
    out = {}
    for path in paths:
        unique = stems.count(path.stem) == 1
        name = path.stem if unique else "_".join(path.relative_to(folder).with_suffix("").parts)
        clip_id = safe_clip_id(name)
        out[clip_id] = _clip_source(
            dataset="videos", clip_id=clip_id, video=path, subject=path.stem
        )
    return [out[k] for k in sorted(out)]


# ------------------------------------------------------------------------------------ splits


def read_mead_split(path: str | Path) -> dict[str, str]:
    """Subject -> split ("train", "val", "test") from a split file like datasets/mead_split.json.

    Raises:
        UserError: the file is missing, not JSON, or names a subject twice.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read MEAD split file {path}: {str(exc).splitlines()[0]}") from None
    out: dict[str, str] = {}
    for split, subjects in data.items():
        if split.startswith("_"):
            continue  # comments
        for subject in subjects:
            if subject in out:
                raise UserError(f"MEAD split file {path} puts {subject} in two splits")
            out[subject] = split
    return out


def affwild2_splits(root: str | Path, sets: Sequence[str] = tuple(AFFWILD2_SETS)) -> dict[str, str]:
    """Clip id -> split ("train" / "val") from the AU annotation folders below ``root``."""
    tree = _scan_affwild2(_require_dir(root, "Aff-Wild2"))
    return {safe_clip_id(f.stem): split for split, f in _annotation_files(tree, sets)}
