"""Loaders of the official FLAME / DECA files, on fake files in the exact formats."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import asset_factory as af
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from seqdeca.face_model import (
    AssetError,
    FaceModel,
    flame_io,
    load_face_model,
    load_flame,
    read_deca_landmark_embedding,
    read_flame_pickle,
    read_mediapipe_embedding,
    read_obj_uv,
    read_texture_space,
    read_uv_mask,
    save_assets,
)
from seqdeca.face_model import default as default_module


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict]:
    return af.write_flame_bundle(tmp_path_factory.mktemp("flame"))


def _side(paths: dict[str, Path]) -> dict[str, Path]:
    return {k: v for k, v in paths.items() if k != "model_path"}


def _one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------------------- FLAME pickle


def test_flame_pickle_is_chumpy_format_and_loads_without_chumpy(bundle) -> None:
    paths, truth = bundle
    raw = paths["model_path"].read_bytes()
    assert b"cchumpy.ch\nCh\n" in raw and b"cscipy.sparse.csc\ncsc_matrix\n" in raw
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"numpy._core" not in raw
    assert importlib.util.find_spec("chumpy") is None and "chumpy" not in sys.modules
    with pytest.raises(ModuleNotFoundError):  # the plain unpickler would need chumpy
        pickle.loads(raw, encoding="latin1")
    arrays = read_flame_pickle(paths["model_path"], n_shape=300, n_expression=100)
    assert "chumpy" not in sys.modules
    model = truth["model"]
    assert_allclose(arrays["v_template"], model["v_template"], rtol=1e-6)
    assert_array_equal(arrays["faces"], model["f"])
    assert arrays["faces"].dtype == np.int64
    assert_allclose(arrays["shapedirs"], model["shapedirs"][:, :, :300], rtol=1e-6)
    assert_allclose(arrays["exprdirs"], model["shapedirs"][:, :, 300:], rtol=1e-6)
    assert_allclose(arrays["posedirs"], model["posedirs"], rtol=1e-6)
    assert_allclose(arrays["j_regressor"], model["J_regressor"], rtol=1e-6)  # sparse -> dense
    assert_allclose(arrays["lbs_weights"], model["weights"], rtol=1e-6)
    assert arrays["parents"].tolist() == [-1, 0, 1, 1, 1]
    assert arrays["v_template"].dtype == np.float32


def test_flame_pickle_truncates_components(bundle) -> None:
    paths, truth = bundle
    arrays = read_flame_pickle(paths["model_path"], n_shape=20, n_expression=10)
    assert arrays["shapedirs"].shape == (30, 3, 20) and arrays["exprdirs"].shape == (30, 3, 10)
    assert_allclose(arrays["exprdirs"], truth["model"]["shapedirs"][:, :, 300:310], rtol=1e-6)
    with pytest.raises(AssetError) as excinfo:
        read_flame_pickle(paths["model_path"], n_expression=101)
    _one_line_error(excinfo, "shapedirs", "flame.is.tue.mpg.de")


def test_flame_pickle_errors(tmp_path: Path) -> None:
    with pytest.raises(AssetError) as excinfo:
        read_flame_pickle(tmp_path / "generic_model.pkl")
    _one_line_error(excinfo, "generic_model.pkl", "not found", "https://flame.is.tue.mpg.de")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    with pytest.raises(AssetError) as excinfo:
        read_flame_pickle(garbage)
    _one_line_error(excinfo, "garbage.pkl", "FLAME model pickle", "flame.is.tue.mpg.de")
    no_weights = tmp_path / "no_weights.pkl"
    af.write_flame_pkl(no_weights, drop=("weights",))
    with pytest.raises(AssetError) as excinfo:
        read_flame_pickle(no_weights)
    _one_line_error(excinfo, "missing key 'weights'")
    arrays = af.make_tiny_flame()
    arrays["posedirs"] = arrays["posedirs"][:, :, :30]
    bad_shape = tmp_path / "bad_shape.pkl"
    af.write_flame_pkl(bad_shape, arrays)
    with pytest.raises(AssetError) as excinfo:
        read_flame_pickle(bad_shape)
    _one_line_error(excinfo, "'posedirs' has shape (30, 3, 30)", "(30, 3, 36)")


def test_chumpy_expression_without_array_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "expr.pkl"
    with af._fake_chumpy() as Ch:
        value = Ch(np.zeros((30, 3)))
        del value.x  # an operation node: no stored array
        arrays = af.make_tiny_flame()
        payload = {**arrays, "v_template": value}
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(AssetError) as excinfo:
        read_flame_pickle(path)
    _one_line_error(excinfo, "chumpy.ch.Ch", "expr.pkl")


# ------------------------------------------------------------------------------ side files


def test_landmark_embedding_torch_entries_and_contour_order(bundle) -> None:
    paths, truth = bundle
    raw = np.load(paths["landmark_embedding"], allow_pickle=True).item()
    assert isinstance(raw["dynamic_lmk_faces_idx"], torch.Tensor)
    lmks, contour = read_deca_landmark_embedding(paths["landmark_embedding"])
    t = truth["landmark_embedding"]
    assert_array_equal(lmks["ibug68_static"].face_idx, t["static_lmk_faces_idx"])
    assert_allclose(lmks["ibug68_static"].bary, t["static_lmk_bary_coords"], rtol=1e-6)
    assert_array_equal(lmks["ibug68"].face_idx, t["full_lmk_faces_idx"][0])
    assert lmks["ibug68"].bary.shape == (68, 3)
    assert contour.face_idx.shape == (79, 17) and contour.bary.shape == (79, 17, 3)
    for yaw in (-39, -20, -1, 0, 1, 25, 39):  # seqdeca row = yaw + 39
        assert_array_equal(
            contour.face_idx[yaw + 39], t["dynamic_lmk_faces_idx"][af.deca_contour_row(yaw)]
        )
        assert_allclose(
            contour.bary[yaw + 39],
            t["dynamic_lmk_bary_coords"][af.deca_contour_row(yaw)],
            rtol=1e-6,
        )


def test_landmark_embedding_errors(tmp_path: Path) -> None:
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array({"static_lmk_faces_idx": np.zeros(51)}, dtype=object), allow_pickle=True)
    with pytest.raises(AssetError) as excinfo:
        read_deca_landmark_embedding(path)
    _one_line_error(
        excinfo, "landmark_embedding.npy", "missing key 'static_lmk_bary_coords'", "DECA"
    )


def test_mediapipe_embedding(bundle) -> None:
    paths, truth = bundle
    emb, ids = read_mediapipe_embedding(paths["mediapipe_embedding"])
    t = truth["mediapipe_embedding"]
    assert emb.face_idx.dtype == np.int64 and ids.dtype == np.int64
    assert_array_equal(emb.face_idx, t["lmk_face_idx"].astype(np.int64))
    assert_allclose(emb.bary, t["lmk_b_coords"], rtol=1e-6)
    assert_array_equal(ids, t["landmark_indices"])


def test_head_template_obj(bundle) -> None:
    paths, truth = bundle
    obj = read_obj_uv(paths["head_template"])
    assert_array_equal(obj["faces"], truth["model"]["f"])
    assert_array_equal(obj["faces_uvs"], truth["head_template"]["faces_uvs"])
    assert_allclose(obj["verts_uvs"], truth["head_template"]["verts_uvs"], atol=1e-6)
    assert_allclose(obj["vertices"], truth["model"]["v_template"], atol=1e-6)


def test_obj_without_uvs_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "head_template.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(AssetError) as excinfo:
        read_obj_uv(path)
    _one_line_error(excinfo, "head_template.obj", "texture indices")


def test_uv_masks_channel0_and_resize(bundle) -> None:
    paths, truth = bundle
    for key in ("uv_face_mask", "uv_face_eye_mask"):  # 256 and 512 pixels on disk
        mask = read_uv_mask(paths[key])
        assert mask.shape == (256, 256) and mask.dtype == np.float32
        assert_allclose(mask, truth[key], atol=1e-6)


@pytest.mark.parametrize("writer", [af.write_bfm_albedo, af.write_flame_texture])
def test_texture_spaces_flip_and_scale(tmp_path: Path, writer) -> None:
    path = tmp_path / "texture.npz"
    truth = writer(path)
    mean, basis = read_texture_space(path, n_texture=4)
    assert mean.shape == (3, 8, 8) and basis.shape == (4, 3, 8, 8)
    assert_allclose(mean, truth["mean"], atol=1e-6)  # RGB, [0, 1]
    assert_allclose(basis, truth["basis"][:4], atol=1e-6)


def test_texture_chunked_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "FLAME_albedo_from_BFM.npz"
    truth = af.write_bfm_albedo(path, side=6, k=5)
    monkeypatch.setattr(flame_io, "_CHUNK_BYTES", 100)  # many small chunks
    _, basis = read_texture_space(path, n_texture=3)
    assert_allclose(basis, truth["basis"][:3], atol=1e-6)


def test_texture_errors(tmp_path: Path) -> None:
    path = tmp_path / "tex.npz"
    np.savez(path, foo=np.zeros(3))
    with pytest.raises(AssetError) as excinfo:
        read_texture_space(path)
    _one_line_error(excinfo, "tex.npz", "MU and PC", "BFM_to_FLAME")
    af.write_bfm_albedo(path, k=3)
    _, basis = read_texture_space(path, n_texture=50)  # capped at what the file has
    assert basis.shape[0] == 3
    np.savez(path, MU=np.zeros(10), PC=np.zeros((10, 2)))
    with pytest.raises(AssetError) as excinfo:
        read_texture_space(path)
    _one_line_error(excinfo, "square images")


# ---------------------------------------------------------------------------- entry points


def test_load_flame_full_bundle(bundle) -> None:
    paths, truth = bundle
    assets = load_flame(
        paths["model_path"], **_side(paths), n_shape=50, n_expression=20, n_texture=5
    )
    assert assets.num_shape == 50 and assets.num_expression == 20 and assets.num_texture == 5
    assert set(assets.landmarks) == {"ibug68", "ibug68_static", "mediapipe105"}
    assert_array_equal(
        assets.landmark_vertex_ids["mediapipe105"], truth["mediapipe_embedding"]["landmark_indices"]
    )
    assert assets.dynamic_contour is not None
    assert assets.verts_uvs.shape == (37, 2) and assets.faces_uvs.shape == (40, 3)
    assert_allclose(assets.fixed_displacement, truth["fixed_displacement"], rtol=1e-6)
    assert assets.uv_face_eye_mask.shape == (256, 256)
    assert assets.meta["files"]["texture"] == "FLAME_albedo_from_BFM.npz"


def test_load_flame_rejects_embedding_of_another_mesh(tmp_path: Path, bundle) -> None:
    paths, _ = bundle
    other = tmp_path / "landmark_embedding.npy"
    af.write_landmark_embedding(other, n_faces=5000)
    with pytest.raises(AssetError) as excinfo:
        load_flame(paths["model_path"], landmark_embedding=other)
    _one_line_error(excinfo, "landmark_embedding.npy", "40 faces")


def test_load_face_model_dispatch(tmp_path: Path, bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, _ = bundle
    flame = load_face_model(
        paths["model_path"],
        landmark_embedding=paths["landmark_embedding"],
        texture=None,
        head_template="",
    )
    assert flame.name == "flame" and flame.verts_uvs is None
    saved = save_assets(flame, tmp_path / "model.npz")
    again = load_face_model(saved)
    assert_allclose(again.shapedirs, flame.shapedirs)
    params = {"shape": torch.randn(2, 300) * 0.5, "jaw_pose": torch.randn(2, 3) * 0.2}
    torch.testing.assert_close(
        FaceModel(again)(**params).landmarks68, FaceModel(flame)(**params).landmarks68
    )
    with pytest.raises(AssetError) as excinfo:
        load_face_model(saved, texture=paths["texture"])
    _one_line_error(excinfo, "texture", ".pkl")
    with pytest.raises(AssetError) as excinfo:
        load_face_model(tmp_path / "model.obj")
    _one_line_error(excinfo, "model.obj", "unknown face-model file type")
    # The bundled default: missing -> how to build it; present -> loaded.
    monkeypatch.setattr(default_module, "DEFAULT_MODEL_PATH", tmp_path / "absent.npz")
    with pytest.raises(AssetError) as excinfo:
        load_face_model(None)
    _one_line_error(excinfo, "absent.npz", "tools/build_face_model.py")
    monkeypatch.setattr(default_module, "DEFAULT_MODEL_PATH", saved)
    assert load_face_model("").num_vertices == 30


def test_default_model_path_is_inside_the_package() -> None:
    path = default_module.DEFAULT_MODEL_PATH
    assert path.name == "default_face_model.npz" and path.parent.name == "data"
    assert path.parent.parent == Path(default_module.__file__).parent
