"""The training loop on CPU: outputs of a run, determinism, resume, non-finite steps, faults.

Tiny backbones (configs/tiny_cpu.yaml) on 2 synthetic prepared clips of 8 frames, windows of
2 frames, batch 1: a step takes well under a second on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from two_process_launch import TWO_CPU_PROCESSES, launcher

from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.models.from_config import build_model
from seqdeca.train import steps as train_steps
from seqdeca.train.loop import TrainingError, train
from seqdeca.train.state import CheckpointError, list_checkpoints
from tools import train_seq

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    make_synthetic_dataset(root, load_config(TINY), clips=2, frames=8, seed=3, progress=False)
    return root


def _overrides(data_root: Path, run_dir: Path, **train_keys) -> list[str]:
    keys = {"max_steps": 4, "checkpoint_every": 2, "keep_checkpoints": 2, "log_every": 1}
    keys |= train_keys
    return [
        "data.window=3",
        "data.min_window=1",
        "data.batch_size=1",
        f"run.output_dir={run_dir}",
        "loss.temporal=0.1",
        *(f"train.{k}={v}" for k, v in keys.items()),
    ]


def _config(data_root: Path, run_dir: Path, **train_keys) -> Config:
    cfg = load_config(TINY, _overrides(data_root, run_dir, **train_keys))
    cfg.data.sources = [DataSourceConfig(root=str(data_root))]
    return cfg


def _losses(run_dir: Path, name: str = "losses.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def reference_run(data_root, tmp_path_factory) -> Path:
    """An uninterrupted 4-step run with checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("run") / "a"
    summary = train(_config(data_root, run_dir))
    assert summary.steps == 4 and summary.skipped_steps == 0
    return run_dir


def test_a_run_writes_checkpoints_events_config_and_model(reference_run, data_root) -> None:
    run_dir = reference_run
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_000002", "step_000004"]
    assert not list((run_dir / "checkpoints").glob(".tmp*"))
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert load_config(run_dir / "config.yaml").train.max_steps == 4
    records = _losses(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"landmark", "photometric", "temporal", "total"} <= set(records[0])
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    saved = torch.load(run_dir / "model.pt", weights_only=False)
    assert saved["stage"] == "temporal" and saved["step"] == 4
    assert "train:" in saved["config_yaml"] and saved["face_model"]


def test_frozen_modules_are_unchanged_and_trained_ones_move(reference_run, data_root) -> None:
    saved = torch.load(reference_run / "model.pt", weights_only=False)["model"]
    torch.manual_seed(0)  # the run's seed: set_seed(run.seed) before build_model
    initial = build_model(_config(data_root, reference_run)).state_dict()
    for prefix in ("coarse_encoder.", "au_net.", "detail_encoder.", "detail_generator."):
        for key in (k for k in initial if k.startswith(prefix)):
            assert_close(saved[key], initial[key], rtol=0, atol=0, msg=key)
    moved = [
        k
        for k in initial
        if k.startswith(("temporal_fusion.", "au_head.")) and not torch.equal(saved[k], initial[k])
    ]
    assert moved, "no trainable parameter changed"


def test_same_seed_and_config_give_identical_losses(reference_run, data_root, tmp_path) -> None:
    train(_config(data_root, tmp_path / "b"))
    assert _losses(tmp_path / "b") == _losses(reference_run)


def test_resume_mid_epoch_continues_the_same_trajectory(reference_run, data_root, tmp_path) -> None:
    run_dir = tmp_path / "c"
    train(_config(data_root, run_dir, max_steps=2))
    assert _losses(run_dir) == _losses(reference_run)[:2]
    copy = tmp_path / "c_copy"
    shutil.copytree(run_dir, copy)
    code = train_seq.main(
        [
            "--config",
            str(TINY),
            "--resume",
            *_overrides(data_root, copy),
            f"data.sources=[{{root: {data_root}}}]",
        ]
    )
    assert code == 0
    assert _losses(copy) == _losses(reference_run)
    assert [p.name for p in list_checkpoints(copy)] == ["step_000002", "step_000004"]


def test_non_finite_losses_are_skipped_then_training_stops(
    data_root, tmp_path, monkeypatch, capsys
) -> None:
    def nan_landmarks(pred, target, valid=None, point_weights=None):
        return pred.sum() * float("nan")

    monkeypatch.setattr(train_steps, "landmark_loss", nan_landmarks)
    cfg = _config(data_root, tmp_path / "nan", max_bad_steps=3, checkpoint_every=0)
    with pytest.raises(TrainingError, match="3 non-finite losses in a row"):
        train(cfg)
    records = _losses(tmp_path / "nan")
    assert [r["skipped"] for r in records] == [True, True, True]
    code = train_seq.main(
        [
            "--config",
            str(TINY),
            *_overrides(data_root, tmp_path / "nan2"),
            "train.max_bad_steps=2",
            f"data.sources=[{{root: {data_root}}}]",
        ]
    )
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("error: training stopped at step 2: 2 non-finite losses in a row")


@pytest.mark.parametrize("damage", ["missing_optimizer", "garbage_weights", "bad_state"])
def test_a_corrupt_checkpoint_is_a_one_line_error(
    reference_run, data_root, tmp_path, capsys, damage
) -> None:
    copy = tmp_path / "d"
    shutil.copytree(reference_run, copy)
    latest = list_checkpoints(copy)[-1]
    if damage == "missing_optimizer":
        (latest / "optimizer.bin").unlink()
    elif damage == "garbage_weights":
        (latest / "model.safetensors").write_bytes(b"not a safetensors file")
    else:
        (latest / "train_state.json").write_text("{")
    with pytest.raises(CheckpointError, match=str(latest.name)):
        train(_config(data_root, copy, max_steps=6), resume="latest")
    code = train_seq.main(
        [
            "--config",
            str(TINY),
            "--resume",
            *_overrides(data_root, copy),
            f"data.sources=[{{root: {data_root}}}]",
        ]
    )
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1 and latest.name in errors[0]


@pytest.mark.slow
def test_two_process_cpu_ddp_smoke_run(data_root, tmp_path) -> None:
    """``accelerate launch --multi_gpu --num_processes 2`` with ACCELERATE_USE_CPU=1 (gloo)."""
    config = tmp_path / "ddp.yaml"
    config.write_text(
        f"_base_: {TINY}\ndata:\n  sources:\n    - root: {data_root}\n"
        f"  val_sources:\n    - root: {data_root}\n"
    )
    run_dir = tmp_path / "ddp"
    monitor = {"validate_every": 2, "val_windows": 1, "images_every": 3}  # main process only
    cmd = [
        launcher(),
        *TWO_CPU_PROCESSES,
        str(ROOT / "tools" / "train_seq.py"),
        "--config",
        str(config),
        *_overrides(data_root, run_dir, max_steps=3, **monitor),
    ]
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            cmd, check=False, env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("2-process DDP run did not finish in 120 s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("3 steps (0 skipped, ") == 1  # only the main process reports
    assert [r["step"] for r in _losses(run_dir)] == [1, 2, 3]
    last = list_checkpoints(run_dir)[-1]
    assert last.name == "step_000003"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in last.iterdir()}
    assert (run_dir / "model.pt").is_file()
    assert [r["step"] for r in _losses(run_dir, "val.jsonl")] == [2, 3]
    assert [p.name for p in (run_dir / "images").iterdir()] == ["step_000003.png"]


# ------------------------------------------------------------------------------ detail stage

DETAIL = ROOT / "configs" / "detail.yaml"


def _detail_config(data_root: Path, run_dir: Path, **train_keys) -> Config:
    keys = {"max_steps": 3, "n_critic": 2} | train_keys
    cfg = load_config([TINY, DETAIL], _overrides(data_root, run_dir, **keys))
    cfg.data.sources = [DataSourceConfig(root=str(data_root))]
    return cfg


@pytest.fixture(scope="module")
def detail_run(data_root, tmp_path_factory) -> Path:
    """An uninterrupted 3-step detail run (2 critic updates per step), checkpoints at 2 and 3."""
    run_dir = tmp_path_factory.mktemp("detail") / "a"
    summary = train(_detail_config(data_root, run_dir))
    assert summary.steps == 3 and summary.skipped_steps == 0
    return run_dir


def test_detail_stage_runs_and_checkpoints_the_critic(detail_run) -> None:
    assert [p.name for p in list_checkpoints(detail_run)] == ["step_000002", "step_000003"]
    names = {p.name for p in list_checkpoints(detail_run)[-1].iterdir()}
    assert {"model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin"} <= names
    records = _losses(detail_run)
    assert [r["step"] for r in records] == [1, 2, 3]
    want = {
        "adversarial",
        "au_regression",
        "detail_photometric",
        "z_reg",
        "z_diff",
        "z_sym",
        "total",
        "D_critic",
        "D_gradient_penalty",
        "D_au_regression",
        "D_total",
    }
    assert want <= set(records[0])
    assert all(
        torch.isfinite(torch.tensor([v for k, v in r.items() if k in want])).all() for r in records
    )
    assert torch.load(detail_run / "model.pt", weights_only=False)["stage"] == "detail"


def test_detail_stage_trains_generator_and_critic_only(detail_run, data_root) -> None:
    from safetensors.torch import load_file

    from seqdeca.models.from_config import build_critic

    cfg = _detail_config(data_root, detail_run)
    torch.manual_seed(cfg.run.seed)  # as the loop: seed, model, then critic
    model = build_model(cfg)
    initial, critic0 = model.state_dict(), build_critic(cfg, model).state_dict()
    saved = torch.load(detail_run / "model.pt", weights_only=False)["model"]
    frozen = ("coarse_encoder.", "au_net.", "temporal_fusion.", "au_head.")
    for key in (k for k in initial if k.startswith(frozen)):
        assert_close(saved[key], initial[key], rtol=0, atol=0, msg=key)
    for prefix in ("detail_encoder.", "detail_generator."):
        assert any(not torch.equal(saved[k], initial[k]) for k in initial if k.startswith(prefix))
    critic = load_file(str(list_checkpoints(detail_run)[-1] / "model_1.safetensors"))
    assert set(critic) <= set(critic0)
    assert any(not torch.equal(critic[k], critic0[k]) for k in critic), "critic did not train"


def test_detail_stage_is_deterministic(detail_run, data_root, tmp_path) -> None:
    train(_detail_config(data_root, tmp_path / "b"))
    assert _losses(tmp_path / "b") == _losses(detail_run)


def test_detail_stage_resume_continues_the_same_trajectory(detail_run, data_root, tmp_path) -> None:
    run_dir = tmp_path / "c"
    train(_detail_config(data_root, run_dir, max_steps=2))
    train(_detail_config(data_root, run_dir), resume="latest")
    assert _losses(run_dir) == _losses(detail_run)


def test_identity_term_trains_with_a_user_weights_file(data_root, tmp_path) -> None:
    """loss.identity > 0 with a VGGFace2-format file: the term is logged every step and finite;
    a missing file is a one-line error before training."""
    import pickle

    import timm

    source = timm.create_model("resnet50", pretrained=False, num_classes=8631)
    state = {k: v.numpy() for k, v in source.state_dict().items() if "num_batches" not in k}
    weights = tmp_path / "resnet50_ft_weight.pkl"
    weights.write_bytes(pickle.dumps(state))
    cfg = _config(data_root, tmp_path / "run", max_steps=2, checkpoint_every=0)
    cfg.loss.identity, cfg.loss.identity_weights = 0.5, str(weights)
    train(cfg)
    logged = _losses(tmp_path / "run")
    assert len(logged) == 2
    assert all("identity" in r and 0.0 <= r["identity"] <= 2.0 for r in logged), logged
    cfg.loss.identity_weights = str(tmp_path / "missing.pkl")
    cfg.run.output_dir = str(tmp_path / "run2")
    with pytest.raises(Exception, match="loss.identity_weights"):
        train(cfg)


def test_id_mrf_term_trains_the_detail_stage_with_a_user_weights_file(data_root, tmp_path) -> None:
    """loss.id_mrf > 0 with a torchvision-VGG19-format file: the detail step logs a finite,
    positive ID-MRF term every step; a missing file is a one-line error before training."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["E"])
    weights = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, weights)
    cfg = _detail_config(data_root, tmp_path / "run", max_steps=2, n_critic=1, checkpoint_every=0)
    cfg.loss.id_mrf, cfg.loss.id_mrf_weights = 0.5, str(weights)
    train(cfg)
    logged = _losses(tmp_path / "run")
    assert len(logged) == 2
    assert all("id_mrf" in r and 0.0 < r["id_mrf"] < 1e3 for r in logged), logged
    cfg.loss.id_mrf_weights = str(tmp_path / "missing.pth")
    cfg.run.output_dir = str(tmp_path / "run2")
    with pytest.raises(Exception, match="loss.id_mrf_weights"):
        train(cfg)
