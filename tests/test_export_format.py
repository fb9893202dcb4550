"""The ``model.pt`` export: round trip, files written by the previous writer, one error type."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqdeca.config import config_to_yaml
from seqdeca.config.schema import Config
from seqdeca.errors import UserError
from seqdeca.models.export import (
    EXPORT_KEYS,
    ExportError,
    ModelExport,
    check_face_model,
    export_config,
    load_export,
    save_export,
)


def _record(step: int = 7) -> ModelExport:
    gen = torch.Generator().manual_seed(0)
    weights = {
        "encoder.weight": torch.randn(4, 3, generator=gen),
        "encoder.bias": torch.zeros(4),
        "steps": torch.tensor(5),
    }
    return ModelExport(
        weights=weights,
        config_yaml=config_to_yaml(Config()),
        face_model="default",
        stage="temporal",
        step=step,
    )


def _write_as_before(path: Path, record: ModelExport) -> None:
    """The writer of ``model.pt`` before :mod:`seqdeca.models.export` (train/state.py)."""
    payload = {
        "model": {k: v.detach().cpu() for k, v in record.weights.items()},
        "config_yaml": record.config_yaml,
        "face_model": record.face_model,
        "stage": record.stage,
        "step": int(record.step),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _assert_same(a: ModelExport, b: ModelExport) -> None:
    assert (a.config_yaml, a.face_model, a.stage, a.step) == (
        b.config_yaml,
        b.face_model,
        b.stage,
        b.step,
    )
    assert list(a.weights) == list(b.weights)
    for key, value in a.weights.items():
        torch.testing.assert_close(b.weights[key], value, rtol=0, atol=0, msg=key)


def _one_line_export_error(path: Path, match: str) -> ExportError:
    with pytest.raises(ExportError, match=match) as info:
        load_export(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message and str(path) in message
    assert len(message.replace(str(path), "")) < 300
    return info.value


def test_round_trip_keeps_every_field(tmp_path):
    record = _record()
    path = save_export(tmp_path / "run" / "model.pt", record)
    assert (
        path == tmp_path / "run" / "model.pt" and not (tmp_path / "run" / "model.pt.tmp").exists()
    )
    loaded = load_export(path)
    _assert_same(record, loaded)
    assert export_config(loaded, path) == Config()
    with pytest.raises(AttributeError):  # frozen
        loaded.step = 1  # type: ignore[misc]


def test_on_disk_layout_is_the_previous_one(tmp_path):
    path = save_export(tmp_path / "model.pt", _record())
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert tuple(payload) == EXPORT_KEYS == ("model", "config_yaml", "face_model", "stage", "step")
    assert type(payload["step"]) is int and type(payload["model"]) is dict
    old = tmp_path / "old.pt"
    _write_as_before(old, _record())
    before = torch.load(old, map_location="cpu", weights_only=True)
    assert list(before) == list(payload) and list(before["model"]) == list(payload["model"])


def test_a_file_written_by_the_previous_writer_loads(tmp_path):
    record = _record(step=12)
    path = tmp_path / "model.pt"
    _write_as_before(path, record)
    _assert_same(record, load_export(path))


def test_save_moves_tensors_to_cpu_and_detaches(tmp_path):
    weight = torch.ones(2, requires_grad=True)
    record = ModelExport(
        weights={"w": weight * 2}, config_yaml="run: {}\n", face_model="x", stage="detail", step=0
    )
    loaded = load_export(save_export(tmp_path / "model.pt", record))
    assert not loaded.weights["w"].requires_grad and loaded.weights["w"].device.type == "cpu"


def test_a_missing_file_is_one_line(tmp_path):
    _one_line_export_error(tmp_path / "nowhere" / "model.pt", "not found")


def test_a_file_that_is_not_an_export_is_one_line(tmp_path):
    deca = tmp_path / "deca_model.tar"
    torch.save({"E_flame": {"w": torch.zeros(1)}}, deca)
    error = _one_line_export_error(deca, "not a seqdeca model.pt export")
    assert "E_flame" in str(error)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    _one_line_export_error(listed, "expected a dict in seqdeca model.pt")


def test_a_damaged_file_is_one_line(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    _one_line_export_error(garbage, "not a readable seqdeca model.pt")
    truncated = tmp_path / "truncated.pt"
    save_export(truncated, _record())
    truncated.write_bytes(truncated.read_bytes()[:200])
    _one_line_export_error(truncated, "not a readable seqdeca model.pt")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"stage": None}, "missing stage"),
        ({"model": [1, 2]}, "'model' is a list"),
        ({"model": {"w": 3}}, "non-tensor entries: w"),
        ({"face_model": 3}, "'face_model' is a int"),
        ({"step": "7"}, "'step' is a str"),
    ],
)
def test_an_export_with_a_missing_or_mistyped_key_is_damaged(tmp_path, change, match):
    payload = _record().to_payload()
    for key, value in change.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    error = _one_line_export_error(path, match)
    assert "damaged seqdeca model.pt" in str(error)


def test_callers_name_the_file_in_their_words(tmp_path):
    with pytest.raises(ExportError, match="^train.init_from model.pt not found"):
        load_export(tmp_path / "x.pt", what="train.init_from model.pt")


def test_config_and_face_model_checks_are_export_errors(tmp_path):
    record = ModelExport(
        weights={},
        config_yaml="no_such_section: {a: 1}\n",
        face_model="flame",
        stage="temporal",
        step=0,
    )
    with pytest.raises(ExportError, match="does not fit this seqdeca") as info:
        export_config(record, tmp_path / "model.pt")
    assert "\n" not in str(info.value)
    check_face_model(record, "flame", source="x", fix="y")
    with pytest.raises(ExportError, match="trained with face model 'flame'.*'tiny': fix it"):
        check_face_model(record, "tiny", source="model.pt", fix="fix it")


def test_load_model_reports_export_problems_with_the_same_error(tmp_path):
    from seqdeca.inference.checkpoint import load_model

    payload = _record().to_payload()
    del payload["step"]
    damaged = tmp_path / "damaged.pt"
    torch.save(payload, damaged)
    with pytest.raises(ExportError, match="damaged seqdeca model.pt \\(missing step\\)"):
        load_model(damaged)  # (a dict that is neither: tests/test_inference.py)
