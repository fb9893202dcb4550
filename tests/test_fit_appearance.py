"""Fit-mode appearance: texture coefficients and SH light by robust least squares, the extracted
UV texture map, and what video2mesh and the evaluation make of them.

Synthetic clips of the bundled model carry their true texture coefficients and light (gt.npz):
the estimates are compared with them on the true geometry, so the tests check the least squares
and not the landmark fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqdeca.config import load_config
from seqdeca.data.synthetic import make_synthetic_dataset
from seqdeca.errors import UserError
from seqdeca.eval.clips import load_clip
from seqdeca.evaluation.runner import EvalOptions, evaluate
from seqdeca.face_model.layer import FlameParams
from seqdeca.inference.appearance import (
    estimate_texture,
    face_samples,
    robust_light,
    sample_maps,
    solve_texture,
)
from seqdeca.inference.clip_appearance import fit_light
from seqdeca.inference.demo import make_demo_clip
from seqdeca.inference.pipeline import build_fit_engine, video2mesh
from seqdeca.inference.texture_map import TextureAccumulator
from seqdeca.io.obj import read_obj
from seqdeca.prep.masks import FACE
from seqdeca.render.openings import opening_cells
from seqdeca.render.resize import resize_maps
from seqdeca.render.shading import sh_basis

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "base.yaml"
SIZE = 128  # crop and render side of the synthetic clips
FAST = ["track.max_gap=0", "inference.fit.iterations=5"]
TINY_PRIOR = 1e-8  # the texture prior out of the way: what do the data alone say?


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """One synthetic clip (6 frames, 128 px) and its untextured render from the TRUE codes."""
    root = tmp_path_factory.mktemp("appearance")
    cfg = load_config(BASE, [f"crop.size={SIZE}", f"render.image_size={SIZE}"])
    (path,) = make_synthetic_dataset(root / "data", cfg, clips=1, frames=6, seed=11, progress=False)
    clip = load_clip(path)
    engine = build_fit_engine(cfg)
    gt, fm = clip.gt, engine.face_model
    with torch.no_grad():
        vertices = fm(
            FlameParams(
                shape=gt["shape"],
                expression=gt["expression"],
                global_pose=gt["global_pose"],
                jaw_pose=gt["jaw_pose"],
            )
        ).vertices
        render = engine.appearance(0).untextured(vertices, gt["cam"])
    return {
        "root": root,
        "cfg": cfg,
        "clip": clip,
        "engine": engine,
        "render": render,
        "vertices": vertices,
    }


def _samples(synthetic: dict, images: torch.Tensor | None = None):
    clip = synthetic["clip"]
    images = clip.frames if images is None else images
    return face_samples(synthetic["render"], images, clip.masks == FACE)


def _shading_error(samples, light: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean |shading difference| over the face samples, relative to the true shading."""
    ours, true = samples.sh @ light, samples.sh @ truth
    return float(((ours - true).abs()[samples.valid]).mean() / true.abs()[samples.valid].mean())


def test_least_squares_recovers_texture_and_light(synthetic):
    fm, gt = synthetic["engine"].face_model, synthetic["clip"].gt
    samples = _samples(synthetic)
    assert bool((samples.counts > 300).all())
    with torch.no_grad():
        fit = estimate_texture(
            samples, fm.texture_mean, fm.texture_basis, prior=TINY_PRIOR, fallback=fit_light()
        )
        torch.testing.assert_close(fit.texture, gt["texture"][0], atol=0.05, rtol=0.05)
        assert _shading_error(samples, fit.light.light, gt["light"]) < 0.02
        # each half of the bilinear problem alone: light given the true albedo, texture given
        # the true light
        albedo = sample_maps(fm.albedo(gt["texture"][0]), samples.uv)
        light = robust_light(samples, albedo, fallback=fit_light()).light
        assert _shading_error(samples, light, gt["light"]) < 0.01
        n, p = samples.valid.shape
        texture = solve_texture(
            samples,
            sample_maps(fm.texture_mean, samples.uv),
            sample_maps(fm.texture_basis.flatten(0, 1), samples.uv).reshape(n, p, -1, 3),
            samples.sh @ gt["light"],
            samples.valid.float(),
            prior=TINY_PRIOR,
        )
        torch.testing.assert_close(texture, gt["texture"][0], atol=0.05, rtol=0.05)


def test_the_prior_pulls_towards_the_mean_albedo(synthetic):
    fm = synthetic["engine"].face_model
    samples = _samples(synthetic)
    one = type(samples)(*(x[:1] for x in (samples.colour, samples.sh, samples.uv, samples.valid)))
    norms = [
        float(
            estimate_texture(
                one, fm.texture_mean, fm.texture_basis, prior=prior, fallback=fit_light()
            ).texture.norm()
        )
        for prior in (TINY_PRIOR, 1e-4, 1e-2, 1.0)
    ]
    assert norms == sorted(norms, reverse=True) and norms[-1] < 0.1 * norms[0], norms


def test_an_occluder_changes_the_estimate_little(synthetic):
    fm, clip = synthetic["engine"].face_model, synthetic["clip"]
    occluded = clip.frames.clone()
    box = (clip.masks == FACE).nonzero()  # rows, cols of face skin over all frames
    top, left = int(box[:, 1].min()), int(box[:, 2].min())
    height = int(box[:, 1].max()) - top
    width = int(box[:, 2].max()) - left
    patch = (slice(top, top + height // 3), slice(left, left + width // 2))  # a hand, hair
    occluded[:, 0, patch[0], patch[1]], occluded[:, 1:, patch[0], patch[1]] = 0.1, 0.6
    clean, dirty = _samples(synthetic), _samples(synthetic, occluded)
    changed = (occluded - clip.frames).abs().sum(1) > 0
    hidden = float(changed[clip.masks == FACE].float().mean())
    assert 0.1 < hidden < 0.5, hidden  # the patch hides a good part of the skin

    def run(samples, iterations):
        return estimate_texture(
            samples,
            fm.texture_mean,
            fm.texture_basis,
            prior=TINY_PRIOR,
            fallback=fit_light(),
            steps=4 if iterations > 1 else 0,
        ), robust_light(
            samples,
            sample_maps(fm.texture_mean, samples.uv),
            fallback=fit_light(),
            iterations=iterations,
        )

    with torch.no_grad():
        (ref_fit, ref_light), (fit, light) = run(clean, 3), run(dirty, 3)
        _, plain = run(dirty, 1)  # plain least squares, no reweighting
    assert float((fit.texture - ref_fit.texture).abs().max()) < 0.3
    robust_change = _shading_error(clean, light.light, ref_light.light)
    plain_change = _shading_error(clean, plain.light, ref_light.light)
    assert robust_change < 0.02 and robust_change < 0.25 * plain_change, (
        robust_change,
        plain_change,
    )


def _texture_map(synthetic: dict, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The extracted map of the frames under the true light and its (Huv, Wuv) texel weights."""
    fm, clip = synthetic["engine"].face_model, synthetic["clip"]
    accumulator = TextureAccumulator(fm.texture_mean.clamp(0, 1))
    with torch.no_grad():
        out = synthetic["render"]
        accumulator.add(
            normals=out.normal_image,
            uv=out.uv_image,
            alpha=out.alpha,
            images=images,
            classes=clip.masks,
            light=clip.gt["light"],
        )
        texture = accumulator.texture()
    return texture, accumulator.totals[:, 3].reshape(texture.shape[1:])


def test_texture_map_of_the_true_light_is_the_true_albedo(synthetic):
    fm, clip = synthetic["engine"].face_model, synthetic["clip"]
    texture, weight = _texture_map(synthetic, clip.frames)
    seen = weight > 2  # texels seen squarely in a few frames
    truth = fm.albedo(clip.gt["texture"][0]).clamp(0, 1)
    before = (fm.texture_mean - truth).abs().mean(0)[seen].mean()
    after = (texture - truth).abs().mean(0)[seen].mean()
    assert float(after) < 0.03 and float(after) < 0.3 * float(before), (after, before)
    # an occluder over a quarter of the crop in the last third of the frames: the robust
    # running mean keeps the map (a plain mean changes a third of the texels by > 0.05)
    occluded = clip.frames.clone()
    occluded[4:, :, : SIZE // 2, : SIZE // 2] = torch.tensor([0.1, 0.6, 0.6])[:, None, None]
    dirty, _ = _texture_map(synthetic, occluded)
    error = (dirty - truth).abs().mean(0)[seen].mean()
    moved = ((dirty - texture).abs().mean(0)[seen] > 0.05).float().mean()
    assert float(error) < float(after) + 0.01 and float(moved) < 0.03, (error, after, moved)


@pytest.fixture(scope="module")
def extract_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("v2m")
    clip = make_demo_clip(folder / "astro.mp4", frames=8, size=256)
    cfg = load_config(BASE, [*FAST, "inference.fit.texture=extract"])
    (res,) = video2mesh([clip], folder / "out", cfg, progress=False)
    assert res.status == "done", res.reason
    return folder / "out" / "astro"


def test_codes_carry_texture_and_light_and_extract_writes_a_texture(extract_run):
    codes = np.load(extract_run / "codes.npz")
    valid = codes["valid"]
    texture, light = codes["texture"][valid], codes["light"][valid]
    assert texture.shape == (int(valid.sum()), 5) and light.shape[1:] == (9, 3)
    np.testing.assert_array_equal(texture, texture[:1].repeat(len(texture), 0))  # per clip
    assert np.isfinite(light).all() and np.abs(texture).max() > 0
    assert not np.allclose(light, fit_light().numpy())  # estimated, not the fixed light
    png = extract_run / "meshes" / "texture.png"
    mesh = read_obj(min((extract_run / "meshes").glob("0*.obj")))
    assert png.is_file() and mesh.verts_uvs is not None
    assert "texture.png" in (extract_run / "meshes" / "material.mtl").read_text()
    import cv2

    image = cv2.imread(str(png))[..., ::-1] / 255.0
    mean = build_fit_engine(load_config(BASE)).face_model.texture_mean.permute(1, 2, 0).numpy()
    assert np.abs(image - mean).mean() > 0.02  # the astronaut's face, not the mean albedo


def test_appearance_does_not_depend_on_chunks_or_the_overlay(extract_run, tmp_path):
    clip = extract_run.parent.parent / "astro.mp4"
    cfg = load_config(BASE, [*FAST, "inference.fit.texture=extract", "inference.chunk_frames=3"])
    (res,) = video2mesh([clip], tmp_path, cfg, video=False, rig=False, progress=False)
    assert res.status == "done"
    a, b = np.load(extract_run / "codes.npz"), np.load(tmp_path / "astro" / "codes.npz")
    np.testing.assert_allclose(a["texture"], b["texture"], atol=2e-3, rtol=1e-3)
    # the light's shading of every normal facing the camera (the fits differ by float rounding,
    # which nearly dependent SH bases may amplify in the coefficients but not in the shading)
    normals = torch.nn.functional.normalize(torch.randn(500, 3), dim=-1)
    normals[:, 2] = normals[:, 2].abs() + 0.3
    basis = sh_basis(torch.nn.functional.normalize(normals, dim=-1)).numpy()
    valid = a["valid"]
    shading_a, shading_b = basis @ a["light"][valid], basis @ b["light"][valid]
    assert np.abs(shading_a - shading_b).max() < 0.01 * np.abs(shading_a).mean()
    import cv2

    maps = [
        cv2.imread(str(d / "meshes" / "texture.png")).astype(float)
        for d in (extract_run, tmp_path / "astro")
    ]
    assert np.abs(maps[0] - maps[1]).mean() < 0.5  # 8-bit levels


def test_mean_mode_keeps_the_fixed_appearance_and_bad_modes_fail(tmp_path):
    clip = make_demo_clip(tmp_path / "astro.mp4", frames=4, size=256)
    cfg = load_config(BASE, [*FAST, "inference.fit.texture=mean"])
    (res,) = video2mesh([clip], tmp_path / "out", cfg, video=False, rig=False, progress=False)
    codes = np.load(tmp_path / "out" / "astro" / "codes.npz")
    np.testing.assert_allclose(codes["light"][0], fit_light().numpy())
    assert res.status == "done" and not codes["texture"].any()
    with pytest.raises(UserError, match="inference.fit.texture"):
        build_fit_engine(load_config(BASE, ["inference.fit.texture=photo"]))


def test_evaluate_fit_reports_photometric_keys_for_both_textures(synthetic):
    out = synthetic["root"] / "eval"
    cfg = load_config(
        BASE,
        [
            f"crop.size={SIZE}",
            f"render.image_size={SIZE}",
            "inference.fit.iterations=3",
            "inference.fit.texture=extract",
        ],
    )
    evaluate(
        EvalOptions(
            data=synthetic["root"] / "data",
            out=out,
            config=cfg,
            mode="fit",
            plots=False,
            progress=False,
        )
    )
    methods = json.loads((out / "metrics.json").read_text())["methods"]
    assert list(methods) == ["fit", "fit+extract", "input", "mean-face"]
    fit, extract = methods["fit"]["overall"], methods["fit+extract"]["overall"]
    for key in ("psnr", "psnr_covered", "l1", "ssim"):
        assert np.isfinite(fit[key]) and np.isfinite(extract[key]), key
    assert fit["psnr_covered"] > 25 and extract["psnr_covered"] > 25
    assert np.isfinite(fit["nme_mp"]) and extract.get("nme_mp") is None
    assert "ODD frames" in methods["fit+extract"]["description"]


def test_shape_from_an_existing_render_equals_render_shape(synthetic):
    engine, gt = synthetic["engine"], synthetic["clip"].gt
    renderer = engine.appearance(0).renderer
    with torch.no_grad():
        vertices = engine.face_model(
            FlameParams(shape=gt["shape"], global_pose=gt["global_pose"])
        ).vertices
        screen, fragments = renderer.rasterize(vertices, gt["cam"])
        out = renderer.shade(vertices, screen, fragments)
        torch.testing.assert_close(
            renderer.shape_from(out), renderer.render_shape(vertices, gt["cam"])
        )


def test_fit_mode_paints_its_openings_with_what_the_frames_show_there(synthetic):
    engine, clip, render = synthetic["engine"], synthetic["clip"], synthetic["render"]
    app, gt, vertices = engine.appearance(0), clip.gt, synthetic["vertices"]
    assert app.openings is not None and len(app.openings) == 3  # two eyes and the mouth
    with torch.no_grad():
        index = opening_cells(app.renderer, app.openings, vertices, gt["cam"], render.alpha)
        # the openings' colours from the even frames, through the lights' path as fit mode learns
        # them (its smaller renders), scored on the odd frames
        size = app.light_renderer.image_size[0]
        small = resize_maps(clip.frames, (size, size), antialias=True)
        classes = resize_maps(clip.masks[:, None].float(), (size, size), mode="nearest")[:, 0]
        even = torch.arange(clip.num_frames) % 2 == 0
        seen = app.new_opening_colours()
        app.lights(vertices, gt["cam"], small, classes.to(torch.uint8), observe=even, colours=seen)
        seen_per_opening = torch.zeros(3).index_add_(0, seen.cell_opening, seen.weights)
        assert bool((seen_per_opening > 0).all())  # every opening was seen
        albedo = app.albedo_map()
        painted, alpha = app.render(
            render, vertices, gt["cam"], albedo, gt["light"], seen.colours()
        )
        black, _ = app.render(render, vertices, gt["cam"], albedo, gt["light"], seen.colours() * 0)
    looked = (index >= 0) & (clip.masks > 0) & ~even[:, None, None]
    torch.testing.assert_close(alpha[:, 0], torch.maximum(render.alpha[:, 0], (index >= 0).float()))
    assert int(looked.sum()) > 50

    def error(image: torch.Tensor) -> float:
        return float((image - clip.frames).abs().sum(1)[looked].mean())

    assert error(painted) < 0.5 * error(black), (error(painted), error(black))
    assert torch.equal(
        painted[index[:, None].expand_as(painted) < 0], black[index[:, None].expand_as(black) < 0]
    )
    mean_mode = build_fit_engine(load_config(BASE, ["inference.fit.texture=mean"]))
    assert mean_mode.appearance(0).openings is None  # mean mode renders as before: black there
