"""Detail metrics in the frame-window evaluation (tools/evaluate.py) and the AU condition's
agreement with the true intensities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.config import load_config
from seqdeca.config.loader import config_to_yaml
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.eval.detail_condition import condition_correlation, condition_series
from seqdeca.eval.detail_metrics import DETAIL_PATTERN_AUS
from seqdeca.evaluation.runner import EvalOptions, evaluate
from seqdeca.models.from_config import build_model
from seqdeca.train.state import export_inference_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"
DETAIL = ROOT / "configs" / "experiments" / "detail.yaml"


def _export(root: Path, name: str, overrides: list[str]) -> Path:
    cfg = load_config([DETAIL, TINY], overrides)
    torch.manual_seed(0)
    model = build_model(cfg, load_checkpoints=False)
    return export_inference_checkpoint(
        root / name / "model.pt",
        state_dict=model.state_dict(),
        config_yaml=config_to_yaml(cfg),
        face_model=model.face_model.name,
        stage=cfg.train.stage,
        step=0,
    )


@pytest.fixture(scope="module")
def detail_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detail_eval")
    cfg = load_config(
        [DETAIL, TINY],
        ["synthetic.frames=4", "synthetic.min_frames=0", "synthetic.background=noise"],
    )
    make_synthetic_dataset(root / "data", cfg, clips=1, seed=1, progress=False)
    return root


def test_evaluate_scores_a_detail_checkpoint_on_detail_clips(detail_set: Path) -> None:
    detail = _export(
        detail_set,
        "detail_run",
        ["train.stage=detail", "train.detail_coarse=ground_truth", "model.use_temporal=false"],
    )
    coarse = _export(detail_set, "coarse_run", ["train.stage=temporal"])
    out = detail_set / "out"
    evaluate(
        EvalOptions(
            data=detail_set / "data",
            out=out,
            config=load_config(TINY),
            checkpoints=[detail, coarse],
            progress=False,
            plots=False,
        )
    )
    payload = json.loads((out / "metrics.json").read_text())
    scored = payload["methods"]["detail_run"]["overall"]
    for key in ("displacement_error", "detail_normal_error", "displacement_error/glabella"):
        assert math.isfinite(scored[key]) and scored[key] > 0
    assert payload["units"]["displacement_error"] == "mm"
    # the head's condition against the truth, per pattern (the means of both pool as series)
    assert 0 <= scored["au_condition/glabella"] <= 1
    # a checkpoint not trained through the detail stage has an untrained generator: no score
    assert "displacement_error" not in payload["methods"]["coarse_run"]["overall"]
    report = (out / "metrics.md").read_text()
    assert "## Detail (clips with ground-truth detail)" in report
    assert "| detail_run |" in report.split("## Detail")[1].split("##")[0]


def test_condition_correlation_follows_the_truth_and_its_sign() -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(40, 27, generator=g)
    names = ("AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU17")
    own = truth[:, [MAIN_AU_NAMES.index(a) for a in names]]
    exact = condition_series(own, truth, names, DETAIL_PATTERN_AUS)
    assert set(exact) == {
        f"{k}/{p}" for k in ("au_condition", "au_truth") for p in DETAIL_PATTERN_AUS
    }
    scores = condition_correlation([exact])
    assert scores["condition_correlation_mean"] == pytest.approx(1.0)
    # split over two clips, negated: -1 everywhere
    flipped = condition_series(1 - own, truth, names, DETAIL_PATTERN_AUS)
    halves = [{k: v[:20] for k, v in flipped.items()}, {k: v[20:] for k, v in flipped.items()}]
    assert condition_correlation(halves)["condition_correlation/glabella"] == pytest.approx(-1.0)
    # a constant condition carries nothing: NaN, left out of the mean; no condition: empty
    constant = condition_series(torch.full_like(own, 0.5), truth, names, DETAIL_PATTERN_AUS)
    assert math.isnan(condition_correlation([constant])["condition_correlation/chin"])
    assert condition_correlation([{"displacement_error": torch.ones(3)}]) == {}
    # the 12 Aff-Wild2 AUs have no AU9 or AU17: no nose or chin pattern
    affwild = ("AU1", "AU2", "AU4", "AU6", "AU12")
    part = condition_series(truth[:, :5], truth, affwild, DETAIL_PATTERN_AUS)
    assert "au_condition/nose" not in part and "au_condition/forehead" in part
    with pytest.raises(ValueError, match="condition"):
        condition_series(own, truth[:, :5], names, DETAIL_PATTERN_AUS)
