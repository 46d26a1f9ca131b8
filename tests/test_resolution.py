"""Resampling images to a fixed FOV diameter (issue 13), checked by hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina_lightning.data import OfficialSplit, RetinaDataModule, SyntheticFundus
from retina_lightning.data.resolution import (
    batch_scale,
    fov_diameter,
    resample_sample,
    resize_labels,
    resize_mask,
    resize_probabilities,
    scale_for,
)
from retina_lightning.data.transforms import Preprocess
from retina_lightning.types import Sample
from tests.helpers import dataset_dir, needs


def disc(shape: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def test_fov_diameter_is_the_horizontal_extent() -> None:
    fov = disc((101, 121), 40)
    assert fov_diameter(fov) == 81
    assert fov_diameter(torch.from_numpy(fov)) == 81
    # cut at top and bottom (as some DRIVE masks are): the diameter is still the full width
    fov[:30] = False
    fov[-30:] = False
    assert fov_diameter(fov) == 81
    assert scale_for(fov, 162) == pytest.approx(2.0)
    assert scale_for(fov, None) == 1.0
    with pytest.raises(ValueError, match="empty"):
        scale_for(np.zeros((4, 4), bool), 10)


def test_shrinking_labels_keeps_a_thin_vessel() -> None:
    label = torch.zeros(1, 40, 40, dtype=torch.uint8)
    label[0, :, 20:22] = 1  # a vertical vessel 2 px wide
    small = resize_labels(label, (20, 20), 2)
    assert small[0].sum() == 20  # 1 px wide at half the size: the area share is kept
    nearest = torch.nn.functional.interpolate(label[None].float(), size=(20, 20), mode="nearest")
    assert nearest.sum() == 20  # (nearest keeps this one only because it is 2 px wide)
    one_px = torch.zeros(1, 40, 40, dtype=torch.uint8)
    one_px[0, :, 21] = 1
    nearest = torch.nn.functional.interpolate(one_px[None].float(), size=(20, 20), mode="nearest")
    assert nearest.sum() == 0  # nearest neighbour drops a 1 px vessel at odd columns
    assert resize_labels(one_px, (20, 20), 2).sum() == 0  # half a pixel's area: a tie, background
    three = torch.zeros(1, 40, 40, dtype=torch.uint8)
    three[0, :, 10:13] = 2  # artery class of an A/V map
    assert set(resize_labels(three, (20, 20), 3).unique().tolist()) == {0, 2}


def test_masks_and_probabilities_round_trip() -> None:
    fov = torch.from_numpy(disc((80, 80), 35))[None]
    half = resize_mask(fov, (40, 40))
    assert half.dtype == torch.bool
    assert float(half.float().mean()) == pytest.approx(float(fov.float().mean()), abs=0.01)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 80), torch.linspace(0, 1, 80), indexing="ij")
    prob = (0.5 + 0.4 * torch.sin(3 * yy) * torch.cos(2 * xx))[None, None]
    small = torch.nn.functional.interpolate(prob, size=(40, 40), mode="bilinear", antialias=True)
    back = resize_probabilities(small, (80, 80))
    assert back.shape == prob.shape
    assert (back - prob).abs().max() < 0.02
    assert resize_probabilities(prob, (80, 80)) is prob


def synthetic_sample(size: int, radius: float) -> Sample:
    fov = disc((size, size), radius)
    label = np.zeros((size, size), np.uint8)
    label[:, size // 2 - 4 : size // 2 + 2] = 1  # 6 px, on even columns
    image = np.dstack([np.where(label, 60, 160).astype(np.uint8)] * 3)
    return Sample(
        name="x",
        image=image,
        label=label,
        fov=fov,
        second_observer=label.copy(),
        pixel_size_um=10.0,
    )


def test_resample_sample_brings_the_fov_to_the_target_diameter() -> None:
    sample = synthetic_sample(200, 90)
    assert fov_diameter(sample.fov) == 180
    out = resample_sample(sample, 90)
    assert fov_diameter(out.fov) == pytest.approx(90, abs=1)
    assert out.image.dtype == np.uint8 and out.image.shape == (*out.shape, 3)
    assert out.shape == (100, 100)
    assert out.label.sum() / out.label.size == pytest.approx(sample.label.mean(), rel=0.05)
    assert out.second_observer is not None and out.second_observer.shape == out.shape
    assert out.pixel_size_um == pytest.approx(10.0 * 2)
    assert out.meta["original_size"] == (200, 200)
    assert resample_sample(sample, None) is sample
    assert resample_sample(sample, 180) is sample


def test_batch_scale_is_the_median_of_the_images() -> None:
    fovs = torch.stack([torch.from_numpy(disc((100, 100), r)) for r in (40, 45, 49)])
    middle = fov_diameter(fovs[1])
    assert batch_scale(fovs, 182) == pytest.approx(182 / middle)
    assert batch_scale(fovs, None) == 1.0


@needs("CHASE_DB1")
def test_chase_db1_resampled_to_drive_scale() -> None:
    from retina_lightning.data.datasets import CHASEDB1

    sample = CHASEDB1(root=dataset_dir("CHASE_DB1")).load("all")[0]
    assert fov_diameter(sample.fov) > 880  # ~1.7x DRIVE's 540 px
    out = resample_sample(sample, 540)
    assert fov_diameter(out.fov) == pytest.approx(540, abs=2)
    before = sample.label[sample.fov.astype(bool)].mean()
    after = out.label[out.fov.astype(bool)].mean()
    assert after == pytest.approx(before, rel=0.05)  # vessel share of the FOV kept


# ------------------------------------------------------------------ the datamodule option
def tiny_datamodule(fov_diameter: int | None) -> RetinaDataModule:
    dataset = SyntheticFundus(num_train=3, num_test=2, height=96, width=96, seed=3)
    return RetinaDataModule(
        dataset=dataset,
        split=OfficialSplit(val_fraction=0.34),
        preprocess=Preprocess(channels="rgb", normalize="image"),
        patch_size=32,
        batch_size=2,
        steps_per_epoch=2,
        fov_diameter=fov_diameter,
    )


def test_with_conditioning_changes_only_the_conditioning() -> None:
    """The cross-dataset matrix tests a checkpoint on another dataset's images conditioned as
    the checkpoint was trained (issue 12: it copied ten constructor arguments by hand, so a
    new one was silently dropped): every other setting is kept, the input channels follow the
    new preprocessing, and the images are re-read only when the scale changes."""
    import dataclasses

    dm = RetinaDataModule(
        dataset=SyntheticFundus(num_train=3, num_test=2, height=96, width=96, seed=3),
        split=OfficialSplit(val_fraction=0.34),
        target="av",
        patch_size=32,
        batch_size=3,
        steps_per_epoch=7,
        vessel_fraction=0.25,
        train_region="image",
        eval_batch_size=2,
        num_workers=0,
        seed=11,
    )
    dm.setup("test")
    green = Preprocess(channels="green", gamma=1.7, normalize="image")
    same_scale = dm.with_conditioning(green, None)
    rescaled = dm.with_conditioning(green, 60)
    changed = {"preprocess", "fov_diameter", "_augmentation", "samples"}
    for other in (same_scale, rescaled):
        assert other.preprocess == green and other.in_channels == 1
        for key, value in vars(dm).items():
            if key not in changed and not key.startswith("_"):
                assert vars(other)[key] is value, key
    assert dataclasses.asdict(dm.preprocess) != dataclasses.asdict(green)  # dm untouched
    assert same_scale.fov_diameter is None and same_scale.samples is dm.samples
    assert rescaled.fov_diameter == 60 and rescaled.samples is None
    batch = rescaled.prepare_whole(next(iter(rescaled.test_dataloader())))
    assert batch["image"].shape[1] == 1 and batch["label"].shape[-2:] == (96, 96)
    assert batch["image"].shape[-1] < 96  # resampled to the 60 px FOV


def test_datamodule_trains_at_the_working_scale_and_scores_at_the_native_one() -> None:
    native = tiny_datamodule(None)
    native.setup("fit")
    diameter = fov_diameter(native.samples.train[0].fov)
    half = tiny_datamodule(diameter // 2)
    half.setup("fit")
    train = half.samples.train[0]
    assert fov_diameter(train.fov) == pytest.approx(diameter // 2, abs=1)
    assert train.shape[0] == pytest.approx(96 / 2, abs=1)
    batch = next(iter(half.test_dataloader()))
    prepared = half.prepare_whole(batch)
    assert prepared["image"].shape[-1] == pytest.approx(48, abs=1)  # the network's input
    assert prepared["label"].shape[-2:] == (96, 96)  # metrics against the original labels
    assert prepared["fov"].shape[-2:] == (96, 96)
    assert prepared["raw"].shape[-2:] == (96, 96)
    # the native datamodule's input is the original image, conditioned as before
    same = native.prepare_whole(next(iter(native.test_dataloader())))
    assert same["image"].shape[-2:] == (96, 96)
    with pytest.raises(ValueError, match="fov_diameter"):
        tiny_datamodule(0)


def test_task_maps_probabilities_back_before_metrics(tmp_path) -> None:
    """A 'network' that returns its input's first channel: at half the scale and back the
    probabilities (and so AUROC) barely move, while their grid is the labels'."""
    from lightning import Trainer

    from retina_lightning.tasks import SegmentationTask
    from tests.helpers import InputLogits

    results = tmp_path / "test"

    def auroc(dm: RetinaDataModule) -> float:
        task = SegmentationTask(InputLogits(1), connectivity=False, figures=False)
        task.results_dir = results
        trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.test(task, datamodule=dm, verbose=False)
        return task.test_report["pooled"]["auroc"]

    native = tiny_datamodule(None)
    native.setup("test")
    diameter = fov_diameter(native.samples.test[0].fov)
    full, half = auroc(native), auroc(tiny_datamodule(diameter // 2))
    assert 0.5 < full < 1.0
    assert half == pytest.approx(full, abs=0.03)
    assert auroc(tiny_datamodule(diameter)) == pytest.approx(full, abs=0.01)


def test_predictor_uses_the_checkpoint_scale_and_writes_native_maps() -> None:
    from retina_lightning.inference import Inferer
    from retina_lightning.predict import Predictor
    from tests.helpers import InputLogits

    sample = synthetic_sample(200, 90)
    yy, xx = np.mgrid[:200, :200]
    image = (128 + 100 * np.sin(xx / 15.0) * np.cos(yy / 20.0)).astype(np.uint8)
    image = np.dstack([image] * 3)

    def probs(diameter: int | None) -> np.ndarray:
        predictor = Predictor(
            model=InputLogits(1),
            preprocess=Preprocess(normalize="none"),
            inferer=Inferer(),
            threshold=0.5,
            num_classes=1,
            fov_diameter=diameter,
        )
        return predictor(image, sample.fov)

    native, half = probs(None), probs(90)
    assert native.shape == half.shape == (1, 200, 200)
    assert np.abs(native - half).mean() < 0.01
    assert np.abs(native - half).max() > 1e-4  # resampled, not a copy


def test_predict_option_and_checkpoint_setting() -> None:
    import argparse

    from retina_lightning.data.resolution import parse_fov_diameter as _fov_diameter_arg
    from retina_lightning.predict import build_parser, fov_diameter_from

    assert _fov_diameter_arg("ckpt") == "ckpt"
    assert _fov_diameter_arg("native") == "native"
    assert _fov_diameter_arg("540") == 540
    for bad in ("5", "wide", "-540"):
        with pytest.raises(argparse.ArgumentTypeError, match="diameter"):
            _fov_diameter_arg(bad)
    ns = build_parser().parse_args(["--ckpt_path", "a.ckpt", "--input", "x", "--output", "y"])
    assert ns.fov_diameter == "ckpt"  # default: the training setting
    assert fov_diameter_from({"datamodule_hyper_parameters": {"fov_diameter": 540}}) == 540
    assert fov_diameter_from({"datamodule_hyper_parameters": {"target": "label"}}) is None
    assert fov_diameter_from({}) is None  # checkpoints trained before the option
