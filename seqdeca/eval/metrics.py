"""Evaluation metrics (docs/design.md, "Metrics"): pure functions on tensors, no model or file I/O.

Every function takes any leading batch shape ``(...)`` unless its docstring says the first
dimension is time ``T``. Invalid frames are marked by NaN: a metric touched by a NaN input is NaN,
and summaries use ``torch.nanmean``. Landmark coordinates may be pixels or normalised [-1, 1]
(y down); the NME is scale free. Vertices are in metres.

* landmark NME: mean 2D point distance divided by the TARGET's outer-eye-corner distance, in %.
* photometric: masked L1, PSNR (dB, images in [0, 1]) and SSIM (11x11 gaussian window,
  sigma 1.5, computed on the whole image with replicate padding, averaged inside the mask).
* temporal: acceleration ``x[t-1] - 2 x[t] + x[t+1]`` and jerk (third difference), the
  Euclidean norm per point averaged over points; in the units of ``x`` per frame^2 (frame^3).
* AU: F1 per AU on frames with a label, flicker (temporal std, flips per second).
* synthetic ground truth: code error (mean absolute difference), vertex error (mm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqdeca.geometry.rotation import axis_angle_to_matrix

__all__ = [
    "IBUG68_OUTER_EYE_CORNERS",
    "acceleration",
    "acceleration_error",
    "au_f1",
    "au_flicker",
    "code_error",
    "finite_difference",
    "inter_ocular_distance",
    "jerk",
    "landmark_nme",
    "masked_l1",
    "masked_psnr",
    "masked_ssim",
    "normalise_landmarks",
    "remove_global_pose",
    "vertex_error_mm",
]

# Outer eye corners (subject's right, left) in the iBUG-68 layout.
IBUG68_OUTER_EYE_CORNERS = (36, 45)

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def inter_ocular_distance(landmarks: torch.Tensor, eye_corners: tuple[int, int]) -> torch.Tensor:
    """Distance between the two outer eye corners in the first two coordinates.

    Args:
        landmarks: (..., L, C>=2) points.
        eye_corners: indices of the (right, left) outer eye corners in the L points.

    Returns:
        (...) distances, in the units of ``landmarks``.
    """
    a, b = eye_corners
    return (landmarks[..., a, :2] - landmarks[..., b, :2]).norm(dim=-1)


def landmark_nme(
    pred: torch.Tensor,
    target: torch.Tensor,
    eye_corners: tuple[int, int],
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalised mean error of landmarks, in percent of the target's inter-ocular distance.

    Args:
        pred: (..., L, C>=2) predicted points (only x, y are used).
        target: (..., L, C>=2) reference points in the same units.
        eye_corners: (right, left) outer eye corner indices (MediaPipe: OUTER_EYE_CORNERS,
            iBUG-68: IBUG68_OUTER_EYE_CORNERS).
        valid: optional (...) bool per frame, or (..., L) bool per point (points outside are
            left out of the mean).

    Returns:
        (...) NME in percent; NaN where the frame is invalid, has no valid point, a NaN
        coordinate, or a zero inter-ocular distance.
    """
    if pred.shape[:-1] != target.shape[:-1]:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    dist = (pred[..., :2] - target[..., :2]).norm(dim=-1)  # (..., L)
    iod = inter_ocular_distance(target, eye_corners)
    iod = torch.where(iod > 0, iod, torch.full_like(iod, float("nan")))
    if valid is not None and valid.shape == dist.shape:
        point_ok = valid.bool()
        count = point_ok.sum(-1)
        total = torch.where(point_ok, dist, torch.zeros_like(dist)).sum(-1)
        mean = torch.where(count > 0, total / count.clamp(min=1), torch.nan)
        return 100.0 * mean / iod
    nme = 100.0 * dist.mean(-1) / iod
    if valid is not None:
        nme = torch.where(valid.bool().expand_as(nme), nme, torch.full_like(nme, float("nan")))
    return nme


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) values, (..., 1, H, W) weights -> (...) weighted mean; NaN if empty."""
    weights = mask.to(values.dtype).expand_as(values)
    total = (values * weights).flatten(-3).sum(-1)
    norm = weights.flatten(-3).sum(-1)
    return torch.where(norm > 0, total / norm.clamp(min=1e-12), torch.nan)


def masked_l1(render: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute RGB difference inside a mask.

    Args:
        render: (..., 3, H, W) rendered image in [0, 1].
        image: (..., 3, H, W) input image in [0, 1].
        mask: (..., 1, H, W) weights in [0, 1] (a bool or 0/1 face mask).

    Returns:
        (...) mean over masked pixels and channels; NaN for an empty mask.
    """
    return _masked_mean((render - image).abs(), mask)


def masked_psnr(render: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio inside a mask, for images in [0, 1].

    Args:
        render, image: (..., 3, H, W) in [0, 1].
        mask: (..., 1, H, W) weights.

    Returns:
        (...) ``10 log10(1 / MSE)`` in dB (inf for identical images, NaN for an empty mask).
    """
    mse = _masked_mean((render - image) ** 2, mask)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, W, W) normalised gaussian kernel of the SSIM."""
    coords = torch.arange(_SSIM_WINDOW, dtype=dtype, device=device) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def masked_ssim(render: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) averaged inside a mask.

    The SSIM map is computed per channel on the whole image (11x11 gaussian window, sigma 1.5,
    C1 = 0.01^2, C2 = 0.03^2 for a data range of 1, replicate padding so the map has the image's
    size), then averaged over channels and the masked pixels.

    Args:
        render, image: (..., 3, H, W) in [0, 1].
        mask: (..., 1, H, W) weights.

    Returns:
        (...) SSIM in [-1, 1] (1 for identical images); NaN for an empty mask.
    """
    lead, (c, h, w) = render.shape[:-3], render.shape[-3:]
    x = render.reshape(-1, 1, h, w)
    y = image.reshape(-1, 1, h, w).to(x.dtype)
    kernel = _gaussian_window(x.dtype, x.device)
    pad = _SSIM_WINDOW // 2

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(z, (pad, pad, pad, pad), mode="replicate"), kernel)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return _masked_mean(ssim.reshape(*lead, c, h, w), mask)


def finite_difference(x: torch.Tensor, order: int) -> torch.Tensor:
    """Finite difference of ``order`` along time (dimension 0).

    Args:
        x: (T, ...) values.
        order: 1, 2 or 3 (2: ``x[t-1] - 2 x[t] + x[t+1]``).

    Returns:
        (T - order, ...); NaN wherever a touched frame has a NaN (empty when T <= order).
    """
    for _ in range(order):
        x = x[1:] - x[:-1]
    return x


def _difference_magnitude(x: torch.Tensor, order: int, valid: torch.Tensor | None):
    """(T, ...points, D) -> (T - order,) mean over points of the difference's norm."""
    if x.dim() < 2:
        raise ValueError(f"expected (T, ..., D) values, got {tuple(x.shape)}")
    if valid is not None:
        keep = valid.bool().reshape(-1, *([1] * (x.dim() - 1)))
        x = torch.where(keep, x, torch.full_like(x, float("nan")))
    diff = finite_difference(x, order).norm(dim=-1)  # (T - order, ...points)
    return diff.flatten(1).mean(-1) if diff.dim() > 1 else diff


def acceleration(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Magnitude of the second difference over time.

    Args:
        x: (T, ...points, D) per-frame points (e.g. (T, V, 3) vertices or (T, L, 2) landmarks).
        valid: optional (T,) bool; invalid frames count as NaN.

    Returns:
        (T-2,) for the centre frames 1..T-2: mean over points of ``|x[t-1] - 2 x[t] + x[t+1]|``
        (units of x per frame^2); NaN where any of the three frames is invalid or NaN.
    """
    return _difference_magnitude(x, 2, valid)


def jerk(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Magnitude of the third difference over time.

    Args:
        x: (T, ...points, D) per-frame points.
        valid: optional (T,) bool; invalid frames count as NaN.

    Returns:
        (T-3,) mean over points of ``|x[t+2] - 3 x[t+1] + 3 x[t] - x[t-1]|`` (units of x per
        frame^3); NaN where any of the four frames is invalid or NaN.
    """
    return _difference_magnitude(x, 3, valid)


def acceleration_error(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Distance between the second differences of a prediction and of its ground truth.

    Unlike :func:`acceleration`, this is zero only when the prediction moves as the truth does:
    a jittering prediction and an over-smoothed one both score above zero.

    Args:
        pred, target: (T, ...points, D) per-frame points in the same units.
        valid: optional (T,) bool; invalid frames count as NaN.

    Returns:
        (T-2,) for the centre frames 1..T-2: mean over points of
        ``|accel(pred)[t] - accel(target)[t]|``; NaN where any of the three frames is invalid.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} and {tuple(target.shape)}")
    return _difference_magnitude(pred - target, 2, valid)  # the difference is linear


def remove_global_pose(vertices: torch.Tensor, global_pose: torch.Tensor) -> torch.Tensor:
    """Express vertices in the head frame: centre them, then undo the global rotation.

    With ``v = R h + t`` per frame, ``v - mean(v) = R (h - mean(h))``, so the result equals the
    centred head-frame mesh whatever the rotation centre and translation.

    Args:
        vertices: (..., V, 3) posed vertices.
        global_pose: (..., 3) axis-angle head rotation (radians).

    Returns:
        (..., V, 3) ``R^T (v - mean_V(v))``.
    """
    rotation = axis_angle_to_matrix(global_pose.to(vertices.dtype))  # (..., 3, 3)
    centred = vertices - vertices.mean(-2, keepdim=True)
    # Row vectors: (R^T c)^T = c^T R.
    return centred @ rotation


def normalise_landmarks(landmarks: torch.Tensor, eye_corners: tuple[int, int]) -> torch.Tensor:
    """Centre 2D landmarks on their mean and divide by their inter-ocular distance.

    Args:
        landmarks: (..., L, C>=2) points (only x, y are used).
        eye_corners: (right, left) outer eye corner indices.

    Returns:
        (..., L, 2) scale- and translation-free points (NaN where the distance is zero).
    """
    xy = landmarks[..., :2]
    iod = inter_ocular_distance(landmarks, eye_corners)
    iod = torch.where(iod > 0, iod, torch.full_like(iod, float("nan")))
    return (xy - xy.mean(-2, keepdim=True)) / iod[..., None, None]


def au_f1(
    probabilities: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """F1 score per action unit over frames that have a label.

    Args:
        probabilities: (..., T, K) predicted probabilities in [0, 1] (NaN frames are skipped).
        labels: (..., T, K) 1 present, 0 absent, -1 (or any negative / NaN) unknown.
        threshold: an AU is predicted present when its probability is >= threshold.

    Returns:
        (..., K) ``2 TP / (2 TP + FP + FN)``; NaN for an AU without any labelled frame, 0 when
        it has labels but no positive in either labels or predictions (scikit-learn's default).
    """
    known = (labels >= 0) & torch.isfinite(probabilities)  # NaN labels compare False
    truth = (labels > 0.5) & known
    predicted = (probabilities >= threshold) & known
    tp = (truth & predicted).sum(-2).to(probabilities.dtype)
    fp = (~truth & predicted).sum(-2).to(probabilities.dtype)
    fn = (truth & ~predicted).sum(-2).to(probabilities.dtype)
    denominator = 2 * tp + fp + fn
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
    return torch.where(known.any(-2), f1, torch.full_like(f1, float("nan")))


def au_flicker(
    probabilities: torch.Tensor, fps: float, threshold: float = 0.5
) -> dict[str, torch.Tensor]:
    """Temporal instability of AU probabilities.

    Args:
        probabilities: (T, K) per-frame probabilities; NaN rows are invalid frames.
        fps: frames per second of the clip.
        threshold: presence threshold for counting flips.

    Returns:
        ``{"std": (K,), "flips_per_s": (K,)}``: the population standard deviation over finite
        frames, and the number of changes of the thresholded state between consecutive finite
        frames divided by the time those pairs span (pairs / fps). NaN when undefined.
    """
    finite = torch.isfinite(probabilities)
    count = finite.sum(0).to(probabilities.dtype)
    zeros = torch.zeros_like(probabilities)
    mean = torch.where(finite, probabilities, zeros).sum(0) / count.clamp(min=1)
    var = torch.where(finite, (probabilities - mean) ** 2, zeros).sum(0) / count.clamp(min=1)
    std = torch.where(count > 0, var.sqrt(), torch.full_like(var, float("nan")))
    state = probabilities >= threshold
    pair_ok = finite[1:] & finite[:-1]
    flips = ((state[1:] != state[:-1]) & pair_ok).sum(0).to(probabilities.dtype)
    pairs = pair_ok.sum(0).to(probabilities.dtype)
    rate = torch.where(pairs > 0, flips * fps / pairs.clamp(min=1), torch.nan)
    return {"std": std, "flips_per_s": rate}


def code_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of code vectors.

    Args:
        pred, target: (..., D) codes (e.g. expression coefficients, axis-angle jaw pose).

    Returns:
        (...) mean over D of ``|pred - target|``.
    """
    return (pred - target).abs().mean(-1)


def vertex_error_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-vertex Euclidean distance in millimetres.

    Args:
        pred, target: (..., V, 3) vertices in metres.

    Returns:
        (...) mean over V of ``|pred - target|`` times 1000.
    """
    return 1000.0 * (pred - target).norm(dim=-1).mean(-1)
