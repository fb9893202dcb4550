"""SequenceDataset, window-consistent augmentation and collation on tiny prepared folders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from prepared_factory import SIZE, make_prepared_clip

from seqdeca.config.schema import AugmentationConfig, DataConfig, DataSourceConfig
from seqdeca.data.augment import (
    IBUG68_FLIP,
    WindowAugmentation,
    augment_window,
    flip_permutation,
    mediapipe_flip_permutation,
    transform_points,
)
from seqdeca.data.dataset import SequenceDataset, WindowBatch, collate_windows, window_starts
from seqdeca.errors import UserError
from seqdeca.geometry.camera import ndc_to_pixels, pixels_to_ndc
from seqdeca.prep.landmark_sets import IBUG68_FROM_MEDIAPIPE, MEDIAPIPE105

VALID_A = [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1]  # runs of 3, 5, 1
VALID_B = [1] * 7


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two sources: 'a' with clips a0 (gaps) and a1 (all valid), 'b' with one clip b0."""
    base = tmp_path_factory.mktemp("prepared")
    make_prepared_clip(base / "a", "a0", VALID_A, seed=1, au_proxy_width=3)
    make_prepared_clip(base / "a", "a1", VALID_B, seed=2, au_proxy_width=3)
    make_prepared_clip(base / "b", "b0", [1] * 10, seed=3, with_au=True)
    return base / "a", base / "b"


def _brute_force_count(valid: list[int], t: int) -> int:
    return sum(all(valid[s : s + t]) for s in range(len(valid) - t + 1))


@pytest.mark.parametrize("t", [1, 3, 5])
def test_window_counts(roots, t):
    ds = SequenceDataset(sources=[roots[0]], window=t, train=False)
    assert len(ds) == _brute_force_count(VALID_A, t) + _brute_force_count(VALID_B, t)
    assert len(ds) == {1: 16, 3: 9, 5: 4}[t]


def test_window_starts_never_cross_gaps():
    valid = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    assert window_starts(valid, 3).tolist() == [3, 7, 8]
    assert window_starts(valid, 12).tolist() == []


def test_windows_contiguous_and_frames_read(roots):
    ds = SequenceDataset(sources=[roots[0]], window=3, train=False)
    valid = {"a0": np.array(VALID_A, bool), "a1": np.array(VALID_B, bool)}
    for i in range(len(ds)):
        item = ds[i]
        frames = item["frames"].numpy()
        assert np.all(np.diff(frames) == 1)
        clip = ds.clip_id(int(item["clip"]))
        assert valid[clip][frames].all() and item["valid"].all()
        # Each frame's JPEG encodes its index in the brightness (see prepared_factory).
        means = item["images"].mean(dim=(1, 2, 3)).numpy() * 255
        np.testing.assert_allclose(means, 10 + 20 * (frames % 10) + 3.5, atol=1.5)
        assert torch.isfinite(item["landmarks"]).all()


def test_eval_mode_does_not_augment(roots):
    ds = SequenceDataset(
        sources=[roots[0]],
        window=3,
        train=False,
        augmentation=AugmentationConfig(flip_prob=1.0, max_rotation_deg=30),
    )
    item = ds[0]
    path = ds.clips[int(item["clip"])].path
    raw = np.load(path / "landmarks.npy")[item["frames"].numpy(), :, :2]
    expected = pixels_to_ndc(torch.from_numpy(raw), SIZE)
    torch.testing.assert_close(item["landmarks"], expected)
    masks = item["masks"]
    assert masks.dtype == torch.uint8 and int(masks[0, 100, 100]) == 2


def test_mixing_weights(roots):
    sources = [
        DataSourceConfig(root=str(roots[0]), weight=3.0),
        DataSourceConfig(root=str(roots[1]), weight=1.0),
    ]
    ds = SequenceDataset(sources=sources, window=3, train=True, epoch_size=400, seed=5)
    assert ds.source_counts() == [300, 100]
    owners = [ds.clips[ds.windows[p][0]].source for p in ds.plan]
    assert owners.count(0) == 300 and owners.count(1) == 100
    # Weight 0 removes a source; plain roots with a weights list work too.
    ds2 = SequenceDataset(sources=list(roots), weights=[0.0, 1.0], window=3, epoch_size=50)
    assert ds2.source_counts() == [0, 50]
    # Different epochs give different plans.
    plan0 = ds.plan.copy()
    ds.set_epoch(1)
    assert not np.array_equal(plan0, ds.plan)


def test_manifest(roots, tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("# split\na1\n")
    ds = SequenceDataset(
        sources=[DataSourceConfig(root=str(roots[0]), manifest=str(manifest))],
        window=3,
        train=False,
    )
    assert ds.clip_ids == ["a1"] and len(ds) == 5
    manifest.write_text("nope\n")
    with pytest.raises(UserError, match="manifest"):
        SequenceDataset(sources=[DataSourceConfig(root=str(roots[0]), manifest=str(manifest))])


# --------------------------------------------------------------------------- flip tables


def test_flip_permutations_are_involutions_and_consistent():
    perm = mediapipe_flip_permutation()
    assert sorted(perm.tolist()) == list(range(478))
    np.testing.assert_array_equal(perm[perm], np.arange(478))
    assert perm[33] == 263 and perm[263] == 33 and perm[468] == 473 and perm[1] == 1
    np.testing.assert_array_equal(IBUG68_FLIP[IBUG68_FLIP], np.arange(68))
    perm105 = flip_permutation(105)
    np.testing.assert_array_equal(perm105[perm105], np.arange(105))
    np.testing.assert_array_equal(MEDIAPIPE105[perm105], perm[MEDIAPIPE105])
    # The iBUG table agrees with the MediaPipe one through IBUG68_FROM_MEDIAPIPE.
    np.testing.assert_array_equal(perm[IBUG68_FROM_MEDIAPIPE], IBUG68_FROM_MEDIAPIPE[IBUG68_FLIP])


def test_flip_twice_is_identity_and_eyes_swap():
    from prepared_factory import template_landmarks

    lmk, _ = template_landmarks()
    points = pixels_to_ndc(torch.from_numpy(lmk[None, :, :2]).double(), SIZE)
    flip = WindowAugmentation(flip=True)
    once = transform_points(points, flip)
    torch.testing.assert_close(transform_points(once, flip), points)
    # The flipped subject-right outer eye corner (33) lies where the left one (263) mirrors to.
    mirrored_left = points[0, 263] * points.new_tensor([-1.0, 1.0])
    torch.testing.assert_close(once[0, 33], mirrored_left)
    # A frontal template is nearly symmetric: the flipped face is close to the original.
    assert (once - points).norm(dim=-1).mean() < 0.02


# -------------------------------------------------------------------- augmentation geometry


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares 2x3 affine src->dst (L, 2) and the RMS residual."""
    design = np.concatenate([src, np.ones((len(src), 1))], axis=1)
    sol, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return sol.T, float(np.sqrt(((design @ sol - dst) ** 2).sum(-1).mean()))


def test_augmentation_is_window_consistent(roots):
    cfg = AugmentationConfig(
        flip_prob=0.5, max_rotation_deg=15, scale_jitter=0.1, shift_jitter=0.05, color_jitter=0.1
    )
    train = SequenceDataset(
        sources=[roots[0]], window=5, train=True, augmentation=cfg, seed=3, epoch_size=16
    )
    perm = mediapipe_flip_permutation()
    flips = set()
    for i in range(len(train)):
        item = train[i]
        path = train.clips[int(item["clip"])].path
        raw = np.load(path / "landmarks.npy")[item["frames"].numpy(), :, :2]
        raw = pixels_to_ndc(torch.from_numpy(raw), SIZE).double().numpy()
        out = item["landmarks"].double().numpy()
        fits = {}
        for flipped in (False, True):
            src = raw[:, perm] if flipped else raw
            fits[flipped] = [_fit_affine(src[t], out[t]) for t in range(len(raw))]
        flipped = max(fits[False][0][1], 1e-12) > fits[True][0][1]
        flips.add(flipped)
        mats = [m for m, _ in fits[flipped]]
        assert max(r for _, r in fits[flipped]) < 1e-4
        for m in mats[1:]:
            np.testing.assert_allclose(m, mats[0], atol=1e-5)
        det = np.linalg.det(mats[0][:, :2])
        assert (det < 0) == flipped and 0.8**2 < abs(det) < 1.2**2
        angle = math.degrees(math.atan2(mats[0][1, 0], mats[0][0, 0]))
        assert abs(angle) <= 15.01 or abs(abs(angle) - 180) <= 15.01
    assert flips == {False, True}


def test_landmarks_follow_the_image():
    image = torch.zeros(2, 3, SIZE, SIZE)
    lmk = torch.zeros(2, 478, 2)
    px = torch.tensor([150.5, 80.5])  # pixel (row 80, column 150) centre
    image[:, :, 79:82, 149:152] = 1.0
    lmk[:, 263] = pixels_to_ndc(px, SIZE)
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    masks[:, 60:170, 60:170] = 1
    masks[:, 90:110, 80:140] = 2
    sample = {
        "images": image,
        "landmarks": lmk,
        "masks": masks,
        "landmarks68": torch.zeros(2, 68, 2),
    }
    aug = WindowAugmentation(flip=True, angle=math.radians(12), scale=1.08, shift=(0.05, -0.04))
    out = augment_window(sample, aug)
    for t in range(2):
        weight = out["images"][t, 0]
        ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
        centroid = torch.stack([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()
        # After the flip, the point formerly indexed 263 (subject's left) is indexed 33.
        target = ndc_to_pixels(out["landmarks"][t, 33], SIZE)
        assert (centroid - target).norm() < 0.6
    assert set(out["masks"].unique().tolist()) <= {0, 1, 2}
    assert out["masks"].dtype == torch.uint8 and (out["masks"] == 2).sum() > 800


def test_colour_jitter_bounded():
    image = torch.rand(3, 3, 32, 32)
    sample = {"images": image, "masks": torch.zeros(3, 32, 32, dtype=torch.uint8)}
    out = augment_window(sample, WindowAugmentation(brightness=1.1, contrast=0.9, saturation=1.1))[
        "images"
    ]
    assert out.min() >= 0 and out.max() <= 1
    assert 0 < (out - image).abs().mean() < 0.1


# ------------------------------------------------------------------ determinism and loading


def _all_batches(ds: SequenceDataset, workers: int) -> list[WindowBatch]:
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=3,
        num_workers=workers,
        collate_fn=lambda items: collate_windows(items, ds.clip_ids),
    )
    return list(loader)


def test_determinism_across_workers(roots):
    def make() -> SequenceDataset:
        return SequenceDataset(sources=list(roots), window=3, train=True, seed=11, epoch_size=9)

    first = _all_batches(make(), 0)
    again = _all_batches(make(), 0)
    workers = _all_batches(make(), 2)
    for a, b, c in zip(first, again, workers, strict=True):
        for key in ("images", "landmarks", "masks", "frames", "au"):
            torch.testing.assert_close(getattr(a, key), getattr(b, key), equal_nan=True)
            torch.testing.assert_close(getattr(a, key), getattr(c, key), equal_nan=True)
        assert a.clip_ids == c.clip_ids
    other = make()
    other.set_epoch(1)
    assert not torch.equal(first[0].images, _all_batches(other, 0)[0].images)


def test_window_loader_and_collate(roots):
    cfg = DataConfig(
        sources=[
            DataSourceConfig(root=str(roots[0]), weight=1.0),
            DataSourceConfig(root=str(roots[1]), weight=1.0),
        ],
        window=3,
        batch_size=4,
        num_workers=0,
    )
    from seqdeca.data.dataset import window_loader

    loader = window_loader(cfg, train=False)
    batches = list(loader)
    assert sum(len(b.clip_ids) for b in batches) == len(loader.dataset) == 17
    batch = batches[2]  # windows 8-11: a1 then b0, au_proxy NaN-padded to P = 3
    b = len(batch.clip_ids)
    assert batch.images.shape == (b, 3, 3, SIZE, SIZE) and batch.images.dtype == torch.float32
    assert batch.landmarks.shape == (b, 3, 478, 2)
    assert batch.landmarks68.shape == (b, 3, 68, 2)
    assert batch.masks.shape == (b, 3, SIZE, SIZE) and batch.masks.dtype == torch.uint8
    assert batch.valid.shape == (b, 3) and batch.valid.dtype == torch.bool
    assert batch.au.shape == (b, 3, 12) and batch.au_proxy.shape == (b, 3, 3)
    assert batch.frames.shape == (b, 3)
    from_b = [i for i, c in enumerate(batch.clip_ids) if c == "b0"]
    assert from_b and torch.isnan(batch.au_proxy[from_b]).all()
    assert (batch.au[from_b] >= 0).all()
    from_a = [i for i, c in enumerate(batch.clip_ids) if c != "b0"]
    assert from_a and (batch.au[from_a] == -1).all()
    assert batch.landmarks.abs().max() <= 1.0


def _digest_in_fresh_process(roots_and_rank):
    """Run in a spawned interpreter: the rank's half of the epoch plan, item by item."""
    (root_a, root_b), rank = roots_and_rank
    dataset = SequenceDataset(sources=[root_a, root_b], window=3, train=True, seed=5, epoch_size=8)
    dataset.set_epoch(2)
    return [dataset[i]["images"].sum().item() for i in range(rank, len(dataset), 2)]


def test_determinism_across_processes(roots):
    """Two processes (as under DDP, each reading its own shard of the plan) see exactly what
    one process sees: the plan and every augmentation depend only on (seed, epoch, index)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        shards = pool.map(_digest_in_fresh_process, [(roots, 0), (roots, 1)])
    single = SequenceDataset(sources=list(roots), window=3, train=True, seed=5, epoch_size=8)
    single.set_epoch(2)
    expected = [single[i]["images"].sum().item() for i in range(len(single))]
    assert shards[0] == expected[0::2] and shards[1] == expected[1::2]


@pytest.mark.parametrize("damage", [b"not a numpy file", None])
def test_damaged_valid_flags_are_a_one_line_error(tmp_path, damage):
    clip = make_prepared_clip(tmp_path / "src", "c0", [1] * 6)
    if damage is None:
        np.save(clip / "valid.npy", np.ones((6, 2), dtype=bool))  # a wrong shape
    else:
        (clip / "valid.npy").write_bytes(damage)
    with pytest.raises(UserError, match="valid.npy") as err:
        SequenceDataset(sources=[tmp_path / "src"], window=3)
    assert "\n" not in str(err.value) and "prepare the clip again" in str(err.value)
