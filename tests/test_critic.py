"""Detail critic and the per-AU UV heatmaps that condition it."""

from __future__ import annotations

import pytest
import torch

from seqdeca.au_names import MAIN_AU_NAMES
from seqdeca.face_model import barycentric_points, load_default_assets
from seqdeca.models.au_heatmaps import (
    AU_CENTRES,
    BILATERAL_AUS,
    AUHeatmaps,
    au_centres_model,
    au_centres_uv,
)
from seqdeca.models.critic import DetailCritic
from seqdeca.models.outputs import DetailOutput


@pytest.fixture(scope="module")
def assets():
    return load_default_assets()


@pytest.fixture(scope="module")
def centres(assets):
    return au_centres_uv(assets)


def pixel_of(uv: torch.Tensor, size: int) -> tuple[int, int]:
    """UV (u, v) -> (row, column) of the pixel containing it (v = 1 at the top)."""
    return int((1 - uv[1]) * size), int(uv[0] * size)


def test_centre_table_covers_the_design_aus(centres) -> None:
    uv, present = centres
    assert uv.shape == (27, 2, 2) and present.shape == (27, 2)
    with_centre = {MAIN_AU_NAMES[k] for k in range(27) if present[k].all()}
    assert with_centre == set(AU_CENTRES) and len(with_centre) == 15
    assert not present[[MAIN_AU_NAMES.index(n) for n in ("AU5", "AU20", "AU39")]].any()
    assert ((uv[present] > 0) & (uv[present] < 1)).all()


def test_shifts_follow_the_image_convention(assets) -> None:
    """AU1 is above its brow landmarks (+y), AU6 below the lower eyelid (-y), by r/2 and r."""
    points, _ = au_centres_model(assets)
    emb = assets.landmarks["ibug68"]
    lmk = barycentric_points(
        torch.as_tensor(assets.v_template, dtype=torch.float64)[None],
        torch.as_tensor(assets.faces, dtype=torch.int64),
        torch.as_tensor(emb.face_idx, dtype=torch.int64),
        torch.as_tensor(emb.bary, dtype=torch.float64),
    )[0]
    r = (lmk[39] - lmk[42]).norm()
    au1, au6 = MAIN_AU_NAMES.index("AU1"), MAIN_AU_NAMES.index("AU6")
    torch.testing.assert_close(points[au1, 0, 1] - lmk[21, 1], r / 2)
    torch.testing.assert_close(points[au6, 1, 1] - lmk[46, 1], -r)
    uv, _ = au_centres_uv(assets)
    # Higher on the face = larger v (v = 1 at the top of the UV image).
    assert uv[au1, :, 1].min() > uv[au6, :, 1].max()


def test_heatmap_peaks_at_centres_and_zero_intensity(centres) -> None:
    uv, present = centres
    size = 64
    maps_module = AUHeatmaps(uv, present=present, size=size, sigma=0.03)
    maps = maps_module(torch.ones(1, 27))[0]
    assert maps.shape == (27, size, size)
    for k in range(27):
        if not present[k].any():
            assert maps[k].abs().max() == 0, MAIN_AU_NAMES[k]
            continue
        for m in range(2):
            row, col = pixel_of(uv[k, m], size)
            assert maps[k, row, col] > 0.95, (MAIN_AU_NAMES[k], m)
        # The global maximum is at (the pixel of) one of the centres.
        peak = divmod(int(maps[k].argmax()), size)
        nearest = min(
            max(
                abs(peak[0] - pixel_of(uv[k, m], size)[0]),
                abs(peak[1] - pixel_of(uv[k, m], size)[1]),
            )
            for m in range(2)
        )
        assert nearest <= 1, MAIN_AU_NAMES[k]
    # Far from every centre the maps vanish.
    assert maps[:, 0, 0].max() < 1e-6
    zero = maps_module(torch.zeros(3, 27))
    assert zero.shape == (3, 27, size, size) and zero.abs().max() == 0
    half = maps_module(torch.full((1, 27), 0.5))[0]
    torch.testing.assert_close(half, maps * 0.5)


def test_bilateral_aus_are_symmetric_about_the_midline(assets, centres) -> None:
    uv, _ = centres
    emb = assets.landmarks["ibug68"]
    lmk_uv = barycentric_points(
        torch.as_tensor(assets.verts_uvs, dtype=torch.float64)[None],
        torch.as_tensor(assets.faces_uvs, dtype=torch.int64),
        torch.as_tensor(emb.face_idx, dtype=torch.int64),
        torch.as_tensor(emb.bary, dtype=torch.float64),
    )[0].float()
    midline_u = lmk_uv[[8, 27, 28, 29, 30, 33, 51, 57], 0].mean()  # chin, nose, lip centre
    for name in BILATERAL_AUS:
        k = MAIN_AU_NAMES.index(name)
        (u0, v0), (u1, v1) = uv[k].tolist()
        assert abs(u0 - u1) > 0.05, name  # two separate peaks, one on each side
        assert (u0 - midline_u) * (u1 - midline_u) < 0, name
        assert abs((u0 + u1) / 2 - midline_u) < 0.015, name
        assert abs(v0 - v1) < 0.01, name


@pytest.mark.parametrize("uv_size", [64, 256])
def test_critic_shapes(uv_size: int) -> None:
    torch.manual_seed(0)
    critic = DetailCritic(in_channels=2, num_aus=27, uv_size=uv_size, base=16, n_layers=5)
    detail = torch.randn(1, 2, uv_size, uv_size)
    maps = torch.rand(1, 27, uv_size, uv_size)
    realism, au = critic(detail, maps)
    final = uv_size // 32
    assert realism.shape == (1, 1, final, final)
    assert au.shape == (1, 27)
    # The AU head's kernel covers the whole last feature map.
    assert critic.au_head.kernel_size == (final, final)
    assert critic.trunk(torch.cat([detail, maps], 1)).shape[-2:] == (final, final)


def test_critic_full_width_at_256() -> None:
    critic = DetailCritic(in_channels=4, num_aus=27, uv_size=256)  # defaults: base 64, 5 layers
    with torch.no_grad():
        realism, au = critic(torch.randn(1, 4, 256, 256), torch.rand(1, 27, 256, 256))
    assert realism.shape == (1, 1, 8, 8) and au.shape == (1, 27)
    assert critic.au_head.kernel_size == (8, 8)


def test_critic_has_no_normalisation_and_conditions_on_au_maps() -> None:
    torch.manual_seed(0)
    critic = DetailCritic(in_channels=2, num_aus=27, uv_size=64, base=8, n_layers=4)
    assert not any(
        isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm))
        for m in critic.modules()
    )
    detail = torch.randn(2, 2, 64, 64)
    maps = torch.rand(2, 27, 64, 64)
    realism, au = critic(detail, maps)
    # Per-sample: item 1 does not affect item 0 (no batch coupling, as WGAN-GP needs).
    realism_b, au_b = critic(detail[:1], maps[:1])
    torch.testing.assert_close(realism_b, realism[:1])
    torch.testing.assert_close(au_b, au[:1])
    realism_c, au_c = critic(detail, torch.zeros_like(maps))
    assert not torch.allclose(realism_c, realism)
    # The AU regression reads the render only: it cannot copy the condition back.
    torch.testing.assert_close(au_c, au)
    _, au_d = critic(torch.randn(2, 2, 64, 64), maps)
    assert not torch.allclose(au_d, au)
    (realism.mean() + au.square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())


def test_critic_rejects_wrong_sizes() -> None:
    critic = DetailCritic(in_channels=2, num_aus=27, uv_size=64, base=8)
    with pytest.raises(ValueError, match="expected detail"):
        critic(torch.zeros(1, 2, 32, 32), torch.zeros(1, 27, 32, 32))
    with pytest.raises(ValueError, match="AU maps"):
        critic(torch.zeros(1, 2, 64, 64), torch.zeros(1, 12, 64, 64))
    with pytest.raises(ValueError, match="divisible"):
        DetailCritic(in_channels=2, num_aus=27, uv_size=48, n_layers=5)


def test_projection_along_z_reproduces_the_landmark_embedding(assets) -> None:
    """The mapping used for shifted centres gives the exact UV for the (unshifted) landmarks."""
    from seqdeca.models.au_heatmaps import _locate_along_z

    verts = torch.as_tensor(assets.v_template, dtype=torch.float64)
    faces = torch.as_tensor(assets.faces, dtype=torch.int64)
    verts_uvs = torch.as_tensor(assets.verts_uvs, dtype=torch.float64)
    faces_uvs = torch.as_tensor(assets.faces_uvs, dtype=torch.int64)
    emb = assets.landmarks["ibug68"]
    face_idx = torch.as_tensor(emb.face_idx, dtype=torch.int64)
    bary = torch.as_tensor(emb.bary, dtype=torch.float64)
    lmk = barycentric_points(verts[None], faces, face_idx, bary)[0]
    face, found_bary, found = _locate_along_z(lmk, verts, faces)
    assert found.all()
    projected = torch.einsum("pk,pkc->pc", found_bary, verts_uvs[faces_uvs[face]])
    exact = barycentric_points(verts_uvs[None], faces_uvs, face_idx, bary)[0]
    torch.testing.assert_close(projected, exact)


# ------------------------------------------------------------- what the critic compares


def _outputs(shading, coarse, photo, mask) -> DetailOutput:
    """Detail-stage outputs (B=1, T=N); zeros where the critic's inputs need nothing."""
    n = shading.shape[0]
    return DetailOutput(
        detail_code=torch.zeros(1, n, 8),
        au_condition=torch.zeros(1, n, 27),
        displacement=torch.zeros_like(mask[None]),
        detail_normals=torch.zeros_like(shading[None]),
        uv_shading=shading[None],
        uv_coarse_shading=coarse[None],
        uv_input=photo[None],
        uv_visible_mask=mask[None],
    )


def _smooth(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) smooth positive field (bilinear upsampling of a 4 x 4 grid)."""
    grid = 0.5 + torch.rand(n, 1, 4, 4, generator=gen)
    return torch.nn.functional.interpolate(
        grid, size=(size, size), mode="bilinear", align_corners=True
    )


def test_detail_contrast_keeps_fine_detail_and_drops_smooth_changes() -> None:
    from seqdeca.models.critic import detail_contrast

    gen = torch.Generator().manual_seed(0)
    size = 64
    mask = torch.zeros(2, 1, size, size)
    mask[..., 8:56, 10:54] = 1
    smooth = _smooth(2, size, gen)
    flat = detail_contrast(smooth, mask)
    assert flat.shape == (2, 1, size, size) and (flat[mask == 0] == 0).all()
    assert flat.abs().max() < 0.05  # smooth shading / light / albedo changes divide out
    assert (detail_contrast(3.0 * smooth, mask) - flat).abs().max() < 1e-5  # intensity too
    wrinkled = smooth.clone()
    wrinkled[..., 30:32, 12:52] *= 0.7  # a 2-texel dark fold
    fold = detail_contrast(wrinkled, mask)
    assert fold[..., 30:32, 12:52].mean() < -0.1 and fold[..., 40:50, 12:52].abs().max() < 0.05


def test_real_and_fake_are_the_same_kind_of_image() -> None:
    """A photo that IS albedo x detail shading gives the critic exactly the fake sample of that
    shading, whatever the albedo, the light level and the coarse shading."""
    from seqdeca.models.critic import ConditionedDetailCritic as Critic

    gen = torch.Generator().manual_seed(1)
    n, size = 2, 32
    coarse = (1 + _smooth(n, size, gen)).expand(-1, 3, -1, -1)
    detail = 1 + 0.2 * (torch.rand(n, 1, size, size, generator=gen) - 0.5)
    shading = coarse * detail
    albedo = (0.2 + 0.4 * _smooth(n, size, gen)).expand(-1, 3, -1, -1)
    photo = albedo * shading * 0.4  # a darker exposure than the model's light
    mask = torch.zeros(n, 1, size, size)
    mask[..., 6:26, 6:26] = 1
    real = Critic.real_render(_outputs(shading, coarse, photo, mask), albedo[None])
    fake = Critic.detail_render(_outputs(shading, coarse, photo, mask))
    assert real.shape == fake.shape == (n, 1, size, size)
    torch.testing.assert_close(real, fake, atol=1e-4, rtol=1e-4)
    assert fake.abs().max() > 0.05  # the detail is there, in both
    # A generator without detail (shading = coarse) vs that photo: they differ, inside only.
    smooth = Critic.detail_render(_outputs(coarse, coarse, photo, mask))
    assert smooth.abs().max() < 1e-5 and (real - smooth).abs().max() > 0.05
    assert (real[mask == 0] == 0).all()


def test_contrast_loss_mask_leaves_out_borders_and_albedo_edges() -> None:
    from seqdeca.models.critic import contrast_loss_mask

    size = 128
    seen = torch.zeros(1, 1, size, size)
    seen[..., 20:100, 20:100] = 1
    plain = contrast_loss_mask(seen, None)
    assert plain[..., 23:97, 23:97].all() and plain[..., 20:23, :].sum() == 0  # 3 texels at 128
    assert plain[..., :, 97:].sum() == 0
    albedo = torch.full((1, 3, 64, 64), 0.5)  # resized to the mask's size
    assert torch.equal(contrast_loss_mask(seen, albedo), plain)  # a flat albedo has no edges
    albedo[..., 30:32, :] = 0.1  # a dark stripe (an eyebrow)
    edged = contrast_loss_mask(seen, albedo)
    assert edged[..., 60:64, 40:80].sum() == 0 and edged[..., 40:50, 40:80].all()


def test_generator_output_is_bounded_by_max_displacement() -> None:
    from seqdeca.models.detail import DetailGenerator

    torch.manual_seed(0)
    small = DetailGenerator(latent_dim=8, au_dim=0, uv_size=32, max_displacement=1e-3).eval()
    deca = DetailGenerator(latent_dim=8, au_dim=0, uv_size=32).eval()  # DECA's 0.01
    deca.load_state_dict(small.state_dict())
    with torch.no_grad():
        small.conv_blocks[-2].bias.fill_(100.0)  # drive the tanh into saturation
        deca.conv_blocks[-2].bias.fill_(100.0)
        latent = torch.randn(4, 8)
        z, z_deca = small(latent), deca(latent)
    assert z.shape == (4, 1, 32, 32)
    torch.testing.assert_close(z, torch.full_like(z, 1e-3))
    torch.testing.assert_close(z_deca, 10 * z)
    with pytest.raises(ValueError, match="max_displacement"):
        DetailGenerator(latent_dim=8, au_dim=0, uv_size=32, max_displacement=0)
