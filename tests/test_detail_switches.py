"""The detail stage's ablation switches: BCE GAN, a critic without AU (model.critic_au), no critic
at all (loss.adversarial 0), the z_sym region, ground-truth coarse codes and AU condition
(train.detail_coarse / train.detail_condition), and the one-line refusals (fp16 with a critic,
unknown settings, sources without gt.npz).

Tiny backbones (configs/tiny_cpu.yaml) on 2 synthetic clips of 8 frames with AU trajectories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from prepared_factory import make_prepared_clip
from torch.testing import assert_close

from seqdeca.config import load_config
from seqdeca.config.schema import Config, DataSourceConfig
from seqdeca.data.dataset import SequenceDataset, collate_windows
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.losses import critic_loss, generator_loss, invisible_mask, symmetry_loss
from seqdeca.models.critic import ConditionedDetailCritic, DetailCritic
from seqdeca.models.detail_sources import DetailSources, ground_truth_codes
from seqdeca.models.from_config import build_critic, build_model
from seqdeca.train.detail_setup import check_detail_settings
from seqdeca.train.gan_steps import generator_terms
from seqdeca.train.loop import train
from seqdeca.train.state import list_checkpoints
from seqdeca.train.steps import SkipLog

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"
DETAIL = ROOT / "configs" / "detail.yaml"
STILL = [
    f"data.augmentation.{k}=0"
    for k in ("flip_prob", "max_rotation_deg", "scale_jitter", "shift_jitter")
]
GROUND_TRUTH = ["train.detail_coarse=ground_truth", "train.detail_condition=ground_truth"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("au_clips")
    cfg = load_config(TINY, ["synthetic.expression=au"])
    make_synthetic_dataset(root, cfg, clips=2, frames=8, seed=5, progress=False)
    return root


def _config(data_root: Path, run_dir: Path, *overrides: str) -> Config:
    keys = [
        "data.window=3",
        "data.min_window=1",
        "data.batch_size=1",
        f"run.output_dir={run_dir}",
        "train.max_steps=3",
        "train.n_critic=1",
        "train.checkpoint_every=0",
        "train.log_every=1",
        *STILL,
        *overrides,
    ]
    cfg = load_config([TINY, DETAIL], keys)
    cfg.data.sources = [DataSourceConfig(root=str(data_root))]
    return cfg


def _losses(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "losses.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------- units


def test_bce_is_the_non_saturating_gan() -> None:
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    expected = F.softplus(-real).mean() + F.softplus(fake).mean()
    assert_close(critic_loss(real, fake, kind="bce"), expected)
    assert_close(
        critic_loss(torch.zeros(3), torch.zeros(3), kind="bce"), torch.tensor(2 * math.log(2))
    )
    assert_close(generator_loss(fake, kind="bce"), F.softplus(-fake).mean())
    # non-saturating: a confident critic still gives the generator a gradient of about -1
    scores = torch.tensor([-8.0], requires_grad=True)
    generator_loss(scores, kind="bce").backward()
    assert scores.grad.item() == pytest.approx(-1.0, abs=1e-3)


def test_critic_au_switch_is_independent_of_the_generator_condition() -> None:
    torch.manual_seed(0)
    critic = DetailCritic(in_channels=1, num_aus=0, uv_size=32, base=4, n_layers=3)
    realism, au = critic(torch.randn(2, 1, 32, 32))
    assert realism.shape == (2, 1, 4, 4) and au is None and critic.au_head is None
    wrapped = ConditionedDetailCritic(critic=critic, heatmaps=None)
    assert not wrapped.conditioned and set(wrapped(torch.randn(2, 1, 32, 32), None)) == {"realism"}
    with pytest.raises(ValueError, match="needs heatmaps"):
        ConditionedDetailCritic(
            critic=DetailCritic(in_channels=1, num_aus=3, uv_size=32), heatmaps=None
        )
    cases = {  # (generator AU dim, critic input channels, critic has an AU head)
        (): (27, 28, True),
        ("model.detail_au_condition=none",): (0, 28, True),  # as before: the critic sees 27
        ("model.critic_au=false",): (27, 1, False),  # wgan-film
        ("model.detail_au_condition=none", "model.critic_au=false"): (0, 1, False),  # wgan-noau
    }
    for overrides, (gen_dim, channels, head) in cases.items():
        cfg = load_config(TINY, list(overrides))
        model = build_model(cfg, load_checkpoints=False)
        built = build_critic(cfg, model)
        assert model.detail_generator.au_dim == gen_dim, overrides
        assert built.critic.trunk[0].in_channels == channels, overrides
        assert (built.critic.au_head is not None) == head == built.conditioned, overrides


def test_cpu_sizes_of_generator_and_critic_follow_the_config() -> None:
    cfg = load_config(TINY, ["model.detail_uv_size=64", "model.critic_width=8"])
    model = build_model(cfg, load_checkpoints=False)
    built = build_critic(cfg, model)
    assert model.detail_generator.uv_size == 64 and model.detail_generator.init_size == 2
    assert built.critic.trunk[0].out_channels == 8
    default = build_model(load_config(TINY), load_checkpoints=False)
    assert default.detail_generator.uv_size == 256  # DECA's, resized to render.uv_size
    assert default.detail_generator.max_displacement == 0.01  # DECA's
    assert default.detail_encoder_size == default.encoder_size  # -1: the encoders' size
    sized = build_model(
        load_config(
            TINY,
            [
                "model.encoder_size=32",
                "model.detail_encoder_size=0",
                "model.detail_max_displacement=0.001",
            ],
        ),
        load_checkpoints=False,
    )
    assert (sized.encoder_size, sized.detail_encoder_size) == (32, 0)
    assert sized.detail_generator.max_displacement == 0.001
    crops = torch.rand(2, 3, 48, 48)
    assert sized._encoder_input(crops).shape[-1] == 32
    assert sized._encoder_input(crops, sized.detail_encoder_size) is crops  # as given


def test_invisible_mask_and_summed_symmetry() -> None:
    visible = torch.zeros(2, 1, 256, 256)
    visible[:, :, 60:200, 40:220] = 1
    hidden = invisible_mask(visible)
    eroded = torch.zeros_like(visible)
    eroded[:, :, 62:198, 42:218] = 1  # DECA's 5 x 5 erosion at UV 256
    assert_close(hidden, 1 - eroded)
    assert invisible_mask(visible[..., ::4, ::4]).sum() > (1 - visible[..., ::4, ::4]).sum()
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 1, 16, 16, generator=gen) * 1e-3
    mask = (torch.rand(2, 1, 16, 16, generator=gen) > 0.5).float()
    per_sample = (mask * (z - z.flip(-1)).abs()).sum(dim=(1, 2, 3))
    assert_close(symmetry_loss(z, mask, summed=True), per_sample.mean())
    valid = torch.tensor([True, False])
    assert_close(symmetry_loss(z, mask, valid, summed=True), per_sample[0])
    mean = (mask * (z - z.flip(-1)).abs()).sum() / mask.sum()
    assert_close(symmetry_loss(z, mask), mean)


def test_check_detail_settings_refuses_in_one_line() -> None:
    bad = {
        "loss.gan_type=lsgan": "loss.gan_type",
        "loss.z_sym_region=eyes": "loss.z_sym_region",
        "loss.critic_region=all": "loss.critic_region",
        "train.detail_coarse=fit": "train.detail_coarse",
        "train.detail_condition=labels": "train.detail_condition",
        "train.mixed_precision=fp16": "fp16",
    }
    for override, name in bad.items():
        with pytest.raises(UserError, match=name) as err:
            check_detail_settings(load_config([TINY, DETAIL], [override]))
        assert "\n" not in str(err.value)
    # no critic, no shared gradient scaler: fp16 is the temporal stage's case
    sources = check_detail_settings(
        load_config([TINY, DETAIL], ["train.mixed_precision=fp16", "loss.adversarial=0"])
    )
    assert sources == DetailSources() and not sources.ground_truth


def test_fp16_detail_training_is_refused_before_any_work(data_root, tmp_path) -> None:
    cfg = _config(data_root, tmp_path / "fp16", "train.mixed_precision=fp16")
    with pytest.raises(UserError, match="fp16") as err:
        train(cfg)
    assert "\n" not in str(err.value) and not (tmp_path / "fp16").exists()


# ---------------------------------------------------------------- model and generator terms


@pytest.fixture(scope="module")
def gt_batch(data_root):
    dataset = SequenceDataset(sources=[data_root], window=3, train=False, ground_truth=True)
    return collate_windows([dataset[0], dataset[3]], dataset.clip_ids)


@pytest.fixture(scope="module")
def gt_outputs(gt_batch):
    """A tiny model's detail outputs on the ground truth (coarse codes and AU condition)."""
    torch.manual_seed(0)
    model = build_model(load_config(TINY), load_checkpoints=False)
    model.set_stage("detail")
    model.eval()
    given = DetailSources(*("ground_truth",) * 2).forward_kwargs(gt_batch.gt, model.layout)
    with torch.no_grad():
        out = model(gt_batch.images, gt_batch.valid, "detail", **given)
    return model, out


def test_ground_truth_codes_reproduce_the_clip(gt_batch, gt_outputs) -> None:
    model, out = gt_outputs
    gt = gt_batch.gt
    assert_close(out.cam, gt["cam"])
    assert_close(out.light, gt["light"])
    assert_close(out.pose, torch.cat([gt["global_pose"], gt["jaw_pose"]], -1))
    # the truth's mesh projects onto the clip's exact landmarks (normalised coordinates)
    assert_close(out.decoded.landmarks68, gt_batch.landmarks68, atol=1e-4, rtol=0)
    assert_close(out.detail.au_condition, gt["au_intensity"])  # the condition is the truth...
    assert not torch.allclose(out.fused.au_intensities, gt["au_intensity"])  # ...not the head's
    codes = ground_truth_codes(
        {k: v[..., :2] if k == "shape" else v for k, v in gt.items()}, model.layout
    )
    assert codes["shape"].shape[-1] == model.layout.n_shape and (codes["shape"][..., 2:] == 0).all()
    with pytest.raises(UserError, match="expression components"):
        ground_truth_codes(gt | {"expression": torch.zeros(2, 3, 99)}, model.layout)
    with pytest.raises(UserError, match="lacks cam"):
        ground_truth_codes({k: v for k, v in gt.items() if k != "cam"}, model.layout)
    with pytest.raises(UserError, match="au_intensity"):
        DetailSources(condition="ground_truth").forward_kwargs({"cam": gt["cam"]}, model.layout)


def test_generator_terms_follow_the_critic_and_the_z_sym_region(gt_outputs) -> None:
    model, out = gt_outputs
    torch.manual_seed(1)
    uv_mask = model.uv_detail_mask(out.detail.displacement)
    cfg = load_config([TINY, DETAIL])
    skips = SkipLog()
    none = generator_terms(out, None, uv_mask, loss_cfg=cfg.loss, skips=skips)
    assert {"adversarial", "au_regression"}.isdisjoint(none) and "z_sym" in none
    assert set(skips.reasons) == {"adversarial", "au_regression"}
    plain = build_critic(load_config(TINY, ["model.critic_au=false"]), model)
    terms = generator_terms(out, plain, uv_mask, loss_cfg=cfg.loss, skips=SkipLog())
    assert "adversarial" in terms and "au_regression" not in terms
    full = generator_terms(
        out, build_critic(cfg, model), uv_mask, loss_cfg=cfg.loss, skips=SkipLog()
    )
    assert {"adversarial", "au_regression"} <= set(full)
    cfg.loss.z_sym_region = "invisible"
    hidden = generator_terms(out, None, uv_mask, loss_cfg=cfg.loss, skips=SkipLog())["z_sym"]
    z = out.detail.displacement.flatten(0, 1)
    region = invisible_mask(out.detail.uv_visible_mask.flatten(0, 1))
    expected = (region * (z - z.flip(-1)).abs()).sum(dim=(1, 2, 3)).mean()
    assert_close(hidden, expected)


def test_detail_contrast_term_and_the_critic_region(gt_outputs) -> None:
    """loss.detail_contrast compares the critic's two views inside the compared region only;
    loss.critic_region=compared hides the rest from the critic."""
    from seqdeca.train.gan_steps import compared_region, critic_views

    model, out = gt_outputs
    uv_mask = model.uv_detail_mask(out.detail.displacement)
    cfg = load_config([TINY, DETAIL], ["loss.detail_contrast=1", "loss.adversarial=0"])
    terms = generator_terms(out, None, uv_mask, loss_cfg=cfg.loss, skips=SkipLog())
    fake, real = critic_views(out, "visible")
    region = uv_mask[None, None] * compared_region(out)
    assert 0 < region.sum() < (out.detail.uv_visible_mask > 0.5).sum()
    expected = ((fake - real).abs() * region).sum() / region.sum()
    assert_close(terms["detail_contrast"], expected)
    kept, seen = critic_views(out, "compared")
    assert (kept[compared_region(out) == 0] == 0).all() and (
        seen[compared_region(out) == 0] == 0
    ).all()
    with pytest.raises(ValueError, match="critic region"):
        critic_views(out, "everywhere")


def test_path_offset_makes_a_detail_free_photo_match_the_zero_map(gt_batch) -> None:
    """model.detail_path_offset: on frames that ARE the coarse face rendered without detail (at
    the photo's size, over the photo), the critic's real view equals a zero displacement's fake
    view; without the offset the round trip leaves a difference."""
    from seqdeca.models.detail_path import photo_path
    from seqdeca.render.resize import resize_maps
    from seqdeca.train.gan_steps import compared_region, critic_views

    def detail_outputs(offset: bool, images: torch.Tensor):
        torch.manual_seed(0)
        cfg = load_config(TINY, [f"model.detail_path_offset={offset}"])
        model = build_model(cfg, load_checkpoints=False).eval()
        model.set_stage("detail")
        last = model.detail_generator.conv_blocks[21]  # a zero displacement
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        given = DetailSources(*("ground_truth",) * 2).forward_kwargs(gt_batch.gt, model.layout)
        with torch.no_grad():
            return model, model(images, gt_batch.valid, "detail", **given)

    model, out = detail_outputs(False, gt_batch.images)
    assert out.detail.uv_path_offset is None
    flat = gt_batch.images.flatten(0, 1)
    vertices = out.decoded.vertices.flatten(0, 1)
    path = photo_path(model.renderer, vertices, out.cam.flatten(0, 1), tuple(flat.shape[-2:]))
    uv_mask = model.uv_detail_mask(out.detail.displacement)
    with torch.no_grad():
        normals = model.renderer.detail_normal_map(
            torch.zeros(len(flat), 1, *uv_mask.shape), vertices, uv_mask
        )
        rendered = model.renderer.shade(
            vertices,
            path.screen,
            path.fragments,
            out.light.flatten(0, 1),
            out.decoded.albedo.flatten(0, 1).clamp(0, 1),
            normals,
            background=flat,
        ).image.clamp(0, 1)
    photos = rendered.view_as(gt_batch.images)
    assert resize_maps(rendered, (8, 8)).std() > 0.05  # a face over the clip's background

    gaps = {}
    for offset in (False, True):
        _, out = detail_outputs(offset, photos)
        assert (out.detail.uv_path_offset is not None) == offset
        fake, real = critic_views(out, "visible")
        region = compared_region(out)
        gaps[offset] = float(((fake - real).abs() * region).sum() / region.sum())
    assert gaps[True] < 1e-5 and gaps[False] > 1e-3, gaps


# ------------------------------------------------------------------------------- training


def test_l1_only_trains_without_a_critic_and_resumes(data_root, tmp_path) -> None:
    """loss.adversarial=0: no critic, no critic optimizer, one generator update per step;
    checkpoints hold the model and its optimizer only and a resumed run continues exactly."""
    no_critic = ("loss.adversarial=0", "train.n_critic=5", "train.checkpoint_every=2")
    reference = tmp_path / "a"
    summary = train(_config(data_root, reference, *no_critic))
    assert summary.steps == 3 and summary.skipped_steps == 0
    records = _losses(reference)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert not any(
        k.startswith("D_") or k in ("adversarial", "au_regression", "lr_critic")
        for r in records
        for k in r
    )
    assert {"detail_photometric", "z_reg", "z_diff", "z_sym", "total"} <= set(records[0])
    names = {p.name for p in list_checkpoints(reference)[-1].iterdir()}
    assert {"model.safetensors", "optimizer.bin"} <= names
    assert not names & {"model_1.safetensors", "optimizer_1.bin"}
    resumed = tmp_path / "b"
    train(_config(data_root, resumed, *no_critic, "train.max_steps=2"))
    train(_config(data_root, resumed, *no_critic), resume="latest")
    assert _losses(resumed) == records


def test_ground_truth_sources_train_validate_and_refuse_real_clips(data_root, tmp_path) -> None:
    """wgan-full-gtau's sources with the BCE GAN, no critic AU and DECA's z_sym: training,
    validation and image grids run; sources without gt.npz are refused in one line."""
    run_dir = tmp_path / "gt"
    cfg = _config(
        data_root,
        run_dir,
        *GROUND_TRUTH,
        "loss.gan_type=bce",
        "model.critic_au=false",
        "loss.z_sym_region=invisible",
        "train.max_steps=2",
        "train.validate_every=2",
        "train.val_windows=2",
        "train.images_every=2",
    )
    cfg.data.val_sources = cfg.data.sources
    summary = train(cfg)
    records = _losses(run_dir)
    assert summary.steps == 2 and {"D_critic", "adversarial", "z_sym"} <= set(records[0])
    assert not {"D_au_regression", "au_regression"} & set(records[0])
    assert all(math.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
    assert summary.last_val["vertex_error"] < 1e-3  # the coarse codes are the truth
    assert (run_dir / "images" / "step_000002.png").is_file()
    make_prepared_clip(tmp_path / "real", "c0", [1] * 5)
    cfg = _config(tmp_path / "real", tmp_path / "refused", "train.detail_condition=ground_truth")
    with pytest.raises(UserError, match="has no gt.npz: train.detail_condition=ground_truth") as e:
        train(cfg)
    assert "\n" not in str(e.value)
