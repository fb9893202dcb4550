"""Write small FAKE face-model asset files in the exact official formats, for tests.

The real files (FLAME ``generic_model.pkl``, DECA's data files, texture spaces) are licensed
and never present here. These writers reproduce their containers, key names, dtypes and
layouts with tiny random models (e.g. 30 vertices, 40 faces), so the loaders can be tested for
real. Every writer returns the values it wrote, for comparison.

* ``write_flame_pkl``: a protocol-2 pickle, as written by Python 2, whose arrays are chumpy
  ``Ch`` objects (class path ``chumpy.ch.Ch``, state dict holding ``'x'``) and whose
  ``J_regressor`` is a ``scipy.sparse.csc_matrix`` under its old module path. chumpy itself is
  never needed: a stand-in ``chumpy.ch`` module exists only while pickling.
* ``write_landmark_embedding``: DECA's ``landmark_embedding.npy`` (pickled dict, dynamic entries
  as torch tensors, dynamic rows in DECA's yaw order 0..39, -1..-39).
* ``write_mediapipe_embedding``, ``write_head_template_obj``, ``write_uv_mask_png``,
  ``write_fixed_displacement``, ``write_bfm_albedo``, ``write_flame_texture``.
* ``write_flame_bundle``: all of them in one folder; returns ``load_flame`` keyword arguments.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

N_IDENTITY, N_EXPRESSION = 300, 100  # FLAME's shapedirs split
CONTOUR_ROWS, CONTOUR_POINTS = 79, 17  # DECA's dynamic contour table
# Vertex groups of the tiny model (skinning regions).
LEFT_EYE, RIGHT_EYE, JAW = range(4), range(4, 8), range(8, 16)


def deca_contour_row(yaw: int) -> int:
    """Row of DECA's own contour table for an integer yaw in [-39, 39]."""
    return yaw if yaw >= 0 else 39 - yaw


def make_tiny_flame(seed: int = 0, n_verts: int = 30, n_faces: int = 40) -> dict[str, np.ndarray]:
    """Arrays of a tiny FLAME-format model (float64, as in the real pickle).

    Vertices 0-3 hang on the left eye, 4-7 on the right eye, 8-15 on the jaw (with some neck),
    the rest on root and neck. Pose correctives of a joint are non-zero only on vertices that
    the joint skins, so eye and jaw poses move only their own vertices.
    """
    rng = np.random.default_rng(seed)
    v = rng.normal(scale=0.05, size=(n_verts, 3))
    faces = np.stack([rng.choice(n_verts, 3, replace=False) for _ in range(n_faces)])
    weights = np.zeros((n_verts, 5))
    weights[list(LEFT_EYE), 3] = 1.0
    weights[list(RIGHT_EYE), 4] = 1.0
    jaw_share = rng.uniform(0.5, 1.0, size=len(JAW))
    weights[list(JAW), 2] = jaw_share
    weights[list(JAW), 1] = 1 - jaw_share
    rest = range(JAW.stop, n_verts)
    neck_share = rng.uniform(0.0, 1.0, size=len(rest))
    weights[list(rest), 1] = neck_share
    weights[list(rest), 0] = 1 - neck_share
    regressor = np.zeros((5, n_verts))
    for j, group in enumerate([rest, rest[:6], JAW, LEFT_EYE, RIGHT_EYE]):
        regressor[j, list(group)] = 1.0 / len(group)
    posedirs = rng.normal(scale=1e-3, size=(n_verts, 3, 36))
    for j in range(1, 5):  # correctives of joint j only where joint j skins
        posedirs[weights[:, j] == 0, :, 9 * (j - 1) : 9 * j] = 0
    return {
        "v_template": v,
        "f": faces.astype(np.uint32),
        "shapedirs": rng.normal(scale=1e-3, size=(n_verts, 3, N_IDENTITY + N_EXPRESSION)),
        "posedirs": posedirs,
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
    }


@contextlib.contextmanager
def _fake_chumpy() -> Iterator[type]:
    """A throw-away ``chumpy.ch`` module with a ``Ch`` class that pickles like chumpy's."""

    class Ch:  # chumpy.ch.Ch pickles its instance __dict__ (minus caches); the array is 'x'
        def __init__(self, x: np.ndarray) -> None:
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars: set = set()
            self._itr = None
            self._depends_on_deps: dict = {}
            self._make_dense = False
            self._make_sparse = False

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    module.Ch = Ch
    package.ch = module
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = package, module
    try:
        yield Ch
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def write_flame_pkl(
    path: Path,
    arrays: dict[str, np.ndarray] | None = None,
    *,
    chumpy_keys: tuple[str, ...] = ("v_template", "shapedirs", "posedirs", "J"),
    drop: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """Write a FLAME ``generic_model.pkl`` look-alike; returns the arrays (dense J_regressor)."""
    arrays = dict(make_tiny_flame() if arrays is None else arrays)
    arrays["J"] = arrays["J_regressor"] @ arrays["v_template"]
    with _fake_chumpy() as Ch:
        payload: dict = {"bs_style": "lbs", "bs_type": "lrotmin"}
        for key, value in arrays.items():
            if key in drop:
                continue
            if key == "J_regressor":
                payload[key] = scipy.sparse.csc_matrix(value)
            elif key in chumpy_keys:
                payload[key] = Ch(value)
            else:
                payload[key] = value
        raw = pickle.dumps(payload, protocol=2)
    # Module paths as old (Python 2 era) numpy and scipy wrote them.
    raw = raw.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")
    raw = raw.replace(b"cnumpy._core.", b"cnumpy.core.")
    path.write_bytes(raw)
    return arrays


def write_landmark_embedding(path: Path, n_faces: int, seed: int = 1) -> dict[str, np.ndarray]:
    """DECA's ``landmark_embedding.npy``; returns the contents as numpy (DECA row order)."""
    rng = np.random.default_rng(seed)

    def bary(*shape: int) -> np.ndarray:
        b = rng.uniform(0.05, 1.0, size=(*shape, 3))
        return b / b.sum(-1, keepdims=True)

    truth = {
        "static_lmk_faces_idx": rng.integers(0, n_faces, 51).astype(np.int64),
        "static_lmk_bary_coords": bary(51),
        "dynamic_lmk_faces_idx": rng.integers(0, n_faces, (CONTOUR_ROWS, CONTOUR_POINTS)),
        "dynamic_lmk_bary_coords": bary(CONTOUR_ROWS, CONTOUR_POINTS),
        "full_lmk_faces_idx": rng.integers(0, n_faces, (1, 68)).astype(np.int64),
        "full_lmk_bary_coords": bary(1, 68),
    }
    stored: dict = dict(truth)
    stored["dynamic_lmk_faces_idx"] = torch.from_numpy(truth["dynamic_lmk_faces_idx"]).long()
    stored["dynamic_lmk_bary_coords"] = torch.from_numpy(truth["dynamic_lmk_bary_coords"]).float()
    np.save(path, np.array(stored, dtype=object), allow_pickle=True)
    return truth


def write_mediapipe_embedding(path: Path, n_faces: int, seed: int = 2) -> dict[str, np.ndarray]:
    """FLAME's ``mediapipe_landmark_embedding.npz`` (105 points)."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.05, 1.0, size=(105, 3))
    truth = {
        "lmk_face_idx": rng.integers(0, n_faces, 105).astype(np.uint32),
        "lmk_b_coords": b / b.sum(-1, keepdims=True),
        "landmark_indices": rng.choice(468, 105, replace=False).astype(np.int64),
    }
    np.savez(path, **truth)
    return truth


def write_head_template_obj(
    path: Path, vertices: np.ndarray, faces: np.ndarray, seed: int = 3
) -> dict[str, np.ndarray]:
    """DECA's ``head_template.obj``: v, vt (more than v: UV seams), ``f v/vt v/vt v/vt``."""
    rng = np.random.default_rng(seed)
    uvs = rng.uniform(0, 1, size=(len(vertices) + 7, 2))
    faces_uvs = rng.integers(0, len(uvs), size=faces.shape)
    lines = ["# head template (fake)"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {w:.6f}" for u, w in uvs]
    lines += [
        " ".join(["f"] + [f"{a + 1}/{b + 1}" for a, b in zip(fv, ft)])
        for fv, ft in zip(faces, faces_uvs)
    ]
    path.write_text("\n".join(lines) + "\n")
    return {"verts_uvs": uvs.astype(np.float32), "faces_uvs": faces_uvs}


def write_uv_mask_png(path: Path, size: int = 256) -> np.ndarray:
    """An RGB UV mask PNG; channel 0 is the mask (left half on), other channels differ.

    Returns the expected (256, 256) mask in [0, 1].
    """
    from PIL import Image

    img = np.zeros((size, size, 3), np.uint8)
    img[:, : size // 2, 0] = 255
    img[: size // 4, :, 0] = 128
    img[..., 1] = 77
    img[..., 2] = 200
    Image.fromarray(img).save(path)
    expected = np.zeros((256, 256), np.float32)
    expected[:, :128] = 1.0
    expected[:64, :] = 128 / 255
    return expected


def write_fixed_displacement(path: Path, seed: int = 4) -> np.ndarray:
    arr = np.random.default_rng(seed).normal(scale=1e-3, size=(256, 256))
    np.save(path, arr)
    return arr


def _rgb_images(rng: np.random.Generator, side: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Random RGB mean (side, side, 3) in [0, 1] and basis (k, side, side, 3)."""
    return rng.uniform(0, 1, (side, side, 3)), rng.normal(scale=0.1, size=(k, side, side, 3))


def write_bfm_albedo(path: Path, side: int = 8, k: int = 7, seed: int = 5) -> dict[str, np.ndarray]:
    """``FLAME_albedo_from_BFM.npz``: MU (H*W*3,), PC (H*W*3, K), BGR pixels, [0, 1].

    Returns the RGB truth: mean (3, H, W), basis (K, 3, H, W).
    """
    mean, basis = _rgb_images(np.random.default_rng(seed), side, k)
    mu = mean[..., ::-1].reshape(-1)
    pc = np.stack([b[..., ::-1].reshape(-1) for b in basis], axis=1)
    np.savez(path, MU=mu, PC=pc, specMU=np.zeros_like(mu), specPC=np.zeros_like(pc))
    return {"mean": mean.transpose(2, 0, 1), "basis": basis.transpose(0, 3, 1, 2)}


def write_flame_texture(
    path: Path, side: int = 8, k: int = 6, seed: int = 6
) -> dict[str, np.ndarray]:
    """``FLAME_texture.npz``: mean (H, W, 3), tex_dir (H, W, 3, K), BGR, [0, 255].

    Returns the RGB truth in [0, 1]: mean (3, H, W), basis (K, 3, H, W).
    """
    mean, basis = _rgb_images(np.random.default_rng(seed), side, k)
    tex_dir = np.stack([b[..., ::-1] * 255 for b in basis], axis=-1)
    np.savez(
        path,
        mean=mean[..., ::-1] * 255,
        tex_dir=tex_dir,
        vt=np.zeros((5, 2)),
        ft=np.zeros((3, 3), np.int64),
    )
    return {"mean": mean.transpose(2, 0, 1), "basis": basis.transpose(0, 3, 1, 2)}


def write_flame_bundle(folder: Path, seed: int = 0) -> tuple[dict[str, Path], dict]:
    """Every official file of a tiny FLAME + DECA setup in ``folder``.

    Returns:
        paths: ``load_flame`` keyword arguments (``model_path`` plus side files).
        truth: what each writer returned, by the same keys (``"model"`` for the pickle).
    """
    folder.mkdir(parents=True, exist_ok=True)
    arrays = make_tiny_flame(seed)
    n_faces = len(arrays["f"])
    paths = {
        "model_path": folder / "generic_model.pkl",
        "landmark_embedding": folder / "landmark_embedding.npy",
        "mediapipe_embedding": folder / "mediapipe_landmark_embedding.npz",
        "head_template": folder / "head_template.obj",
        "uv_face_mask": folder / "uv_face_mask.png",
        "uv_face_eye_mask": folder / "uv_face_eye_mask.png",
        "fixed_displacement": folder / "fixed_displacement_256.npy",
        "texture": folder / "FLAME_albedo_from_BFM.npz",
    }
    truth = {
        "model": write_flame_pkl(paths["model_path"], arrays),
        "landmark_embedding": write_landmark_embedding(paths["landmark_embedding"], n_faces),
        "mediapipe_embedding": write_mediapipe_embedding(paths["mediapipe_embedding"], n_faces),
        "head_template": write_head_template_obj(
            paths["head_template"], arrays["v_template"], arrays["f"]
        ),
        "uv_face_mask": write_uv_mask_png(paths["uv_face_mask"], 256),
        "uv_face_eye_mask": write_uv_mask_png(paths["uv_face_eye_mask"], 512),
        "fixed_displacement": write_fixed_displacement(paths["fixed_displacement"]),
        "texture": write_bfm_albedo(paths["texture"]),
    }
    return paths, truth
