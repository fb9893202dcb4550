"""Loaders for the official FLAME model and DECA's side files, into :class:`FaceModelAssets`.

None of these files ship with seqdeca (licences); users point the config at their copies:

* FLAME 2020 / 2023 ``generic_model.pkl`` (https://flame.is.tue.mpg.de), read WITHOUT chumpy;
* DECA's ``landmark_embedding.npy``, ``head_template.obj``, ``uv_face_mask.png``,
  ``uv_face_eye_mask.png`` and ``fixed_displacement_256.npy`` (DECA repository, ``data/``);
* FLAME's ``mediapipe_landmark_embedding.npz`` (FLAME website);
* a texture space: ``FLAME_albedo_from_BFM.npz`` (BFM_to_FLAME) or ``FLAME_texture.npz``
  (FLAME website).

:func:`load_face_model` is the one entry point: no path gives the bundled default model, a
``.npz`` a seqdeca model file, a ``.pkl`` the official FLAME files. Every missing or malformed
file raises :class:`AssetError` with one line: which file, what was expected, where to get it.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqdeca.errors import UserError
from seqdeca.face_model.assets import (
    JOINT_NAMES,
    AssetError,
    DynamicContour,
    FaceModelAssets,
    LandmarkEmbedding,
    load_assets,
)
from seqdeca.face_model.chumpy_shim import load_pickle_without_chumpy, to_array
from seqdeca.face_model.landmarks import deca_row_order
from seqdeca.io.obj import read_obj
from seqdeca.io.safe_pickle import UnsafeFileError, load_npy

FLAME_NUM_IDENTITY = 300  # shapedirs = 300 identity components, then the expression ones
UV_SIZE = 256  # DECA's UV resolution for masks
_CHUNK_BYTES = 64 << 20  # texture bases are streamed in chunks of about this size

FLAME_SOURCE = "get FLAME 2020 or 2023 from https://flame.is.tue.mpg.de"
DECA_SOURCE = (
    "it is in the data/ folder of the DECA repository (https://github.com/yfeng95/DECA; see its "
    "README and fetch_data.sh)"
)
MEDIAPIPE_SOURCE = "download FLAME's MediaPipe landmark embedding from https://flame.is.tue.mpg.de"
TEXTURE_SOURCE = (
    "use FLAME_albedo_from_BFM.npz (https://github.com/TimoBolkart/BFM_to_FLAME) or "
    "FLAME_texture.npz (https://flame.is.tue.mpg.de)"
)


@contextlib.contextmanager
def _reading(path: Path, expected: str, source: str) -> Iterator[None]:
    """Turn a missing file or any decoding error into a one-line :class:`AssetError`."""
    if not path.is_file():
        raise AssetError(f"{path}: file not found (expected {expected}); {source}")
    try:
        yield
    except (AssetError, UnsafeFileError):
        raise
    except Exception as exc:  # noqa: BLE001 - every decoding failure is the same user error
        detail = " ".join(str(exc).split())[:200]
        raise AssetError(
            f"{path}: not {expected} ({type(exc).__name__}: {detail}); {source}"
        ) from None


def _bad(path: Path, problem: str, source: str) -> AssetError:
    return AssetError(f"{path}: {problem}; {source}")


def _numpy(value: object) -> np.ndarray:
    """numpy array from a numpy array, torch tensor, chumpy shim or scipy sparse matrix."""
    value = to_array(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if hasattr(value, "toarray"):  # scipy.sparse
        return np.asarray(value.toarray())
    return np.asarray(value)


def _shaped(path: Path, data: dict, key: str, shape: tuple, source: str) -> np.ndarray:
    """``data[key]`` as an array with the given shape (None = any size)."""
    if key not in data:
        raise _bad(path, f"missing key '{key}'", source)
    arr = _numpy(data[key])
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        pretty = tuple("*" if s is None else s for s in shape)
        raise _bad(path, f"'{key}' has shape {arr.shape}, expected {pretty}", source)
    return arr


# ---------------------------------------------------------------------------------- FLAME pkl


def read_flame_pickle(path: str | Path, *, n_shape: int = 300, n_expression: int = 100) -> dict:
    """Geometry of an official FLAME pickle as plain arrays (keys of :class:`FaceModelAssets`).

    Args:
        path: ``generic_model.pkl`` (FLAME 2020) or its FLAME 2023 counterpart.
        n_shape: identity components to keep (<= 300).
        n_expression: expression components to keep (<= 100 for FLAME).
    """
    path = Path(path)
    expected = "a FLAME model pickle"
    with _reading(path, expected, FLAME_SOURCE), path.open("rb") as f:
        data = load_pickle_without_chumpy(f, source=str(path), what=expected)
    if not isinstance(data, dict):
        raise _bad(path, f"holds a {type(data).__name__}, expected a dict of arrays", FLAME_SOURCE)
    j = len(JOINT_NAMES)
    with _reading(path, expected, FLAME_SOURCE):
        v_template = _shaped(path, data, "v_template", (None, 3), FLAME_SOURCE)
        v = v_template.shape[0]
        dirs = _shaped(path, data, "shapedirs", (v, 3, None), FLAME_SOURCE)
        out = {
            "v_template": v_template,
            "faces": _shaped(path, data, "f", (None, 3), FLAME_SOURCE).astype(np.int64),
            "posedirs": _shaped(path, data, "posedirs", (v, 3, 9 * (j - 1)), FLAME_SOURCE),
            "j_regressor": _shaped(path, data, "J_regressor", (j, v), FLAME_SOURCE),
            "lbs_weights": _shaped(path, data, "weights", (v, j), FLAME_SOURCE),
        }
        kintree = _shaped(path, data, "kintree_table", (2, j), FLAME_SOURCE).astype(np.int64)
    n_expr_available = dirs.shape[2] - FLAME_NUM_IDENTITY
    if not (0 <= n_shape <= FLAME_NUM_IDENTITY and 0 <= n_expression <= n_expr_available):
        raise _bad(
            path,
            f"shapedirs has {dirs.shape[2]} components ({FLAME_NUM_IDENTITY} identity + "
            f"{n_expr_available} expression), asked for n_shape={n_shape}, "
            f"n_expression={n_expression}",
            FLAME_SOURCE,
        )
    if not np.array_equal(kintree[1], np.arange(j)):
        raise _bad(
            path, f"kintree_table row 1 is {kintree[1].tolist()}, expected 0..{j - 1}", FLAME_SOURCE
        )
    # Row 0 holds the parents; the root's parent is stored as 2**32 - 1.
    out["parents"] = np.where((kintree[0] < 0) | (kintree[0] >= j), -1, kintree[0])
    out["shapedirs"] = dirs[:, :, :n_shape]
    out["exprdirs"] = dirs[:, :, FLAME_NUM_IDENTITY : FLAME_NUM_IDENTITY + n_expression]
    return {k: (a.astype(np.float32) if a.dtype.kind == "f" else a) for k, a in out.items()}


# ---------------------------------------------------------------------------------- landmarks


def read_deca_landmark_embedding(
    path: str | Path,
) -> tuple[dict[str, LandmarkEmbedding], DynamicContour]:
    """DECA's ``landmark_embedding.npy``.

    Returns:
        landmarks: "ibug68_static" (DECA's 51 static points) and "ibug68" (68 static points).
        contour: the (79, 17) dynamic jaw contour, rows reordered to ascending yaw
            (row = yaw + 39; see ``seqdeca.face_model.landmarks``).
    """
    path = Path(path)
    expected = "DECA's landmark_embedding.npy (a pickled dict)"
    with _reading(path, expected, DECA_SOURCE):
        raw = load_npy(path, what=expected)  # restricted unpickling of the object array
        data = raw.item() if isinstance(raw, np.ndarray) and raw.dtype == object else raw
        if not isinstance(data, dict):
            raise _bad(path, f"holds {type(data).__name__}, expected a dict", DECA_SOURCE)
        static_idx = _shaped(path, data, "static_lmk_faces_idx", (None,), DECA_SOURCE)
        static_bary = _shaped(
            path, data, "static_lmk_bary_coords", (len(static_idx), 3), DECA_SOURCE
        )
        dyn_idx = _shaped(path, data, "dynamic_lmk_faces_idx", (None, None), DECA_SOURCE)
        dyn_bary = _shaped(path, data, "dynamic_lmk_bary_coords", (*dyn_idx.shape, 3), DECA_SOURCE)
        full_idx = _shaped(path, data, "full_lmk_faces_idx", (1, None), DECA_SOURCE)
        full_bary = _shaped(
            path, data, "full_lmk_bary_coords", (1, full_idx.shape[1], 3), DECA_SOURCE
        )
        order = deca_row_order(dyn_idx.shape[0])
    landmarks = {
        "ibug68_static": LandmarkEmbedding(static_idx, static_bary),
        "ibug68": LandmarkEmbedding(full_idx[0], full_bary[0]),
    }
    return landmarks, DynamicContour(dyn_idx[order], dyn_bary[order])


def read_mediapipe_embedding(path: str | Path) -> tuple[LandmarkEmbedding, np.ndarray]:
    """FLAME's ``mediapipe_landmark_embedding.npz``.

    Returns:
        The (105) barycentric landmarks ("mediapipe105") and (105,) int64 MediaPipe vertex ids.
    """
    path = Path(path)
    with _reading(path, "FLAME's mediapipe_landmark_embedding.npz", MEDIAPIPE_SOURCE):
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        idx = _shaped(path, data, "lmk_face_idx", (None,), MEDIAPIPE_SOURCE)
        bary = _shaped(path, data, "lmk_b_coords", (len(idx), 3), MEDIAPIPE_SOURCE)
        ids = _shaped(path, data, "landmark_indices", (len(idx),), MEDIAPIPE_SOURCE)
    return LandmarkEmbedding(idx.astype(np.int64), bary), ids.astype(np.int64)


# ------------------------------------------------------------------------------------ UV data


def read_obj_uv(path: str | Path) -> dict[str, np.ndarray]:
    """A triangle OBJ with texture coordinates (DECA's ``head_template.obj``).

    Returns:
        vertices (V, 3) float32, faces (F, 3) int64, verts_uvs (VT, 2) float32 and faces_uvs
        (F, 3) int64 (0-based; OBJ UVs: v = 0 at the bottom).
    """
    path = Path(path)
    expected = "an OBJ mesh with texture coordinates (f v/vt ...)"
    with _reading(path, expected, DECA_SOURCE):
        try:
            mesh = read_obj(path)
        except UserError as exc:
            raise _bad(
                path, str(exc).replace(f"{path} ", "").replace(f"{path}: ", ""), DECA_SOURCE
            ) from None
    if mesh.verts_uvs is None:
        raise _bad(path, "faces without texture indices (expected f v/vt ...)", DECA_SOURCE)
    return {
        "vertices": mesh.vertices,
        "faces": mesh.faces,
        "verts_uvs": mesh.verts_uvs,
        "faces_uvs": mesh.faces_uvs,
    }


def read_uv_mask(path: str | Path, size: int = UV_SIZE) -> np.ndarray:
    """A DECA UV mask PNG: channel 0, nearest-resized to ``size`` if needed, scaled to [0, 1].

    Returns:
        (size, size) float32, row 0 = top of the image = v 1.
    """
    from PIL import Image

    path = Path(path)
    with _reading(path, "a UV mask image (PNG)", DECA_SOURCE):
        with Image.open(path) as img:
            arr = np.asarray(img)
        if arr.ndim == 3:
            arr = arr[..., 0]
        scale = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
        mask = arr.astype(np.float32) / scale
    if mask.shape != (size, size):
        t = torch.from_numpy(mask)[None, None]
        mask = F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy()
    return mask


def read_fixed_displacement(path: str | Path) -> np.ndarray:
    """DECA's ``fixed_displacement_256.npy``: (H, W) float32 UV displacement."""
    path = Path(path)
    with _reading(path, "DECA's fixed_displacement_256.npy (a 2D array)", DECA_SOURCE):
        arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2:
        raise _bad(path, f"array of shape {arr.shape}, expected (H, W)", DECA_SOURCE)
    return arr.astype(np.float32)


# ------------------------------------------------------------------------------------ texture


def read_texture_space(path: str | Path, n_texture: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A FLAME texture space: ``FLAME_albedo_from_BFM.npz`` or ``FLAME_texture.npz``.

    Both store H x W x 3 images in BGR order, flattened row-major: BFM's ``MU`` (H*W*3,) in
    [0, 1] and ``PC`` (H*W*3, K); FLAME's ``mean`` (H, W, 3) and ``tex_dir`` (H, W, 3, K) in
    [0, 255]. DECA divides the FLAME space by 255 and flips the channels of both to RGB; so
    does this loader. Only the first ``n_texture`` components are read (fewer if the file
    has fewer).

    Returns:
        mean: (3, H, W) float32 RGB in [0, 1], row 0 = v 1.
        basis: (n_texture, 3, H, W) float32 in the same units.
    """
    path = Path(path)
    expected = "a FLAME texture space .npz (MU/PC or mean/tex_dir)"
    with _reading(path, expected, TEXTURE_SOURCE), zipfile.ZipFile(path) as zf:
        keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        if {"MU", "PC"} <= keys:
            mean_key, basis_key, scale = "MU", "PC", 1.0
        elif {"mean", "tex_dir"} <= keys:
            mean_key, basis_key, scale = "mean", "tex_dir", 1.0 / 255.0
        else:
            raise _bad(
                path,
                f"keys {sorted(keys)}, expected MU and PC, or mean and tex_dir",
                TEXTURE_SOURCE,
            )
        mean = _read_npz_member(zf, mean_key).reshape(-1)
        basis = _read_npz_member(zf, basis_key, max_last=n_texture)
    k = basis.shape[-1]
    basis = basis.reshape(-1, k)
    side = round((mean.size / 3) ** 0.5)
    if side * side * 3 != mean.size or basis.shape[0] != mean.size or k == 0:
        raise _bad(
            path,
            f"{mean_key} has {mean.size} values and {basis_key} {basis.shape}, expected "
            "H*W*3 square images and at least one component",
            TEXTURE_SOURCE,
        )
    # Stored (H, W, BGR): flip to RGB and move channels first.
    mean_img = mean.reshape(side, side, 3)[..., ::-1].transpose(2, 0, 1) * scale
    basis_img = basis.reshape(side, side, 3, k)[:, :, ::-1].transpose(3, 2, 0, 1) * scale
    return (
        np.ascontiguousarray(mean_img, dtype=np.float32),
        np.ascontiguousarray(basis_img, dtype=np.float32),
    )


def _read_npz_member(zf: zipfile.ZipFile, key: str, max_last: int | None = None) -> np.ndarray:
    """Array ``key`` of an open ``.npz``, keeping only the first ``max_last`` entries of its
    last axis; C-ordered arrays are streamed in chunks so the full basis (about 1.2 GB for
    BFM's 199 components) is never in memory at once."""
    with zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            fortran, dtype, shape = True, None, ()
        if max_last is None or fortran or dtype is None or dtype.hasobject or len(shape) < 2:
            f.close()
            with zf.open(f"{key}.npy") as again:
                arr = np.lib.format.read_array(again, allow_pickle=False)
            return arr if max_last is None else arr[..., :max_last]
        cols = shape[-1]
        rows = int(np.prod(shape[:-1]))
        keep = min(max_last, cols)
        out = np.empty((rows, keep), dtype=np.float32)
        step = max(1, _CHUNK_BYTES // max(1, cols * dtype.itemsize))
        for start in range(0, rows, step):
            count = min(step, rows - start)
            buf = f.read(count * cols * dtype.itemsize)
            chunk = np.frombuffer(buf, dtype=dtype).reshape(count, cols)
            out[start : start + count] = chunk[:, :keep]
    return out.reshape(*shape[:-1], keep)


# ------------------------------------------------------------------------------- entry points


def _optional(path: str | Path | None) -> Path | None:
    return None if path is None or str(path) == "" else Path(path)


def load_flame(
    model_path: str | Path,
    *,
    landmark_embedding: str | Path | None = None,
    mediapipe_embedding: str | Path | None = None,
    head_template: str | Path | None = None,
    uv_face_mask: str | Path | None = None,
    uv_face_eye_mask: str | Path | None = None,
    fixed_displacement: str | Path | None = None,
    texture: str | Path | None = None,
    n_shape: int = 300,
    n_expression: int = 100,
    n_texture: int = 50,
) -> FaceModelAssets:
    """The official FLAME model plus whichever DECA side files are given.

    Args:
        model_path: FLAME ``generic_model.pkl`` (2020) or the 2023 pickle.
        landmark_embedding: DECA ``landmark_embedding.npy`` -> "ibug68", "ibug68_static" and
            the dynamic contour.
        mediapipe_embedding: ``mediapipe_landmark_embedding.npz`` -> "mediapipe105".
        head_template: DECA ``head_template.obj`` -> UV coordinates.
        uv_face_mask, uv_face_eye_mask: DECA UV mask PNGs (256 x 256).
        fixed_displacement: DECA ``fixed_displacement_256.npy``.
        texture: ``FLAME_albedo_from_BFM.npz`` or ``FLAME_texture.npz``.
        n_shape, n_expression, n_texture: components to keep.

    Returns:
        The assets; empty strings count as "not given".
    """
    model_path = Path(model_path)
    arrays = read_flame_pickle(model_path, n_shape=n_shape, n_expression=n_expression)
    n_faces = len(arrays["faces"])
    extra: dict = {"landmarks": {}, "landmark_vertex_ids": {}}
    files = {"model": model_path.name}
    if (p := _optional(landmark_embedding)) is not None:
        lmks, contour = read_deca_landmark_embedding(p)
        for emb in (*lmks.values(), contour):
            _check_faces(p, emb.face_idx, n_faces, DECA_SOURCE)
        extra["landmarks"].update(lmks)
        extra["dynamic_contour"] = contour
        files["landmark_embedding"] = p.name
    if (p := _optional(mediapipe_embedding)) is not None:
        emb, ids = read_mediapipe_embedding(p)
        _check_faces(p, emb.face_idx, n_faces, MEDIAPIPE_SOURCE)
        extra["landmarks"]["mediapipe105"] = emb
        extra["landmark_vertex_ids"]["mediapipe105"] = ids
        files["mediapipe_embedding"] = p.name
    if (p := _optional(head_template)) is not None:
        obj = read_obj_uv(p)
        if not np.array_equal(obj["faces"], arrays["faces"]):
            raise _bad(
                p,
                f"faces {obj['faces'].shape} do not match the FLAME model's "
                f"{arrays['faces'].shape} (expected DECA's head_template.obj)",
                DECA_SOURCE,
            )
        extra["verts_uvs"], extra["faces_uvs"] = obj["verts_uvs"], obj["faces_uvs"]
        files["head_template"] = p.name
    uv_files = {
        "uv_face_mask": (uv_face_mask, read_uv_mask),
        "uv_face_eye_mask": (uv_face_eye_mask, read_uv_mask),
        "fixed_displacement": (fixed_displacement, read_fixed_displacement),
    }
    for key, (given, reader) in uv_files.items():
        if (p := _optional(given)) is not None:
            extra[key] = reader(p)
            files[key] = p.name
    if (p := _optional(texture)) is not None:
        extra["texture_mean"], extra["texture_basis"] = read_texture_space(p, n_texture)
        files["texture"] = p.name
    meta = {
        "source": "FLAME pickle",
        "files": files,
        "n_shape": n_shape,
        "n_expression": n_expression,
    }
    return FaceModelAssets(name="flame", meta=meta, **arrays, **extra)


def _check_faces(path: Path, face_idx: np.ndarray, n_faces: int, source: str) -> None:
    if face_idx.size and (face_idx.min() < 0 or face_idx.max() >= n_faces):
        raise _bad(
            path,
            f"landmark face index {int(face_idx.max())} is outside the model's "
            f"{n_faces} faces (embedding for a different mesh?)",
            source,
        )


def load_face_model(path: str | Path | None = None, **side_files: object) -> FaceModelAssets:
    """Load a face model by path.

    Args:
        path: None or "" for the bundled default model; a seqdeca ``.npz``; or a FLAME ``.pkl``.
        **side_files: for a ``.pkl``, the keyword arguments of :func:`load_flame` (side-file
            paths, component counts). None / "" values are ignored for every kind of model.

    Raises:
        AssetError: one line naming the file, what was expected, and where to get it.
    """
    given = {k: v for k, v in side_files.items() if v is not None and str(v) != ""}
    model = _optional(path)
    if model is not None and model.suffix.lower() == ".pkl":
        return load_flame(model, **given)
    if given:
        names = ", ".join(sorted(given))
        raise AssetError(
            f"side files ({names}) only apply to a FLAME .pkl, not to "
            f"{model or 'the bundled default model'}; remove them or point path at generic_model.pkl"
        )
    if model is None:
        from seqdeca.face_model.default import load_default_assets

        return load_default_assets()
    if model.suffix.lower() == ".npz":
        return load_assets(model)
    raise AssetError(
        f"{model}: unknown face-model file type (expected a seqdeca .npz or a FLAME "
        f".pkl); {FLAME_SOURCE}"
    )
