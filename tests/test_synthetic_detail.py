"""Synthetic ground-truth detail: exact regeneration, AU-driven amplitude, regions, shading only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from script_loader import load_script

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.config import load_config
from seqdeca.config.schema import SyntheticDetailConfig
from seqdeca.data import synthetic
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.data.synthetic_detail import (
    DETAIL_KEYS,
    WRINKLE_REGIONS,
    DetailParams,
    _skin_mask,
    clip_detail_params,
    detail_displacement_maps,
    detail_ground_truth,
    detail_layout,
    detail_region_masks,
    draw_detail_params,
    pattern_maps,
)
from seqdeca.errors import UserError
from seqdeca.face_model.from_config import face_model_assets_from_config, face_model_from_config

ROOT = Path(__file__).resolve().parents[1]
UV = 32  # small UV maps: fast
SMALL = ["crop.size=64", "synthetic.background=noise", f"synthetic.detail.uv_size={UV}"]
DETAIL = ["synthetic.expression=au", "synthetic.detail.scale=1.0", "synthetic.au_events=3.0"]


@pytest.fixture(scope="module")
def model():
    return face_model_from_config(load_config().face_model)


@pytest.fixture(scope="module")
def params(model):
    return clip_detail_params(model, seed=11, settings=SyntheticDetailConfig(scale=1.0))


def _intensity(frames: int, **levels: float) -> np.ndarray:
    au = np.zeros((frames, len(MAIN_AU_NAMES)), np.float32)
    for name, level in levels.items():
        au[:, MAIN_AU_NAMES.index(name)] = level
    return au


def test_record_is_small_and_round_trips(params):
    arrays = params.arrays()
    assert set(arrays) == set(DETAIL_KEYS)
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert sum(a.size for a in arrays.values()) < 1000
    again = DetailParams.from_arrays(arrays)
    au = _intensity(3, AU1=0.5, AU12=1.0)
    np.testing.assert_array_equal(
        detail_displacement_maps(again, au, UV), detail_displacement_maps(params, au, UV)
    )
    with pytest.raises(UserError, match="no detail record"):
        DetailParams.from_arrays({k: v for k, v in arrays.items() if k != "detail_waves"})


def test_layout_of_assets_and_of_the_layer_agree(model):
    a = detail_layout(face_model_assets_from_config(load_config().face_model))
    b = detail_layout(model)
    np.testing.assert_allclose(a.centres, b.centres, atol=1e-6)
    np.testing.assert_allclose(a.frame, b.frame, atol=1e-6)


def test_zero_aus_leave_only_the_static_detail(model, params):
    au = np.zeros((4, len(MAIN_AU_NAMES)), np.float32)
    au[1:, MAIN_AU_NAMES.index("AU25")] = 1.0  # an AU without wrinkles changes nothing
    maps = detail_displacement_maps(params, au, UV)
    assert np.abs(maps).max() > 0
    for t in range(1, 4):
        np.testing.assert_array_equal(maps[t], maps[0])
    layout = detail_layout(model)
    rng = np.random.default_rng(0)
    wrinkles_only = draw_detail_params(layout, rng, scale=1.0, static=0.0)
    assert np.abs(detail_displacement_maps(wrinkles_only, au, UV)).max() == 0


@pytest.mark.parametrize("region", list(WRINKLE_REGIONS))
def test_region_energy_grows_with_its_aus(model, params, region):
    masks = detail_region_masks(model, UV)
    aus = WRINKLE_REGIONS[region]
    levels = (0.0, 0.25, 0.5, 1.0)
    maps = np.stack(
        [
            detail_displacement_maps(params, _intensity(1, **dict.fromkeys(aus, x)), UV)[0]
            for x in levels
        ]
    )
    wrinkles = maps - maps[0]
    energy = [(w[masks[region]] ** 2).mean() for w in wrinkles]
    assert all(b > a for a, b in itertools.pairwise(energy)), energy
    np.testing.assert_allclose(energy[1:], np.square(levels[1:]) * energy[-1], rtol=1e-4)
    # the other regions barely move
    for other, mask in masks.items():
        if other != region and not set(WRINKLE_REGIONS[other]) & set(aus):
            outside = mask & ~masks[region]
            assert (wrinkles[-1][outside] ** 2).mean() < 0.05 * energy[-1], other


@pytest.mark.parametrize("uv_size", [UV, 64])
def test_each_pattern_lies_in_its_region(model, params, uv_size):
    masks = detail_region_masks(model, uv_size)
    skin = _skin_mask(model, uv_size)
    centre = uv_size // 2
    for name, pattern in pattern_maps(params, uv_size).items():
        mask = masks[name]
        assert mask.shape == (uv_size, uv_size) and mask.dtype == bool
        energy = pattern[skin] ** 2
        inside = (pattern[mask] ** 2).sum() / energy.sum()
        assert inside > 0.97, (name, inside)
        if name not in ("forehead", "glabella", "chin"):  # bilateral: both sides
            assert mask[:, :centre].any() and mask[:, centre:].any(), name


def test_any_uv_size_is_the_fine_map_averaged(params):
    au = _intensity(2, AU4=1.0, AU6=0.5, AU17=0.3)
    fine = detail_displacement_maps(params, au, 256)
    coarse = detail_displacement_maps(params, au, 64)
    pooled = fine.reshape(2, 64, 4, 64, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(coarse, pooled, atol=1e-8)
    assert detail_displacement_maps(params, au, 37).shape == (2, 37, 37)
    everything = detail_displacement_maps(params, np.ones((1, 27), np.float32), 128)
    assert np.abs(everything).max() < 0.01  # within the detail generator's range (metres)
    assert np.abs(everything).max() > 1e-3  # deep enough to see


def test_clip_maps_regenerate_exactly_from_gt(tmp_path, monkeypatch):
    shaded = []
    original = synthetic.detail_normal_maps

    def spy(model, vertices, displacement):
        shaded.append(displacement.clone())
        return original(model, vertices, displacement)

    monkeypatch.setattr(synthetic, "detail_normal_maps", spy)
    cfg = load_config(None, [*SMALL, *DETAIL])
    (clip,) = make_synthetic_dataset(tmp_path, cfg, clips=1, frames=5, seed=3, progress=False)
    with np.load(clip / "gt.npz") as data:
        gt = dict(data)
    assert set(DETAIL_KEYS) <= set(gt) and gt["au_intensity"].max() > 0
    (displacement,) = shaded
    np.testing.assert_array_equal(detail_ground_truth(gt, UV), displacement.numpy())
    meta = json.loads((clip / "meta.json").read_text())
    assert meta["synthetic"]["detail"]["scale"] == 1.0


def _clip_files(clip: Path) -> dict[str, np.ndarray]:
    out = {name: np.load(clip / f"{name}.npy") for name in ("landmarks", "landmarks68", "valid")}
    out["masks"] = np.stack([np.asarray(Image.open(p)) for p in sorted(clip.glob("masks/*"))])
    out["frames"] = np.stack(
        [np.asarray(Image.open(p), np.int16) for p in sorted(clip.glob("frames/*"))]
    )
    return out


def test_detail_changes_shading_only(tmp_path):
    base = [
        *SMALL,
        "crop.size=96",
        "synthetic.fill=0.5",
        "synthetic.expression=au",
        "synthetic.au_events=3.0",
    ]
    plain, detailed = (
        make_synthetic_dataset(
            tmp_path / name,
            load_config(None, [*base, *extra]),
            clips=1,
            frames=4,
            seed=8,
            progress=False,
        )[0]
        for name, extra in (("plain", []), ("detail", ["synthetic.detail.scale=1.0"]))
    )
    a, b = _clip_files(plain), _clip_files(detailed)
    for name in ("landmarks", "landmarks68", "valid", "masks"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with np.load(plain / "gt.npz") as ga, np.load(detailed / "gt.npz") as gb:
        assert set(gb.files) - set(ga.files) == set(DETAIL_KEYS)
        for key in ga.files:
            np.testing.assert_array_equal(ga[key], gb[key], err_msg=key)
    diff = np.abs(a["frames"] - b["frames"]).max(axis=-1)  # (T, H, W)
    face = a["masks"] > 0
    assert diff[face].mean() > 1.0  # the face is shaded differently


def test_render_changes_only_face_pixels(model, params):
    from seqdeca.data.synthetic import random_background, render_clip, sample_clip_codes
    from seqdeca.data.synthetic_au import au_expression_map
    from seqdeca.render.renderer import Renderer

    settings = load_config(None, DETAIL).synthetic
    gen = torch.Generator().manual_seed(0)
    codes = sample_clip_codes(model, gen, settings, frames=3, au_map=au_expression_map(model))
    renderer = Renderer(
        faces=model.faces,
        verts_uvs=model.verts_uvs,
        faces_uvs=model.faces_uvs,
        image_size=96,
        uv_size=UV,
    )
    background = random_background(gen, 96)
    displacement = torch.from_numpy(detail_displacement_maps(params, codes["au_intensity"], 64))
    plain = render_clip(model, renderer, codes, background)
    shaded = render_clip(model, renderer, codes, background, displacement=displacement)
    for key in ("masks", "landmarks", "landmarks68"):
        np.testing.assert_array_equal(plain[key], shaded[key], err_msg=key)
    diff = np.abs(plain["images"].astype(np.int16) - shaded["images"]).max(axis=-1)
    face = plain["masks"] > 0
    assert diff[~face].max() == 0 and diff[face].mean() > 1.0


def _tool_main():
    return load_script("tools/make_synthetic_data.py").main


def test_tool_detail_writes_the_record(tmp_path):
    main = _tool_main()
    assert main([str(tmp_path), "--detail", "--clips", "1", "--frames", "3", *SMALL]) == 0
    clip = tmp_path / "synthetic" / "synth_00000"
    with np.load(clip / "gt.npz") as gt:
        assert set(DETAIL_KEYS) <= set(gt.files) and "au_intensity" in gt.files
        assert detail_ground_truth(gt, 16).shape == (3, 16, 16)
    assert (
        main(
            [
                str(tmp_path / "b"),
                "--detail",
                "--clips",
                "1",
                "--frames",
                "3",
                *SMALL,
                "synthetic.expression=smooth",
            ]
        )
        == 2
    )
    assert not (tmp_path / "b" / "synthetic" / "synth_00000").exists()


def test_experiment_config_loads():
    cfg = load_config(ROOT / "configs" / "experiments" / "detail.yaml")
    settings = synthetic.resolve_settings(cfg)
    assert settings.detail.scale > 0 and settings.expression == "au"
    assert 20 <= settings.min_frames <= settings.frames <= 40
    assert (
        sum(
            getattr(settings.corruption, k)
            for k in ("occluder", "blur", "noise", "jpeg", "flicker")
        )
        == 0
    )


def test_detail_without_au_expression_is_a_one_line_error():
    cfg = load_config(None, ["synthetic.detail.scale=1.0"])
    with pytest.raises(UserError, match="synthetic.expression=au"):
        synthetic.resolve_settings(cfg)


def test_check_picture(model, tmp_path):
    from seqdeca.vis.detail_check import detail_check_picture

    picture = detail_check_picture(
        model,
        seed=2,
        image_size=48,
        uv_size=UV,
        intensities=(0.0, 1.0),
        path=tmp_path / "check.png",
    )
    assert picture.dtype == np.uint8 and picture.shape[0] > 2 * 48 and picture.shape[1] > 4 * 48
    assert (tmp_path / "check.png").is_file()


def test_flame_format_model(tmp_path):
    """A FLAME-format model (tiny, random: placement is not checked, only that it all runs)."""
    import asset_factory as af

    from seqdeca.data.synthetic_detail import detail_normal_maps
    from seqdeca.face_model import load_flame
    from seqdeca.face_model.layer import FaceModel

    paths, _ = af.write_flame_bundle(tmp_path)
    side = {k: v for k, v in paths.items() if k != "model_path"}
    flame = FaceModel(load_flame(paths["model_path"], **side, n_texture=4))
    params = draw_detail_params(detail_layout(flame), np.random.default_rng(0))
    maps = detail_displacement_maps(params, np.ones((2, 27), np.float32), UV)
    assert maps.shape == (2, UV, UV) and np.isfinite(maps).all() and np.abs(maps).max() > 0
    assert set(detail_region_masks(flame, UV)) == set(WRINKLE_REGIONS)
    vertices = flame(shape=torch.zeros(2, flame.num_shape)).vertices
    normals = detail_normal_maps(flame, vertices, torch.from_numpy(maps))
    assert normals.shape == (2, 3, UV, UV) and torch.isfinite(normals).all()
