"""Ground-truth scores of what the temporal stage predicts: expression-only and expression+jaw
vertex error with the true identity, and the acceleration error against the truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqdeca.config import load_config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.eval import metrics as M
from seqdeca.eval.clip_metrics import ClipPrediction, clip_series
from seqdeca.eval.clips import load_clip
from seqdeca.evaluation.runner import _GroundTruth

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


def test_acceleration_error_by_hand():
    t = torch.arange(5.0)
    target = torch.stack([t**2, torch.zeros(5)], -1)[:, None]  # (5, 1, 2): accel 2 in x
    still = torch.zeros(5, 1, 2)
    torch.testing.assert_close(M.acceleration_error(target, target), torch.zeros(3))
    torch.testing.assert_close(M.acceleration_error(still, target), torch.full((3,), 2.0))
    valid = torch.tensor([True, True, False, True, True])
    assert torch.isnan(M.acceleration_error(still, target, valid)).all()


@pytest.fixture(scope="module")
def clip_and_gt(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    cfg = load_config(TINY, ["crop.size=64"])
    make_synthetic_dataset(root, cfg, clips=1, frames=10, seed=4, progress=False)
    clip = load_clip(next((root / "synthetic").iterdir()))
    return clip, _GroundTruth(cfg)


def _prediction(clip, vertices, expression, jaw, global_pose=None) -> ClipPrediction:
    pose = clip.gt["global_pose"] if global_pose is None else global_pose
    return ClipPrediction(
        landmarks68=None,
        landmarks_mp=None,
        vertices=vertices,
        global_pose=pose,
        jaw_pose=jaw,
        expression=expression,
        render=None,
        au_probabilities=None,
        seconds=0.0,
    )


def _series(clip, gt, pred):
    return clip_series(
        pred,
        clip,
        mediapipe_ids=None,
        gt_vertices=gt.vertices(clip),
        expression_meshes=gt.expression_meshes(clip, pred),
    )


def test_the_truth_scores_zero_and_the_mean_face_does_not(clip_and_gt):
    clip, gt = clip_and_gt
    truth = clip.gt
    exact = _series(
        clip, gt, _prediction(clip, gt.vertices(clip), truth["expression"], truth["jaw_pose"])
    )
    for key in (
        "expression_vertex_error",
        "expression_jaw_vertex_error",
        "accel_error",
        "expression_jaw_accel_error",
    ):
        values = exact[key][torch.isfinite(exact[key])]
        assert len(values) > 0 and float(values.abs().max()) < 1e-3, key
    zero = torch.zeros_like(truth["expression"])
    mean_face = _series(
        clip, gt, _prediction(clip, gt.vertices(clip), zero, torch.zeros_like(truth["jaw_pose"]))
    )
    assert float(mean_face["expression_vertex_error"].nanmean()) > 0.05
    assert (
        float(mean_face["expression_jaw_vertex_error"].nanmean())
        >= float(mean_face["expression_vertex_error"].nanmean()) * 0.5
    )


def test_a_motionless_prediction_pays_the_truths_acceleration(clip_and_gt):
    clip, gt = clip_and_gt
    truth_vertices = gt.vertices(clip)
    head = M.remove_global_pose(truth_vertices, clip.gt["global_pose"])
    flat = head.mean(0, keepdim=True).expand_as(head)  # a head that never moves
    series = _series(
        clip,
        gt,
        _prediction(
            clip,
            flat,
            clip.gt["expression"],
            clip.gt["jaw_pose"],
            torch.zeros_like(clip.gt["global_pose"]),
        ),
    )
    truth = _series(
        clip, gt, _prediction(clip, truth_vertices, clip.gt["expression"], clip.gt["jaw_pose"])
    )
    assert float(series["accel_vertices"].nanmean()) < 1e-6  # no motion: no acceleration...
    assert float(series["accel_error"].nanmean()) > 0.0  # ...but an acceleration error
    torch.testing.assert_close(
        series["accel_error"].nanmean(), truth["accel_vertices"].nanmean(), rtol=1e-3, atol=1e-4
    )


def test_identity_jitter_counts_in_accel_error_only(clip_and_gt):
    """A prediction with the true expression and jaw on a jittering head: the whole-mesh
    acceleration error sees the jitter; the expression + jaw one (true identity) does not; and
    jitter in the expression is seen by both."""
    clip, gt = clip_and_gt
    truth = clip.gt
    vertices = gt.vertices(clip)
    wobble = torch.zeros(clip.num_frames, 1, 1)
    wobble[::2] = 0.01  # +-1 % scale every other frame
    jittering = vertices * (1.0 + wobble)
    series = _series(clip, gt, _prediction(clip, jittering, truth["expression"], truth["jaw_pose"]))
    assert float(series["accel_error"].nanmean()) > 0.1
    assert float(series["expression_jaw_accel_error"].nanmean()) < 1e-3
    noisy = truth["expression"] + 0.5 * wobble[:, :, 0] / 0.01 * torch.ones_like(
        truth["expression"]
    )
    series = _series(clip, gt, _prediction(clip, vertices, noisy, truth["jaw_pose"]))
    assert float(series["expression_jaw_accel_error"].nanmean()) > 0.01


def test_mean_face_row_is_the_neutral_truth(clip_and_gt, tmp_path):
    """The evaluation's ``mean-face`` reference: true identity and pose, neutral expression."""
    from seqdeca.evaluation.runner import _References

    clip, gt = clip_and_gt
    pred = gt.mean_face(clip)
    assert bool((pred.expression == 0).all()) and bool((pred.jaw_pose == 0).all())
    torch.testing.assert_close(pred.global_pose, clip.gt["global_pose"].float())
    series = _series(clip, gt, pred)
    code = (clip.gt["expression"].abs().mean(-1))[clip.valid]
    torch.testing.assert_close(series["expression_error"][clip.valid], code.float())
    assert float(series["expression_vertex_error"].nanmean()) > 0.05
    references = _References(gt)
    references.add(clip, None, gt.vertices(clip))
    names = [row.name for row in references.rows()]
    assert names == ["input", "mean-face"] and list(references.mean_face.clips) == [clip.name]
    torch.testing.assert_close(
        references.mean_face.clips[clip.name].series["expression_error"], series["expression_error"]
    )
    no_truth = _GroundTruth(load_config(TINY))
    no_truth.failed = True  # as when the face model cannot be built: no row, no error
    without = _References(no_truth)
    without.add(clip, None, None)
    assert [row.name for row in without.rows()] == ["input"]


def test_gap_series_scores_only_the_interpolated_frames(clip_and_gt):
    import dataclasses

    clip, gt = clip_and_gt
    tracked = torch.ones(clip.num_frames)
    tracked[3:5] = 0.0  # tracking lost on frames 3 and 4: their crops were interpolated
    lost = dataclasses.replace(clip, gt=clip.gt | {"tracked": tracked})
    pred = gt.mean_face(lost)
    series = _series(lost, gt, pred)
    gap = series["expression_jaw_vertex_error_gap"]
    assert torch.isnan(gap[[0, 1, 2, 5]]).all()
    torch.testing.assert_close(gap[3:5], series["expression_jaw_vertex_error"][3:5])
    assert "expression_jaw_vertex_error_gap" not in _series(clip, gt, pred)  # no tracking info
