"""iBUG-68 jaw-contour weights follow the landmark source, in the training loss and in fit mode."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from seqdeca.config import load_config
from seqdeca.config.schema import FitConfig, LossConfig
from seqdeca.errors import UserError
from seqdeca.face_model.fitting import fit_to_landmarks
from seqdeca.inference.fit import fit_point_weights
from seqdeca.losses import coarse_weights, landmark_point_weights
from seqdeca.losses.landmarks import (
    CONTOUR_PROFILES,
    JAW_CONTOUR,
    LANDMARK_SOURCES,
    contour_weights,
    deca_landmark_weights,
    landmark68_weights,
    landmark_loss,
)
from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE, MEDIAPIPE105
from seqdeca.train.steps import SkipLog, coarse_terms

DECA_JAW = [1.0] * 5 + [2.0, 2.0] + [1.0] * 3 + [2.0, 2.0] + [1.0] * 5  # DECA's lossfunc.py


def test_detector_source_keeps_decas_weights_exactly() -> None:
    torch.testing.assert_close(landmark68_weights("detector"), deca_landmark_weights())
    assert contour_weights("detector").tolist() == DECA_JAW
    cfg = load_config(None, ["loss.landmark_source=detector"])
    torch.testing.assert_close(landmark_point_weights(cfg.loss), deca_landmark_weights())


def test_mediapipe_source_changes_only_the_jaw() -> None:
    deca = deca_landmark_weights()
    ours = landmark_point_weights(LossConfig())  # the default source is "mediapipe"
    assert LossConfig().landmark_source == "mediapipe"
    assert ours[list(JAW_CONTOUR)].tolist() == list(CONTOUR_PROFILES["mediapipe"])
    torch.testing.assert_close(ours[17:], deca[17:])
    assert not torch.equal(ours, deca)  # fails if the source were ignored


@pytest.mark.parametrize("source", LANDMARK_SOURCES)
def test_contour_weight_overrides_every_jaw_point(source: str) -> None:
    cfg = load_config(None, [f"loss.landmark_source={source}", "loss.contour_weight=0.5"])
    weights = landmark_point_weights(cfg.loss)
    assert weights[list(JAW_CONTOUR)].tolist() == [0.5] * 17
    torch.testing.assert_close(weights[17:], deca_landmark_weights()[17:])
    assert contour_weights(source, 0.0).sum() == 0


def test_unknown_source_is_refused_in_one_line() -> None:
    with pytest.raises(UserError) as err:
        landmark_point_weights(LossConfig(landmark_source="fan"))
    message = str(err.value)
    assert "\n" not in message
    assert "'fan'" in message and "mediapipe" in message and "detector" in message


def _landmark_only(source: str) -> LossConfig:
    cfg = LossConfig(landmark_source=source)
    for name in coarse_weights(cfg):
        setattr(cfg, name, 0.0)
    cfg.landmark = 1.0
    return cfg


def test_training_term_uses_the_configured_source() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 68, 2, generator=gen) * 2 - 1
    pred = target.clone()
    pred[..., 5, 0] += 0.2  # a jaw point DECA weights 2
    pred[..., 40, 1] -= 0.1  # an eye point, weight 1 for every source
    batch = SimpleNamespace(landmarks68=target, valid=torch.ones(2, 3, dtype=torch.bool))
    out = SimpleNamespace(decoded=SimpleNamespace(landmarks68=pred))  # what the term reads
    values = {}
    for source in LANDMARK_SOURCES:
        terms = coarse_terms(
            out, batch, loss_cfg=_landmark_only(source), mediapipe_ids=None, skips=SkipLog()
        )
        assert set(terms) == {"landmark"}
        expected = landmark_loss(pred, target, batch.valid, landmark68_weights(source))
        torch.testing.assert_close(terms["landmark"], expected)
        values[source] = float(terms["landmark"])
    assert values["detector"] != pytest.approx(values["mediapipe"])
    with pytest.raises(UserError, match="unknown landmark source"):
        coarse_terms(
            out, batch, loss_cfg=_landmark_only("fan"), mediapipe_ids=None, skips=SkipLog()
        )


def test_fit_point_weights_pick_the_jaw_points() -> None:
    ids = np.union1d(MEDIAPIPE105, IBUG68_FROM_MEDIAPIPE)  # the bundled model's fitted points
    weights = fit_point_weights(ids, 0.25)
    jaw = np.isin(ids, IBUG68_FROM_MEDIAPIPE[:17])
    assert jaw.sum() == 17
    assert (weights[jaw] == 0.25).all() and (weights[~jaw] == 1).all()
    default = fit_point_weights(IBUG68_FROM_MEDIAPIPE, FitConfig().contour_weight)
    assert (default[:17] == 2).all() and (default[17:] == 1).all()
    assert (fit_point_weights(IBUG68_FROM_MEDIAPIPE[17:], 0.0) == 1).all()  # no jaw: no change
    with pytest.raises(UserError, match="inference.fit.contour_weight must be >= 0"):
        fit_point_weights(ids, -1.0)


@pytest.fixture
def one_thread():
    """Fitting runs many small operations: one intra-op thread is fastest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fit_mode_follows_the_contour_weight(one_thread) -> None:
    """Jaw targets moved off the model: weighting the jaw more pulls the fit towards them."""
    from seqdeca.face_model.from_config import (
        face_model_assets_from_config,
        face_model_from_config,
    )
    from seqdeca.inference.fit import ClipFitter

    cfg = load_config(None, ["inference.fit.smoothness=0", "inference.fit.iterations=6"])
    model = face_model_from_config(cfg.face_model)
    assets = face_model_assets_from_config(cfg.face_model)
    out = model(shape=torch.zeros(2, model.num_shape))
    from seqdeca.geometry.camera import project_weak_perspective

    pts = model.landmarks(out.vertices, "mediapipe478")
    target = project_weak_perspective(pts, torch.tensor([[7.0, 0.0, 0.0]]).expand(2, 3))[..., :2]
    target = target.clone()
    target[:, IBUG68_FROM_MEDIAPIPE[:17], 1] += 0.08  # jaw targets lower than the mesh allows
    jaw_error = {}
    for weight in (0.0, 4.0):
        fit_cfg = FitConfig(smoothness=0.0, iterations=6, contour_weight=weight)
        fitter = ClipFitter(model, assets, fit_cfg, window=1)
        sub = target[:, fitter.mediapipe_ids]
        valid = np.ones(2, dtype=bool)
        fitter.fit_shape(sub, valid)
        res = fitter.fit_chunk(sub, valid, slice(0, 2))
        jaw = torch.from_numpy(np.isin(fitter.mediapipe_ids, IBUG68_FROM_MEDIAPIPE[:17]))
        jaw_error[weight] = float((res.landmarks_2d - sub)[:, jaw].norm(dim=-1).mean())
    assert jaw_error[4.0] < 0.8 * jaw_error[0.0]
    for bad in (np.ones(3), -np.ones(478), np.zeros(478)):
        with pytest.raises(ValueError, match="landmark_weights must be"):
            fit_to_landmarks(model, target, "mediapipe478", landmark_weights=bad)
