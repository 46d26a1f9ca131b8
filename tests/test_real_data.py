"""The readers on the real public datasets, when ``RETINA_DATA_ROOT`` points at a folder that
holds them (``DRIVE/``, ``RAVIR/``, ``RITE/`` in their published layouts); skipped otherwise.

Reference numbers: REFERENCE.md (DRIVE test vessel fraction inside the FOV 0.1273; second
observer F1 0.7891 pooled over the 20 test images inside the FOV).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DATA_ROOT, needs

from retina_lightning.data.check import check_dataset
from retina_lightning.data.datasets import DRIVE, RAVIR, RITE

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def drive() -> dict[str, list]:
    ds = DRIVE(DATA_ROOT / "DRIVE")
    return {subset: ds.load(subset) for subset in ds.subsets()}


@needs("DRIVE")
def test_drive_counts_sizes_and_fov_masks(drive):
    assert len(drive["training"]) == 20 and len(drive["test"]) == 20
    assert [s.name for s in drive["test"]][:2] == ["01_test", "02_test"]
    for s in drive["training"] + drive["test"]:
        assert s.image.shape == (584, 565, 3) and s.image.dtype == np.uint8
        assert s.label.shape == (584, 565) and set(np.unique(s.label)) == {0, 1}
        assert s.meta["fov_source"] == "published" and 0.6 < s.fov.mean() < 0.8
    assert all(s.second_observer is not None for s in drive["test"])
    assert all(s.second_observer is None for s in drive["training"])


@needs("DRIVE")
def test_drive_vessel_fraction_and_second_observer(drive):
    fov = np.concatenate([s.fov.ravel() for s in drive["test"]])
    first = np.concatenate([s.label.ravel() for s in drive["test"]])[fov].astype(bool)
    second = np.concatenate([s.second_observer.ravel() for s in drive["test"]])[fov].astype(bool)
    assert 0.12 < first.mean() < 0.13  # 0.1273 (REFERENCE.md)
    tp = int((first & second).sum())
    f1 = 2 * tp / (int(first.sum()) + int(second.sum()))
    assert abs(f1 - 0.789) < 0.005  # 0.7891 (REFERENCE.md)


#: Issue 15 item 17: per image, derived FOV minus official (ring) and IoU. Measured on the 40
#: images: threshold alone (before) ring up to 3,770 px (01_test), 11 images above 50; with
#: the edge rule ring at most 79 px (01_test), IoU at least 0.9852 (official pixels missed:
#: the masks' outermost transitional pixel, <= 3,363 per image, <= 4.1 px deep).
MAX_RING_PX, MIN_FOV_IOU, MAX_MISSED_PX = 100, 0.985, 3500


@needs("DRIVE")
def test_drive_derived_fov_has_no_ring_outside_the_published_masks(drive):
    from retina_lightning.data.fov import derive_fov

    ring, missed, iou = {}, {}, {}
    for s in drive["training"] + drive["test"]:
        derived, official = derive_fov(s.image), s.fov.astype(bool)
        ring[s.name] = int((derived & ~official).sum())
        missed[s.name] = int((official & ~derived).sum())
        iou[s.name] = (derived & official).sum() / (derived | official).sum()
    assert max(ring.values()) <= MAX_RING_PX, sorted(ring.items(), key=lambda kv: -kv[1])[:5]
    assert max(missed.values()) <= MAX_MISSED_PX, max(missed.items(), key=lambda kv: kv[1])
    assert min(iou.values()) >= MIN_FOV_IOU, min(iou.items(), key=lambda kv: kv[1])


@needs("RAVIR")
def test_ravir_train_has_three_classes():
    samples = RAVIR(DATA_ROOT / "RAVIR").load("train")
    assert len(samples) == 23
    classes = set()
    for s in samples:
        assert s.image.shape == (768, 768, 1) and s.pixel_size_um == 12.5
        classes |= set(np.unique(s.av).tolist())
        np.testing.assert_array_equal(s.label, s.av > 0)
    assert classes == {0, 1, 2}
    report = check_dataset(RAVIR(DATA_ROOT / "RAVIR"))
    assert report.ok and report.subsets[1].count == 19 and report.subsets[1].unlabelled == 19


@needs("RITE")
def test_rite_has_40_av_maps():
    ds = RITE(DATA_ROOT / "RITE", target="av")
    samples = ds.load("training") + ds.load("test")
    assert len(samples) == 40
    for s in samples:
        assert s.av is not None and s.av.shape == (584, 565)
        assert set(np.unique(s.av).tolist()) == {0, 1, 2}
        np.testing.assert_array_equal(s.label, s.av)
