"""Coarse encoder, detail encoder/generator, code layout and DECA checkpoint import."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from deca_factory import (
    RefGenerator,
    RefResnetEncoder,
    randomize_norm_stats,
    write_deca_checkpoint,
)

from seqdeca.io.weights import WeightsError
from seqdeca.models.coarse_encoder import CoarseEncoder, EncoderOutput
from seqdeca.models.code_layout import PART_NAMES, CodeLayout, split_pose
from seqdeca.models.deca_import import load_deca_checkpoint
from seqdeca.models.detail import DetailEncoder, DetailGenerator, detail_latent

# ---------------------------------------------------------------- code layout


def test_deca_layout_sizes_and_offsets():
    layout = CodeLayout.deca()
    assert layout.total == 236
    assert layout.sizes == {
        "shape": 100,
        "texture": 50,
        "expression": 50,
        "pose": 6,
        "cam": 3,
        "light": 27,
    }
    assert layout.offsets()["pose"] == (200, 206)
    assert layout.offsets()["light"] == (209, 236)


def test_split_join_round_trip_and_light_order():
    layout = CodeLayout.for_face_model(5, 0, 24)
    codes = torch.randn(2, 3, layout.total)  # any leading dims
    parts = layout.split(codes)
    assert list(parts) == list(PART_NAMES)
    assert parts["texture"].shape == (2, 3, 0)
    assert parts["light"].shape == (2, 3, 9, 3)
    # light is coefficient-major, RGB fastest: flat index 3*k + c
    torch.testing.assert_close(parts["light"][..., 4, 2], codes[..., 5 + 24 + 6 + 3 + 4 * 3 + 2])
    torch.testing.assert_close(layout.join(parts), codes)
    global_pose, jaw_pose = split_pose(parts["pose"])
    torch.testing.assert_close(jaw_pose, codes[..., 5 + 24 + 3 : 5 + 24 + 6])
    assert global_pose.shape == (2, 3, 3)


def test_layout_refuses_wrong_sizes():
    layout = CodeLayout.deca()
    with pytest.raises(ValueError, match="236"):
        layout.split(torch.zeros(4, 235))
    parts = layout.split(torch.zeros(4, 236))
    parts["expression"] = torch.zeros(4, 49)
    with pytest.raises(ValueError, match="expression"):
        layout.join(parts)
    with pytest.raises(ValueError, match="pose/cam/light"):
        CodeLayout(n_shape=1, n_texture=1, n_expression=1, n_light=9)


# ---------------------------------------------------------------- shapes (tiny backbones)


def test_tiny_encoders_shapes_and_backward():
    layout = CodeLayout.deca()
    coarse = CoarseEncoder(layout.total, backbone="tiny")
    out = coarse(torch.rand(2, 3, 32, 32))
    assert isinstance(out, EncoderOutput)
    assert out.features.shape == (2, 2048) and out.codes.shape == (2, 236)
    out.codes.sum().backward()
    assert coarse.encoder.body[0].weight.grad is not None
    detail = DetailEncoder(backbone="tiny")
    assert detail(torch.rand(1, 3, 64, 64)).codes.shape == (1, 128)
    keys = set(coarse.state_dict())
    assert {"layers.0.weight", "layers.2.bias"} <= keys
    assert all(k.startswith(("encoder.", "layers.0.", "layers.2.")) for k in keys)


def test_resnet_encoder_refuses_other_sizes():
    encoder = CoarseEncoder(236)
    with pytest.raises(ValueError, match="224x224"):
        encoder(torch.rand(1, 3, 192, 192))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        encoder(torch.rand(3, 224, 224))


def test_generator_shapes_film_and_backward():
    gen = DetailGenerator(latent_dim=3 + 24 + 128, au_dim=12)
    latent = detail_latent(torch.zeros(2, 3), torch.randn(2, 24), torch.randn(2, 128))
    au = torch.rand(2, 12)
    out = gen(latent, au)
    assert out.shape == (2, 1, 256, 256)
    assert out.abs().max() <= 0.01
    out.square().sum().backward()
    # FiLM starts at identity, but its last layer receives gradient from the first step.
    assert gen.film[0].net[2].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="au_condition"):
        gen(latent, torch.rand(2, 27))
    with pytest.raises(ValueError, match="multiple of 32"):
        DetailGenerator(uv_size=48)


def test_smaller_generator_keeps_every_block_and_channel():
    big, small = DetailGenerator(au_dim=12), DetailGenerator(au_dim=12, uv_size=64)
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    differing = {k for k, v in big.state_dict().items() if shapes[k] != v.shape}
    assert shapes.keys() == big.state_dict().keys() and differing == {"l1.0.weight", "l1.0.bias"}
    out = small(torch.randn(3, small.latent_dim), torch.rand(3, 12))
    assert out.shape == (3, 1, 64, 64) and out.abs().max() <= 0.01


def test_generator_film_changes_output_once_trained():
    gen = DetailGenerator(au_dim=27, film_blocks=(2,)).eval()
    latent, au = torch.randn(1, 181), torch.rand(1, 27)
    torch.testing.assert_close(gen(latent, au), gen(latent, None), rtol=0, atol=0)
    with torch.no_grad():
        gen.film[0].net[2].bias.normal_()
    assert not torch.allclose(gen(latent, au), gen(latent, None))
    assert DetailGenerator(au_dim=0).film_blocks == ()


def test_linear_au_form_adds_au_weighted_maps_to_decas():
    """au_form="linear": DECA's output at init for any condition; once trained, the output is
    the unconditioned map plus a sum of per-AU maps weighted by the condition."""
    gen = DetailGenerator(au_dim=5, uv_size=64, au_form="linear").eval()
    assert gen.film_blocks == () and len(gen.film) == 0 and gen.au_maps is not None
    latent = torch.randn(2, gen.latent_dim)
    a, b = torch.rand(2, 5), torch.rand(2, 5)
    base = gen(latent, None)
    torch.testing.assert_close(gen(latent, a), base, rtol=0, atol=0)
    with torch.no_grad():
        gen.au_maps.weight.normal_(std=0.1)
        gen.au_maps.bias.normal_(std=0.1)
        gen.au_templates.normal_(std=0.01)
        one_hot = gen(latent, torch.eye(5)[[0, 0]]) - base  # the first AU's map at intensity 1
    assert one_hot.abs().max() > 1e-4
    with torch.no_grad():
        torch.testing.assert_close(
            gen(latent, a + b) - base, (gen(latent, a) - base) + (gen(latent, b) - base)
        )
        torch.testing.assert_close(gen(latent, 0.5 * torch.eye(5)[[0, 0]]) - base, 0.5 * one_hot)
    (gen(latent, a) - base).square().sum().backward()
    assert gen.au_maps.weight.grad.abs().sum() > 0 and gen.au_templates.grad.abs().sum() > 0
    assert DetailGenerator(au_dim=0, au_form="linear").au_maps is None
    with torch.no_grad():  # the templates alone: the same AU-driven maps for every face
        gen.au_maps.weight.zero_()
        gen.au_maps.bias.zero_()
        other = torch.randn(2, gen.latent_dim)
        torch.testing.assert_close(gen(latent, a) - base, gen(other, a) - gen(other, None))
    with pytest.raises(ValueError, match="AU form"):
        DetailGenerator(au_form="quadratic")


# ---------------------------------------------------------------- DECA import


@pytest.fixture(scope="module")
def deca_reference(tmp_path_factory) -> tuple[Path, dict]:
    """A full deca_model.tar written from independent reference modules (eval mode)."""
    torch.manual_seed(0)
    refs = {
        "e_flame": RefResnetEncoder(236),
        "e_detail": RefResnetEncoder(128),
        "d_detail": RefGenerator(181),
    }
    for i, module in enumerate(refs.values()):
        randomize_norm_stats(module, seed=i)
        module.eval()
    path = tmp_path_factory.mktemp("deca") / "deca_model.tar"
    write_deca_checkpoint(path, prefix="module.", **refs)
    return path, refs


def test_import_reproduces_deca_outputs(deca_reference):
    path, refs = deca_reference
    coarse, detail, gen = CoarseEncoder(236), DetailEncoder(), DetailGenerator(au_dim=27)
    reports = load_deca_checkpoint(
        path, coarse_encoder=coarse, detail_encoder=detail, detail_generator=gen
    )
    assert reports["coarse_encoder"].complete and reports["detail_encoder"].complete
    film_keys = [k for k in gen.state_dict() if k.startswith("film.")]
    assert film_keys and sorted(reports["detail_generator"].missing) == sorted(film_keys)
    linear = DetailGenerator(au_dim=27, au_form="linear")
    report = load_deca_checkpoint(path, detail_generator=linear)["detail_generator"]
    assert sorted(report.missing) == ["au_maps.bias", "au_maps.weight", "au_templates"]
    assert not reports["detail_generator"].unexpected
    assert len(reports["detail_generator"].loaded) == len(refs["d_detail"].state_dict())

    torch.manual_seed(1)
    images = torch.rand(1, 3, 224, 224)
    latent, au = torch.randn(2, 181), torch.rand(2, 27) + 0.5
    with torch.no_grad():
        for ours, ref in ((coarse, refs["e_flame"]), (detail, refs["e_detail"])):
            torch.testing.assert_close(ours.eval()(images).codes, ref(images))
        expected = refs["d_detail"](latent)
        gen.eval()
        torch.testing.assert_close(gen(latent, au), expected)
        torch.testing.assert_close(gen(latent, None), expected)


def _generator_state() -> dict[str, torch.Tensor]:
    return RefGenerator(181).state_dict()


def test_import_refuses_wrong_shape_extra_key_missing_key(tmp_path):
    gen = DetailGenerator()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    cases = {
        "mis-shaped": dict(_generator_state()) | {"l1.0.bias": torch.zeros(10)},
        "unexpected": dict(_generator_state()) | {"conv_blocks.23.weight": torch.zeros(1)},
        "missing": {k: v for k, v in _generator_state().items() if k != "conv_blocks.21.bias"},
    }
    for kind, state in cases.items():
        path = tmp_path / f"{kind}.tar"
        torch.save({"D_detail": state}, path)
        with pytest.raises(WeightsError, match=kind) as info:
            load_deca_checkpoint(path, detail_generator=gen)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
        if kind == "missing":  # the real gap is named, FiLM keys are not its cause
            assert "conv_blocks.21.bias" in str(info.value)
    for key, value in gen.state_dict().items():  # refused loads leave the module untouched
        torch.testing.assert_close(value, before[key])


def test_import_refuses_missing_part_and_film_keys_only_allowed_for_generator(tmp_path):
    path = write_deca_checkpoint(tmp_path / "deca_model.tar", d_detail=RefGenerator(181))
    with pytest.raises(WeightsError, match=r"no 'E_detail' part .*found: D_detail"):
        load_deca_checkpoint(path, detail_encoder=DetailEncoder(backbone="tiny"))
    with pytest.raises(ValueError, match="at least one"):
        load_deca_checkpoint(path)
    # A tiny encoder cannot take a generator's weights, and nothing is silently skipped.
    torch.save({"E_flame": _generator_state()}, tmp_path / "swapped.tar")
    with pytest.raises(WeightsError, match="missing"):
        load_deca_checkpoint(
            tmp_path / "swapped.tar", coarse_encoder=CoarseEncoder(236, backbone="tiny")
        )
    report = load_deca_checkpoint(path, detail_generator=DetailGenerator(au_dim=0))
    assert report["detail_generator"].complete
