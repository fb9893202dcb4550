"""The FLAME-format layer: LBS, batching over (B, T), landmarks, DECA's dynamic contour."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import asset_factory as af
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from seqdeca.face_model import (
    FaceModel,
    FaceModelAssets,
    FlameParams,
    barycentric_points,
    deca_pose_to_params,
    load_flame,
)
from seqdeca.face_model.landmarks import chain_yaw_degrees
from seqdeca.geometry.rotation import axis_angle_to_matrix


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict]:
    return af.write_flame_bundle(tmp_path_factory.mktemp("flame"))


@pytest.fixture(scope="module")
def assets(bundle) -> FaceModelAssets:
    paths, _ = bundle
    side = {k: v for k, v in paths.items() if k != "model_path"}
    return load_flame(paths["model_path"], **side, n_texture=4)


@pytest.fixture(scope="module")
def model(assets) -> FaceModel:
    return FaceModel(assets, n_shape=20, n_expression=10)


def _random_params(*batch: int, seed: int = 0, scale: float = 0.3) -> FlameParams:
    g = torch.Generator().manual_seed(seed)

    def r(width: int, s: float = scale) -> torch.Tensor:
        return torch.randn(*batch, width, generator=g) * s

    return FlameParams(
        shape=r(20, 1.0),
        expression=r(10, 1.0),
        global_pose=r(3),
        neck_pose=r(3),
        jaw_pose=r(3),
        eye_pose=r(6),
    )


def _hand_barycentric(
    vertices: np.ndarray, faces: np.ndarray, idx: np.ndarray, bary: np.ndarray
) -> np.ndarray:
    """Reference: (V, 3) vertices -> (L, 3) points, one landmark at a time."""
    out = np.zeros((len(idx), 3))
    for i, (f, b) in enumerate(zip(idx, bary)):
        for k in range(3):
            out[i] += b[k] * vertices[faces[f, k]]
    return out


def test_zero_parameters_give_the_template(model: FaceModel, assets: FaceModelAssets) -> None:
    out = model()
    template = torch.from_numpy(assets.v_template)
    assert out.vertices.shape == (30, 3)
    assert_close(out.vertices, template)
    assert_close(out.joints, torch.from_numpy(assets.j_regressor) @ template)
    zeros = model(FlameParams(shape=torch.zeros(2, 3, 20), eye_pose=torch.zeros(2, 3, 6)))
    assert zeros.vertices.shape == (2, 3, 30, 3)
    assert_close(zeros.vertices, template.expand(2, 3, 30, 3))


def test_global_rotation_rotates_about_the_root_joint(model: FaceModel) -> None:
    params = dataclasses.replace(_random_params(4), global_pose=None)
    rest = model(params)
    rot = torch.tensor([[0.3, -0.5, 0.2], [0.0, 1.0, 0.0], [-0.7, 0.1, 0.4], [0.2, 0.2, -0.9]])
    posed = model(dataclasses.replace(params, global_pose=rot))
    r = axis_angle_to_matrix(rot)  # (4, 3, 3)
    root = rest.joints[:, :1]  # (4, 1, 3)
    expected = torch.einsum("nab,nvb->nva", r, rest.vertices - root) + root
    assert_close(posed.vertices, expected, atol=1e-6, rtol=1e-5)
    assert_close(
        posed.joints,
        torch.einsum("nab,njb->nja", r, rest.joints - root) + root,
        atol=1e-6,
        rtol=1e-5,
    )
    assert not torch.allclose(posed.vertices, rest.vertices, atol=1e-3)


def test_batch_over_time_equals_per_frame_loop(model: FaceModel) -> None:
    params = _random_params(2, 3, seed=1)
    out = model(params)
    assert out.vertices.shape == (2, 3, 30, 3) and out.joints.shape == (2, 3, 5, 3)
    assert out.landmarks68.shape == (2, 3, 68, 3) and out.landmarks_mp.shape == (2, 3, 105, 3)
    for b in range(2):
        for t in range(3):
            frame = FlameParams(
                **{f.name: getattr(params, f.name)[b, t] for f in dataclasses.fields(params)}
            )
            single = model(frame)
            assert single.vertices.shape == (30, 3)
            for key in ("vertices", "joints", "landmarks68", "landmarks_mp"):
                assert_close(getattr(out, key)[b, t], getattr(single, key), atol=1e-6, rtol=1e-5)


def test_gradients_reach_every_parameter(assets: FaceModelAssets) -> None:
    tiny = FaceModel(assets, n_shape=3, n_expression=2).double()
    names = ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose")
    start = _random_params(2, seed=2, scale=0.2)
    inputs = [
        getattr(start, n)[..., : {"shape": 3, "expression": 2}.get(n, 6)].double().requires_grad_()
        for n in names
    ]

    def run(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = tiny(FlameParams(**dict(zip(names, values))))
        return out.vertices, out.landmarks68, out.landmarks_mp

    assert torch.autograd.gradcheck(run, tuple(inputs), eps=1e-6, atol=1e-6, fast_mode=True)
    total = sum(o.sum() for o in run(*inputs))
    grads = torch.autograd.grad(total, inputs)
    for name, grad in zip(names, grads):
        assert grad.abs().sum() > 0, name


def test_named_landmarks_match_hand_computed_barycentric_points(model, assets, bundle) -> None:
    _, truth = bundle
    out = model(_random_params(3, seed=3))
    verts = out.vertices.double().numpy()
    faces = assets.faces
    mp = truth["mediapipe_embedding"]
    for n in range(3):
        expected = _hand_barycentric(
            verts[n], faces, mp["lmk_face_idx"].astype(int), mp["lmk_b_coords"]
        )
        np.testing.assert_allclose(out.landmarks_mp[n].numpy(), expected, atol=1e-6)
    lmk = truth["landmark_embedding"]
    full = model.landmarks(out.vertices, "ibug68")
    assert full.shape == (3, 68, 3)
    expected = _hand_barycentric(
        verts[1], faces, lmk["full_lmk_faces_idx"][0], lmk["full_lmk_bary_coords"][0]
    )
    np.testing.assert_allclose(full[1].numpy(), expected, atol=1e-6)
    assert model.mediapipe_set == "mediapipe105"
    assert model.mediapipe_ids.tolist() == mp["landmark_indices"].tolist()
    with pytest.raises(KeyError, match="mediapipe478"):
        model.landmarks(out.vertices, "mediapipe478")


def test_barycentric_points_per_item_faces() -> None:
    g = torch.Generator().manual_seed(0)
    vertices = torch.randn(2, 6, 3, generator=g)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 2, 4]])
    face_idx = torch.tensor([[0, 2], [1, 1]])
    bary = torch.tensor([[[1.0, 0, 0], [0.2, 0.3, 0.5]], [[0, 0, 1.0], [0.5, 0.5, 0]]])
    points = barycentric_points(vertices, faces, face_idx, bary)
    assert_close(points[0, 0], vertices[0, 0])
    assert_close(points[0, 1], 0.2 * vertices[0, 0] + 0.3 * vertices[0, 2] + 0.5 * vertices[0, 4])
    assert_close(points[1, 0], vertices[1, 5])
    assert_close(points[1, 1], 0.5 * vertices[1, 3] + 0.5 * vertices[1, 4])


def test_yaw_sign_convention() -> None:
    for degrees in (-30.0, 0.0, 12.0, 38.0):
        rot = axis_angle_to_matrix(torch.tensor([[[0.0, math.radians(degrees), 0.0]]]))
        assert_close(chain_yaw_degrees(rot, [0]), torch.tensor([degrees]), atol=1e-4, rtol=0)
    # A positive yaw turns the face (looking along +z) towards +x.
    nose = axis_angle_to_matrix(torch.tensor([0.0, math.radians(20), 0.0])) @ torch.tensor(
        [0.0, 0.0, 1.0]
    )
    assert nose[0] > 0


@pytest.mark.parametrize(
    ("global_yaw", "neck_yaw", "deca_row"),
    [
        (20.0, 0.0, 20),
        (-20.0, 0.0, 59),
        (10.2, 15.1, 25),
        (-3.4, -0.4, 43),
        (60.0, 0.0, 39),
        (-60.0, 0.0, 78),
    ],
)
def test_dynamic_contour_row_for_known_yaw(
    model, assets, bundle, global_yaw, neck_yaw, deca_row
) -> None:
    _, truth = bundle
    lmk = truth["landmark_embedding"]
    params = _random_params(1, seed=4, scale=0.0)
    params.global_pose = torch.tensor([[0.0, math.radians(global_yaw), 0.0]])
    params.neck_pose = torch.tensor([[0.0, math.radians(neck_yaw), 0.0]])
    out = model(params)
    full_pose = model.full_pose(params)
    assert full_pose.shape == (1, 15)
    assert af.deca_contour_row(int(model.contour_row(full_pose)[0]) - 39) == deca_row
    verts = out.vertices[0].double().numpy()
    contour = _hand_barycentric(
        verts,
        assets.faces,
        lmk["dynamic_lmk_faces_idx"][deca_row],
        lmk["dynamic_lmk_bary_coords"][deca_row],
    )
    static = _hand_barycentric(
        verts, assets.faces, lmk["static_lmk_faces_idx"], lmk["static_lmk_bary_coords"]
    )
    np.testing.assert_allclose(out.landmarks68[0, :17].numpy(), contour, atol=1e-6)
    np.testing.assert_allclose(out.landmarks68[0, 17:].numpy(), static, atol=1e-6)
    assert_close(model.landmarks68(out.vertices, full_pose), out.landmarks68)


def test_without_contour_landmarks68_are_the_static_set(assets: FaceModelAssets) -> None:
    static_only = FaceModel(dataclasses.replace(assets, dynamic_contour=None))
    assert not static_only.has_dynamic_contour
    out = static_only(FlameParams(global_pose=torch.tensor([[0.0, 0.5, 0.0]])))
    assert_close(out.landmarks68, static_only.landmarks(out.vertices, "ibug68"))


@pytest.mark.parametrize(("field", "joints"), [("eye_pose", (3, 4)), ("jaw_pose", (2,))])
def test_pose_moves_only_the_vertices_its_joints_skin(model, assets, field, joints) -> None:
    params = dataclasses.replace(_random_params(2, seed=5), **{field: None})
    rest = model(params)
    width = 6 if field == "eye_pose" else 3
    moved = model(dataclasses.replace(params, **{field: torch.full((2, width), 0.4)}))
    change = (moved.vertices - rest.vertices).norm(dim=-1)  # (2, V)
    skinned = torch.from_numpy(assets.lbs_weights[:, list(joints)].sum(1) > 0)
    assert skinned.any() and (~skinned).any()
    assert_close(change[:, ~skinned], torch.zeros_like(change[:, ~skinned]), atol=1e-6, rtol=0)
    assert (change[:, skinned] > 1e-4).all()


def test_deca_pose_and_param_checks(model: FaceModel) -> None:
    pose6 = torch.randn(2, 3, 6) * 0.2
    a = model(deca_pose_to_params(pose6, expression=torch.ones(2, 3, 4) * 0.1))
    b = model(
        global_pose=pose6[..., :3], jaw_pose=pose6[..., 3:], expression=torch.ones(2, 3, 4) * 0.1
    )
    assert_close(a.vertices, b.vertices)
    with pytest.raises(ValueError, match="batch shape"):
        model(shape=torch.zeros(2, 20), jaw_pose=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="21 coefficients"):
        model(shape=torch.zeros(2, 21))
    with pytest.raises(ValueError, match="eye_pose"):
        model(eye_pose=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="n_shape=400"):
        FaceModel(_stub_assets(), n_shape=400)


def _stub_assets() -> FaceModelAssets:
    a = af.make_tiny_flame()
    return FaceModelAssets(
        name="stub",
        v_template=a["v_template"],
        faces=a["f"].astype(np.int64),
        shapedirs=a["shapedirs"][..., :5],
        exprdirs=a["shapedirs"][..., 5:7],
        posedirs=a["posedirs"],
        j_regressor=a["J_regressor"],
        lbs_weights=a["weights"],
        parents=np.array([-1, 0, 1, 1, 1]),
    )


def test_module_properties_buffers_and_albedo(model: FaceModel, assets: FaceModelAssets) -> None:
    assert (model.num_shape, model.num_expression, model.num_texture) == (20, 10, 4)
    assert model.num_vertices == 30 and model.num_joints == 5 and model.faces.shape == (40, 3)
    assert model.has_dynamic_contour and model.verts_uvs.shape == (37, 2)
    assert list(model.parameters()) == [] and model.state_dict() == {}
    stub = FaceModel(_stub_assets())
    assert stub.landmark_names == () and stub.mediapipe_set is None and not stub.has_landmarks68
    out = stub(shape=torch.zeros(3))
    assert out.landmarks68 is None and out.landmarks_mp is None
    code = torch.randn(2, 3, 4)
    albedo = model.albedo(code)
    assert albedo.shape == (2, 3, 3, 8, 8)
    expected = torch.from_numpy(assets.texture_mean) + torch.einsum(
        "k,kchw->chw", code[1, 2], torch.from_numpy(assets.texture_basis)
    )
    assert_close(albedo[1, 2], expected)
    wide = FaceModel(assets).double()(shape=torch.zeros(1, 20, dtype=torch.float64))
    assert wide.vertices.dtype == torch.float64
