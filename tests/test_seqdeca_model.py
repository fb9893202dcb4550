"""The composed SeqDECA model and its builders (tiny backbones, bundled face model, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from seqdeca.config import load_config
from seqdeca.io.weights import WeightsError
from seqdeca.models.from_config import build_critic, build_model
from seqdeca.models.outputs import SeqDECAOutput, cat_outputs
from seqdeca.models.seqdeca_model import SeqDECA

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"
B, T = 1, 3


@pytest.fixture(scope="module")
def model() -> SeqDECA:
    torch.manual_seed(0)
    return build_model(load_config(TINY))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(B, T, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _temporal_stage(model):
    model.set_stage("temporal")
    model.eval()
    yield
    model.set_stage("temporal")


def test_forward_shapes_both_stages(model, images) -> None:
    cfg = load_config(TINY)
    e, uv, hw = model.layout.n_expression, cfg.render.uv_size, cfg.render.image_size
    with torch.no_grad():
        out = model(images, None, "temporal", render_shape=True)
        detail = model(images, torch.ones(B, T, dtype=torch.bool), "detail")
    assert isinstance(out, SeqDECAOutput)
    expected = {
        "shape": (model.layout.n_shape,),
        "expression": (e,),
        "pose": (6,),
        "jaw_pose": (3,),
        "cam": (3,),
        "light": (9, 3),
        "fused.au_intensities": (27,),
        "encoded.au_probabilities": (41,),
        "decoded.vertices": (model.face_model.num_vertices, 3),
        "decoded.landmarks68": (68, 2),
        "decoded.render": (3, hw, hw),
        "decoded.render_mask": (1, hw, hw),
        "decoded.shape_image": (3, hw, hw),
    }
    for key, tail in expected.items():
        assert _field(out, key).shape == (B, T, *tail), key
    detail_expected = {
        "detail_code": (128,),
        "au_condition": (27,),
        "displacement": (1, uv, uv),
        "detail_normals": (3, uv, uv),
        "uv_shading": (3, uv, uv),
        "uv_input": (3, uv, uv),
    }
    for key, tail in detail_expected.items():
        assert getattr(detail.detail, key).shape == (B, T, *tail), key
    assert out.detail is None and detail.decoded.shape_image is None
    au = out.fused.au_intensities
    assert 0 <= au.min() and au.max() <= 1
    assert detail.detail.displacement.abs().max() <= 0.01
    inside = (model.uv_detail_mask(images) == 1) & (model.renderer.uv_mask[0, 0] > 0)
    normals = detail.detail.detail_normals
    norms = normals.norm(dim=2)[..., inside]  # unit where the detail applies
    assert inside.sum() > 100 and torch.isfinite(normals).all()
    assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)


def _field(out: object, path: str) -> torch.Tensor:
    """``out.a.b`` for ``path`` "a.b"."""
    for name in path.split("."):
        out = getattr(out, name)
    return out


def test_untrained_temporal_model_returns_the_per_frame_codes(model, images) -> None:
    with torch.no_grad():
        out = model(images)
        encoded = model.encode(images)
    assert_close(out.expression, encoded.expression)
    assert_close(out.pose, encoded.pose)
    assert_close(out.light, encoded.light)
    assert_close(out.encoded.expression, encoded.expression)


def test_outputs_are_pytrees_that_ddp_and_the_helpers_walk(model, images) -> None:
    """DDP's output hooks flatten with torch's pytree (and find tensors in dataclasses); the
    helpers map over and concatenate every tensor, nested parts included, keeping None."""
    from torch.nn.parallel.distributed import _find_tensors
    from torch.utils import _pytree as pytree

    with torch.no_grad():
        out = model(images, stage="detail")
    leaves, spec = pytree.tree_flatten(out)
    assert all(torch.is_tensor(x) for x in leaves)
    assert any(x is out.detail.uv_shading for x in leaves)
    assert len(list(_find_tensors(out))) == len(leaves)
    assert pytree.tree_unflatten(leaves, spec).decoded.vertices is out.decoded.vertices
    first = out.map_tensors(lambda v: v[:, :1])
    assert first.decoded.render.shape[1] == 1 and first.render_au_probabilities is None
    both = cat_outputs([first, out.map_tensors(lambda v: v[:, 1:])], dim=1)
    assert_close(both.detail.displacement, out.detail.displacement)
    assert_close(both.encoded.valid, out.encoded.valid)


def test_frozen_modules_are_in_eval_and_outside_the_optimizer(model) -> None:
    model.train()
    trainable = {id(p) for p in model.trainable_parameters("temporal")}
    assert set(model.trainable_modules("temporal")) == {"temporal_fusion", "au_head"}
    for name in ("coarse_encoder", "au_net", "detail_encoder", "detail_generator"):
        module = getattr(model, name)
        assert not module.training, name
        assert all(not p.requires_grad and id(p) not in trainable for p in module.parameters())
    assert model.temporal_fusion.training and model.au_head.training
    model.set_stage("detail")
    assert model.detail_generator.training and not model.temporal_fusion.training
    assert {id(p) for p in model.trainable_parameters("detail")} == {
        id(p)
        for n in ("detail_encoder", "detail_generator")
        for p in getattr(model, n).parameters()
    }
    with pytest.raises(ValueError, match="unknown stage"):
        model.set_stage("coarse")


def _grad_modules(model: SeqDECA) -> set[str]:
    return {
        name
        for name, module in model.named_children()
        if any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    }


@pytest.mark.parametrize("freeze_coarse", [True, False])
def test_gradients_reach_exactly_the_trainable_modules(model, images, freeze_coarse) -> None:
    model.freeze_coarse = freeze_coarse
    try:
        model.set_stage("temporal")
        model.zero_grad(set_to_none=True)
        out = model(images[:, :2])
        tensors = torch.utils._pytree.tree_leaves(out)
        sum(v.float().sum() for v in tensors if v.is_floating_point()).backward()
        want = {"temporal_fusion", "au_head"} | (set() if freeze_coarse else {"coarse_encoder"})
        assert _grad_modules(model) == want
        for p in model.temporal_fusion.residual_head.parameters():  # the zero-init layer learns
            assert p.grad.abs().sum() > 0
    finally:
        model.freeze_coarse = True
        model.zero_grad(set_to_none=True)


def test_per_frame_mode_equals_single_frame_windows(model, images) -> None:
    head = model.temporal_fusion.residual_head
    saved = {k: v.clone() for k, v in head.state_dict().items()}
    try:
        with torch.no_grad():
            torch.nn.init.normal_(head.weight, std=0.05)  # a "trained" fusion: windows matter
            per_frame = model(images, per_frame=True)
            windowed = model(images, per_frame=False)
            singles = [model(images[:, t : t + 1], per_frame=False) for t in range(T)]
            model.use_temporal = False
            default_off = model(images)
        for key in ("expression", "pose", "light", "fused.au_intensities"):
            stacked = torch.cat([_field(s, key) for s in singles], dim=1)
            assert_close(_field(per_frame, key), stacked, atol=1e-5, rtol=1e-5)
            assert_close(_field(default_off, key), _field(per_frame, key))
        assert not torch.allclose(windowed.expression, per_frame.expression, atol=1e-5)
    finally:
        model.use_temporal = True
        head.load_state_dict(saved)


def test_build_model_reads_the_model_section() -> None:
    cfg = load_config(TINY, ["model.detail_au_condition=affwild12", "model.use_temporal=false"])
    built = build_model(cfg)
    assert built.use_temporal is False and built.detail_generator.au_dim == 12
    assert built.temporal_fusion.dim == cfg.model.fusion_dim == 32
    critic = build_critic(cfg, built)
    with torch.no_grad():
        out = built(torch.rand(1, 2, 3, 224, 224), stage="detail")
        scores = critic(critic.detail_render(out.detail), out.detail.au_condition.flatten(0, 1))
    assert scores["realism"].shape == (2, 1, 2, 2) and scores["au"].shape == (2, 12)
    none = build_model(load_config(TINY, ["model.detail_au_condition=none"]))
    assert none.detail_generator.au_dim == 0 and len(none.detail_generator.film) == 0


def test_deca_checkpoint_with_a_mismatched_face_model_is_refused(tmp_path) -> None:
    from deca_factory import RefGenerator, RefResnetEncoder, write_deca_checkpoint

    path = write_deca_checkpoint(
        tmp_path / "deca_model.tar",
        e_flame=RefResnetEncoder(236),
        e_detail=RefResnetEncoder(128),
        d_detail=RefGenerator(181),
    )
    cfg = load_config(TINY, [f"model.deca_checkpoint={path}"])
    with pytest.raises(WeightsError, match="needs DECA's code layout") as info:
        build_model(cfg)
    assert "\n" not in str(info.value) and "expression 10" in str(info.value)


def test_au_checkpoint_needs_the_resnet_backbone(tmp_path) -> None:
    cfg = load_config(TINY, [f"model.au_checkpoint={tmp_path / 'au.pth'}"])
    with pytest.raises(WeightsError, match="au_backbone=resnet50"):
        build_model(cfg)


def test_untrained_coarse_encoder_frames_the_mean_face_like_a_prepared_crop(model, images) -> None:
    from seqdeca.models.code_layout import CROP_BOX_FACTOR, framing_cam, neutral_light
    from seqdeca.prep.crop import DECA_BOX_FACTOR

    assert CROP_BOX_FACTOR == DECA_BOX_FACTOR
    scale = load_config(TINY).crop.scale
    with torch.no_grad():
        encoded = model.encode(images)
        out = model.decode(
            {
                k: getattr(encoded, k)
                for k in ("shape", "texture", "expression", "pose", "cam", "light")
            }
        )
    cam = framing_cam(model.face_model, scale)
    assert_close(encoded.cam, cam.expand_as(encoded.cam))  # every image: the prior
    assert_close(encoded.light, neutral_light().expand_as(encoded.light))
    assert encoded.expression.abs().max() == 0 and encoded.shape.abs().max() == 0
    # The projected neutral 68-landmark box is centred with side 2 / (scale * 1.1), as the crop.
    points = out.landmarks68[0, 0]
    lo, hi = points.amin(0), points.amax(0)
    assert_close((lo + hi) / 2, torch.zeros(2), atol=1e-5, rtol=0)
    assert_close((hi - lo).mean(), torch.tensor(2 / (scale * DECA_BOX_FACTOR)), rtol=1e-5, atol=0)
    # Neutral light: the render shows the albedo (shading 1), not black.
    covered = out.render_mask[0, 0, 0] > 0
    assert covered.sum() > 100 and out.render[0, 0][:, covered].mean() > 0.2


def test_a_loaded_coarse_encoder_replaces_the_start(model) -> None:
    head = model.coarse_encoder.layers[2]
    state = {
        k: torch.randn_like(v)
        for k, v in model.coarse_encoder.state_dict().items()
        if v.is_floating_point()
    }
    saved = {k: v.clone() for k, v in model.coarse_encoder.state_dict().items()}
    try:
        model.coarse_encoder.load_state_dict(state, strict=False)
        assert_close(head.bias, state["layers.2.bias"]) and head.weight.abs().sum() > 0
    finally:
        model.coarse_encoder.load_state_dict(saved)


def test_render_au_composites_the_render_over_the_input(model, images) -> None:
    with torch.no_grad():
        out = model(images, au_render=True)
        nothing = out.decoded.map_tensors(torch.zeros_like)
        same = model.render_au(images, nothing)
    assert out.render_au_probabilities.shape == (B, T, 41)
    probabilities = out.encoded.au_probabilities
    assert_close(same, probabilities)  # nothing drawn: the AU net sees the input
    assert not torch.allclose(out.render_au_probabilities, probabilities)
    assert model(images[:, :1]).render_au_probabilities is None
