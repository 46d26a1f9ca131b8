"""Tests of the synthetic fundus generator (retina_lightning.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from retina_lightning.data.base import DatasetError
from retina_lightning.data.synthetic import SyntheticFundus, generate_fundus
from retina_lightning.data.synthetic.dataset import _cached_fundus
from retina_lightning.data.synthetic.raster import _label_maps, _rasterise
from retina_lightning.data.synthetic.vessels import _Centrelines, _Geometry
from retina_lightning.types import ARTERY, BACKGROUND, VEIN

SMALL = (96, 112)


@pytest.fixture(scope="module")
def full_size():
    """Two DRIVE-sized images (584 x 565), generated once for the module."""
    return [generate_fundus(seed) for seed in (0, 1)]


def _fields(sample):
    return (sample.image, sample.label, sample.fov, sample.av, sample.second_observer)


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    a, b = generate_fundus(7, *SMALL), generate_fundus(7, *SMALL)
    for x, y in zip(_fields(a), _fields(b)):
        np.testing.assert_array_equal(x, y)
    c = generate_fundus(8, *SMALL)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.label, c.label)


def test_dtypes_shapes_and_value_sets():
    s = generate_fundus(3, *SMALL)
    assert s.image.shape == (*SMALL, 3) and s.image.dtype == np.uint8
    assert s.label.shape == SMALL and s.label.dtype == np.uint8
    assert s.fov.shape == SMALL and s.fov.dtype == bool
    assert s.av.shape == SMALL and s.av.dtype == np.uint8
    assert s.second_observer.shape == SMALL and s.second_observer.dtype == np.uint8
    assert set(np.unique(s.label)) == {0, 1}
    assert set(np.unique(s.second_observer)) == {0, 1}
    assert set(np.unique(s.av)) == {BACKGROUND, VEIN, ARTERY}
    assert s.meta["seed"] == 3 and s.name == "synthetic_3"
    assert s.shape == SMALL


def test_labels_live_inside_a_circular_fov(full_size):
    for s in full_size:
        h, w = s.shape
        assert s.fov[h // 2, w // 2] and not s.fov[0, 0] and not s.fov[-1, -1]
        # a disc of radius ~0.474 * min(H, W): area fraction pi r^2 / (H W)
        expected = np.pi * (0.474 * min(h, w)) ** 2 / (h * w)
        assert s.fov.mean() == pytest.approx(expected, rel=0.04)
        assert not s.label[~s.fov].any()
        assert not s.av[~s.fov].any()
        assert not s.second_observer[~s.fov].any()
        assert s.image[~s.fov].mean() < 12  # black surround (camera dark level)


def test_av_map_agrees_with_the_vessel_label(full_size):
    for s in full_size:
        np.testing.assert_array_equal(s.av > 0, s.label > 0)
        n_art, n_vein = (s.av == ARTERY).sum(), (s.av == VEIN).sum()
        assert 0.25 < n_art / (n_art + n_vein) < 0.6  # arteries thinner than veins


def test_artery_wins_where_artery_and_vein_overlap():
    cov = np.zeros((2, 2, 3), dtype=np.float32)
    cov[0, 0, :] = [0.5, 1.0, 0.2]  # vein
    cov[1, :, 1] = [1.0, 0.7]  # artery
    fov = np.ones((2, 3), dtype=bool)
    fov[1, 1] = False
    label, av = _label_maps(cov, fov)
    np.testing.assert_array_equal(label, [[1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(av, [[VEIN, ARTERY, 0], [0, 0, 0]])


def test_rasterised_capsule_matches_hand_count():
    """Segment (10, 20) -> (30, 20), radius 2: pixel centres within distance 2 are vessel:
    5 rows x 21 columns, plus 1 + 3 pixels in each round end cap = 113 pixels."""
    g = _Geometry(48, 48, 24.0, 24.0, 22.0, 1.0, (0.0, 0.0), 1.0, (0.0, 0.0))
    f = np.float32
    segs = _Centrelines(
        *(np.array([v], f) for v in (10, 20, 30, 20, 2, 2)),
        artery=np.array([False]),
        missed=np.array([False]),
    )
    cov, dark, _, obs2 = _rasterise(segs, g, thin_radius=2.0)
    vessel = cov[0] >= 0.5
    assert vessel.sum() == 113
    assert vessel[18:23, 10:31].all() and not vessel[17, 20] and not vessel[23, 20]
    assert not cov[1].any()  # no artery plane
    # coverage clip(r - d + 0.5): 1 on the centreline, 0.5 at d = r, 0 beyond d = r + 0.5
    assert cov[0, 20, 20] == 1.0 and cov[0, 22, 20] == pytest.approx(0.5)
    assert cov[0, 23, 20] == 0.0
    assert dark[0, 20, 20] == pytest.approx(1 - np.exp(-1.0))  # 1 - exp(-r / thin)
    np.testing.assert_array_equal(obs2, cov[0])


def test_vessel_fraction_and_width_range_are_drive_like(full_size):
    for s in full_size:
        vessel = s.label > 0
        assert 0.09 < vessel[s.fov].mean() < 0.17  # DRIVE test set: 0.127
        radius = ndi.distance_transform_edt(vessel)
        skeleton_radius = radius[skeletonize(vessel)]
        assert skeleton_radius.max() >= 3.0  # trunks ~7-10 px wide
        assert (skeleton_radius <= 1.0).mean() > 0.3  # many 1-2 px wide capillaries


def test_vessels_are_darker_in_green_and_veins_darker_than_arteries(full_size):
    for s in full_size:
        img = s.image.astype(float)
        bg = s.fov & (ndi.distance_transform_edt(s.label == 0) > 4)
        # relative vessel contrast strongest in the green channel
        contrast = [1 - img[..., c][s.label > 0].mean() / img[..., c][bg].mean() for c in range(3)]
        assert contrast[1] > contrast[0] > 0
        assert contrast[1] > contrast[2]
        green = img[..., 1]
        assert green[s.av == VEIN].mean() < green[s.av == ARTERY].mean()


def test_second_observer_is_a_close_but_different_annotation(full_size):
    for s in full_size:
        agree = (s.second_observer == s.label)[s.fov].mean()
        assert 0.9 < agree < 1.0
        assert s.second_observer.sum() < s.label.sum()  # missed thin branches


def test_geometry_scales_to_small_and_odd_sizes():
    s = generate_fundus(0, 33, 47)
    assert s.image.shape == (33, 47, 3) and s.label[s.fov].any()
    with pytest.raises(ValueError, match="height, width >= 16"):
        generate_fundus(0, 8, 64)
    with pytest.raises(ValueError, match="n_trees"):
        generate_fundus(0, *SMALL, n_trees=0)


def test_style_knobs_change_the_image_not_the_labels():
    a = generate_fundus(5, *SMALL)
    b = generate_fundus(5, *SMALL, noise_std=0.0, vessel_contrast=0.5)
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.image, b.image)
    clean = generate_fundus(5, *SMALL, lesions=0.0)
    np.testing.assert_array_equal(a.label, clean.label)
    assert not np.array_equal(a.image, clean.image)
    fewer = generate_fundus(5, *SMALL, n_trees=2)
    assert fewer.label.sum() < a.label.sum()


def test_dataset_subsets_counts_names_and_disjoint_seeds():
    ds = SyntheticFundus(num_train=3, num_test=2, height=SMALL[0], width=SMALL[1], seed=11)
    assert ds.subsets() == ("training", "test")
    train, test = ds.load("training"), ds.load("test")
    assert [s.name for s in train] == ["01_training", "02_training", "03_training"]
    assert [s.name for s in test] == ["01_test", "02_test"]
    assert all(s.image.shape == (*SMALL, 3) for s in train + test)
    train_seeds = {s.meta["seed"] for s in train}
    test_seeds = {s.meta["seed"] for s in test}
    assert len(train_seeds) == 3 and not train_seeds & test_seeds
    assert train[1].meta["seed"] == ds.image_seed("training", 1)
    with pytest.raises(DatasetError, match="unknown subset"):
        ds.load("validation")


def test_image_i_does_not_depend_on_the_dataset_size():
    small = SyntheticFundus(num_train=1, num_test=0, height=64, width=64, seed=2)
    large = SyntheticFundus(num_train=3, num_test=1, height=64, width=64, seed=2)
    np.testing.assert_array_equal(small.load("training")[0].image, large.load("training")[0].image)
    other = SyntheticFundus(num_train=1, num_test=0, height=64, width=64, seed=3)
    assert not np.array_equal(small.load("training")[0].image, other.load("training")[0].image)


def test_loads_are_cached_and_returned_samples_are_private_copies():
    ds = SyntheticFundus(num_train=2, num_test=0, height=64, width=80, seed=99)
    first = ds.load("training")
    hits = _cached_fundus.cache_info().hits
    first[0].image[:] = 0  # editing a returned sample must not corrupt the cache
    first[0].label[:] = 1
    second = ds.load("training")
    assert _cached_fundus.cache_info().hits == hits + 2
    assert second[0].image.any() and not second[0].label[~second[0].fov].any()
    assert second[0] is not first[0]
