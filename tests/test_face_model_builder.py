"""The default-model builder (alignment, statistics, topology, rig, UVs), fitting, the bundled model."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from skimage import data as skdata
from torch.testing import assert_close

from seqdeca.face_model import DEFAULT_MODEL_PATH, JOINT_NAMES, FaceModel, load_assets
from seqdeca.face_model.fitting import fit_to_landmarks
from seqdeca.geometry import axis_angle_to_matrix, project_weak_perspective
from seqdeca.model_builder import alignment as mal
from seqdeca.model_builder import build as fmb
from seqdeca.model_builder import rig
from seqdeca.model_builder import statistics as mst
from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE, MEDIAPIPE105, contour_loops
from seqdeca.prep.tracking import FaceTracker, track_video

JAW, NECK, LEFT_EYE, RIGHT_EYE = (
    JOINT_NAMES.index(n) for n in ("jaw", "neck", "left_eye", "right_eye")
)


def _random_similarity(rng: np.random.Generator, n: int, max_angle: float = 0.3):
    axis = rng.normal(size=(n, 3))
    angle = rng.uniform(-max_angle, max_angle, size=(n, 1))
    rot = axis_angle_to_matrix(
        torch.as_tensor(axis / np.linalg.norm(axis, axis=1, keepdims=True) * angle)
    ).numpy()
    return rng.uniform(0.5, 2.0, size=n), rot, rng.normal(size=(n, 3)) * 50


@pytest.fixture(scope="module")
def face_points() -> np.ndarray:
    """(478, 3) MediaPipe points of a real face (scikit-image's astronaut), model axes, pixels."""
    with FaceTracker(static_image_mode=True) as tracker:
        points, ok = tracker.process(skdata.astronaut())
    assert ok
    return mal.mediapipe_to_model(points)


@pytest.fixture(scope="module")
def synthetic_clips(face_points) -> list[np.ndarray]:
    """3 "subjects" x 20 frames: smooth identity changes, a jaw-like expression mode, random
    similarity transforms and a little noise, all in model axes (pixels)."""
    rng = np.random.default_rng(0)
    lower = face_points[:, 1] < face_points[13, 1]  # below the upper inner lip
    clips = []
    for _ in range(3):
        subject = face_points + (face_points - face_points.mean(0)) @ (
            np.eye(3) + rng.normal(size=(3, 3)) * 0.05
        )
        subject -= face_points - face_points.mean(0)
        frames = np.repeat(subject[None], 20, axis=0)
        frames[:, lower, 1] -= rng.uniform(0, 8, size=(20, 1))  # open the mouth
        frames += rng.normal(size=frames.shape) * 0.3
        clips.append(mal._apply(frames, *_random_similarity(rng, 20)))
    return clips


@pytest.fixture(scope="module")
def synthetic_build(synthetic_clips):
    aligned, info = mal.align_frames(synthetic_clips)
    config = fmb.BuildConfig(n_shape=2, n_expression=4, texture=False, uv_size=64)
    assets, geo, topology = fmb.geometry_assets(aligned, config)
    return aligned, info, assets, geo, topology


# ------------------------------------------------------------------------------------ alignment


def test_similarity_procrustes_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(4, 30, 3))
    scale, rot, trans = _random_similarity(rng, 4, max_angle=3.0)
    target = mal._apply(source, scale, rot, trans)
    s, r, t = mal.similarity_procrustes(source, target)
    np.testing.assert_allclose(s, scale, rtol=1e-9)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, trans, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)


def test_generalized_procrustes_makes_similar_copies_identical(face_points):
    rng = np.random.default_rng(2)
    frames = mal._apply(
        np.repeat(face_points[None], 8, axis=0), *_random_similarity(rng, 8, max_angle=1.0)
    )
    aligned, mean = mal.generalized_procrustes(frames, np.arange(468))
    np.testing.assert_allclose(aligned, np.broadcast_to(mean, aligned.shape), atol=1e-6)
    np.testing.assert_allclose(mean, frames[0], atol=1e-6)  # keeps the first frame's pose and size


def test_align_frames_is_frontal_upright_and_metric(synthetic_build):
    aligned, info, *_ = synthetic_build
    frames = np.concatenate(aligned)
    ipd = np.linalg.norm(frames[:, 468] - frames[:, 473], axis=-1).mean()
    assert ipd == pytest.approx(0.063, rel=1e-6)
    mean = frames.mean(0)
    assert mean[263, 0] > 0 > mean[33, 0]  # subject's left eye at +x (image right)
    assert mean[10, 1] > 0 > mean[152, 1]  # forehead up, chin down
    assert mean[4, 2] > mean[234, 2] + 0.02  # the nose points at the camera (+z)
    assert abs(mean[33, 0] + mean[263, 0]) < 0.005  # mirror pairs are symmetric about x = 0
    assert 20 < len(info["stable_ids"]) < 200 and info["stable_ids"].max() < 468


def test_pca_basis_gives_unit_variance_codes():
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 12)) * [[3.0] * 12]
    samples -= samples.mean(0)
    basis, explained = mst.pca_basis(samples, 3)
    codes = samples @ np.linalg.pinv(basis)  # (200, 3)
    np.testing.assert_allclose(codes.var(0), 1.0, rtol=1e-6)
    assert np.all(np.diff(explained) <= 0) and explained.sum() <= 1
    assert np.all(basis[np.arange(3), np.abs(basis).argmax(1)] > 0)  # deterministic signs
    assert mst.pca_basis(samples[:3] - samples[:3].mean(0), 5)[0].shape[0] == 2  # rank M - 1


# ------------------------------------------------------------------------------------- topology


def test_triangulation_is_a_clean_oriented_surface(synthetic_build):
    *_, geo, topology = synthetic_build
    faces, xy = topology.faces, rig._unwrapped_xy(geo.template)
    assert np.array_equal(np.unique(faces), np.arange(478))  # every point is used
    assert np.all(
        rig._signed_area(xy, faces) > 1e-8
    )  # counter-clockwise from the front, none degenerate
    directed = Counter((int(a), int(b)) for f in faces for a, b in zip(f, np.roll(f, -1)))
    assert max(directed.values()) == 1  # consistent orientation: no directed edge twice
    undirected = Counter(tuple(sorted(e)) for e in directed)
    assert max(undirected.values()) <= 2  # manifold edges
    edges = set(undirected)
    for name, loop in contour_loops().items():  # contours are edges; holes stay open
        assert all(
            tuple(sorted((int(a), int(b)))) in edges for a, b in zip(loop, np.roll(loop, -1))
        ), name
    centroids = xy[faces[: len(faces) - topology.num_iris_faces]].mean(1)
    for name in ("left_eye", "right_eye", "lips_inner"):
        assert not rig._inside(centroids, xy[contour_loops()[name]]).any()
    assert topology.num_iris_faces == 8 and len(topology.hole_faces) > 0


def test_joint_regressor_is_affine_and_follows_identity(synthetic_build):
    *_, assets, geo, _ = synthetic_build
    reg, template = assets.j_regressor.astype(np.float64), geo.template
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-6)
    joints = reg @ template
    np.testing.assert_allclose(joints[LEFT_EYE], template[473] - [0, 0, 0.012], atol=1e-6)
    np.testing.assert_allclose(joints[RIGHT_EYE], template[468] - [0, 0, 0.012], atol=1e-6)
    assert joints[JAW, 2] < template[4, 2] - 0.05 and joints[JAW, 1] < template[168, 1]
    np.testing.assert_allclose(joints[0], joints[NECK])
    moved = 1.3 * template @ axis_angle_to_matrix(torch.tensor([0.1, 0.4, -0.2])).numpy().T + [
        0.1,
        0.2,
        0.3,
    ]
    expected = 1.3 * joints @ axis_angle_to_matrix(torch.tensor([0.1, 0.4, -0.2])).numpy().T + [
        0.1,
        0.2,
        0.3,
    ]
    np.testing.assert_allclose(reg @ moved, expected, atol=1e-6)


def test_skinning_weights_split_jaw_head_and_eyes(synthetic_build):
    *_, assets, _, _ = synthetic_build
    w = assets.lbs_weights
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert np.all(w >= 0) and np.all(w[:, 0] == 0)  # root gets nothing
    assert w[152, JAW] == 1 and w[14, JAW] == 1 and w[17, JAW] == 1  # chin, lower lip
    assert (
        w[13, JAW] == 0 and w[0, JAW] == 0 and w[10, NECK] == 1 and w[4, NECK] == 1
    )  # upper lip, nose
    assert np.all(w[468:473, RIGHT_EYE] == 1) and np.all(w[473:478, LEFT_EYE] == 1)
    assert 0 < w[:468, JAW].mean() < 0.5  # a smooth fall-off, not a hard cut everywhere
    assert np.any((w[:468, JAW] > 0.05) & (w[:468, JAW] < 0.95))


def test_landmark_sets_sit_on_their_vertices(synthetic_build):
    *_, assets, _, _ = synthetic_build
    model = FaceModel(assets)
    verts = torch.randn(2, 478, 3)
    for name, ids in (
        ("mediapipe478", np.arange(478)),
        ("mediapipe105", MEDIAPIPE105),
        ("ibug68", IBUG68_FROM_MEDIAPIPE),
    ):
        assert_close(model.landmarks(verts, name), verts[:, ids])
        np.testing.assert_array_equal(assets.landmark_vertex_ids[name], ids)


def test_uv_layout_and_masks(synthetic_build):
    *_, assets, _, _ = synthetic_build
    uv = assets.verts_uvs
    assert uv.min() >= 0.03 and uv.max() <= 0.97
    assert uv[10, 1] > uv[152, 1] and uv[263, 0] > uv[33, 0]  # v up, u to the image right
    face, whole = assets.uv_face_mask, assets.uv_face_eye_mask
    assert face.shape == whole.shape == (64, 64) and set(np.unique(face)) <= {0.0, 1.0}
    assert (
        np.all(whole >= face) and whole.sum() > face.sum()
    )  # eyes and mouth only in the whole face
    assert whole[0].sum() == 0 and whole[:, 0].sum() == 0  # the margin is empty


# -------------------------------------------------------------------------------------- fitting


@pytest.fixture(scope="module")
def bundled() -> FaceModel:
    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip(f"bundled model not built yet at {DEFAULT_MODEL_PATH}")
    return FaceModel(load_assets(DEFAULT_MODEL_PATH))


def test_fit_recovers_landmarks_generated_by_the_model(bundled):
    g = torch.Generator().manual_seed(0)
    t = 6
    shape = torch.randn(bundled.num_shape, generator=g)
    params = {
        "shape": shape.expand(t, -1),
        "expression": torch.randn(t, bundled.num_expression, generator=g) * 0.7,
        "global_pose": torch.randn(t, 3, generator=g) * 0.2,
        "jaw_pose": torch.rand(t, 3, generator=g) * torch.tensor([0.2, 0, 0]),
    }
    cam = torch.tensor([[7.0, 0.01, -0.02]]).expand(t, -1)
    verts = bundled(**params).vertices
    target = project_weak_perspective(bundled.landmarks(verts, "mediapipe478"), cam)[..., :2]
    fit = fit_to_landmarks(
        bundled, target, "mediapipe478", shape_prior=0, expression_prior=0, jaw_prior=0
    )
    assert fit.residual.max() < 1e-4  # normalised units: a face about 1 unit wide
    assert fit.shape.shape == (bundled.num_shape,) and fit.expression.shape == (
        t,
        bundled.num_expression,
    )
    assert_close(fit.cam[:, 0], cam[:, 0], rtol=0.02, atol=0)


def test_fit_handles_invalid_frames_subsets_and_smoothing(bundled):
    out = bundled(global_pose=torch.zeros(4, 3))
    target = project_weak_perspective(
        bundled.landmarks(out.vertices, "ibug68"), torch.tensor([[8.0, 0, 0]] * 4)
    )[..., :2]
    target[2] = float("nan")
    fit = fit_to_landmarks(
        bundled, target, "ibug68", n_shape=2, n_expression=3, smoothness=1.0, refine_steps=20
    )
    assert torch.isnan(fit.residual[2]) and fit.residual[[0, 1, 3]].max() < 2e-3
    assert fit.shape.shape == (2,) and fit.expression.shape == (4, 3)
    with pytest.raises(ValueError, match="points"):
        fit_to_landmarks(bundled, target, "mediapipe105")


# ------------------------------------------------------------------------------ bundled model


def test_bundled_model_rig_behaves(bundled):
    assets = load_assets(DEFAULT_MODEL_PATH)
    assert assets.name == "seqdeca-default" and DEFAULT_MODEL_PATH.stat().st_size < 5e6
    assert {"mediapipe478", "mediapipe105", "ibug68"} <= set(assets.landmarks)
    assert (
        assets.texture_mean.shape == (3, 256, 256)
        and 0 <= assets.texture_mean.min() <= assets.texture_mean.max() <= 1
    )
    assert assets.meta["n_expression"] == assets.num_expression and "clips" in assets.meta
    rest = bundled(jaw_pose=torch.zeros(1, 3)).vertices[0]
    opened = bundled(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]])).vertices[0]
    gap = lambda v: float(v[13, 1] - v[14, 1])
    assert gap(opened) > gap(rest) + 0.01  # positive jaw_pose[0] opens the mouth (> 1 cm)
    assert_close(opened[10], rest[10])  # the forehead stays
    turned = bundled(eye_pose=torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.3, 0.0]])).vertices[0]
    assert (
        float(turned[468, 0] - rest[468, 0]) > 0.002
        and float(turned[473, 0] - rest[473, 0]) > 0.002
    )
    assert_close(turned[:468], rest[:468])


# ---------------------------------------------------------------------------- sample-clip checks


@pytest.fixture(scope="module")
def sample_tracks(shared_clips):
    videos = sorted(shared_clips.glob("*.mp4"))
    return videos, [track_video(v) for v in videos]


def test_leave_one_out_residual_on_sample_clips(sample_tracks):
    videos, tracks = sample_tracks
    config = fmb.BuildConfig(texture=False)
    rows = fmb.evaluate_leave_one_out(
        videos, config=config, tracks=tracks, frame_step=4, iterations=15
    )
    full = np.mean([r["full"] for r in rows])
    assert full <= 1.0, fmb.format_residual_table(rows)  # docs/face_model.md reports ~0.83
    assert all(r["full"] < r["template"] for r in rows)


def test_build_with_texture_is_deterministic(sample_tracks):
    videos, tracks = sample_tracks
    pick = [i for i, v in enumerate(videos) if v.name.startswith(("0Fi83", "PbgB2"))]
    config = fmb.BuildConfig(n_expression=6, uv_size=64, texture_step=4, build_date="2026-01-01")
    builds = [
        fmb.build_face_model(
            [videos[i] for i in pick], tracks=[tracks[i] for i in pick], config=config
        )
        for _ in range(2)
    ]
    (a, report), (b, _) = builds
    for key in (
        "v_template",
        "shapedirs",
        "exprdirs",
        "faces",
        "texture_mean",
        "texture_basis",
        "uv_face_mask",
    ):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.texture_mean.shape == (3, 64, 64) and a.texture_basis.shape == (1, 3, 64, 64)
    assert 0.1 < a.texture_mean[:, a.uv_face_mask > 0].mean() < 0.9
    assert report["build_date"] == "2026-01-01" and [c["file"] for c in report["clips"]] == [
        videos[i].name for i in pick
    ]
