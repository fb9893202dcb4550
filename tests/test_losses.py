"""Loss terms: definitions, masks / valid flags, DECA facts, WGAN-GP, weights, optional terms."""

from __future__ import annotations

import pickle
import types
from dataclasses import fields

import pytest
import torch

from seqdeca.config.schema import LossConfig
from seqdeca.errors import UserError
from seqdeca.losses import (
    au_consistency_loss,
    au_label_loss,
    au_proxy_loss,
    au_regression_loss,
    au_supervision_loss,
    coarse_options,
    coarse_weights,
    code_l2,
    critic_loss,
    critic_weights,
    deca_landmark_weights,
    detail_weights,
    displacement_regulariser,
    eye_closure_loss,
    generator_loss,
    gradient_penalty,
    jaw_regulariser,
    landmark_loss,
    light_regulariser,
    lip_closure_loss,
    mediapipe_landmark_loss,
    photometric_loss,
    shading_smoothness,
    symmetry_loss,
    temporal_smoothness,
    uv_photometric_loss,
    weighted_sum,
)

B, T = 2, 3


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _lmk68(seed: int = 0) -> torch.Tensor:
    return torch.rand(B, T, 68, 2, generator=_gen(seed)) * 2 - 1


# ---------------------------------------------------------------- landmarks


def test_deca_landmark_weights_facts() -> None:
    w = deca_landmark_weights()
    assert w.shape == (68,)
    for i in (5, 6, 10, 11):
        assert w[i] == 2
    for i in (30, 31, 35, 48, 54):
        assert w[i] == 3
    for i in (27, 28, 29, 32, 33, 34, 49, 53, 55, 60, 67):
        assert w[i] == 1.5
    for i in (0, 4, 7, 9, 12, 17, 26, 36, 47):
        assert w[i] == 1
    assert w.sum() == pytest.approx(68 + 4 * 1 + 29 * 0.5 + 5 * 1.5)


def test_landmark_loss_hand_computed() -> None:
    target = torch.zeros(1, 68, 2)
    pred = target.clone()
    pred[0, 30, 0] = 0.4  # weight 3
    pred[0, 0, 1] = -0.2  # weight 1
    total_weight = deca_landmark_weights().sum()
    expected = (3 * 0.4 + 1 * 0.2) / (2 * total_weight)
    torch.testing.assert_close(landmark_loss(pred, target), expected)


def test_landmark_terms_zero_when_equal_positive_otherwise() -> None:
    target = _lmk68()
    pred = _lmk68(1)
    for fn in (landmark_loss, eye_closure_loss, lip_closure_loss, mediapipe_landmark_loss):
        assert fn(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
        assert fn(pred, target).item() > 0


def test_landmark_valid_and_nan_excluded() -> None:
    target, pred = _lmk68(), _lmk68(1)
    valid = torch.tensor([[True, False, True], [True, True, False]])
    base = landmark_loss(pred, target, valid)
    changed = pred.clone()
    changed[0, 1] += 5.0
    changed[1, 2] = float("nan")
    for fn in (landmark_loss, eye_closure_loss, lip_closure_loss, mediapipe_landmark_loss):
        torch.testing.assert_close(fn(changed, target, valid), fn(pred, target, valid))
    torch.testing.assert_close(landmark_loss(changed, target, valid), base)
    # A NaN target point is ignored, and its gradient stays finite.
    nan_target = target.clone()
    nan_target[0, 0, 3] = float("nan")
    moved = pred.clone()
    moved[0, 0, 3] += 1.0
    moved.requires_grad_(True)
    loss = mediapipe_landmark_loss(moved, nan_target)
    torch.testing.assert_close(loss, mediapipe_landmark_loss(pred, nan_target))
    loss.backward()
    assert torch.isfinite(moved.grad).all()


def test_mediapipe_target_index_and_closure_distance() -> None:
    target = torch.rand(B, T, 478, 2, generator=_gen(2))
    index = torch.tensor([1, 33, 263, 61])
    pred = target[:, :, index].clone()
    assert mediapipe_landmark_loss(pred, target, target_index=index).item() == 0.0
    # Eye closure measures only lid distances: translating every point changes nothing.
    lmk = _lmk68()
    assert eye_closure_loss(lmk + 0.3, lmk).item() == pytest.approx(0.0, abs=1e-6)
    opened = lmk.clone()
    opened[..., 41, 1] += 0.1
    assert eye_closure_loss(opened, lmk).item() > 0
    assert lip_closure_loss(opened, lmk).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- photometric


def _photo_inputs():
    g = _gen(3)
    image = torch.rand(B, T, 3, 8, 8, generator=g)
    render = torch.rand(B, T, 3, 8, 8, generator=g)
    masks = torch.randint(0, 3, (B, T, 8, 8), generator=g)
    alpha = (torch.rand(B, T, 1, 8, 8, generator=g) > 0.3).float()
    return render, image, masks, alpha


def test_photometric_definition_and_exclusions() -> None:
    render, image, masks, alpha = _photo_inputs()
    valid = torch.tensor([[True, True, False], [True, False, True]])
    assert photometric_loss(image, image, masks, alpha, valid).item() == 0.0
    base = photometric_loss(render, image, masks, alpha, valid)
    assert base.item() > 0
    excluded = (masks == 0) | (alpha[:, :, 0] == 0) | ~valid[..., None, None]
    changed = torch.where(excluded[:, :, None], render + 3.0, render)
    torch.testing.assert_close(photometric_loss(changed, image, masks, alpha, valid), base)
    included = torch.where(excluded[:, :, None], render, render + 3.0)
    assert photometric_loss(included, image, masks, alpha, valid) > base


def test_photometric_class_weight_hand_computed() -> None:
    image = torch.zeros(1, 3, 1, 2)
    render = torch.zeros(1, 3, 1, 2)
    render[..., 0, 0] = 1.0  # class 1, error 1
    render[..., 0, 1] = 0.5  # class 2, error 0.5
    masks = torch.tensor([[[1, 2]]])
    alpha = torch.ones(1, 1, 1, 2)
    loss = photometric_loss(render, image, masks, alpha, important_region_weight=3.0)
    torch.testing.assert_close(loss, torch.tensor((1.0 + 3 * 0.5) / 4))


# ---------------------------------------------------------------- regularisers


def test_regularisers() -> None:
    code = torch.randn(B, T, 10, generator=_gen(4))
    valid = torch.tensor([[True, False, True], [False, False, True]])
    expected = (code.pow(2).sum(-1) / 2)[valid].mean()
    torch.testing.assert_close(code_l2(code, valid), expected)
    assert code_l2(torch.zeros(B, T, 10)).item() == 0.0
    changed = code.clone()
    changed[0, 1] = 100
    torch.testing.assert_close(code_l2(changed, valid), expected)
    jaw = torch.randn(B, T, 3, generator=_gen(5))
    assert jaw_regulariser(jaw).item() > 0
    grey = torch.randn(B, T, 9, 1, generator=_gen(6)).expand(B, T, 9, 3)
    assert light_regulariser(grey).item() == pytest.approx(0.0, abs=1e-7)
    coloured = grey.clone()
    coloured[..., 0, 0] += 1.0  # red constant term only
    # deviation from the RGB mean: (2/3, -1/3, -1/3) in one of 27 entries
    torch.testing.assert_close(light_regulariser(coloured), torch.tensor((6 / 9) / 27))
    torch.testing.assert_close(light_regulariser(coloured.reshape(B, T, 27)), torch.tensor(6 / 243))


# ---------------------------------------------------------------- temporal


def test_temporal_smoothness() -> None:
    constant = torch.randn(B, 1, 4, generator=_gen(7)).expand(B, T, 4)
    assert temporal_smoothness(constant, orders=(1, 2)).item() == 0.0
    ramp = torch.arange(T, dtype=torch.float32)[None, :, None].expand(B, T, 4)
    torch.testing.assert_close(temporal_smoothness(ramp, orders=(1,)), torch.tensor(1.0))
    torch.testing.assert_close(temporal_smoothness(ramp, orders=(2,)), torch.tensor(0.0))
    # frame 2 of clip 0 invalid: its jump must not count
    valid = torch.tensor([[True, True, False], [True, True, True]])
    jumped = constant.clone()
    jumped[0, 2] += 10
    assert temporal_smoothness(jumped, valid).item() == 0.0
    assert temporal_smoothness(jumped).item() > 0
    assert temporal_smoothness(torch.randn(B, 1, 4)).item() == 0.0  # T = 1
    with pytest.raises(ValueError):
        temporal_smoothness(ramp, orders=(3,))


# ---------------------------------------------------------------- AU


def test_au_label_loss_ignores_missing_and_is_bce_on_probabilities() -> None:
    labels = torch.tensor([[1.0, 0.0, -1.0]])
    pred = torch.tensor([[0.8, 0.3, 0.5]])
    expected = -(torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.7))) / 2
    torch.testing.assert_close(au_label_loss(pred, labels), expected)
    moved = pred.clone()
    moved[0, 2] = 0.99  # missing label: no change
    torch.testing.assert_close(au_label_loss(moved, labels), expected)
    exact = torch.tensor([[1.0, 0.0, 0.2]])
    assert au_label_loss(exact, labels).item() < 1e-5
    no_labels = -torch.ones(1, 3)
    assert au_label_loss(pred, no_labels).item() == 0.0


def test_au_proxy_and_consistency() -> None:
    proxy = torch.tensor([[0.2, float("nan"), 0.9]])
    pred = torch.tensor([[0.2, 0.7, 0.9]], requires_grad=True)
    loss = au_proxy_loss(pred, proxy)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    off = torch.tensor([[0.4, 0.7, 0.9]])
    torch.testing.assert_close(au_proxy_loss(off, proxy), torch.tensor(0.1))
    torch.testing.assert_close(au_proxy_loss(off, proxy, kind="mse"), torch.tensor(0.02))
    both = au_supervision_loss(
        label_pred=torch.tensor([[0.5]]),
        labels=torch.tensor([[1.0]]),
        proxy_pred=off,
        proxies=proxy,
    )
    torch.testing.assert_close(both, -torch.log(torch.tensor(0.5)) + 0.1)
    only = au_supervision_loss(proxy_pred=off, proxies=proxy, mode="proxies")
    torch.testing.assert_close(only, torch.tensor(0.1))
    a = torch.rand(B, T, 27, generator=_gen(8))
    assert au_consistency_loss(a, a.clone()).item() == 0.0
    b = torch.rand(B, T, 27, generator=_gen(9))
    valid = torch.tensor([[True, False, True], [True, True, True]])
    changed = b.clone()
    changed[0, 1] = 1.0
    torch.testing.assert_close(
        au_consistency_loss(changed, a, valid), au_consistency_loss(b, a, valid)
    )
    assert au_consistency_loss(b, a).item() > 0


# ---------------------------------------------------------------- detail


def test_detail_terms() -> None:
    g = _gen(10)
    tex = torch.rand(2, 3, 8, 8, generator=g)
    target = torch.rand(2, 3, 8, 8, generator=g)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:7] = 1
    assert uv_photometric_loss(tex, tex.clone(), mask).item() == 0.0
    base = uv_photometric_loss(tex, target, mask)
    assert base.item() > 0
    outside = torch.where(mask.bool(), tex, tex + 5)
    torch.testing.assert_close(uv_photometric_loss(outside, target, mask), base)
    valid = torch.tensor([True, False])
    changed = tex.clone()
    changed[1] += 5
    torch.testing.assert_close(
        uv_photometric_loss(changed, target, mask, valid),
        uv_photometric_loss(tex, target, mask, valid),
    )
    z = torch.randn(2, 1, 8, 8, generator=g) * 1e-3
    torch.testing.assert_close(displacement_regulariser(z), z.abs().mean())
    assert displacement_regulariser(torch.zeros_like(z)).item() == 0.0
    flat = torch.full((2, 3, 8, 8), 0.7)
    assert shading_smoothness(flat).item() == 0.0
    assert shading_smoothness(tex).item() > 0
    # DECA's z_diff on a horizontal ramp: dx = 1 everywhere, dy = 0
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)
    torch.testing.assert_close(shading_smoothness(ramp), torch.tensor(1.0))
    symmetric = z + z.flip(-1)
    assert symmetry_loss(symmetric, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert symmetry_loss(z, mask).item() > 0
    z_req = z.clone().requires_grad_(True)
    symmetry_loss(z_req, torch.ones(1, 1, 8, 8)).backward()
    assert z_req.grad.abs().sum() > 0


# ---------------------------------------------------------------- adversarial


def test_wgan_and_hinge_signs() -> None:
    real = torch.tensor([2.0, 4.0])
    fake = torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(critic_loss(real, fake), torch.tensor(0.0 - 3.0))
    torch.testing.assert_close(generator_loss(fake), torch.tensor(0.0))
    torch.testing.assert_close(generator_loss(torch.tensor([1.0, 3.0])), torch.tensor(-2.0))
    # hinge: real 2, 4 -> relu(1-x)=0; fake -1, 1 -> relu(1+x) = 0, 2
    torch.testing.assert_close(critic_loss(real, fake, kind="hinge"), torch.tensor(1.0))
    with pytest.raises(ValueError):
        critic_loss(real, fake, kind="lsgan")


class _LinearCritic(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(dim, generator=_gen(11)))

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None):
        scores = x.flatten(1) @ self.w
        if condition is not None:
            scores = scores + condition.sum(-1)
        return scores[:, None], torch.zeros(x.shape[0], 2)


def test_gradient_penalty_linear_critic() -> None:
    critic = _LinearCritic(12)
    real = torch.randn(4, 3, 2, 2, generator=_gen(12))
    fake = torch.randn(4, 3, 2, 2, generator=_gen(13))
    cond = torch.randn(4, 5)
    gp = gradient_penalty(critic, real, fake, cond, generator=_gen(14))
    expected = (critic.w.detach().norm() - 1) ** 2
    torch.testing.assert_close(gp, expected)
    gp.backward()
    analytic = 2 * (critic.w.norm() - 1) * critic.w / critic.w.norm()
    torch.testing.assert_close(critic.w.grad, analytic.detach())
    with torch.no_grad():
        critic.w.copy_(critic.w / critic.w.norm())
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_with_detail_critic() -> None:
    from seqdeca.models import DetailCritic

    critic = DetailCritic(in_channels=2, num_aus=3, uv_size=16, base=4, n_layers=2)
    real = torch.rand(2, 2, 16, 16)
    fake = torch.rand(2, 2, 16, 16)
    maps = torch.rand(2, 3, 16, 16)
    gp = gradient_penalty(critic, real, fake, maps)
    gp.backward()
    assert gp.item() >= 0
    # the penalty constrains the realism score: trunk and realism head get gradients
    for name, p in critic.named_parameters():
        assert (p.grad is not None) == (not name.startswith("au_head")), name


def test_au_regression_loss() -> None:
    pred = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    target = torch.tensor([[0.5, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(au_regression_loss(pred, target), torch.tensor(0.5))
    valid = torch.tensor([True, False])
    torch.testing.assert_close(au_regression_loss(pred, target, valid), torch.tensor(0.5))
    assert au_regression_loss(target, target).item() == 0.0


# ---------------------------------------------------------------- weights


def test_weights_read_every_config_field() -> None:
    cfg = LossConfig()
    named = {**coarse_weights(cfg), **detail_weights(cfg), **coarse_options(cfg)}
    # landmark_source, contour_weight: read by landmark_point_weights (test_landmark_weights.py);
    # clean_consistency_smooth: by temporal_step (test_corrupt_crops.py)
    # z_sym_region, critic_region: by the generator and critic steps (test_detail_switches.py)
    not_weights = {
        "identity_weights",
        "id_mrf_weights",
        "gan_type",
        "landmark_source",
        "contour_weight",
        "clean_consistency_smooth",
        "z_sym_region",
        "critic_region",
    }
    names = {f.name for f in fields(LossConfig)} - not_weights
    assert names <= set(named) | set(critic_weights(cfg))
    cfg.landmark = 7.0
    cfg.gradient_penalty = 3.0
    assert coarse_weights(cfg)["landmark"] == 7.0
    assert critic_weights(cfg)["gradient_penalty"] == 3.0


def test_weighted_sum() -> None:
    terms = {"a": torch.tensor(2.0), "b": torch.tensor(float("nan")), "c": torch.tensor(1.0)}
    result = weighted_sum(terms, {"a": 0.5, "b": 0.0, "c": 3.0})
    torch.testing.assert_close(result.total, torch.tensor(4.0))
    assert result.finite and "b" not in result.logged
    torch.testing.assert_close(result.logged["a"], torch.tensor(2.0))
    total, _logged, finite = weighted_sum(terms, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert not finite and not torch.isfinite(total)
    with pytest.raises(ValueError, match="without a weight"):
        weighted_sum({"mystery": torch.tensor(1.0)}, {"a": 1.0})
    empty = weighted_sum({"a": torch.tensor(1.0)}, {"a": 0.0})
    assert empty.total.item() == 0.0 and empty.finite


# ---------------------------------------------------------------- optional terms


def test_optional_terms_off_and_errors(tmp_path) -> None:
    from seqdeca.losses.optional import build_id_mrf_loss, build_identity_loss

    cfg = LossConfig()
    assert build_identity_loss(cfg) is None and build_id_mrf_loss(cfg) is None
    cfg.identity = 0.2
    with pytest.raises(UserError, match="loss.identity_weights") as err:
        build_identity_loss(cfg)
    assert "\n" not in str(err.value)
    cfg.identity_weights = str(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="loss.identity_weights not found"):
        build_identity_loss(cfg)
    cfg.id_mrf = 0.1
    with pytest.raises(UserError, match="loss.id_mrf_weights"):
        build_id_mrf_loss(cfg)


def test_identity_loss_loads_user_file(tmp_path) -> None:
    import timm

    from seqdeca.losses.optional import build_identity_loss

    source = timm.create_model("resnet50", pretrained=False, num_classes=8631)
    state = {k: v.numpy() for k, v in source.state_dict().items() if "num_batches" not in k}
    path = tmp_path / "resnet50_ft_weight.pkl"  # VGGFace2's numpy-pickle format
    path.write_bytes(pickle.dumps(state))
    cfg = LossConfig(identity=0.2, identity_weights=str(path))
    loss_fn = build_identity_loss(cfg)
    torch.testing.assert_close(loss_fn.net.conv1.weight, source.conv1.weight)
    image = torch.rand(2, 3, 64, 64, generator=_gen(15))
    assert loss_fn(image, image.clone()).item() == pytest.approx(0.0, abs=1e-5)
    render = torch.rand(2, 3, 64, 64, generator=_gen(16)).requires_grad_(True)
    loss = loss_fn(render, image)
    loss.backward()
    assert loss.item() > 0 and render.grad.abs().sum() > 0
    assert not loss_fn.training and not any(p.requires_grad for p in loss_fn.parameters())


def test_id_mrf_loss_loads_user_file(tmp_path) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    from seqdeca.losses.optional import build_id_mrf_loss

    features = make_layers(cfgs["E"])
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loss_fn = build_id_mrf_loss(LossConfig(id_mrf=0.1, id_mrf_weights=str(path)))
    torch.testing.assert_close(loss_fn.features[21].weight, features[21].weight)
    image = torch.rand(2, 3, 32, 32, generator=_gen(17))
    same = loss_fn(image, image.clone())
    other = torch.rand(2, 3, 32, 32, generator=_gen(18)).requires_grad_(True)
    diff = loss_fn(other, image)
    diff.backward()
    assert diff.item() > same.item() >= -1e-6
    assert other.grad.abs().sum() > 0


def test_au_render_term_is_wired_and_trains_the_codes() -> None:
    """``loss.au_render`` > 0: the temporal step's terms hold the AU consistency of the render,
    and its gradient reaches the trainable modules through the frozen AU net and the render."""
    from seqdeca.config import load_config
    from seqdeca.data.dataset import WindowBatch
    from seqdeca.models.from_config import build_model
    from seqdeca.train.steps import SkipLog, coarse_terms

    cfg = load_config(["configs/tiny_cpu.yaml"], ["loss.au_render=1.0", "loss.au_label=0"])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_stage("temporal")
    with torch.no_grad():  # a "trained" fusion, so that the codes depend on its parameters
        torch.nn.init.normal_(model.temporal_fusion.residual_head.weight, std=0.05)
    b, t = 1, 2
    images = torch.rand(b, t, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    batch = WindowBatch(
        images=images,
        landmarks=torch.zeros(b, t, 478, 2),
        landmarks68=torch.zeros(b, t, 68, 2),
        masks=torch.ones(b, t, 224, 224, dtype=torch.uint8),
        valid=torch.ones(b, t, dtype=bool),
        au=-torch.ones(b, t, 12),
        au_proxy=torch.zeros(b, t, 0),
        clip_ids=["c"],
        frames=torch.arange(t)[None],
    )
    skips = SkipLog()
    kwargs = {"loss_cfg": cfg.loss, "mediapipe_ids": None, "skips": skips}
    without = coarse_terms(model(images, batch.valid), batch, **kwargs)
    assert "au_render" not in without and "au_render" in skips.reasons
    out = model(images, batch.valid, au_render=True)
    terms = coarse_terms(out, batch, **kwargs)
    assert terms["au_render"] > 0
    terms["au_render"].backward()
    grad = model.temporal_fusion.residual_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in model.au_net.parameters())  # frozen: no update


def test_residual_reg_pulls_the_fused_codes_to_the_per_frame_ones() -> None:
    """``loss.residual_reg``: zero at the fusion's zero start, then ``code_l2`` of the residual,
    with a gradient that reaches the fusion only."""
    from seqdeca.config import load_config
    from seqdeca.losses.regularisers import code_l2
    from seqdeca.models.from_config import build_model
    from seqdeca.train.steps import SkipLog, coarse_terms

    cfg = load_config(["configs/tiny_cpu.yaml"], ["loss.residual_reg=1.0"])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_stage("temporal")
    b, t = 1, 3
    images = torch.rand(b, t, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    valid = torch.ones(b, t, dtype=torch.bool)
    weights = {
        k: 0.0
        for k in (
            "landmark",
            "eye_closure",
            "lip_closure",
            "photometric",
            "light_reg",
            "au_label",
            "shape_reg",
            "expression_reg",
            "texture_reg",
        )
    }
    for name, value in weights.items():
        setattr(cfg.loss, name, value)
    kwargs = {"loss_cfg": cfg.loss, "mediapipe_ids": None, "skips": SkipLog()}
    batch = types.SimpleNamespace(valid=valid, clean_images=None, images=images)
    start = coarse_terms(model(images, valid), batch, **kwargs)
    assert set(start) == {"residual_reg"} and start["residual_reg"].detach().item() == 0.0
    with torch.no_grad():
        torch.nn.init.normal_(model.temporal_fusion.residual_head.weight, std=0.05)
    out = model(images, valid)
    terms = coarse_terms(out, batch, **kwargs)
    torch.testing.assert_close(terms["residual_reg"], code_l2(out.fused.residual, valid))
    assert terms["residual_reg"].detach().item() > 0
    terms["residual_reg"].backward()
    assert model.temporal_fusion.residual_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.coarse_encoder.parameters())
