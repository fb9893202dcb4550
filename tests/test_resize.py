"""seqdeca.render.resize.resize_maps: the interpolation of every mode, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqdeca.render.resize import resize_maps


def _maps(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("antialias", [False, True])
def test_bilinear_matches_interpolate_with_leading_dimensions(antialias: bool) -> None:
    x = _maps(2, 3, 4, 20, 24)  # (B, T, C, H, W)
    expected = F.interpolate(
        x.flatten(0, 1), size=(9, 11), mode="bilinear", align_corners=False, antialias=antialias
    ).unflatten(0, (2, 3))
    got = resize_maps(x, (9, 11), antialias=antialias)
    assert got.shape == (2, 3, 4, 9, 11) and torch.equal(got, expected)
    single = resize_maps(x[0, 0], (9, 11), antialias=antialias)  # (C, H, W)
    assert torch.equal(single, expected[0, 0])


def test_area_threshold_gives_a_binary_mask() -> None:
    mask = (_maps(5, 1, 16, 16) > 0.4).float()
    expected = (F.interpolate(mask, size=(6, 6), mode="area") > 0.5).float()
    got = resize_maps(mask, (6, 6), mode="area_threshold")
    assert torch.equal(got, expected) and set(got.unique().tolist()) <= {0.0, 1.0}


def test_nearest_keeps_the_dtype() -> None:
    classes = (_maps(2, 1, 8, 8) * 3).to(torch.uint8)
    got = resize_maps(classes, (16, 16), mode="nearest")
    expected = F.interpolate(classes.float(), size=(16, 16), mode="nearest").to(torch.uint8)
    assert got.dtype == torch.uint8 and torch.equal(got, expected)


def test_same_size_returns_the_input_and_bad_arguments_fail() -> None:
    x = _maps(3, 8, 8)
    assert resize_maps(x, (8, 8), mode="area_threshold") is x
    with pytest.raises(ValueError, match="antialias"):
        resize_maps(x, (4, 4), mode="nearest", antialias=True)
    with pytest.raises(ValueError, match="unknown resize mode"):
        resize_maps(x, (4, 4), mode="bicubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected"):
        resize_maps(x[0], (4, 4))
