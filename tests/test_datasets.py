"""Dataset readers, image I/O, FOV derivation and the data checker, on tiny fixture folders
written in each dataset's published layout (``tests/data/make_fixtures.py``)."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import fixtures
from PIL import Image
from scipy import ndimage as ndi

from retina_lightning.data.base import DatasetError, OfficialSplit
from retina_lightning.data.check import check_dataset, format_report
from retina_lightning.data.datasets import (
    CHASEDB1,
    DATASETS,
    DRIVE,
    HRF,
    RAVIR,
    RITE,
    STARE,
    FolderDataset,
    IDRiDOpticDisc,
    rite_av_classes,
)
from retina_lightning.data.fov import derive_fov
from retina_lightning.data.io import read_image, read_label_levels, read_mask, split_suffix
from retina_lightning.data.splits import KFoldSplit
from retina_lightning.types import ARTERY, BACKGROUND, VEIN

fx = fixtures()


@pytest.fixture(scope="session")
def roots(tmp_path_factory) -> dict[str, Path]:
    return fx.make_all(tmp_path_factory.mktemp("fixtures"))


# --------------------------------------------------------------------------------------------
# io


def test_split_suffix_handles_double_and_gz_suffixes():
    assert split_suffix("im0001.ah.ppm.gz") == ("im0001.ah", ".ppm.gz")
    assert split_suffix("01_dr.JPG") == ("01_dr", ".jpg")
    assert split_suffix("README.txt") == ("README.txt", "")


def test_read_image_modes(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").shape == (4, 5, 1)
    # 16-bit: 65535 -> 255, 25700 = 100 * 257 -> 100
    sixteen = np.array([[0, 25700, 65535]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[..., 0], [[0, 100, 255]])
    # gzip
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PPM")
    (tmp_path / "x.ppm.gz").write_bytes(gzip.compress(buf.getvalue()))
    np.testing.assert_array_equal(read_image(tmp_path / "x.ppm.gz"), rgb)


def test_read_mask_binarises_every_encoding(tmp_path):
    label = fx.fundus(3)[1]
    Image.fromarray(label).save(tmp_path / "01.png")
    Image.fromarray(label * 255).save(tmp_path / "0255.gif")
    Image.fromarray(label.astype(np.uint16) * 65535).save(tmp_path / "16.png")
    Image.fromarray(label * 255).save(tmp_path / "lossy.jpg", quality=50)
    fx._palette_gif(label, tmp_path / "palette.gif")
    for name in ("01.png", "0255.gif", "16.png", "lossy.jpg", "palette.gif"):
        mask = read_mask(tmp_path / name)
        assert mask.dtype == np.uint8, name
        np.testing.assert_array_equal(mask, label, err_msg=name)


def test_read_mask_rejects_a_non_binary_map_naming_the_file(tmp_path):
    Image.fromarray(fx.fundus(0)[0][..., 0]).save(tmp_path / "photo.png")
    with pytest.raises(DatasetError, match=r"photo\.png.*not a binary"):
        read_mask(tmp_path / "photo.png")
    grey, _ = fx.ravir_mask(0)  # 0/128/255: three classes are not a binary label
    Image.fromarray(grey).save(tmp_path / "three.png")
    with pytest.raises(DatasetError, match=r"three\.png"):
        read_mask(tmp_path / "three.png")
    Image.fromarray(fx.ravir_mask(0)[1]).save(tmp_path / "classes.png")  # 0/1/2 indices
    with pytest.raises(DatasetError, match=r"classes\.png.*class-index map"):
        read_mask(tmp_path / "classes.png")


def test_truncated_file_names_the_file(tmp_path):
    Image.fromarray(fx.fundus(0)[0]).save(tmp_path / "img.png")
    data = (tmp_path / "img.png").read_bytes()
    (tmp_path / "img.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"img\.png.*truncated"):
        read_image(tmp_path / "img.png")
    (tmp_path / "bad.ppm.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"bad\.ppm\.gz"):
        read_image(tmp_path / "bad.ppm.gz")


def test_read_label_levels_maps_and_rejects(tmp_path):
    grey, expected = fx.ravir_mask(1)
    Image.fromarray(grey).save(tmp_path / "m.png")
    out = read_label_levels(tmp_path / "m.png", {0: 0, 128: 2, 255: 1})
    np.testing.assert_array_equal(out, expected)
    grey[0, 0] = 64  # 64 is 64 away from both 0 and 128
    Image.fromarray(grey).save(tmp_path / "m64.png")
    with pytest.raises(DatasetError, match=r"m64\.png.*1 pixels are off"):
        read_label_levels(tmp_path / "m64.png", {0: 0, 128: 2, 255: 1})


# --------------------------------------------------------------------------------------------
# fov


def test_derive_fov_threshold_largest_component_and_holes():
    image = np.zeros((30, 30, 3), np.uint8)
    yy, xx = np.mgrid[:30, :30]
    aperture = (yy - 15) ** 2 + (xx - 15) ** 2 <= 100
    image[aperture] = (21, 5, 0)  # just above the threshold 20 in one channel
    image[14:17, 14:17] = 0  # a dark lesion inside: a hole to fill
    image[0:2, 0:2] = 200  # a bright speck in the surround: not the largest component
    image[29, 29] = 20  # exactly the threshold: surround
    fov = derive_fov(image)
    np.testing.assert_array_equal(fov, aperture)
    assert derive_fov(np.zeros((4, 4), np.uint8)).all()  # no surround at all -> all FOV


def test_derive_fov_drops_the_blurred_aperture_edge():
    """Issue 15 item 17: a bright aperture whose rim fades through half its brightness to
    the black surround (as DRIVE's bright images do) gets no ring of transitional pixels; a
    bright rim pixel stays, as does the part of the aperture cut by the image frame."""
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(yy - 20, xx - 30)  # aperture centred high: the top frame cuts it
    image = np.zeros((60, 60, 3), np.uint8)
    image[r <= 25] = (160, 80, 20)
    rim = (r > 25) & (r <= 27)
    image[rim] = (60, 20, 5)  # the blur: above the threshold, far below the fundus beside it
    image[(r > 24) & (r <= 25) & (xx < 30)] = (140, 70, 18)  # a bright outermost FOV pixel
    fov = derive_fov(image)
    np.testing.assert_array_equal(fov, r <= 25)
    assert fov[0].any()  # no edge rule at the image frame
    old = derive_fov(image, edge_ratio=0)  # the threshold alone keeps the ring
    np.testing.assert_array_equal(old, r <= 27)
    with pytest.raises(ValueError, match="edge_ratio"):
        derive_fov(image, edge_ratio=1.5)


# --------------------------------------------------------------------------------------------
# DRIVE


def test_drive_loads_the_published_layout(roots):
    ds = DRIVE(roots["drive"])
    assert ds.subsets() == ("training", "test")
    train, test = ds.load("training"), ds.load("test")
    assert [s.name for s in train] == ["21_training", "22_training", "23_training"]
    assert [s.name for s in test] == ["01_test", "02_test", "03_test"]
    for s, n in zip(train + test, fx.DRIVE_TRAINING + fx.DRIVE_TEST):
        image, label, _ = fx.fundus(n)
        assert s.image.dtype == np.uint8 and s.image.shape == (40, 48, 3)
        np.testing.assert_array_equal(s.image, image)
        assert s.label.dtype == np.uint8
        np.testing.assert_array_equal(s.label, label)
        assert s.fov.dtype == bool
        np.testing.assert_array_equal(s.fov, fx.disc())
        assert s.meta["fov_source"] == "published"
        assert Path(s.meta["image"]).name == f"{s.name}.tif"
    assert all(s.second_observer is None for s in train)
    for s, n in zip(test, fx.DRIVE_TEST):  # the palette GIF of 2nd_manual, indices 0/1
        np.testing.assert_array_equal(s.second_observer, fx.second_observer(n))


def test_wrong_root_lists_expected_and_found(tmp_path):
    (tmp_path / "somewhere").mkdir()
    (tmp_path / "somewhere" / "notes.txt").write_text("x")
    (tmp_path / "somewhere" / "pictures").mkdir()
    with pytest.raises(DatasetError) as err:
        DRIVE(tmp_path / "somewhere").load("training")
    msg = str(err.value)
    assert "training/images" in msg and "Expected" in msg
    assert "notes.txt" in msg and "pictures/" in msg
    with pytest.raises(DatasetError, match="does not exist"):
        DRIVE(tmp_path / "missing").load("test")
    with pytest.raises(DatasetError, match="no data root"):
        DRIVE().load("test")
    with pytest.raises(DatasetError, match="unknown subset"):
        DRIVE(tmp_path).load("validation")


def test_root_one_level_too_high_gets_a_hint(roots):
    with pytest.raises(DatasetError, match="point `root` there"):
        DRIVE(roots["drive"].parent).load("training")


def test_size_mismatched_label_names_both_files(tmp_path):
    root = fx.make_drive(tmp_path)
    bad = root / "training" / "1st_manual" / "22_manual1.gif"
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(bad)
    with pytest.raises(DatasetError) as err:
        DRIVE(root).load("training")
    msg = str(err.value)
    assert "22_manual1.gif" in msg and "22_training.tif" in msg
    assert "30x30" in msg and "40x48" in msg


def test_non_binary_label_errors_with_the_file_name(tmp_path):
    root = fx.make_drive(tmp_path)
    bad = root / "test" / "1st_manual" / "02_manual1.gif"
    Image.fromarray(fx.fundus(2)[0][..., 0]).save(bad)
    with pytest.raises(DatasetError, match=r"02_manual1\.gif.*not a binary"):
        DRIVE(root).load("test")


def test_missing_and_orphan_files_are_listed(tmp_path):
    root = fx.make_drive(tmp_path)
    (root / "training" / "1st_manual" / "21_manual1.gif").unlink()
    (root / "training" / "images" / "23_training.tif").unlink()
    with pytest.raises(DatasetError) as err:
        DRIVE(root).load("training")
    msg = str(err.value)
    assert "2 problem(s)" in msg
    assert "21_training.tif: no label" in msg and "21_manual1.gif" in msg
    assert "23_manual1.gif" in msg and "has no image" in msg


def test_check_collects_every_bad_file(tmp_path):
    root = fx.make_drive(tmp_path)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(
        root / "training" / "1st_manual" / "22_manual1.gif"
    )
    data = (root / "training" / "images" / "23_training.tif").read_bytes()
    (root / "training" / "images" / "23_training.tif").write_bytes(data[:100])
    report = check_dataset(DRIVE(root))
    training, test = report.subsets
    assert not report.ok
    assert training.count == 1 and test.count == 3
    assert len(training.problems) == 2
    assert any("22_manual1.gif" in p for p in training.problems)
    assert any("23_training.tif" in p for p in training.problems)
    assert test.problems == [] and test.second_observer == 3
    assert len(report.problems) == 2 and report.problems[0].startswith("[training] ")
    text = format_report(report)
    assert "2 problem(s) found" in text and "[test] 3 image(s)" in text


def test_check_reports_sizes_fractions_and_fov_sources(roots):
    report = check_dataset(DRIVE(roots["drive"]))
    assert report.ok
    test = report.subsets[1]
    assert test.sizes == {(40, 48): 3} and test.channels == {3: 3}
    assert test.fov_sources == {"published": 3}
    fov = fx.disc()
    fractions = [fx.fundus(n)[1][fov].mean() for n in fx.DRIVE_TEST]
    mean, lo, hi = test.fraction_stats
    assert mean == pytest.approx(np.mean(fractions))
    assert (lo, hi) == pytest.approx((min(fractions), max(fractions)))
    pooled = sum(fx.fundus(n)[1][fov].sum() for n in fx.DRIVE_TEST) / (3 * fov.sum())
    assert test.pooled_fraction == pytest.approx(pooled)


# --------------------------------------------------------------------------------------------
# STARE, CHASE_DB1, HRF


def _assert_derived_disc(fov: np.ndarray, grown: int = 0) -> None:
    """A FOV derived from a fixture image is its disc (grown by up to ``grown`` px of JPEG
    ringing), less a few pixels of the disc's two outer layers where a fixture vessel (110
    next to fundus 185) ends on the rim: as dark as a blurred aperture edge, so derive_fov
    peels it (the fixture disc has radius 17: its vessels meet the rim at steep angles)."""
    disc = fx.disc()
    outer = disc & ~ndi.binary_erosion(disc, iterations=2)
    limit = ndi.binary_dilation(disc, iterations=grown) if grown else disc
    assert (fov <= limit).all()
    lost = disc & ~fov
    assert (lost <= outer).all() and lost.sum() <= 0.2 * outer.sum(), np.argwhere(lost).tolist()


def test_stare_gz_archives_with_ah_and_vk(roots):
    ah = STARE(roots["stare"]).load("all")
    assert [s.name for s in ah] == list(fx.STARE_NAMES)  # the unlabelled im0010 is not a sample
    for i, s in enumerate(ah):
        np.testing.assert_array_equal(s.label, fx.fundus(100 + i)[1])
        np.testing.assert_array_equal(s.second_observer, fx.second_observer(100 + i))
        _assert_derived_disc(s.fov)  # derived: lossless PPM -> the disc
        assert s.meta["fov_source"] == "derived" and s.meta["image"].endswith(".ppm.gz")
    vk = STARE(roots["stare"], labels="vk").load("all")
    np.testing.assert_array_equal(vk[2].label, ah[2].second_observer)
    np.testing.assert_array_equal(vk[2].second_observer, ah[2].label)
    report = check_dataset(STARE(roots["stare"]))
    assert any("im0010" in n for n in report.subsets[0].notes)


def test_stare_flat_folder_matches_the_archives(roots):
    flat = STARE(roots["stare_flat"]).load("all")
    archive = STARE(roots["stare"]).load("all")
    assert [s.name for s in flat] == [s.name for s in archive]
    for a, b in zip(flat, archive):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.second_observer, b.second_observer)
    with pytest.raises(DatasetError, match="'ah' or 'vk'"):
        STARE(roots["stare"], labels="xx")


def test_chase_derives_a_fov_that_excludes_the_dark_border(roots):
    samples = CHASEDB1(roots["chase_db1"]).load("all")
    assert [s.name for s in samples] == list(fx.CHASE_NAMES)
    for i, s in enumerate(samples):
        assert s.image.shape == (40, 48, 3)
        np.testing.assert_array_equal(s.label, fx.fundus(200 + i)[1])
        np.testing.assert_array_equal(s.second_observer, fx.second_observer(200 + i))
        assert not s.fov[0].any() and not s.fov[-1].any() and not s.fov[:, 0].any()
        assert s.fov[20, 24]
        # JPEG ringing brightens the surround next to the rim: the FOV may grow by 1-2 px
        _assert_derived_disc(s.fov, grown=2)


def test_hrf(roots):
    samples = HRF(roots["hrf"]).load("all")
    assert [s.name for s in samples] == list(fx.HRF_NAMES)
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(s.label, fx.fundus(300 + i)[1])
        np.testing.assert_array_equal(s.fov, fx.disc())  # from the RGB mask tif
        assert s.second_observer is None


# --------------------------------------------------------------------------------------------
# A/V datasets


def test_rite_av_colour_mapping_by_hand():
    rgb = np.array(
        [[[0, 0, 0], [255, 0, 0], [0, 0, 255], [0, 255, 0], [255, 255, 255], [255, 0, 255]]],
        np.uint8,
    )
    np.testing.assert_array_equal(
        rite_av_classes(rgb), [[BACKGROUND, ARTERY, VEIN, ARTERY, BACKGROUND, ARTERY]]
    )
    np.testing.assert_array_equal(
        rite_av_classes(rgb, crossing="vein", uncertain="artery"),
        [[BACKGROUND, ARTERY, VEIN, VEIN, ARTERY, VEIN]],
    )
    with pytest.raises(DatasetError, match="crossing"):
        rite_av_classes(rgb, crossing="ignore")


def test_rite_vessel_and_av_targets(roots):
    vessel = RITE(roots["rite"]).load("training") + RITE(roots["rite"]).load("test")
    av = RITE(roots["rite"], target="av").load("training") + RITE(roots["rite"], "av").load("test")
    assert [s.name for s in vessel] == ["21_training", "22_training", "01_test", "02_test"]
    for k, (v, a) in enumerate(zip(vessel, av)):
        rgb, vessel_map, expected = fx.rite_av(k)
        np.testing.assert_array_equal(v.label, vessel_map)  # crossings, uncertain: vessel
        np.testing.assert_array_equal(v.av, expected)
        np.testing.assert_array_equal(a.label, expected)
        assert set(np.unique(a.label)) == {0, 1, 2}
        assert v.meta["fov_source"] == "derived" and not v.fov[0, 0] and v.fov[20, 24]


def test_rite_takes_drive_fov_masks(roots):
    samples = RITE(roots["rite"], drive_root=roots["drive"]).load("test")
    for s in samples:
        assert s.meta["fov_source"] == "drive"
        np.testing.assert_array_equal(s.fov, fx.disc())
    with pytest.raises(DatasetError, match="drive_root"):
        RITE(roots["rite"], drive_root=roots["rite"]).load("test")


def test_ravir_grey_levels_and_unlabelled_test(roots):
    ds = RAVIR(roots["ravir"], target="av")
    assert ds.subsets() == ("train", "test")
    train = ds.load("train")
    assert [s.name for s in train] == ["IR_Case_011", "IR_Case_017", "IR_Case_019"]
    for i, s in enumerate(train):
        _, expected = fx.ravir_mask(i)
        assert s.image.shape == (40, 48, 1) and s.image.dtype == np.uint8
        np.testing.assert_array_equal(s.label, expected)  # 0 -> 0, 255 -> 1 vein, 128 -> 2
        np.testing.assert_array_equal(s.av, expected)
        assert s.pixel_size_um == 12.5 and s.fov.all()
    binary = RAVIR(roots["ravir"]).load("train")[0]  # default: binary vessel label
    np.testing.assert_array_equal(binary.label, (fx.ravir_mask(0)[1] > 0).astype(np.uint8))
    np.testing.assert_array_equal(binary.av, fx.ravir_mask(0)[1])
    with pytest.raises(DatasetError, match="no public labels"):
        ds.load("test")
    test = RAVIR(roots["ravir"], allow_unlabelled=True).load("test")
    assert len(test) == 2 and all(s.meta["unlabelled"] and not s.label.any() for s in test)
    assert all(s.av is None for s in test)


def test_idrid_optic_disc(roots):
    ds = IDRiDOpticDisc(roots["idrid"])
    train, test = ds.load("training"), ds.load("test")
    assert [s.name for s in train] == ["IDRiD_01", "IDRiD_02"] and [s.name for s in test] == [
        "IDRiD_55"
    ]
    for s, n in zip(train + test, (1, 2, 55)):
        np.testing.assert_array_equal(s.label, fx.optic_disc(n))  # red-on-black tif
        assert not s.fov[0, 0] and s.fov[20, 24]
    # root may also be the "A. Segmentation" folder itself
    assert len(IDRiDOpticDisc(roots["idrid"] / "A. Segmentation").load("training")) == 2


# --------------------------------------------------------------------------------------------
# a user's folder


def test_folder_matching_rule_and_masks(roots):
    ds = FolderDataset(roots["folder"])
    assert ds.subsets() == ("all",)
    samples = ds.load("all")
    assert [s.name for s in samples] == ["a", "b", "c"]
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(s.label, fx.fundus(700 + i)[1])
        np.testing.assert_array_equal(s.fov, fx.disc())
        assert s.meta["fov_source"] == "published"
    assert Path(samples[0].meta["label"]).name == "a_label.png"
    assert Path(samples[2].meta["label"]).name == "c-gt.png"


def test_folder_subsets_and_errors(roots, tmp_path):
    ds = FolderDataset(roots["folder_subsets"])
    assert ds.subsets() == ("test", "train")
    assert [s.name for s in ds.load("train")] == ["a", "b"]
    assert ds.load("test")[0].meta["fov_source"] == "derived"
    root = fx.make_folder(tmp_path)
    shutil.copy(root / "labels" / "b.png", root / "labels" / "b_gt.png")
    shutil.copy(root / "labels" / "b.png", root / "labels" / "zzz.png")
    with pytest.raises(DatasetError) as err:
        FolderDataset(root).load("all")
    msg = str(err.value)
    assert "image 'b' has 2 label files (b.png, b_gt.png)" in msg
    assert "zzz.png" in msg and "matches no image" in msg


def test_flat_folder_with_the_official_split_says_which_split_to_set(roots, tmp_path):
    """Issue 15 item 15: the folder config's OfficialSplit (train / test) on a flat folder
    failed with "unknown subset 'train'"; the fix (a k-fold split) was only in a YAML
    comment. The error now gives the keys and values to set, which then work."""
    root = fx.make_folder(tmp_path)
    dataset = FolderDataset(root)
    with pytest.raises(DatasetError) as err:
        OfficialSplit(train_subset="train", test_subset="test", val_fraction=0.2)(dataset)
    msg = str(err.value)
    assert "FolderDataset has no subset 'train' (train_subset); its subsets are ['all']" in msg
    for key in (
        "--data.init_args.split=retina_lightning.data.KFoldSplit",
        "--data.init_args.split.init_args.num_folds=5",
        "--data.init_args.split.init_args.fold=0",
        "--data.init_args.split.init_args.subset=all",
    ):
        assert key in msg
    split = KFoldSplit(num_folds=3, fold=0, subset="all")(dataset)  # the advice works
    assert len(split.train) == 2 and len(split.test) == 1
    with pytest.raises(DatasetError, match=r"split\.init_args\.test_subset to one of"):
        OfficialSplit(train_subset="train", test_subset="testing")(
            FolderDataset(roots["folder_subsets"])
        )


def test_data_check_takes_dataset_options_and_config_files(roots, tmp_path, capsys):
    """Issue 15 item 16: a STARE copy with only Kouznetsova's labels failed `retina data
    check` ("labels-ah not found") as the command could not pass `labels: vk`. Options come
    with --init_arg KEY=VALUE or from the dataset node of a config file (--config)."""
    from retina_lightning.cli import main

    root = tmp_path / "stare_vk"
    shutil.copytree(roots["stare"], root)
    shutil.rmtree(root / "labels-ah")
    argv = ["data", "check", "--dataset", "stare", "--root", str(root)]
    assert main(argv) == 1
    assert "labels-ah/im0001.ah.ppm[.gz]' not found" in capsys.readouterr().out
    assert main([*argv, "--init_arg", "labels=vk"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"STARE at {root}") and "[all] 4 image(s)" in out and "OK" in out
    config = tmp_path / "stare_vk.yaml"
    config.write_text(
        "data:\n  class_path: retina_lightning.data.RetinaDataModule\n  init_args:\n"
        "    dataset:\n      class_path: retina_lightning.data.STARE\n"
        "      init_args:\n        root: nowhere\n        labels: vk\n"
    )
    assert main(["data", "check", "--config", str(config), "--root", str(root)]) == 0
    assert "[all] 4 image(s)" in capsys.readouterr().out
    node = tmp_path / "node.yaml"  # a dataset node on its own
    node.write_text(f"class_path: retina_lightning.data.STARE\ninit_args: {{root: {root}}}\n")
    assert main(["data", "check", "--config", str(node), "--init_arg", "labels=vk"]) == 0
    capsys.readouterr()
    assert main([*argv, "--init_arg", "observer=vk"]) == 2
    err = capsys.readouterr().err
    assert "STARE has no option 'observer'" in err and "labels" in err
    with pytest.raises(SystemExit):
        main([*argv, "--init_arg", "labels"])
    assert "expected KEY=VALUE (e.g. labels=vk), got 'labels'" in capsys.readouterr().err
    assert main(["data", "check", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_data_widths_refuses_a_dataset_without_av_labels(roots, capsys):
    """Issue 15 item 14: `retina data widths` on a dataset without artery/vein labels ended in
    a traceback and its --help offered every dataset: the choices are the A/V datasets, and a
    config's dataset without A/V maps gets one line naming it and those datasets."""
    from retina_lightning.cli import main

    with pytest.raises(SystemExit):
        main(["data", "widths", "--dataset", "drive", "--root", str(roots["drive"])])
    err = capsys.readouterr().err
    assert "invalid choice: 'drive'" in err and "'ravir', 'rite', 'synthetic'" in err
    with pytest.raises(SystemExit):
        main(["data", "widths", "--help"])
    assert "artery/vein labels: ravir, rite, synthetic" in " ".join(capsys.readouterr().out.split())
    argv = ["data", "widths", "--dataset", "rite", "--root", str(roots["drive"])]
    assert main(argv) == 2  # a RITE reader pointed at a DRIVE folder: the layout error, 1 line
    err = capsys.readouterr().err.strip()
    assert err.startswith("retina data widths: error: RITE:") and "Traceback" not in err
    node = roots["drive"].parent / "drive_node.yaml"
    node.write_text(
        f"class_path: retina_lightning.data.DRIVE\ninit_args: {{root: {roots['drive']}}}\n"
    )
    assert main(["data", "widths", "--config", str(node)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "retina data widths: error: DRIVE (training) has no artery/vein labels; datasets "
        "with A/V labels: ravir, rite, synthetic"
    )


def test_registry_names():
    assert {k: v.__name__ for k, v in DATASETS.items()} == {
        "drive": "DRIVE",
        "stare": "STARE",
        "chase_db1": "CHASEDB1",
        "hrf": "HRF",
        "synthetic": "SyntheticFundus",
        "rite": "RITE",
        "ravir": "RAVIR",
        "idrid": "IDRiDOpticDisc",
        "folder": "FolderDataset",
    }
