"""Fit a face model to 2D landmark tracks of one clip (a batched optimisation, no frame loop).

The model's landmarks are projected with DECA's weak-perspective camera
(:func:`seqdeca.geometry.project_weak_perspective`) and compared with target landmarks in
normalised image coordinates (x right, y DOWN). One identity code is shared by the clip; every
frame has its own expression, global pose, jaw pose and camera. Neck and eye poses stay zero.

Objective (means, so that the weights do not depend on T or L)::

    data   = mean_{valid t, l}  w_l * |proj_tl - target_tl|^2 / r^2
    prior  = shape_prior * mean(shape^2) + expression_prior * mean(expression^2)
             + jaw_prior * mean(jaw_pose^2)
    smooth = smoothness * mean_t |p_{t+1} - p_t|^2,  p = (expression, global pose, jaw, cam)

``r`` is the RMS radius of the target landmarks about their centroid, so the weights do not
depend on how large the face is in the image. FLAME-like codes have about unit variance, so the
priors are plain L2 terms.

Optimisation: a closed-form rigid start (orthographic Procrustes of the template landmarks onto
every frame), then Levenberg-Marquardt on the data and prior terms -- frames are independent
given the shared identity, so the normal equations are block-diagonal plus a border, solved with
a Schur complement, and the Jacobian comes from one forward-mode pass per parameter column for
all frames at once -- then, when ``smoothness > 0`` (or ``refine_steps`` is set), Adam on the
full objective.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.autograd.forward_ad as fwad

from seqdeca.face_model.layer import FaceModel
from seqdeca.geometry.camera import project_weak_perspective
from seqdeca.geometry.rotation import matrix_to_axis_angle

__all__ = ["FitResult", "fit_to_landmarks", "fit_windows", "prepare_forward_mode"]


@dataclass
class FitResult:
    """Per-clip fitted parameters (float32, on the model's device).

    Attributes:
        shape: (S,) identity code shared by the clip (S may be 0).
        expression: (T, E) expression codes (E may be 0).
        global_pose: (T, 3) axis-angle radians.
        jaw_pose: (T, 3) axis-angle radians.
        cam: (T, 3) weak-perspective camera (scale, tx, ty).
        landmarks_2d: (T, L, 2) fitted projected landmarks, normalised coordinates (y down).
        residual: (T,) mean 2D distance between fitted and target landmarks per frame, in
            normalised image units (NaN for invalid frames).
        loss: final value of the objective.
    """

    shape: torch.Tensor
    expression: torch.Tensor
    global_pose: torch.Tensor
    jaw_pose: torch.Tensor
    cam: torch.Tensor
    landmarks_2d: torch.Tensor
    residual: torch.Tensor
    loss: float


class _Problem:
    """Packed parameters, targets and objective of one fit (internal).

    Per-frame parameters ``x`` (T, P) are [expression E | global pose 3 | jaw 3 | log scale 1 |
    image offset 2] where the offset is ``scale * (tx, ty)`` (better conditioned than t).
    """

    def __init__(
        self,
        model: FaceModel,
        target: torch.Tensor,
        valid: torch.Tensor,
        name: str,
        *,
        n_shape: int,
        n_expression: int,
        weights: torch.Tensor,
        priors: dict,
        fit_jaw: bool,
        independent: bool = False,
    ) -> None:
        t = target.shape[0]
        self.model, self.name, self.priors = model, name, priors
        self.target, self.valid = target, valid
        self.weights = weights / weights.mean()
        self.e = n_expression
        self.x = target.new_zeros(t, n_expression + 9)
        self.shape = target.new_zeros(n_shape)
        self.fixed_shape: torch.Tensor | None = None  # (S,) identity kept fixed (not optimised)
        # independent: every frame is its own problem (own scale normalisation and priors, no
        # shared term).
        self.independent = independent
        if independent:
            centred = target - target.mean(1, keepdim=True)
            radius2 = (centred**2).sum(-1).mean(-1)
            self.radius2 = torch.where(valid, radius2, torch.ones_like(radius2)).clamp_min(1e-12)
        else:
            centred = target[valid] - target[valid].mean(1, keepdim=True)
            self.radius2 = (centred**2).sum(-1).mean().clamp_min(1e-12)
        per = 1 if independent else t  # priors are means over the frames of the problem
        # Per-parameter L2 weights of the objective (prior terms), and which columns move.
        d = target.new_zeros(n_expression + 9)
        d[:n_expression] = priors["expression"] / max(per * n_expression, 1)
        d[n_expression + 3 : n_expression + 6] = priors["jaw"] / (3 * per)
        self.prior_x = d
        self.prior_s = target.new_full((n_shape,), priors["shape"] / max(n_shape, 1))
        self.active = torch.ones_like(d, dtype=torch.bool)
        self.active[n_expression + 3 : n_expression + 6] = fit_jaw

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        scale = x[:, self.e + 6 : self.e + 7].exp()
        return torch.cat([scale, x[:, self.e + 7 :] / scale], dim=-1)

    def landmarks3d(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """(T, L, 3) posed model landmarks before the camera."""
        e, t = self.e, x.shape[0]
        shape = shape if self.fixed_shape is None else self.fixed_shape
        shape = shape if shape.dim() == 2 else shape.expand(t, -1)  # shared or one per row
        out = self.model(
            shape=shape,
            expression=x[:, :e],
            global_pose=x[:, e : e + 3],
            jaw_pose=x[:, e + 3 : e + 6],
        )
        return self.model.landmarks(out.vertices, self.name)

    def project(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return project_weak_perspective(self.landmarks3d(x, shape), self.cam(x))[..., :2]

    def row_scale(self) -> torch.Tensor:
        """(T, L, 1) factor that turns coordinate differences into data-term residuals."""
        if self.independent:  # per-frame mean over landmarks, per-frame scale
            n = self.target.shape[1] * self.radius2[:, None]
        else:
            n = self.valid.sum() * self.target.shape[1] * self.radius2
        return (self.valid[:, None] * self.weights[None, :] / n).sqrt()[..., None]

    def residuals(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """(T, 2L) data residuals; the data term is their sum of squares."""
        return ((self.project(x, shape) - self.target) * self.row_scale()).flatten(1)

    def frame_losses(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """(T,) data + prior term of every frame (their sum is the objective without smoothness
        and the shape prior)."""
        return (self.residuals(x, shape) ** 2).sum(-1) + (self.prior_x * x**2).sum(-1)

    def loss(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        data = (self.residuals(x, shape) ** 2).sum()
        prior = (self.prior_x * x**2).sum() + (self.prior_s * shape**2).sum()
        smooth = self.priors["smoothness"]
        if smooth > 0 and x.shape[0] > 1:
            seq = torch.cat([x[:, : self.e + 6], self.cam(x)], dim=-1)
            prior = prior + smooth * ((seq[1:] - seq[:-1]) ** 2).sum(-1).mean()
        return data + prior


def _init_rigid(pb: _Problem) -> None:
    """Closed-form global pose and camera: orthographic Procrustes of the template landmarks."""
    e = pb.e
    with torch.no_grad():
        model_lmk = pb.landmarks3d(pb.x, pb.shape)[0]  # (L, 3) template, no pose
        tgt = pb.target.clone()
        tgt[~pb.valid] = tgt[pb.valid].mean(0)  # invalid frames start from the mean valid frame
        tgt = tgt * tgt.new_tensor([1.0, -1.0])  # y up, like the model
        w = pb.weights[:, None]
        xm = model_lmk - (w * model_lmk).sum(0) / w.sum()
        ym = tgt - (w * tgt).sum(1, keepdim=True) / w.sum()
        # Least-squares 2x3 linear map per frame, then its nearest orthonormal rows.
        a = (xm * w).T @ xm
        b = torch.einsum("lc,tld->tcd", xm * w, ym)  # (T, 3, 2)
        m = torch.linalg.solve(
            a + 1e-12 * torch.eye(3, dtype=a.dtype, device=a.device), b
        ).transpose(1, 2)
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        rows = u @ vh  # (T, 2, 3)
        rot = torch.stack(
            [rows[:, 0], rows[:, 1], torch.cross(rows[:, 0], rows[:, 1], dim=-1)], dim=1
        )
        pb.x[:, e : e + 3] = matrix_to_axis_angle(rot)
        # Scale from the ratio of extents, offset from the centroids (projected y is -s (Y + ty)).
        lmk = pb.landmarks3d(pb.x, pb.shape)[..., :2] * tgt.new_tensor([1.0, -1.0])
        tgt = tgt * tgt.new_tensor([1.0, -1.0])
        wn = pb.weights[None, :, None] / pb.weights.sum()
        lc, tc = (wn * lmk).sum(1, keepdim=True), (wn * tgt).sum(1, keepdim=True)
        s = (
            (wn * (tgt - tc) ** 2).sum((1, 2)) / (wn * (lmk - lc) ** 2).sum((1, 2)).clamp_min(1e-12)
        ).sqrt()
        pb.x[:, e + 6] = s.log()
        pb.x[:, e + 7 :] = (tc[:, 0] - s[:, None] * lc[:, 0]) * tgt.new_tensor([1.0, -1.0])


_duals_ready = False  # a dual tensor has been made in this process


def prepare_forward_mode() -> None:
    """Load torch's forward-mode decompositions once, quietly (they go through the deprecated
    ``jit.script``). Call it before other threads start: warning filters are process-wide."""
    global _duals_ready
    if not _duals_ready:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            with fwad.dual_level():
                fwad.make_dual(torch.zeros(1), torch.zeros(1))
        _duals_ready = True


def _forward_tangent(fn, primals: tuple, tangents: tuple) -> torch.Tensor:
    """The directional derivative of ``fn(*primals)`` along ``tangents`` (forward mode).

    Dual tensors of ``torch.autograd.forward_ad`` rather than ``torch.func.jvp``, whose first
    call imports torch's compiler stack, a one-off cost per process.
    """
    prepare_forward_mode()
    with fwad.dual_level():
        duals = [fwad.make_dual(p, t) for p, t in zip(primals, tangents)]
        tangent = fwad.unpack_dual(fn(*duals)).tangent
    if tangent is None:  # fn does not depend on the primals
        raise RuntimeError("the function's output has no forward-mode tangent")
    return tangent


def _jacobians(pb: _Problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residuals (T, R) and Jacobians w.r.t. per-frame (T, R, P) and shared (T, R, S) parameters.

    Frames are independent given the shape, so one forward-mode pass with the same unit tangent
    on column k of EVERY frame yields column k of every frame's own Jacobian. The columns are
    stacked along the batch (K copies of the T frames, in passes of about 4096 frame
    evaluations), which keeps every operation a plain batched one.
    """
    x, s = pb.x, pb.shape
    t, p = x.shape
    k = p + s.shape[0]
    scale = pb.row_scale()  # (T, L, 1)
    step = max(1, 4096 // max(t, 1))
    cols = []
    for c0 in range(0, k, step):
        kk = min(k, c0 + step) - c0
        xs, ss = x.repeat(kk, 1), s.expand(kk * t, -1).contiguous()
        dx, ds = torch.zeros_like(xs), torch.zeros_like(ss)
        for j in range(c0, c0 + kk):
            rows = slice((j - c0) * t, (j - c0 + 1) * t)
            if j < p:
                dx[rows, j] = pb.active[j].to(x.dtype)  # frozen columns: zero
            else:
                ds[rows, j - p] = 1
        dproj = _forward_tangent(pb.project, (xs, ss), (dx, ds))
        cols.append((dproj.reshape(kk, t, *dproj.shape[1:]) * scale).flatten(2))
    cols_t = torch.cat(cols)  # (P + S, T, R)
    with torch.no_grad():
        res = pb.residuals(x, s)
    return res, cols_t[:p].permute(1, 2, 0), cols_t[p:].permute(1, 2, 0)


def _lm_step(
    pb: _Problem, res: torch.Tensor, jx: torch.Tensor, js: torch.Tensor, lam: float | torch.Tensor
):
    """Solve the damped normal equations (block-diagonal + shared border) for the updates.

    ``lam`` is one damping for all frames, or (T, 1, 1) per frame (no shared parameters then).
    """
    x, s = pb.x, pb.shape
    eye_p = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    a = jx.transpose(1, 2) @ jx + torch.diag_embed(pb.prior_x.expand_as(x))  # (T, P, P)
    a = a + lam * (torch.diagonal(a, dim1=1, dim2=2).clamp_min(1e-9)[..., None] * eye_p)
    a = a + torch.diag_embed((~pb.active).to(x.dtype).expand_as(x))  # frozen columns: identity
    gx = torch.einsum("trp,tr->tp", jx, res) + pb.prior_x * x
    if s.numel() == 0:
        return -torch.linalg.solve(a, gx), s
    b = jx.transpose(1, 2) @ js  # (T, P, S)
    c = torch.einsum("trs,tru->su", js, js) + torch.diag(pb.prior_s)
    c = c + lam * torch.diag(torch.diagonal(c).clamp_min(1e-9))
    gs = torch.einsum("trs,tr->s", js, res) + pb.prior_s * s
    ainv_b = torch.linalg.solve(a, b)  # (T, P, S)
    ainv_g = torch.linalg.solve(a, gx[..., None])[..., 0]  # (T, P)
    schur = c - torch.einsum("tps,tpu->su", b, ainv_b)
    ds = -torch.linalg.solve(schur, gs - torch.einsum("tps,tp->s", b, ainv_g))
    dx = -(ainv_g + torch.einsum("tps,s->tp", ainv_b, ds))
    return dx, ds


def _levenberg_marquardt(pb: _Problem, iterations: int, tol: float = 1e-6) -> None:
    """Minimise data + prior terms (the smoothness term is left to :func:`_adam`)."""
    smooth = pb.priors["smoothness"]
    pb.priors["smoothness"] = 0.0
    lam = 1e-3
    with torch.no_grad():
        loss = float(pb.loss(pb.x, pb.shape))
    for _ in range(iterations):
        res, jx, js = _jacobians(pb)
        for _ in range(10):  # raise the damping until the step helps
            dx, ds = _lm_step(pb, res, jx, js, lam)
            with torch.no_grad():
                new = float(pb.loss(pb.x + dx, pb.shape + ds))
            if np.isfinite(new) and new < loss:
                break
            lam *= 10
        else:
            break
        pb.x, pb.shape = pb.x + dx, pb.shape + ds
        converged = loss - new < tol * max(loss, 1e-30)
        loss, lam = new, max(lam / 10, 1e-9)
        if converged:
            break
    pb.priors["smoothness"] = smooth


def _subproblem(pb: _Problem, rows: torch.Tensor) -> _Problem:
    """A view of an ``independent`` problem restricted to some frames (shared settings)."""
    sub = copy.copy(pb)
    sub.target, sub.valid, sub.radius2 = pb.target[rows], pb.valid[rows], pb.radius2[rows]
    sub.x = pb.x[rows]
    return sub


def _levenberg_marquardt_frames(pb: _Problem, iterations: int, tol: float = 1e-6) -> None:
    """LM for independent frames (no shared parameters): damping, acceptance and stopping per
    frame, so a frame's result does not depend on the other frames of the batch. Each
    iteration only evaluates the frames still moving."""
    t = pb.x.shape[0]
    lam = pb.x.new_full((t,), 1e-3)
    active = pb.valid.clone()
    with torch.no_grad():
        loss = pb.frame_losses(pb.x, pb.shape)
    for _ in range(iterations):
        rows = torch.nonzero(active).flatten()
        if rows.numel() == 0:
            break
        sub = _subproblem(pb, rows)
        res, jx, js = _jacobians(sub)
        old, sub_lam = loss[rows], lam[rows]
        step, new = torch.zeros_like(sub.x), old.clone()
        pending = torch.ones(len(rows), dtype=torch.bool, device=pb.x.device)
        for _ in range(10):  # raise the damping of the frames whose step does not help
            dx, _ = _lm_step(sub, res, jx, js, sub_lam[:, None, None])
            with torch.no_grad():
                trial = sub.frame_losses(sub.x + dx, sub.shape)
            ok = pending & torch.isfinite(trial) & (trial < old)
            step[ok], new[ok] = dx[ok], trial[ok]
            sub_lam = torch.where(pending & ~ok, sub_lam * 10, sub_lam)
            pending &= ~ok
            if not bool(pending.any()):
                break
        moved = ~pending
        pb.x = pb.x.index_put((rows,), sub.x + step)
        loss = loss.index_put((rows,), new)
        lam = lam.index_put((rows,), torch.where(moved, (sub_lam / 10).clamp_min(1e-9), sub_lam))
        still = moved & (old - new >= tol * old.clamp_min(1e-30))  # no helpful step: stop too
        active = active.index_put((rows,), still)


def _adam(pb: _Problem, steps: int, lr: float) -> None:
    if steps <= 0:
        return
    x, s = pb.x.clone().requires_grad_(True), pb.shape.clone().requires_grad_(True)
    opt = torch.optim.Adam([x, s], lr=lr)
    mask = pb.active.to(x.dtype)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        pb.loss(x, s).backward()
        x.grad *= mask
        opt.step()
    pb.x, pb.shape = x.detach(), s.detach()


def fit_to_landmarks(
    model: FaceModel,
    landmarks_2d: torch.Tensor | np.ndarray,
    landmark_name: str,
    *,
    valid: torch.Tensor | np.ndarray | None = None,
    landmark_weights: torch.Tensor | np.ndarray | None = None,
    n_shape: int | None = None,
    n_expression: int | None = None,
    fit_jaw: bool = True,
    shape_prior: float = 1e-5,
    expression_prior: float = 1e-5,
    jaw_prior: float = 1e-5,
    smoothness: float = 0.0,
    iterations: int = 30,
    refine_steps: int | None = None,
    lr: float = 0.005,
    shape: torch.Tensor | np.ndarray | None = None,
    independent_frames: bool = False,
) -> FitResult:
    """Fit identity, expression, pose and camera of ``model`` to a clip's 2D landmarks.

    Args:
        model: the face model (any landmark set, any S and E).
        landmarks_2d: (T, L, 2) target landmarks in normalised image coordinates (x right, y
            down, the SAME scale on both axes; the face should span a good part of [-1, 1]).
        landmark_name: the model's landmark set that matches the targets point by point
            (e.g. "mediapipe478", "mediapipe105", "ibug68").
        valid: (T,) bool, frames with landmarks (default: all; frames with NaNs are invalid).
        landmark_weights: (L,) non-negative per-landmark weights (default: uniform).
        n_shape: identity components to fit (default: all; 0 keeps the template identity).
        n_expression: expression components to fit (default: all; 0 disables expression).
        fit_jaw: optimise the jaw pose (else it stays zero).
        shape_prior, expression_prior, jaw_prior: L2 weights of the codes (module docstring).
        smoothness: weight of the first-difference temporal term (0: frames independent).
        iterations: Levenberg-Marquardt iterations (data and priors).
        refine_steps: Adam steps on the full objective afterwards (default: 200 when
            ``smoothness > 0``, else 0).
        lr: Adam learning rate of the refinement.
        shape: (S',) identity code to keep FIXED (e.g. shared by the chunks of one clip); None
            fits it. With a fixed shape ``n_shape`` and ``shape_prior`` are not used.
        independent_frames: with a fixed ``shape``, treat every frame as its own problem:
            per-frame scale normalisation (``r`` of each frame), per-frame priors and per-frame
            LM damping and stopping, so that a frame's result does not depend on which other
            frames are fitted with it (video chunks). Needs ``smoothness == 0`` (use
            :func:`fit_windows` for temporal smoothing).

    Returns:
        :class:`FitResult`.

    Raises:
        ValueError: shapes disagree, or no frame is valid.
    """
    pb = _solve(
        model,
        landmarks_2d,
        landmark_name,
        valid=valid,
        landmark_weights=landmark_weights,
        n_shape=n_shape,
        n_expression=n_expression,
        fit_jaw=fit_jaw,
        shape_prior=shape_prior,
        expression_prior=expression_prior,
        jaw_prior=jaw_prior,
        smoothness=smoothness,
        iterations=iterations,
        refine_steps=refine_steps,
        lr=lr,
        shape=shape,
        independent_frames=independent_frames,
    )
    out = _result(pb, pb.x, torch.arange(pb.x.shape[0], device=pb.x.device))
    with torch.no_grad():
        out.loss = float(pb.loss(pb.x, pb.shape))
    return out


def _solve(
    model: FaceModel,
    landmarks_2d: torch.Tensor | np.ndarray,
    landmark_name: str,
    *,
    valid: torch.Tensor | np.ndarray | None,
    landmark_weights: torch.Tensor | np.ndarray | None,
    n_shape: int | None,
    n_expression: int | None,
    fit_jaw: bool,
    shape_prior: float,
    expression_prior: float,
    jaw_prior: float,
    smoothness: float,
    iterations: int,
    refine_steps: int | None,
    lr: float,
    shape: torch.Tensor | np.ndarray | None,
    independent_frames: bool,
) -> _Problem:
    """The optimisation behind :func:`fit_to_landmarks` (arguments as there); the solved problem."""
    device = model.v_template.device
    target = torch.as_tensor(landmarks_2d).to(device=device, dtype=torch.float32)
    if target.ndim != 3 or target.shape[-1] != 2:
        raise ValueError(f"landmarks_2d must be (T, L, 2), got {tuple(target.shape)}")
    ok = torch.isfinite(target).all(-1).all(-1)
    if valid is not None:
        ok &= torch.as_tensor(valid).to(device=device, dtype=torch.bool)
    if not ok.any():
        raise ValueError("fit_to_landmarks: no frame has valid landmarks")
    target = torch.where(ok[:, None, None], target, torch.zeros_like(target))
    weights = torch.ones(target.shape[1], device=device)
    if landmark_weights is not None:
        weights = torch.as_tensor(landmark_weights).to(device=device, dtype=torch.float32)
        if weights.shape != target.shape[1:2] or bool((weights < 0).any()) or weights.sum() <= 0:
            raise ValueError(
                f"landmark_weights must be ({target.shape[1]},) non-negative and not all zero, "
                f"got shape {tuple(weights.shape)}"
            )
    n_s = model.num_shape if n_shape is None else min(n_shape, model.num_shape)
    fixed = None
    if shape is not None:
        fixed = torch.as_tensor(shape).to(device=device, dtype=torch.float32).reshape(-1)
        if fixed.numel() > model.num_shape:
            raise ValueError(f"shape has {fixed.numel()} coefficients; model has {model.num_shape}")
        n_s = 0
    if independent_frames and (fixed is None or smoothness > 0):
        raise ValueError("independent_frames needs a fixed shape and smoothness == 0")
    n_e = model.num_expression if n_expression is None else min(n_expression, model.num_expression)
    priors = {
        "shape": shape_prior,
        "expression": expression_prior,
        "jaw": jaw_prior,
        "smoothness": smoothness,
    }
    pb = _Problem(
        model,
        target,
        ok,
        landmark_name,
        n_shape=n_s,
        n_expression=n_e,
        weights=weights,
        priors=priors,
        fit_jaw=fit_jaw,
        independent=independent_frames,
    )
    pb.fixed_shape = fixed
    with torch.no_grad():
        n_points = pb.landmarks3d(pb.x[:1], pb.shape).shape[1]
    if n_points != target.shape[1]:
        raise ValueError(
            f"landmark set {landmark_name!r} has {n_points} points, targets have {target.shape[1]}"
        )
    _init_rigid(pb)
    if independent_frames:
        _levenberg_marquardt_frames(pb, iterations)
    else:
        _levenberg_marquardt(pb, iterations)
    _adam(pb, (200 if smoothness > 0 else 0) if refine_steps is None else refine_steps, lr)
    return pb


def _window_step(
    pb: _Problem, res: torch.Tensor, jx: torch.Tensor, w: int, smooth: float
) -> torch.Tensor:
    """One Gauss-Newton step of the window objectives for rows grouped in windows of ``w``.

    Objective of a window: ``(1/W) sum_s f_s(x_s) + smooth/(W-1) sum_s |x_{s+1} - x_s|^2`` with
    ``f_s`` the frame's data + prior terms (linearised with ``jx``); returns the (m*W, P) step.
    """
    x = pb.x
    m, p = x.shape[0] // w, x.shape[1]
    act = pb.active.to(x.dtype)
    h = jx.transpose(1, 2) @ jx + torch.diag_embed(pb.prior_x.expand_as(x))  # (mW, P, P)
    g = torch.einsum("trp,tr->tp", jx, res) + pb.prior_x * x
    h = h * act[:, None] * act[None, :] + torch.diag_embed((1 - act).expand_as(x))
    g = g * act
    lap = torch.zeros(w, w, dtype=x.dtype, device=x.device)  # path Laplacian D^T D
    idx = torch.arange(w - 1, device=x.device)
    lap[idx, idx] += 1
    lap[idx + 1, idx + 1] += 1
    lap[idx, idx + 1] -= 1
    lap[idx + 1, idx] -= 1
    coupling = smooth / (w - 1) * torch.kron(lap, torch.diag(act))  # (WP, WP)
    big = torch.zeros(m, w * p, w * p, dtype=x.dtype, device=x.device)
    blocks = h.reshape(m, w, p, p) / w
    for s in range(w):
        big[:, s * p : (s + 1) * p, s * p : (s + 1) * p] = blocks[:, s]
    big = big + coupling
    rhs = g.reshape(m, w * p) / w + x.reshape(m, w * p) @ coupling
    return -torch.linalg.solve(big, rhs[..., None])[..., 0].reshape(m * w, p)


def fit_windows(
    model: FaceModel,
    landmarks_2d: torch.Tensor | np.ndarray,
    landmark_name: str,
    *,
    shape: torch.Tensor,
    windows: torch.Tensor | np.ndarray,
    valid: torch.Tensor | np.ndarray | None = None,
    landmark_weights: torch.Tensor | np.ndarray | None = None,
    smoothness: float = 0.0,
    steps: int = 1,
    expression_prior: float = 1e-5,
    jaw_prior: float = 1e-5,
    iterations: int = 30,
    fit_jaw: bool = True,
) -> FitResult:
    """Per-frame fits with a fixed identity, then smoothed over a window around each frame.

    Every frame is first fitted on its own (``independent_frames`` LM). Then each row of
    ``windows`` (W frame indices, the frame of interest at position (W - 1) // 2) is its own
    problem: the frames' data and prior terms (means over the window) plus ``smoothness`` times
    the mean squared first difference of the packed parameters (expression, global and jaw
    pose, log scale, scaled offset) along the window, minimised by ``steps`` Gauss-Newton steps
    from the per-frame answers (the first step reuses the per-frame Jacobians). Results of a
    window do not depend on the other windows, up to float rounding.

    Args:
        model, landmarks_2d, landmark_name: as in :func:`fit_to_landmarks` ((T, L, 2) targets).
        shape: (S',) identity, fixed.
        windows: (m, W) int frame indices (repeat an index for edges / frames without a face).
        valid: (T,) bool (default: frames with finite targets).
        landmark_weights: (L,) non-negative per-landmark weights (default: uniform).
        smoothness: weight of the temporal term (0: the per-frame answers).
        steps: Gauss-Newton steps of the window problems (0: the per-frame answers).
        expression_prior, jaw_prior, iterations, fit_jaw: as in :func:`fit_to_landmarks`.

    Returns:
        :class:`FitResult` of the window centres, per-frame fields (m, ...).
    """
    pb = _solve(
        model,
        landmarks_2d,
        landmark_name,
        valid=valid,
        landmark_weights=landmark_weights,
        n_shape=None,
        n_expression=None,
        fit_jaw=fit_jaw,
        shape_prior=0.0,
        expression_prior=expression_prior,
        jaw_prior=jaw_prior,
        smoothness=0.0,
        iterations=iterations,
        refine_steps=0,
        lr=0.0,
        shape=shape,
        independent_frames=True,
    )
    win = torch.as_tensor(windows, dtype=torch.long, device=pb.x.device)
    m, w = win.shape
    c = (w - 1) // 2
    if smoothness > 0 and steps > 0 and w > 1:
        res, jx, _ = _jacobians(pb)
        flat = win.reshape(-1)
        sub = _subproblem(pb, flat)
        res, jx = res[flat], jx[flat]
        for k in range(steps):
            if k:
                res, jx, _ = _jacobians(sub)
            sub.x = sub.x + _window_step(sub, res, jx, w, smoothness)
        x = sub.x.reshape(m, w, -1)[:, c]
    else:
        x = pb.x[win[:, c]]
    return _result(pb, x, win[:, c])


def _result(pb: _Problem, x: torch.Tensor, frames: torch.Tensor) -> FitResult:
    """FitResult of parameters ``x`` (m, P) for the frames ``frames`` (m,) of ``pb``."""
    e = pb.e
    with torch.no_grad():
        proj = pb.project(x, pb.shape)
        residual = (proj - pb.target[frames]).norm(dim=-1).mean(-1)
        ok = pb.valid[frames]
        residual = torch.where(ok, residual, torch.full_like(residual, float("nan")))
    shape = pb.fixed_shape if pb.fixed_shape is not None else pb.shape
    return FitResult(
        shape=shape,
        expression=x[:, :e].contiguous(),
        global_pose=x[:, e : e + 3].contiguous(),
        jaw_pose=x[:, e + 3 : e + 6].contiguous(),
        cam=pb.cam(x),
        landmarks_2d=proj,
        residual=residual,
        loss=float("nan"),
    )
