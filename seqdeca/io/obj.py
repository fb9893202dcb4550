"""Wavefront OBJ (+ MTL + PNG texture) reading and writing.

Only what face meshes need: vertices (optionally with per-vertex RGB, the common ``v x y z r g b``
extension), texture coordinates, normals, and triangles. Indices are 0-based in memory and
1-based in files. UVs follow the OBJ convention (v = 0 at the bottom of the texture image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from seqdeca.errors import UserError


@dataclass
class ObjMesh:
    """A triangle mesh as read from an OBJ file.

    Attributes:
        vertices: (V, 3) float32.
        faces: (F, 3) int64 vertex indices.
        verts_uvs: (VT, 2) float32 or None.
        faces_uvs: (F, 3) int64 indices into verts_uvs, or None.
        vertex_colors: (V, 3) float32 in [0, 1] or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    verts_uvs: np.ndarray | None = None
    faces_uvs: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def texture_to_uint8(texture: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (3, H, W) float in [0, 1] or uint8 -> (H, W, 3) uint8."""
    tex = np.asarray(texture)
    if tex.ndim == 3 and tex.shape[0] in (1, 3) and tex.shape[-1] not in (1, 3):
        tex = tex.transpose(1, 2, 0)
    if tex.dtype != np.uint8:
        tex = (np.clip(tex, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return tex


def write_obj(
    path: str | Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    verts_uvs: np.ndarray | None = None,
    faces_uvs: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    vertex_colors: np.ndarray | None = None,
    mtllib: str | None = None,
) -> Path:
    """Write a triangle mesh; with ``texture`` also ``<stem>.mtl`` and ``<stem>.png`` beside it.

    Args:
        path: destination ``.obj``.
        vertices: (V, 3) positions (metres for seqdeca meshes).
        faces: (F, 3) 0-based vertex indices.
        verts_uvs: (VT, 2) UVs in [0, 1], v up; faces_uvs: (F, 3) indices into them.
        texture: (H, W, 3) or (3, H, W) image in [0, 1] (or uint8), row 0 = top (v = 1).
        normals: (V, 3) per-vertex normals, written as ``vn`` sharing the vertex indices.
        vertex_colors: (V, 3) RGB in [0, 1], written after each ``v``.
        mtllib: name of an EXISTING material file (relative to the OBJ) whose ``material0`` the
            mesh uses, e.g. one texture shared by many meshes (instead of ``texture``).

    Returns:
        The OBJ path. Every file is written to a temporary name first, then renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    has_uv = verts_uvs is not None and faces_uvs is not None
    lines = ["# written by seqdeca"]
    if texture is not None:
        if not has_uv:
            raise ValueError("write_obj: a texture needs verts_uvs and faces_uvs")
        Image.fromarray(texture_to_uint8(texture)).save(path.with_suffix(".png.tmp"), format="PNG")
        path.with_suffix(".png.tmp").replace(path.with_suffix(".png"))
        mtl = f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {path.stem}.png\n"
        _atomic_write_text(path.with_suffix(".mtl"), mtl)
        lines += [f"mtllib {path.stem}.mtl", "usemtl material0"]
    elif mtllib is not None:
        lines += [f"mtllib {mtllib}", "usemtl material0"]
    blocks = ["\n".join(lines) + "\n"]
    if vertex_colors is not None:
        vc = np.asarray(vertex_colors, dtype=np.float64).reshape(-1, 3)
        both = np.concatenate([vertices, vc], axis=1)
        blocks.append(_lines("v %.6f %.6f %.6f %.4f %.4f %.4f", both))
    else:
        blocks.append(_lines("v %.6f %.6f %.6f", vertices))
    if has_uv:
        blocks.append(_lines("vt %.6f %.6f", np.asarray(verts_uvs).reshape(-1, 2)))
    if normals is not None:
        blocks.append(_lines("vn %.5f %.5f %.5f", np.asarray(normals).reshape(-1, 3)))
    f1 = faces + 1
    if has_uv:
        t1 = np.asarray(faces_uvs, dtype=np.int64).reshape(-1, 3) + 1
        if normals is not None:
            corners = np.stack([f1, t1, f1], axis=-1).reshape(-1, 9)
            blocks.append(_lines("f %d/%d/%d %d/%d/%d %d/%d/%d", corners))
        else:
            blocks.append(_lines("f %d/%d %d/%d %d/%d", np.stack([f1, t1], -1).reshape(-1, 6)))
    elif normals is not None:
        blocks.append(_lines("f %d//%d %d//%d %d//%d", np.repeat(f1, 2, axis=1)))
    else:
        blocks.append(_lines("f %d %d %d", f1))
    _atomic_write_text(path, "".join(blocks))
    return path


def _lines(fmt: str, rows: np.ndarray) -> str:
    """One line ``fmt % row`` per row of ``rows`` (n, k), each ending in a newline."""
    return ((fmt + "\n") * len(rows)) % tuple(rows.ravel().tolist())


def read_obj(path: str | Path) -> ObjMesh:
    """Read vertices, texture coordinates and triangles of an OBJ file.

    Polygons with more than three corners are fan-triangulated. Negative (relative) indices are
    resolved. A missing or malformed file raises :class:`UserError` with one line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"OBJ file not found: {path}")
    verts, colors, uvs, faces, fuvs = [], [], [], [], []
    try:
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if not parts:
                continue
            tag = parts[0]
            if tag == "v":
                verts.append([float(x) for x in parts[1:4]])
                if len(parts) >= 7:
                    colors.append([float(x) for x in parts[4:7]])
            elif tag == "vt":
                uvs.append([float(x) for x in parts[1:3]])
            elif tag == "f":
                corners = [c.split("/") for c in parts[1:]]
                vi = [int(c[0]) for c in corners]
                ti = [int(c[1]) if len(c) > 1 and c[1] else 0 for c in corners]
                vi = [i - 1 if i > 0 else len(verts) + i for i in vi]
                ti = [i - 1 if i > 0 else len(uvs) + i for i in ti]
                for k in range(1, len(vi) - 1):
                    faces.append([vi[0], vi[k], vi[k + 1]])
                    fuvs.append([ti[0], ti[k], ti[k + 1]])
    except (ValueError, IndexError) as exc:
        raise UserError(f"{path} is not a readable OBJ file ({exc})") from None
    if not verts or not faces:
        raise UserError(
            f"{path} has no vertices or no faces: expected a triangle mesh in OBJ format"
        )
    for name, rows, count in (("vertex", faces, len(verts)), ("texture", fuvs, len(uvs))):
        if name == "texture" and not uvs:
            continue
        flat = [i for row in rows for i in row]
        if min(flat) < 0 or max(flat) >= count:
            raise UserError(f"{path}: a face indexes a {name} coordinate outside 1..{count}")
    has_uv = bool(uvs)
    return ObjMesh(
        vertices=np.asarray(verts, dtype=np.float32),
        faces=np.asarray(faces, dtype=np.int64),
        verts_uvs=np.asarray(uvs, dtype=np.float32) if has_uv else None,
        faces_uvs=np.asarray(fuvs, dtype=np.int64) if has_uv else None,
        vertex_colors=np.asarray(colors, dtype=np.float32) if len(colors) == len(verts) else None,
    )
