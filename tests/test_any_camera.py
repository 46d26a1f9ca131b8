"""Issue 22, parts 1-3: resolution follows the model, the F1 operating point by default, and
several datasets in one experiment."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import DATA_ROOT, TINY_CLI, needs, quiet_trainer

from retina_lightning.cli import main
from retina_lightning.data import (
    DatasetSplit,
    OfficialSplit,
    RetinaDataModule,
    SyntheticFundus,
)
from retina_lightning.data.resolution import (
    FOV_TOLERANCE,
    batch_scale,
    fov_diameter,
    median_fov_diameter,
)
from retina_lightning.data.sampler import PatchSampler
from retina_lightning.models import UNet
from retina_lightning.predict import load_predictor
from retina_lightning.tasks import SegmentationTask

REPO = Path(__file__).resolve().parents[1]


def disc(h: int, w: int, diameter: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r = diameter / 2
    return ((yy - h / 2 + 0.5) ** 2 + (xx - w / 2 + 0.5) ** 2) <= r**2


# ----------------------------------------------------------------------- part 1: resolution
def test_batch_scale_follows_beyond_the_tolerance():
    fov = torch.stack([disc(100, 100, 80)])
    assert fov_diameter(fov[0]) == 80
    assert batch_scale(fov, 80, FOV_TOLERANCE) == 1.0
    assert batch_scale(fov, 83, FOV_TOLERANCE) == 1.0  # 3.75 % apart: one camera
    assert batch_scale(fov, 40, FOV_TOLERANCE) == pytest.approx(0.5)  # another camera
    assert batch_scale(fov, 83, 0.0) == pytest.approx(83 / 80)  # explicit: exact
    assert median_fov_diameter([disc(50, 50, d).numpy() for d in (30, 40, 44)]) == 40


def _whole_batch(diameter: int, size: int = 96) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, size, size), generator=g, dtype=torch.uint8)
    return {"image": image, "fov": disc(size, size, diameter)[None]}


def test_prepare_whole_resamples_to_the_recorded_diameter_only_beyond_the_tolerance():
    dm = RetinaDataModule()
    dm.load_state_dict({"train_fov_diameter": 40})
    assert dm.working_scale() == (40, FOV_TOLERANCE)
    far = dm.prepare_whole(_whole_batch(80))
    assert tuple(far["image"].shape[-2:]) == (48, 48) and float(far["scale"][0]) == 0.5
    assert tuple(far["fov"].shape[-2:]) == (96, 96)  # labels / FOV keep the image's grid
    near = dm.prepare_whole(_whole_batch(41))
    native = RetinaDataModule(fov_diameter="native")
    native.load_state_dict({"train_fov_diameter": 40})
    assert native.working_scale() == (None, 0.0)
    # within the tolerance the image runs untouched: bit-identical to "native"
    assert torch.equal(near["image"], native.prepare_whole(_whole_batch(41))["image"])
    assert native.prepare_whole(_whole_batch(80))["image"].shape[-1] == 96
    # an explicit fov_diameter is exact whatever is recorded
    exact = RetinaDataModule(fov_diameter=42)
    exact.load_state_dict({"train_fov_diameter": 40})
    assert exact.working_scale() == (42, 0.0)
    measured = fov_diameter(disc(96, 96, 41))
    assert exact.prepare_whole(_whole_batch(41))["image"].shape[-1] == round(96 * 42 / measured)


def test_state_dict_round_trip_and_old_checkpoints():
    dm = RetinaDataModule()
    assert "train_fov_diameter" not in dm.state_dict()  # nothing measured yet
    dm.model_fov_diameter = 540
    other = RetinaDataModule()
    other.load_state_dict(dm.state_dict())
    assert other.model_fov_diameter == 540
    old = RetinaDataModule()
    old.load_state_dict({})  # a checkpoint from before the record
    assert old.working_scale() == (None, 0.0)
    assert "records no training FOV diameter" in old.describe_scale(1.0)


@pytest.fixture(scope="module")
def native_ckpt(tmp_path_factory):
    """A tiny U-Net fitted at native size on 64x64 synthetic images (their FOV ~54 px)."""
    runs = tmp_path_factory.mktemp("runs")
    cli = main(
        ["fit", "--config", str(REPO / "configs/synthetic/unet.yaml"), *TINY_CLI]
        + ["--runs_dir", str(runs)]
    )
    return Path(cli.trainer.checkpoint_callback.best_model_path), cli.datamodule


def test_fit_records_the_median_fov_diameter_of_its_training_images(native_ckpt):
    ckpt_path, dm = native_ckpt
    expected = int(round(np.median([fov_diameter(s.fov) for s in dm.samples.train])))
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["RetinaDataModule"]["train_fov_diameter"] == expected
    assert ckpt["hyper_parameters"]["threshold_criterion"] == "f1"  # the new default


def _image_and_fov(diameter_scale: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    size = int(round(64 * diameter_scale))
    s = SyntheticFundus(num_train=1, num_test=1, height=size, width=size, seed=seed)
    sample = s.load("test")[0]
    return sample.image, sample.fov.astype(bool)


def test_predict_follows_the_checkpoint_and_native_opts_out(native_ckpt, capsys):
    ckpt_path, _ = native_ckpt
    recorded = torch.load(ckpt_path, weights_only=True)["RetinaDataModule"]["train_fov_diameter"]
    image, fov = _image_and_fov(2.0)  # another "camera": twice the FOV diameter
    default = load_predictor(ckpt_path, device="cpu")
    explicit = load_predictor(ckpt_path, device="cpu", fov_diameter=recorded)
    native = load_predictor(ckpt_path, device="cpu", fov_diameter="native")
    p_default, p_explicit, p_native = default(image, fov), explicit(image, fov), native(image, fov)
    assert p_default.shape == p_native.shape == (1, *fov.shape)  # back on the image's grid
    np.testing.assert_allclose(p_default, p_explicit, atol=1e-6)
    assert np.abs(p_default - p_native).max() > 1e-3  # resampling changed what the net saw
    assert "resampled" in default.describe_resolution()
    # the training camera runs untouched: identical to native
    same, same_fov = _image_and_fov(1.0, seed=2)
    np.testing.assert_array_equal(default(same, same_fov), native(same, same_fov))


def test_old_checkpoint_runs_native_and_says_so(native_ckpt, tmp_path, capsys):
    ckpt_path, _ = native_ckpt
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    del ckpt["RetinaDataModule"]["train_fov_diameter"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    predictor = load_predictor(old, device="cpu")
    assert "records no training FOV diameter" in capsys.readouterr().err
    assert predictor.data.working_scale() == (None, 0.0)
    image, fov = _image_and_fov(2.0)
    native = load_predictor(ckpt_path, device="cpu", fov_diameter="native")
    np.testing.assert_array_equal(predictor(image, fov), native(image, fov))


@pytest.mark.real_data
@needs("DRIVE")
@needs("CHASE_DB1")
def test_a_native_drive_checkpoint_resamples_chase_db1_by_default(tmp_path, capsys):
    """Trained at DRIVE's native size (a few steps), applied with no flag to a CHASE_DB1
    image: predict resamples it (scale = recorded / ~920 px) and says so."""
    cli = main(
        [
            "fit",
            "--config",
            str(REPO / "configs/drive/laptop.yaml"),
            f"--data.init_args.dataset.init_args.root={DATA_ROOT / 'DRIVE'}",
            "--trainer.max_epochs=1",
            "--data.init_args.steps_per_epoch=2",
            "--trainer.enable_progress_bar=false",
            "--runs_dir",
            str(tmp_path / "runs"),
        ]
    )
    ckpt = Path(cli.run_dir) / "checkpoints" / "last.ckpt"
    recorded = torch.load(ckpt, weights_only=True)["RetinaDataModule"]["train_fov_diameter"]
    assert 535 <= recorded <= 541  # DRIVE's FOVs
    images = tmp_path / "in"
    images.mkdir()
    (images / "Image_11L.jpg").symlink_to(DATA_ROOT / "CHASE_DB1" / "Image_11L.jpg")
    out = tmp_path / "out"
    assert (
        main(["predict", "--ckpt_path", str(ckpt), "--input", str(images), "--output", str(out)])
        == 0
    )
    assert "resampled" in capsys.readouterr().err
    row = next(csv.DictReader((out / "predictions.csv").open()))
    assert 0.55 < float(row["scale"]) < 0.62  # ~920 px FOV -> ~540


# ------------------------------------------------------------------ part 2: operating point
def test_f1_is_the_default_criterion_and_dpn_keeps_youden():
    task = SegmentationTask(UNet(in_channels=3, base_channels=4, depth=2))
    assert task.threshold_criterion == "f1"
    for config in ("drive/dpn.yaml", "drive/dpn_16_4.yaml", "chase_db1/dpn_20_8.yaml"):
        cfg = yaml.safe_load((REPO / "configs" / config).read_text())
        assert cfg["model"]["init_args"]["threshold_criterion"] == "youden", config


# ------------------------------------------------------------------- part 3: several datasets
def _two_datasets(**kwargs) -> RetinaDataModule:
    small = SyntheticFundus(num_train=3, num_test=1, height=64, width=64, seed=1)
    large = SyntheticFundus(num_train=9, num_test=2, height=64, width=64, seed=2)
    defaults = dict(
        datasets=[
            DatasetSplit(small, OfficialSplit(val_fraction=0.34), name="small"),
            DatasetSplit(large, OfficialSplit(val_fraction=0.34), name="large"),
        ],
        fov_diameter=54,
        patch_size=32,
        batch_size=8,
        steps_per_epoch=2,
    )
    defaults.update(kwargs)
    return RetinaDataModule(**defaults)


def test_several_datasets_need_one_scale_and_distinct_names():
    ds = SyntheticFundus(num_train=3, num_test=1, height=64, width=64)
    with pytest.raises(ValueError, match="fov_diameter"):
        RetinaDataModule(datasets=[DatasetSplit(ds, name="a"), DatasetSplit(ds, name="b")])
    with pytest.raises(ValueError, match="distinct"):
        RetinaDataModule(datasets=[DatasetSplit(ds), DatasetSplit(ds)], fov_diameter=54)
    with pytest.raises(ValueError, match="one or the other"):
        RetinaDataModule(dataset=ds, datasets=[DatasetSplit(ds)], fov_diameter=54)


def test_patches_are_drawn_evenly_per_dataset():
    dm = _two_datasets()
    dm.setup("fit")
    names = [s.meta["dataset"] for s in dm.samples.train]
    assert names.count("small") == 2 and names.count("large") == 6
    weights = dm.image_weights(dm.samples.train)
    assert weights is not None
    share = {n: float(weights[[i for i, m in enumerate(names) if m == n]].sum()) for n in names}
    assert share == pytest.approx({"small": 0.5, "large": 0.5})
    sampler = dm._stack_train(torch.device("cpu"))
    drawn = torch.cat([sampler.sample(64, seed)[3] for seed in range(50)])
    from_small = np.isin(drawn.numpy(), [i for i, m in enumerate(names) if m == "small"]).mean()
    assert abs(from_small - 0.5) < 0.03  # 3,200 draws: 4 standard errors ~ 0.035


def test_weighted_sampler_keeps_each_image_share_and_centres_in_the_fov():
    images = torch.zeros(2, 1, 40, 60, dtype=torch.uint8)
    labels = torch.zeros(2, 40, 60, dtype=torch.uint8)
    fovs = torch.zeros(2, 40, 60, dtype=torch.bool)
    fovs[0, 10:14, 10:14] = True  # a tiny FOV: uniform draws would rarely pick image 0
    fovs[1] = True
    sampler = PatchSampler(images, labels, fovs, 9, image_weights=torch.tensor([3.0, 1.0]))
    gen = torch.Generator().manual_seed(0)
    idx, y, x = sampler.centres(4000, gen)
    assert abs(float((idx == 0).float().mean()) - 0.75) < 0.03
    assert bool(fovs[idx, y, x].all())


def test_validation_and_test_report_each_dataset(tmp_path):
    """Per-dataset pooled metrics equal a test of that dataset alone (same weights, same
    conditioning), and the per-image rows name their dataset."""
    torch.manual_seed(0)
    task = SegmentationTask(UNet(in_channels=3, base_channels=4, depth=2), figures=False)
    dm = _two_datasets()
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=1.0)
    trainer.fit(task, datamodule=dm)
    logged = trainer.callback_metrics
    assert {"val/small/auroc", "val/large/auroc", "val/auroc"} <= set(logged)
    task.connectivity = False
    trainer.test(task, datamodule=dm, verbose=False)
    report = task.test_report
    assert set(report["per_dataset"]) == {"small", "large"}
    assert report["per_dataset"]["small"]["num_images"] == 1
    assert report["per_dataset"]["large"]["num_images"] == 2
    assert {r["dataset"] for r in task.test_rows} == {"small", "large"}
    alone = RetinaDataModule(
        dataset=SyntheticFundus(num_train=9, num_test=2, height=64, width=64, seed=2),
        split=OfficialSplit(val_fraction=0.34),
        fov_diameter=54,
        patch_size=32,
    )
    trainer.test(task, datamodule=alone, verbose=False)
    assert task.test_report["pooled"]["auroc"] == pytest.approx(
        report["per_dataset"]["large"]["pooled"]["auroc"], abs=1e-6
    )
    assert "per_dataset" not in task.test_report


def test_drive_chase_db1_fragment_composes(tmp_path):
    """The DRIVE + CHASE_DB1 data fragment layered on the laptop recipe parses into two
    datasets at one FOV diameter."""
    from jsonargparse import ArgumentParser

    cfg = {}
    for f in ("configs/drive/laptop.yaml", "configs/data/drive_chase_db1.yaml"):
        part = yaml.safe_load((REPO / f).read_text())["data"]["init_args"]
        cfg.update(part)
    parser = ArgumentParser()
    parser.add_class_arguments(RetinaDataModule, "data")
    dm = parser.instantiate_classes(parser.parse_object({"data": cfg})).data
    assert dm.source_names == ["DRIVE", "CHASEDB1"] and dm.fov_diameter == 540
    assert dm.preprocess.channels == "green"  # the method's conditioning stays


def test_leaderboard_cross_follows_the_checkpoint(native_ckpt):
    """``leaderboard cross`` resamples another camera's images to the checkpoint's recorded
    diameter by default: the same scores as naming that diameter, not those of native size."""
    from retina_lightning.leaderboard.cross import cross_dataset_matrix

    ckpt_path, _ = native_ckpt
    recorded = torch.load(ckpt_path, weights_only=True)["RetinaDataModule"]["train_fov_diameter"]

    def big() -> RetinaDataModule:  # twice the training images' scale
        data = SyntheticFundus(num_train=2, num_test=1, height=128, width=128, seed=5)
        return RetinaDataModule(dataset=data, split=OfficialSplit(val_fraction=0.5), patch_size=32)

    auroc = {
        str(mode): cross_dataset_matrix({"m": ckpt_path}, {"big": big()}, fov_diameter=mode)
        .auroc[0, 0]
        .item()
        for mode in ("ckpt", recorded, "native")
    }
    assert auroc["ckpt"] == pytest.approx(auroc[str(recorded)], abs=1e-9)
    assert auroc["ckpt"] != pytest.approx(auroc["native"], abs=1e-4)
