"""Detail-stage metrics (seqdeca.eval.detail_metrics) and pictures (seqdeca.eval.detail_plots),
on hand-made maps and generators at tiny UV sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from seqdeca.au_names import AFFWILD2_AU_NAMES, MAIN_AU_NAMES
from seqdeca.eval import detail_metrics as D
from seqdeca.render.renderer import Renderer
from seqdeca.render.uv import displacement_to_normal, uv_pixel_centres

SIZE = 32
BLOCK = 6  # region blocks of 6 x 6 texels, 4 texels apart (beyond the high-pass's 3 texels)
PATTERNS = tuple(D.DETAIL_PATTERN_AUS)  # forehead, glabella, crows_feet, nose, nasolabial, chin
# Channels of a K = 10 condition: forehead reads 0 and 1, then one channel per pattern; 7-9 spare.
AU_OF_REGION = {
    "forehead": (0, 1),
    "glabella": (2,),
    "crows_feet": (3,),
    "nose": (4,),
    "nasolabial": (5,),
    "chin": (6,),
}
K = 10


def _regions(size: int = SIZE) -> dict[str, torch.Tensor]:
    """The six patterns as disjoint 6 x 6 blocks (2 rows of 3) with 4-texel gaps."""
    out = {}
    for i, name in enumerate(PATTERNS):
        r, c = 2 + (i // 3) * (BLOCK + 4), 2 + (i % 3) * (BLOCK + 4)
        mask = torch.zeros(size, size, dtype=torch.bool)
        mask[r : r + BLOCK, c : c + BLOCK] = True
        out[name] = mask
    return out


def _stripes(size: int = SIZE) -> torch.Tensor:
    """(H, W) unit-amplitude stripes of period 2 texels: all high frequency."""
    return torch.tensor([1.0, -1.0]).repeat(size // 2)[None, :].expand(size, size).clone()


def _flat_coarse(size: int = SIZE, side: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat coarse surface in UV: x = u side, y = v side, z = 0, normals +z; (1, 3, H, W)."""
    uv = uv_pixel_centres(size) * side
    vertices = torch.cat([uv, torch.zeros(size, size, 1)], dim=-1).permute(2, 0, 1)[None]
    normals = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, size, size)
    return vertices, normals


# -------------------------------------------------------------------------- errors


def test_displacement_error_zero_for_identical_and_linear_in_an_offset() -> None:
    gt = torch.randn(3, 1, SIZE, SIZE) * 1e-3
    face = torch.ones(SIZE, SIZE, dtype=torch.bool)
    same = D.displacement_error(gt, gt.clone(), face_mask=face, regions=_regions())
    assert set(same) == {"displacement_error"} | {f"displacement_error/{p}" for p in PATTERNS}
    for value in same.values():
        assert_close(value, torch.zeros(3))
    for offset_m in (0.5e-3, 2e-3):  # (N, H, W) maps are accepted as well
        err = D.displacement_error(gt[:, 0] + offset_m, gt[:, 0], face_mask=face)
        assert_close(err["displacement_error"], torch.full((3,), offset_m * 1000.0))


def test_region_error_sees_only_its_region_and_the_face_mask() -> None:
    regions = _regions()
    gt = torch.zeros(2, SIZE, SIZE)
    pred = gt + 2e-3 * regions["forehead"]  # 2 mm in the forehead only
    face = torch.ones(SIZE, SIZE, dtype=torch.bool)
    err = D.displacement_error(pred, gt, face_mask=face, regions=regions)
    assert_close(err["displacement_error/forehead"], torch.full((2,), 2.0))
    for name in PATTERNS[1:]:
        assert_close(err[f"displacement_error/{name}"], torch.zeros(2))
    fraction = BLOCK * BLOCK / SIZE**2
    assert_close(err["displacement_error"], torch.full((2,), 2.0 * fraction))
    # Outside the face mask nothing counts; a region wholly outside it is NaN.
    err = D.displacement_error(pred, gt, face_mask=~regions["forehead"], regions=regions)
    assert_close(err["displacement_error"], torch.zeros(2))
    assert torch.isnan(err["displacement_error/forehead"]).all()


@pytest.mark.parametrize("slope", [0.05, 0.2, 1.0])
def test_detail_normal_error_of_a_known_tilt(slope: float) -> None:
    vertices, normals = _flat_coarse()
    face = torch.ones(SIZE, SIZE, dtype=torch.bool)
    tilted = slope * vertices[:, :1].expand(2, -1, -1, -1)  # z = slope * x: a tilted plane
    flat = torch.zeros_like(tilted)
    kwargs = {"uv_vertices": vertices, "uv_normals": normals, "face_mask": face}
    same = D.detail_normal_error(tilted, tilted.clone(), **kwargs)["detail_normal_error"]
    assert_close(same, torch.zeros(2))
    err = D.detail_normal_error(tilted, flat, regions=_regions(), **kwargs)
    expected = math.degrees(math.atan(slope))
    for value in err.values():
        assert_close(value, torch.full((2,), expected), atol=1e-3, rtol=1e-4)


def test_detail_normal_error_stays_in_its_region() -> None:
    vertices, normals = _flat_coarse()
    regions = _regions()
    bumps = 5e-3 * _stripes() * regions["nose"]  # wrinkles in the nose block only
    err = D.detail_normal_error(
        bumps[None],
        torch.zeros(1, SIZE, SIZE),
        uv_vertices=vertices,
        uv_normals=normals,
        face_mask=torch.ones(SIZE, SIZE, dtype=torch.bool),
        regions=regions,
    )
    assert err["detail_normal_error/nose"].item() > 5.0
    for name in PATTERNS:  # blocks are 4 texels apart: the normals' one-texel reach stays out
        if name != "nose":
            assert err[f"detail_normal_error/{name}"].item() == 0.0


def test_coarse_uv_geometry_follows_the_renderers_detail_normal_path() -> None:
    # A unit square of two triangles whose UV layout fills the UV square.
    verts_uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    renderer = Renderer(
        faces=faces, verts_uvs=verts_uvs, faces_uvs=faces, image_size=16, uv_size=SIZE
    )
    vertices = torch.cat([verts_uvs * 0.1, torch.zeros(4, 1)], dim=-1)[None]  # plane z = 0
    uv_vertices, uv_normals = D.coarse_uv_geometry(renderer, vertices)
    bumps = 1e-3 * torch.randn(1, 1, SIZE, SIZE)
    mask = torch.ones(SIZE, SIZE)
    assert_close(
        displacement_to_normal(bumps, uv_vertices, uv_normals, mask),
        renderer.detail_normal_map(bumps, vertices, mask),
    )
    flat_vertices, _ = _flat_coarse()
    assert_close(uv_vertices, flat_vertices, atol=1e-6, rtol=0)


# -------------------------------------------------------------------- wrinkle energy


def test_highpass_keeps_wrinkles_and_drops_smooth_maps() -> None:
    assert_close(D.highpass(torch.full((1, SIZE, SIZE), 3e-3)), torch.zeros(1, SIZE, SIZE))
    ramp = torch.linspace(0, 1e-3, SIZE)[None, None, :].expand(1, SIZE, SIZE)
    inner = D.highpass(ramp)[:, 4:-4, 4:-4]  # a linear map is kept by the blur away from borders
    assert inner.abs().max().item() < 1e-9
    assert D.highpass_sigma(256) == 4.0 and D.highpass_sigma(32) == 1.0
    stripes = 1e-3 * _stripes()[None]
    energy = D.wrinkle_energy(stripes, {"all": torch.ones(SIZE, SIZE, dtype=torch.bool)})
    assert energy.shape == (1, 1) and 0.5 < energy.item() < 1.5  # ~ (1 mm)^2


# ---------------------------------------------------------------- AU controllability


def _generator(route: dict[str, tuple[int, ...]], *, base: float = 0.3):
    """Hand-made generator: region r gets stripes of amplitude ``base * z0 + mean(c[route[r]])``
    (z0 > 0 from the latent), in metres x 1e-3; an empty route ignores the condition."""
    regions, stripes = _regions(), _stripes()

    def generate(latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(latent.shape[0], 1, SIZE, SIZE)
        for name, mask in regions.items():
            amplitude = base * latent[:, :1].abs() + 0.1  # (N, 1) latent-dependent wrinkles
            if route.get(name):
                amplitude = amplitude + condition[:, list(route[name])].mean(-1, keepdim=True)
            out[:, 0] += 1e-3 * amplitude[:, :, None] * stripes * mask
        return out

    return generate


def _score(generate, **kwargs) -> dict[str, float]:
    latent = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    result = D.au_controllability(
        generate, latent, _regions(), AU_OF_REGION, au_dim=K, steps=5, **kwargs
    )
    return result.metrics()


def test_controllability_of_a_generator_that_follows_its_aus() -> None:
    m = _score(_generator(AU_OF_REGION))
    for p in PATTERNS:
        assert m[f"controllability/{p}"] > 0.95  # energy grows as the squared amplitude
        assert m[f"change/{p}"] > 0.5
        assert m[f"leakage/{p}"] == 0.0 and m[f"leakage_correlation/{p}"] == 0.0
        assert m[f"controllability_shuffled/{p}"] == 0.0  # the permuted channels stay at 0
        assert m[f"gain/{p}"] > 0 and m[f"gain_shuffled/{p}"] == 0.0
    assert m["controllability_mean"] > 0.95 and m["controllability_shuffled_mean"] == 0.0


def test_controllability_zero_for_a_generator_that_ignores_the_condition() -> None:
    m = _score(_generator({}), shuffles=2)
    for key in (
        "controllability",
        "change",
        "leakage",
        "leakage_correlation",
        "controllability_shuffled",
        "gain",
        "gain_shuffled",
    ):
        assert m[f"{key}_mean"] == 0.0


def test_leakage_detects_an_au_that_drives_the_wrong_region() -> None:
    route = dict(AU_OF_REGION)
    route["chin"] = AU_OF_REGION["forehead"]  # the forehead AUs wrinkle the chin instead
    route.pop("forehead")
    m = _score(_generator(route))
    assert m["controllability/forehead"] == 0.0
    assert m["leakage_correlation/forehead"] > 0.95 / 5  # one of five other regions follows
    assert m["leakage/forehead"] > 0.1
    assert m["leakage/glabella"] == 0.0
    assert m["controllability/chin"] == 0.0  # AU17 drives nothing now


def test_leakage_through_the_highpass_reach_is_small() -> None:
    # Two touching blocks: only "a" follows channel 0; the blur reaches 3 texels into "b".
    regions = {"a": torch.zeros(SIZE, SIZE, dtype=torch.bool), "b": torch.zeros(SIZE, SIZE).bool()}
    regions["a"][8:24, 4:16] = True
    regions["b"][8:24, 16:28] = True
    stripes = _stripes()

    def generate(latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        amplitude = 0.5 + condition[:, :1, None] * regions["a"] + 0 * latent[:, :1, None]
        return (1e-3 * amplitude * stripes * (regions["a"] | regions["b"]))[:, None]

    result = D.au_controllability(generate, torch.ones(2, 4), regions, {"a": (0,)}, au_dim=3)
    m = result.metrics()
    assert m["controllability/a"] > 0.95 and m["change/a"] > 0.3
    # b's border texels feel a's wrinkles through the blur: a small fraction of a's change.
    assert 0.0 < m["leakage/a"] < 0.1 * m["change/a"]


def test_shuffled_level_is_high_when_any_au_drives_every_region() -> None:
    everything = tuple(range(K))
    m = _score(_generator(dict.fromkeys(PATTERNS, everything)), shuffles=2)
    assert m["controllability_mean"] > 0.95
    assert m["controllability_shuffled_mean"] > 0.95  # the chance level is as high
    assert m["leakage_correlation_mean"] > 0.95
    assert m["leakage_mean"] > 0.1 and math.isclose(m["leakage_mean"], m["change_mean"])
    assert math.isclose(m["gain_mean"], m["gain_shuffled_mean"], rel_tol=1e-5)


def test_gain_separates_own_aus_from_faint_global_ones() -> None:
    """Every AU adds faint stripes everywhere and a pattern's own AUs add strong ones in its
    region: both correlations saturate, the gains tell the own AUs apart."""
    regions, stripes = _regions(), _stripes()

    def generate(latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = 1e-4 * condition.sum(-1)[:, None, None] * stripes + 0 * latent[:, :1, None]
        for name, mask in regions.items():
            own = condition[:, list(AU_OF_REGION[name])].mean(-1)[:, None, None]
            out = out + 1e-3 * own * stripes * mask
        return out[:, None]

    m = _score(generate, shuffles=2)
    assert m["controllability_mean"] > 0.95 and m["controllability_shuffled_mean"] > 0.95
    for p in PATTERNS:
        assert m[f"gain/{p}"] > 10 * m[f"gain_shuffled/{p}"] > 0


def test_shuffled_permutation_keeps_every_group_off_itself() -> None:
    groups = list(AU_OF_REGION.values())
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        perm = D.shuffled_permutation(K, groups, generator=generator)
        assert sorted(perm.tolist()) == list(range(K))
        assert all(int(perm[k]) not in g for g in groups for k in g)
    with pytest.raises(ValueError, match="no permutation"):
        D.shuffled_permutation(2, [(0, 1)], generator=generator)


def test_au_channels_drop_aus_the_condition_lacks() -> None:
    main = D.au_channels(D.DETAIL_PATTERN_AUS, MAIN_AU_NAMES)
    assert main["forehead"] == (0, 1) and main["chin"] == (MAIN_AU_NAMES.index("AU17"),)
    affwild = D.au_channels(D.DETAIL_PATTERN_AUS, AFFWILD2_AU_NAMES)
    assert set(affwild) == {"forehead", "glabella", "crows_feet", "nasolabial"}


def test_controllability_result_keys_and_energy_curves() -> None:
    latent = torch.rand(2, 4) + 0.5
    result = D.au_controllability(
        _generator(AU_OF_REGION),
        latent,
        _regions(),
        AU_OF_REGION,
        base_condition=torch.zeros(2, K),
        steps=3,
    )
    assert result.energy.shape == (len(PATTERNS), 3, len(PATTERNS))
    assert result.permutations.shape == (1, K)
    chin = result.energy[PATTERNS.index("chin"), :, PATTERNS.index("chin")]
    assert (chin[1:] > chin[:-1]).all()  # grows along the sweep
    keys = result.metrics()
    assert len(keys) == 7 * (len(PATTERNS) + 1) and "leakage_correlation/nose" in keys


def test_controllability_of_a_fresh_detail_generator_is_zero() -> None:
    from seqdeca.models.detail import DetailGenerator

    torch.manual_seed(0)
    generator = DetailGenerator(latent_dim=8, au_dim=4).eval()  # FiLM starts as the identity
    regions = {"a": torch.zeros(256, 256, dtype=torch.bool), "b": torch.zeros(256, 256).bool()}
    regions["a"][40:90, 40:90] = True
    regions["b"][150:200, 150:200] = True
    result = D.au_controllability(
        generator, torch.randn(2, 8), regions, {"a": (0,), "b": (1,)}, au_dim=4, steps=3
    )
    metrics = result.metrics()
    assert metrics["controllability_mean"] == 0.0 and metrics["leakage_mean"] == 0.0
    assert (result.energy > 0).all()


# -------------------------------------------------------------------------- pictures


def test_pictures_are_written(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    from seqdeca.eval.detail_plots import (
        sweep_highpass_cells,
        write_au_sweep_grid,
        write_detail_comparison,
    )

    frames = 2
    path = write_detail_comparison(
        torch.rand(frames, 3, 16, 16),
        np.random.rand(frames, 16, 16),
        torch.rand(frames, 16, 16, 3),
        tmp_path / "cmp" / "detail.png",
        frame_labels=["frame 0", "frame 7"],
    )
    assert path is not None and Image.open(path).size[0] > 100
    cells = sweep_highpass_cells(
        _generator(AU_OF_REGION),
        torch.ones(1, 4),
        AU_OF_REGION,
        base_condition=torch.zeros(1, K),
        steps=4,
    )
    assert cells.shape == (len(PATTERNS), 4, SIZE, SIZE)
    forehead = cells[0].flatten(1).abs().amax(-1)
    assert (forehead[1:] > forehead[:-1]).all()  # the sweep shows growing wrinkles
    grid = write_au_sweep_grid(
        cells, tmp_path / "sweep.png", patterns=PATTERNS, intensities=[0, 1 / 3, 2 / 3, 1]
    )
    assert grid is not None and Image.open(grid).size[0] > 100
    rgb = write_au_sweep_grid(
        torch.rand(2, 3, 8, 8, 3),
        tmp_path / "rgb.png",
        patterns=["a", "b"],
        intensities=[0, 0.5, 1],
    )
    assert rgb is not None and rgb.exists()
    with pytest.raises(ValueError, match="cells"):
        write_au_sweep_grid(cells, tmp_path / "bad.png", patterns=["a"], intensities=[0, 1])
