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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from seqdeca.face_model.layer import FaceModel
from seqdeca.io.gltf_rig import RIG_CODES, clip_texture, write_rig
from seqdeca.io.npz import NpzStreamWriter
from seqdeca.io.obj import write_obj
from seqdeca.io.video import VideoWriter

__all__ = ["ClipWriter"]

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

    def __init__(self, out_dir: str | Path, name: str, *, faces: np.ndarray,
                 verts_uvs: np.ndarray | None, faces_uvs: np.ndarray | None,
                 overlay: tuple[float, tuple[int, int]] | None) -> None:  # fmt: skip
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
        write_obj(self.tmp / "meshes" / "_texture.obj", np.zeros((3, 3)), np.array([[0, 1, 2]]),
                  verts_uvs=self.verts_uvs, faces_uvs=self.faces_uvs[:1], texture=texture)  # fmt: skip
        meshes = self.tmp / "meshes"
        (meshes / "_texture.png").replace(meshes / SHARED_TEXTURE)
        (meshes / SHARED_MTL).write_text(
            (meshes / "_texture.mtl").read_text().replace("_texture.png", SHARED_TEXTURE)
        )
        (meshes / "_texture.mtl").unlink()
        (meshes / "_texture.obj").unlink()
        self._shared_texture = True

    def mesh(self, frame: int, vertices: np.ndarray, *, texture: np.ndarray | None = None,
             suffix: str = "") -> None:  # fmt: skip
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

    def rig(self, face_model: FaceModel, *, fps: float) -> Path:
        """Write ``rig.glb`` from the clip's codes; closes ``codes.npz`` (call after the last
        chunk). Only the rig's per-frame codes are read back (O(T) small arrays)."""
        with np.load(self._close_codes()) as z:
            codes = {k: z[k] for k in RIG_CODES if k in z.files}
        return write_rig(self.tmp / RIG_FILE, face_model, codes, fps=fps,
                         texture=clip_texture(face_model, codes), name=self.final.name)  # fmt: skip

    def finish(self, summary: dict) -> Path:
        """Close every stream, write ``summary.json`` and publish the folder; returns it."""
        self._close_codes()
        self.landmarks.close()
        if self.video is not None:
            self.video.close()
        text = json.dumps(summary, indent=1, default=_jsonable) + "\n"
        (self.tmp / "summary.json").write_text(text)
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        """Drop everything written for the clip (nothing is left on disk)."""
        self.codes.abort()
        self.landmarks.abort()
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
