"""seqdeca.eval.clip_metrics.frame_series on a batch of windows: the same series as window by
window, with the temporal series taken inside each window."""

from __future__ import annotations

import torch

from seqdeca.eval.clip_metrics import ClipPrediction, FrameReference, frame_series

B, T, E = 2, 5, 4


def _inputs() -> tuple[ClipPrediction, FrameReference, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    rand = lambda *s: torch.rand(*s, generator=g)
    ids = torch.arange(0, 478, 7)
    ids[4], ids[37] = 33, 263  # the model's set holds the outer eye corners
    pred = ClipPrediction(
        landmarks68=rand(B, T, 68, 2) * 2 - 1,
        landmarks_mp=rand(B, T, len(ids), 2) * 2 - 1,
        vertices=rand(B, T, 12, 3),
        global_pose=rand(B, T, 3) * 0.3,
        jaw_pose=rand(B, T, 3) * 0.1,
        expression=rand(B, T, E),
        render=rand(B, T, 3, 8, 8),
        au_probabilities=None,
        seconds=0.0,
    )
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 2] = False
    ref = FrameReference(
        valid=valid,
        landmarks68=rand(B, T, 68, 2) * 2 - 1,
        landmarks=rand(B, T, 478, 2) * 2 - 1,
        images=rand(B, T, 3, 16, 16),
        masks=(rand(B, T, 16, 16) * 3).to(torch.uint8),
    )
    return pred, ref, ids


def test_a_batch_of_windows_scores_like_each_window_alone() -> None:
    pred, ref, ids = _inputs()
    batch = frame_series(pred, ref, mediapipe_ids=ids, input_motion=True)
    expected = {
        "nme_68",
        "nme_mp",
        "accel_landmarks",
        "jerk_landmarks",
        "accel_landmarks_input",
        "jerk_landmarks_input",
        "accel_vertices",
        "jerk_vertices",
        "l1",
        "psnr",
        "ssim",
    }
    assert set(batch) == expected and all(v.shape == (B, T) for v in batch.values())
    for k in range(B):
        window = FrameReference(
            valid=ref.valid[k],
            landmarks68=ref.landmarks68[k],
            landmarks=ref.landmarks[k],
            images=ref.images[k],
            masks=ref.masks[k],
        )
        alone = frame_series(pred.window(k), window, mediapipe_ids=ids, input_motion=True)
        for name, series in alone.items():
            torch.testing.assert_close(batch[name][k], series, equal_nan=True, msg=name)
    # acceleration needs frames t-1..t+1 of the same window: the window ends are NaN
    assert batch["accel_vertices"][:, [0, -1]].isnan().all()
    assert batch["accel_vertices"][0, 1:-1].isfinite().all()
    assert batch["nme_68"][1, 2].isnan() and batch["l1"][1, 2].isnan()


def test_truth_and_no_images() -> None:
    pred, ref, _ = _inputs()
    pred, ref = pred.window(0), FrameReference(ref.valid[0], ref.landmarks68[0], ref.landmarks[0])
    truth = {"expression": torch.zeros(T, E + 2), "jaw_pose": pred.jaw_pose.clone()}
    series = frame_series(pred, ref, mediapipe_ids=None, truth=truth)
    assert "l1" not in series and "nme_mp" not in series
    torch.testing.assert_close(series["jaw_error"], torch.zeros(T))
    # the predicted codes are padded with zeros to the truth's length
    torch.testing.assert_close(series["expression_error"], pred.expression.abs().sum(-1) / (E + 2))
