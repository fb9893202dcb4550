"""Nothing runs from a file seqdeca reads: every pickle-based format is read strictly.

Each malicious file carries a payload that would create a marker file (``os.system("touch
...")``) when unpickled normally. Loading it through the lightest user-facing path (a tool
where one reads the file cheaply, else the library loader) must end with exit code 2 / an
``UnsafeFileError`` of one line naming the file and the refused global, and no marker. The
official-format fixtures must still load.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import shlex
from pathlib import Path

import asset_factory as af
import au_factory
import deca_factory
import numpy as np
import pytest
import torch
from torch import nn

from seqdeca.config.schema import LossConfig
from seqdeca.errors import UserError
from seqdeca.face_model import read_deca_landmark_embedding, read_flame_pickle
from seqdeca.face_model.assets import AssetError
from seqdeca.face_model.chumpy_shim import ChumpyFreeUnpickler
from seqdeca.io.safe_pickle import (
    ALLOWED_GLOBALS,
    RestrictedUnpickler,
    UnsafeFileError,
    _allowed,
    load_pickle,
)
from seqdeca.io.weights import WeightsError, read_checkpoint
from seqdeca.losses.optional import build_id_mrf_loss, build_identity_loss, read_weight_file
from seqdeca.train.state import (
    CheckpointError,
    TrainState,
    export_inference_checkpoint,
    strict_load_state_kwargs,
    write_state_json,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Touch:
    """Pickles as ``os.system("touch MARKER")``: unpickling it normally creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class HostileStorage:
    """Pickles as torch's storage-from-bytes whose bytes are a ``torch.save`` of :class:`Touch`."""

    def __init__(self, marker: Path) -> None:
        buffer = io.BytesIO()
        torch.save(Touch(marker), buffer)
        self.data = buffer.getvalue()

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.data,))


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "the payload ran"


def _one_line_refusal(capsys, code: int, path: Path) -> str:
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert str(path) in errors[0] and "refused" in errors[0] and "posix.system" in errors[0]
    return errors[0]


def _assert_refusal(exc: pytest.ExceptionInfo, path: Path, name: str = "posix.system") -> None:
    message = str(exc.value)
    assert isinstance(exc.value, UserError) and "\n" not in message
    assert str(path) in message and name in message


# ------------------------------------------------------------------ through the tools (exit 2)


def test_flame_pickle_is_refused_by_render_face_model(tmp_path, marker, capsys) -> None:
    evil = tmp_path / "generic_model.pkl"
    evil.write_bytes(pickle.dumps({"v_template": Touch(marker)}, protocol=2))
    code = _tool("render_face_model").main(
        ["--out", str(tmp_path / "out"), f"face_model.path={evil}"]
    )
    _one_line_refusal(capsys, code, evil)


def test_landmark_embedding_is_refused_by_render_face_model(
    tmp_path, marker, capsys, monkeypatch
) -> None:
    paths, _ = af.write_flame_bundle(tmp_path / "assets")
    evil = paths["landmark_embedding"]
    np.save(evil, np.array({"static_lmk_faces_idx": Touch(marker)}, dtype=object))
    monkeypatch.setenv("SEQDECA_ASSETS", str(tmp_path / "assets"))
    code = _tool("render_face_model").main(
        ["--out", str(tmp_path / "out"), "--config", str(ROOT / "configs" / "flame_deca.yaml")]
    )
    _one_line_refusal(capsys, code, evil)


@pytest.mark.parametrize("name", ["deca_model.tar", "model.pt"])
def test_network_checkpoints_are_refused_by_video2mesh(tmp_path, marker, capsys, name) -> None:
    evil = tmp_path / name
    torch.save({"E_flame" if name.endswith(".tar") else "model": Touch(marker)}, evil)
    code = _tool("video2mesh").main(
        [
            str(tmp_path / "clip.mp4"),
            "--out",
            str(tmp_path / "out"),
            "--checkpoint",
            str(evil),
            "--mode",
            "network",
        ]
    )
    _one_line_refusal(capsys, code, evil)


def test_opengraphau_checkpoint_is_refused_by_train_seq(tmp_path, marker, capsys) -> None:
    evil = tmp_path / "OpenGprahAU-ResNet50_first_stage.pth"
    torch.save({"epoch": 1, "state_dict": Touch(marker)}, evil)
    code = _tool("train_seq").main(
        [
            "--config",
            str(TINY),
            f"run.output_dir={tmp_path / 'run'}",
            "model.au_backbone=resnet50",
            f"model.au_checkpoint={evil}",
        ]
    )
    _one_line_refusal(capsys, code, evil)


# ------------------------------------------------------------ through the library loaders


def test_landmark_embedding_with_a_hostile_torch_storage_is_refused(tmp_path, marker) -> None:
    """The tensors inside landmark_embedding.npy are torch.save bytes: read strictly too."""
    evil = tmp_path / "landmark_embedding.npy"
    np.save(evil, np.array({"dynamic_lmk_faces_idx": HostileStorage(marker)}, dtype=object))
    with pytest.raises(UnsafeFileError) as exc:
        read_deca_landmark_embedding(evil)
    _assert_refusal(exc, evil)


def test_vggface2_pickle_is_refused(tmp_path, marker) -> None:
    evil = tmp_path / "resnet50_ft_weight.pkl"
    evil.write_bytes(pickle.dumps({"conv1.weight": Touch(marker)}, protocol=2))
    with pytest.raises(UnsafeFileError) as exc:
        build_identity_loss(LossConfig(identity=0.5, identity_weights=str(evil)))
    _assert_refusal(exc, evil)


def test_vgg19_weights_are_refused(tmp_path, marker) -> None:
    evil = tmp_path / "vgg19.pth"
    torch.save({"features.0.weight": Touch(marker)}, evil)
    with pytest.raises(UnsafeFileError) as exc:
        build_id_mrf_loss(LossConfig(id_mrf=0.5, id_mrf_weights=str(evil)))
    _assert_refusal(exc, evil)


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "exec"),
        ("__builtin__", "eval"),  # Python 2 spelling of builtins.eval
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("numpy.testing._private.utils", "runstring"),  # allowed package, not an allowed name
        ("numpy", "load"),
        ("numpy.core.multiarray", "fromfile"),
        ("scipy.sparse", "load_npz"),
        ("torch", "load"),
        ("chumpy.ch", "Ch"),  # only the FLAME reader knows chumpy
    ],
)
def test_restricted_unpickler_refuses_names_outside_the_list(tmp_path, module, name) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    with pytest.raises(UnsafeFileError) as exc:
        load_pickle(path, what="a test pickle")
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    assert f".{name}'" in str(exc.value)


def test_a_file_that_is_not_a_checkpoint_is_a_short_one_line_error(tmp_path) -> None:
    bad = tmp_path / "deca_model.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as exc:
        read_checkpoint(bad, "DECA deca_model.tar")
    message = str(exc.value)
    assert "\n" not in message and "not a readable" in message and "PyTorch 2.6" not in message
    assert not isinstance(exc.value, UnsafeFileError)


def test_allowed_globals_are_exactly_the_resolved_table() -> None:
    assert sorted(_allowed()) == sorted(ALLOWED_GLOBALS)
    assert issubclass(ChumpyFreeUnpickler, RestrictedUnpickler)


# ------------------------------------------------------------------- training checkpoints


@pytest.fixture
def saved_checkpoint(tmp_path):
    """A real ``save_state`` folder of a tiny model (+ TrainState), the accelerator and the
    random number the RNG gives right after saving."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    accelerator = Accelerator(cpu=True)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState(step=7, epoch=1, batches_in_epoch=3)
    accelerator.register_for_checkpointing(state)
    folder = tmp_path / "checkpoints" / "step_000007"
    accelerator.save_state(str(folder))
    write_state_json(folder, state)
    after_save = torch.rand(3)
    yield folder, accelerator, state, after_save
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_a_checkpoint_resumes_through_the_strict_reads(saved_checkpoint) -> None:
    from seqdeca.train.loop import load_checkpoint

    folder, accelerator, state, after_save = saved_checkpoint
    state.step, state.epoch, state.batches_in_epoch = 0, 0, 0
    torch.rand(5)  # move the RNG on
    load_checkpoint(accelerator, folder, state)
    assert (state.step, state.epoch, state.batches_in_epoch) == (7, 1, 3)
    assert torch.equal(torch.rand(3), after_save), "RNG state not restored"


@pytest.mark.parametrize(
    "victim", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"]
)
def test_a_hostile_training_checkpoint_is_refused(saved_checkpoint, marker, victim) -> None:
    """Registered objects and RNG states are checked before ``load_state``; the optimizer
    state is read by Accelerate itself with ``weights_only=True``."""
    from seqdeca.train.loop import load_checkpoint

    folder, accelerator, state, _ = saved_checkpoint
    assert strict_load_state_kwargs(accelerator) == {"load_kwargs": {"weights_only": True}}
    torch.save({"state": Touch(marker)}, folder / victim)
    state.step = 0
    with pytest.raises(UnsafeFileError) as exc:
        load_checkpoint(accelerator, folder, state)
    shown = folder / victim if victim.endswith(".pkl") else folder  # Accelerate names no file
    _assert_refusal(exc, shown)
    assert state.step == 0  # the registered TrainState was not loaded


def test_an_unreadable_rng_state_is_an_error_not_a_silent_skip(saved_checkpoint) -> None:
    from seqdeca.train.loop import load_checkpoint

    folder, accelerator, state, _ = saved_checkpoint
    (folder / "random_states_0.pkl").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="random_states_0.pkl"):
        load_checkpoint(accelerator, folder, state)


# ------------------------------------------------------ official formats still load strictly


def test_official_format_fixtures_still_load(tmp_path) -> None:
    paths, truth = af.write_flame_bundle(tmp_path / "flame")
    arrays = read_flame_pickle(paths["model_path"])
    np.testing.assert_allclose(arrays["v_template"], truth["model"]["v_template"], rtol=1e-6)
    lmks, _ = read_deca_landmark_embedding(paths["landmark_embedding"])
    np.testing.assert_array_equal(
        lmks["ibug68"].face_idx, truth["landmark_embedding"]["full_lmk_faces_idx"][0]
    )

    linear = nn.Linear(3, 2)
    deca = deca_factory.write_deca_checkpoint(tmp_path / "deca_model.tar", e_flame=linear)
    assert torch.equal(read_checkpoint(deca, "DECA")["E_flame"]["weight"], linear.weight)
    au = au_factory.write_opengraphau_checkpoint(tmp_path / "au.pth", {"w": torch.ones(2)})
    assert torch.equal(read_checkpoint(au, "OpenGraphAU")["state_dict"]["module.w"], torch.ones(2))
    model_pt = export_inference_checkpoint(
        tmp_path / "model.pt",
        state_dict=linear.state_dict(),
        config_yaml="run: {}\n",
        face_model="default",
        stage="temporal",
        step=3,
    )
    assert read_checkpoint(model_pt, "model.pt")["step"] == 3

    weights = {"conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.ones(2)}
    for protocol in (2, 4):  # Python 2 era (bytes via _codecs.encode) and current pickles
        pkl = tmp_path / f"resnet50_ft_weight_{protocol}.pkl"
        pkl.write_bytes(pickle.dumps(weights, protocol=protocol))
        read = read_weight_file(pkl, "VGGFace2 weights")
        assert torch.equal(read["conv1.weight"], torch.from_numpy(weights["conv1.weight"]))
    vgg = tmp_path / "vgg19.pth"
    torch.save({"module.features.0.weight": torch.ones(2)}, vgg)
    assert set(read_weight_file(vgg, "VGG19 weights")) == {"features.0.weight"}


@pytest.mark.parametrize("protocol", range(6))
def test_every_pickle_protocol_of_plain_data_loads(tmp_path, protocol) -> None:
    """Protocol 0/1 objects go through copyreg._reconstructor, 2 writes bytes with
    _codecs.encode, 5 writes arrays with _frombuffer: all allowed, all giving the same data."""
    import scipy.sparse

    data = {
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "scalar": np.float64(2.5),
        "sparse": scipy.sparse.csc_matrix(np.eye(3)),
        "ids": {1, 2},
        "raw": b"\x00\xff",
        "tensor": torch.arange(3),
    }
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    back = load_pickle(path, what="a test pickle")
    np.testing.assert_array_equal(back["array"], data["array"])
    assert back["scalar"] == 2.5 and back["ids"] == {1, 2} and back["raw"] == b"\x00\xff"
    np.testing.assert_array_equal(back["sparse"].toarray(), np.eye(3))
    assert torch.equal(back["tensor"], data["tensor"])


def test_a_damaged_landmark_tensor_is_a_format_error(tmp_path) -> None:
    """A tensor rebuilt from something that is not a storage is refused as a bad file."""

    class NotATensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, ("text", 0, (1,), (1,), False, None))

    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array({"dynamic_lmk_faces_idx": NotATensor()}, dtype=object))
    with pytest.raises(AssetError, match="needs a torch storage"):
        read_deca_landmark_embedding(path)
