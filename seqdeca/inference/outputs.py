"""Where video2mesh writes one clip, and how it avoids leaving complete-looking partial results.

Layout of ``<out>/<clip stem>/``::

    meshes/NNNNNN.obj (+ .mtl/.png, or the shared texture.png/material.mtl)   valid frames only
    meshes/NNNNNN_detail.obj                                   with --detail (network mode)
    codes.npz        per-frame arrays, leading T axis (see docs/video2mesh.md)
    landmarks.npz    tracked and model landmarks in ORIGINAL-frame pixels, leading T
    overlay.mp4      input | render over the input | shape, at the source fps (unless --no-video)
    rig.glb          animated glTF rig of the clip, from codes.npz (unless --no-rig; docs/rig.md)
    summary.json     written last

Everything is written into a hidden temporary folder ``<out>/.<stem>.tmp-<pid>`` that is
renamed to ``<out>/<stem>`` only when the clip is complete (an older result is replaced then);
a failed clip's temporary folder is deleted. Per-frame arrays are streamed to disk as chunks
finish (:class:`~seqdeca.io.npz.NpzStreamWriter`), so memory does not grow with the clip.

Several faces (``inference.faces`` "all" or N, :mod:`seqdeca.inference.faces`)::

    <out>/<clip stem>/face_0/   meshes/, codes.npz, landmarks.npz, rig.glb, summary.json
    <out>/<clip stem>/face_1/   ... one folder per face found, numbered by first appearance
    <out>/<clip stem>/overlay.mp4    every face's renders over the input
    <out>/<clip stem>/summary.json   the clip: faces found, per face frames and meshes

Every face's arrays still have one row per frame of the clip (``valid`` false where that face
is absent). The clip folder is staged and published as a whole, like one face's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seqdeca.face_model.gltf_rig import RIG_CODES, clip_texture, write_rig
from seqdeca.face_model.layer import FaceModel
from seqdeca.geometry.camera import ndc_to_pixels
from seqdeca.inference.engines import ChunkResult
from seqdeca.inference.faces import face_folder
from seqdeca.inference.stream import ChunkFrames
from seqdeca.io.npz import NpzStreamWriter
from seqdeca.io.obj import write_obj
from seqdeca.io.video import VideoWriter
from seqdeca.prep.crop import apply_transform

__all__ = ["ClipOutputs", "ClipWriter", "FaceOutput"]

SHARED_MTL = "material.mtl"
SHARED_TEXTURE = "texture.png"
RIG_FILE = "rig.glb"


class ClipWriter:
    """Streamed outputs of one clip in a temporary folder, published by :meth:`finish`.

    Args:
        out_dir: the output root; the clip goes to ``out_dir / name``.
        name: the clip's folder name (the video's stem).
        faces: (F, 3) mesh faces; verts_uvs (VT, 2) / faces_uvs (F, 3): the UV layout or None.
        overlay: (fps, (width, height)) of the overlay video, or None for no video.
    """

    def __init__(
        self,
        out_dir: str | Path,
        name: str,
        *,
        faces: np.ndarray,
        verts_uvs: np.ndarray | None,
        faces_uvs: np.ndarray | None,
        overlay: tuple[float, tuple[int, int]] | None,
    ) -> None:
        self.final = Path(out_dir) / name
        self.tmp = Path(out_dir) / f".{name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / "meshes").mkdir(parents=True)
        self.faces, self.verts_uvs, self.faces_uvs = faces, verts_uvs, faces_uvs
        self.codes = NpzStreamWriter(self.tmp / "codes.npz")
        self.landmarks = NpzStreamWriter(self.tmp / "landmarks.npz")
        self.video = None
        if overlay is not None:
            fps, size = overlay
            self.video = VideoWriter(self.tmp / "overlay.mp4", fps=fps, size=size)
        self.meshes = 0
        self._shared_texture = False
        self._codes_closed = False

    @property
    def has_uv(self) -> bool:
        return self.verts_uvs is not None and self.faces_uvs is not None

    def shared_texture(self, texture: np.ndarray) -> None:
        """Write one texture (H, W, 3) in [0, 1] that every later mesh without its own uses."""
        if not self.has_uv:
            return
        write_obj(
            self.tmp / "meshes" / "_texture.obj",
            np.zeros((3, 3)),
            np.array([[0, 1, 2]]),
            verts_uvs=self.verts_uvs,
            faces_uvs=self.faces_uvs[:1],
            texture=texture,
        )
        meshes = self.tmp / "meshes"
        (meshes / "_texture.png").replace(meshes / SHARED_TEXTURE)
        (meshes / SHARED_MTL).write_text(
            (meshes / "_texture.mtl").read_text().replace("_texture.png", SHARED_TEXTURE)
        )
        (meshes / "_texture.mtl").unlink()
        (meshes / "_texture.obj").unlink()
        self._shared_texture = True

    def mesh(
        self,
        frame: int,
        vertices: np.ndarray,
        *,
        texture: np.ndarray | None = None,
        suffix: str = "",
    ) -> None:
        """Write ``meshes/NNNNNN{suffix}.obj`` (vertices (V, 3) metres, model space)."""
        path = self.tmp / "meshes" / f"{frame:06d}{suffix}.obj"
        uv = {"verts_uvs": self.verts_uvs, "faces_uvs": self.faces_uvs} if self.has_uv else {}
        if texture is not None and self.has_uv:
            write_obj(path, vertices, self.faces, texture=texture, **uv)
        elif self._shared_texture:
            write_obj(path, vertices, self.faces, mtllib=SHARED_MTL, **uv)
        else:
            write_obj(path, vertices, self.faces, **uv)
        self.meshes += not suffix

    def _close_codes(self) -> Path:
        if not self._codes_closed:
            self.codes.close()
            self._codes_closed = True
        return self.codes.path

    def rig(self, face_model: FaceModel, *, fps: float, texture: np.ndarray | None = None) -> Path:
        """Write ``rig.glb`` from the clip's codes; closes ``codes.npz`` (call after the last
        chunk). Only the rig's per-frame codes are read back (O(T) small arrays).

        Args:
            face_model: the model of the codes.
            fps: frames per second of the animation.
            texture: (H, W, 3) in [0, 1] the rig's texture; None = the model albedo of the
                clip's mean texture code.
        """
        with np.load(self._close_codes()) as z:
            codes = {k: z[k] for k in RIG_CODES if k in z.files}
        if texture is None:
            texture = clip_texture(face_model, codes)
        return write_rig(
            self.tmp / RIG_FILE, face_model, codes, fps=fps, texture=texture, name=self.final.name
        )

    def finish(self, summary: dict) -> Path:
        """Close every stream, write ``summary.json`` and publish the folder; returns it."""
        self._close_codes()
        self.landmarks.close()
        if self.video is not None:
            self.video.close()
        _write_summary(summary, self.tmp)
        return _publish(self.tmp, self.final)

    def abort(self) -> None:
        """Drop everything written for the clip (nothing is left on disk)."""
        self.codes.abort()
        self.landmarks.abort()
        if self.video is not None:
            with contextlib.suppress(Exception):  # the file is deleted anyway
                self.video.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _write_summary(summary: dict, folder: Path) -> None:
    text = json.dumps(summary, indent=1, default=_jsonable) + "\n"
    (folder / "summary.json").write_text(text)


def _publish(tmp: Path, final: Path) -> Path:
    """Rename the finished temporary folder to its final name (replacing an older one)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _nan_invalid(array: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.asarray(array, dtype=np.float32).copy()
    out[~valid] = np.nan
    return out


class FaceOutput:
    """One face's per-frame outputs, opened at the face's first frame with a mesh.

    Rows of the frames before it, and of later chunks without this face, are written as frames
    without a face (``valid`` false, NaN), so every array has one row per frame of the clip.

    Args:
        open_writer: makes the face's :class:`ClipWriter` (called once, at the first chunk
            with a face).
        crop_size: crop side in pixels (the model landmarks are normalised crop coordinates).
        block: rows written at a time for frames without a face (bounds memory).
    """

    def __init__(
        self, open_writer: Callable[[], ClipWriter], *, crop_size: int, block: int = 64
    ) -> None:
        self._open = open_writer
        self.writer: ClipWriter | None = None
        self.crop_size, self.block = int(crop_size), max(int(block), 1)
        self.first_frame: int | None = None
        self.frames_with_face = 0
        self.texture: np.ndarray | None = None  # the face's latest shared texture
        self._texture_written: np.ndarray | None = None
        self._codes: dict[str, tuple[int, ...]] = {}
        self._points = (0, 0)  # tracked, model landmarks per frame

    @property
    def rows(self) -> int:
        """Frames written so far (rows of every array)."""
        return 0 if self.writer is None else self.writer.codes.rows

    def empty(self, stop: int) -> None:
        """Frames up to absolute ``stop`` have no face (written once the face has appeared)."""
        if self.writer is None:
            return
        for a in range(self.rows, stop, self.block):
            n = min(a + self.block, stop) - a
            frames, no = np.arange(a, a + n), np.zeros(n, dtype=bool)
            nan = {k: np.full((n, *shape), np.nan, np.float32) for k, shape in self._codes.items()}
            self.writer.codes.append(
                frame=frames,
                valid=no,
                interpolated=no,
                crop_from_frame=np.full((n, 3, 3), np.nan, np.float32),
                **nan,
            )
            tracked, model = (np.full((n, p, 2), np.nan, np.float32) for p in self._points)
            self.writer.landmarks.append(
                frame=frames, valid=no, interpolated=no, landmarks=tracked, model_landmarks=model
            )

    def write(self, data: ChunkFrames, res: ChunkResult) -> None:
        """Append a chunk's own frames: codes, landmarks and one OBJ per frame with a face."""
        own = data.own
        frames, valid = data.indices[own], data.valid[own]
        if self.writer is None:
            self.writer = self._open()
            self._codes = {k: np.shape(v)[1:] for k, v in res.codes.items()}
            self._points = (data.landmarks.shape[1], res.landmarks.shape[1])
        self.empty(int(frames[0]))
        writer = self.writer
        if res.texture_map is not None:
            self.texture = res.texture_map
            if self._texture_written is None:  # meshes refer to it from now on
                self.flush_texture()
        codes = {k: _nan_invalid(v, valid) for k, v in res.codes.items()}
        crop_from_frame = data.crop_from_frame[own].astype(np.float32)
        writer.codes.append(
            frame=frames,
            valid=valid,
            interpolated=data.interpolated[own],
            crop_from_frame=crop_from_frame,
            **codes,
        )
        crop_px = ndc_to_pixels(res.landmarks.float().cpu(), self.crop_size).numpy()
        frame_from_crop = np.linalg.inv(
            np.where(valid[:, None, None], data.crop_from_frame[own], np.eye(3))
        )
        model_lmk = _nan_invalid(apply_transform(crop_px, frame_from_crop), valid)
        writer.landmarks.append(
            frame=frames,
            valid=valid,
            interpolated=data.interpolated[own],
            landmarks=data.landmarks[own][..., :2].astype(np.float32),
            model_landmarks=model_lmk,
        )
        self._meshes(frames, valid, res)
        if self.first_frame is None and valid.any():
            self.first_frame = int(frames[np.flatnonzero(valid)[0]])
        self.frames_with_face += int(valid.sum())

    def flush_texture(self) -> None:
        """(Re)write the shared texture of the face's meshes when it changed since last written
        (fit mode's extracted map grows with every chunk: written at the first and the last)."""
        if self.writer is None or self.texture is None:
            return
        if self._texture_written is None or not np.array_equal(self.texture, self._texture_written):
            self.writer.shared_texture(self.texture)
            self._texture_written = self.texture

    def _meshes(self, frames: np.ndarray, valid: np.ndarray, res: ChunkResult) -> None:
        vertices = res.vertices.detach().float().cpu().numpy()
        textures = None if res.textures is None else res.textures.detach().float().cpu().numpy()
        detail = None
        if res.detail_vertices is not None:
            detail = res.detail_vertices.detach().float().cpu().numpy()
        for i in np.flatnonzero(valid):
            tex = None if textures is None else textures[i].clip(0, 1)
            self.writer.mesh(int(frames[i]), vertices[i], texture=tex)
            if detail is not None:
                self.writer.mesh(int(frames[i]), detail[i], suffix="_detail")


class ClipOutputs:
    """Every output of one clip: a :class:`FaceOutput` per followed face and the overlay.

    One face (``separate`` false): the face's :class:`ClipWriter` is the clip folder, with the
    overlay in it (the one-face layout). Several: a staged clip folder holding the overlay, the
    clip's ``summary.json`` and a ``face_K`` writer per face that appears (module docstring).

    Args:
        out_dir, name: the clip goes to ``out_dir / name``.
        slots: faces followed (:attr:`~seqdeca.inference.stream.ClipStream.slots`).
        separate: one folder per face.
        faces, verts_uvs, faces_uvs: the mesh topology (see :class:`ClipWriter`).
        overlay: (fps, (width, height)) of the overlay video, or None.
        texture: (H, W, 3) in [0, 1] shared by every mesh without its own, or None.
        crop_size, block: see :class:`FaceOutput`.
    """

    def __init__(
        self,
        out_dir: str | Path,
        name: str,
        *,
        slots: int,
        separate: bool,
        faces: np.ndarray,
        verts_uvs: np.ndarray | None,
        faces_uvs: np.ndarray | None,
        overlay: tuple[float, tuple[int, int]] | None,
        texture: np.ndarray | None,
        crop_size: int,
        block: int = 64,
    ) -> None:
        self.separate = separate
        self._topology = {"faces": faces, "verts_uvs": verts_uvs, "faces_uvs": faces_uvs}
        self._texture = texture
        self._clip: ClipWriter | None = None
        self.video: VideoWriter | None = None
        if separate:
            self.final = Path(out_dir) / name
            self.tmp = Path(out_dir) / f".{name}.tmp-{os.getpid()}"
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
            if overlay is not None:
                self.video = VideoWriter(self.tmp / "overlay.mp4", fps=overlay[0], size=overlay[1])
        else:
            self._clip = ClipWriter(out_dir, name, overlay=overlay, **self._topology)
            self.final, self.tmp, self.video = self._clip.final, self._clip.tmp, self._clip.video
        self.faces = [
            FaceOutput(lambda k=k: self._open(k), crop_size=crop_size, block=block)
            for k in range(slots)
        ]

    def _open(self, face: int) -> ClipWriter:
        writer = self._clip
        if writer is None:
            writer = ClipWriter(self.tmp, face_folder(face), overlay=None, **self._topology)
        if self._texture is not None:
            writer.shared_texture(self._texture)
        return writer

    @property
    def found(self) -> list[FaceOutput]:
        """The faces that appeared, in slot order (face_0, face_1, ...)."""
        return [f for f in self.faces if f.writer is not None]

    def finish(self, summary: dict, face_summaries: list[dict] | None = None) -> Path:
        """Pad every face to the clip's end, write the summaries, publish the clip; returns it.

        Args:
            summary: the clip's ``summary.json`` (must hold "frames").
            face_summaries: several faces: one ``summary.json`` per face of :attr:`found`.
        """
        for face in self.found:
            face.empty(int(summary["frames"]))
            face.flush_texture()
        if self._clip is not None:
            return self._clip.finish(summary)
        for face, extra in zip(self.found, face_summaries or [], strict=True):
            face.writer.finish(extra)
        if self.video is not None:
            self.video.close()
        _write_summary(summary, self.tmp)
        return _publish(self.tmp, self.final)

    def abort(self) -> None:
        """Drop everything written for the clip (nothing is left on disk)."""
        if self._clip is not None:
            self._clip.abort()
            return
        for face in self.found:
            face.writer.abort()
        if self.video is not None:
            with contextlib.suppress(Exception):  # the file is deleted anyway
                self.video.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _jsonable(value: object) -> object:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (Path,)):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
