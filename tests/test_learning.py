"""Learning evidence (issue 4): training on synthetic clips lowers held-out errors.

A shortened :func:`seqdeca.train.learning_check.run_learning_check` (configs/synthetic_tiny.yaml:
tiny backbones, coarse encoder trained, self-supervised losses only, 150 steps, the last 50 at a
tenth of the rate) on 32 synthetic clips; the 4 held-out clips have other identities, motions,
lights and backgrounds. The untrained model predicts the mean face (the coarse encoder starts
at its prior), so going below its errors means the codes are read from the images. The
assertions fail for a model that does not learn (e.g. a learning rate near zero: the scores stay
at the untrained ones). About a minute on 2 CPU cores.

What this budget shows and what it does not (see tools/learning_curve.py for the long run): the
facial deformation (expression + jaw, as vertices), the jaw and the landmarks improve clearly;
the 10 expression coefficients on their own do not yet (most move the face by under a
millimetre), so their error is checked only not to blow up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seqdeca.config import load_config
from seqdeca.train.learning_check import heldout_scores, load_trained_model, run_learning_check

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic_tiny.yaml"
STEPS = [100, 150]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning")
    return run_learning_check(load_config(CONFIG), out, checkpoints=STEPS, lr_scales=[1.0, 0.1],
                              train_clips=32, heldout_clips=4, frames=8, seed=0)  # fmt: skip


def test_training_lowers_the_heldout_errors(check) -> None:
    before, after = check.untrained, check.trained
    table = check.table()
    assert [p.step for p in check.points] == [0, *STEPS] and before.frames == after.frames > 0
    # The untrained coarse encoder predicts the mean expression: the zero baseline.
    assert before.expression_error == pytest.approx(before.zero_expression_error, rel=1e-6)
    assert before.expression_vertex_mm == pytest.approx(before.zero_expression_vertex_mm, rel=1e-5)
    assert after.expression_vertex_mm < 0.8 * before.expression_vertex_mm, table
    assert after.jaw_error < 0.8 * before.jaw_error, table
    assert after.landmark_nme < 0.75 * before.landmark_nme, table
    assert after.expression_error < 1.1 * before.expression_error, table


def test_exported_model_reproduces_the_last_scores(check) -> None:
    cfg = load_config(check.run_dir / "config.yaml")
    model = load_trained_model(check.run_dir / "model.pt", cfg)
    heldout = Path(cfg.data.sources[0].root).parent / "heldout"
    assert heldout_scores(model, heldout, window=cfg.data.window) == check.trained
