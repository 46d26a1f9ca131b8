"""The device-side patch sampler and the datamodule's training / evaluation batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import patch_stack

from retina_lightning.data.base import DatasetError
from retina_lightning.data.sampler import PatchSampler, step_seed
from retina_lightning.data.transforms import Augment, Preprocess


def _stack(n=3, h=40, w=50):
    return patch_stack(n, h, w, vessel_share=0.1)


def test_patches_are_the_windows_around_centres_inside_the_fov():
    images, labels, fovs = _stack()
    sampler = PatchSampler(images, labels, fovs, window=9)
    gen = torch.Generator().manual_seed(1)
    idx, y, x = sampler.centres(200, gen)
    assert fovs[idx, y, x].all()
    image, label, fov = sampler.cut(idx, y, x)
    assert image.shape == (200, 3, 9, 9) and label.shape == fov.shape == (200, 9, 9)
    for k in range(0, 200, 37):  # compare with plain slicing where the window is inside
        i, cy, cx = int(idx[k]), int(y[k]), int(x[k])
        if 4 <= cy < 36 and 4 <= cx < 46:
            assert torch.equal(image[k], images[i, :, cy - 4 : cy + 5, cx - 4 : cx + 5])
            assert torch.equal(label[k], labels[i, cy - 4 : cy + 5, cx - 4 : cx + 5])


def test_outside_the_image_is_zero_and_not_fov():
    images, labels, fovs = _stack(n=1, h=10, w=10)
    fovs[:] = True
    sampler = PatchSampler(images, labels, fovs, window=7)
    image, _, fov = sampler.cut(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    assert not fov[0, :3].any() and not fov[0, :, :3].any() and fov[0, 3:, 3:].all()
    assert (image[0, :, :3] == 0).all()


def test_same_seed_same_patches_and_vessel_oversampling():
    images, labels, fovs = _stack()
    sampler = PatchSampler(images, labels, fovs, window=8, vessel_fraction=0.5)
    a, b = sampler.sample(64, seed=7), sampler.sample(64, seed=7)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(sampler.sample(64, seed=8)[0], a[0])
    idx, y, x = sampler.centres(400, torch.Generator().manual_seed(0))
    on_vessel = labels[idx, y, x].float().mean()
    assert on_vessel > 0.5  # half forced onto vessels + ~10 % of the uniform half


def test_step_seeds_differ_by_rank_epoch_step():
    seeds = {step_seed(0, r, e, s) for r in range(2) for e in range(3) for s in range(5)}
    assert len(seeds) == 30
    assert step_seed(1, 0, 0, 0) == step_seed(1, 0, 0, 0)


def test_datamodule_training_patches(tiny_datamodule):
    dm = tiny_datamodule(augment=Augment(rotation=30.0), vessel_fraction=0.25)
    dm.setup("fit")
    batch = dm.training_patches(0, torch.device("cpu"))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4, 32, 32)
    assert set(batch["label"].unique().tolist()) <= {0, 1}  # nearest resampling keeps labels binary
    assert batch["fov"].dtype == torch.bool
    again = dm.training_patches(0, torch.device("cpu"))
    assert torch.equal(batch["image"], again["image"]) and torch.equal(
        batch["label"], again["label"]
    )
    other = dm.training_patches(1, torch.device("cpu"))
    assert not torch.equal(batch["image"], other["image"])


NO_AUGMENT = Augment(hflip=False, vflip=False, rot90=False, brightness=0.0, contrast=0.0)


@pytest.mark.parametrize("normalize", ["image", "dataset", "none"])
def test_training_patches_are_normalised_with_the_right_statistics(tiny_datamodule, normalize):
    """Issue 16 item 2: each patch is (pixel - mean) / std with its own image's FOV statistics
    (``image``) or the pooled statistics of the training images (``dataset``), computed here
    independently with numpy; ``none`` leaves [0, 1]. Pooled over the batch the FOV pixels sit
    around 0 with std about 1 when normalised, around the raw mean when not."""
    dm = tiny_datamodule(
        augment=NO_AUGMENT, preprocess=Preprocess(normalize=normalize), batch_size=64
    )
    dm.setup("fit")
    batch = dm.training_patches(0, torch.device("cpu"))
    train = dm.samples.train
    pixels = [s.image[s.fov.astype(bool)].astype(np.float64) / 255 for s in train]
    mean = np.stack([p.mean(0) for p in pixels])  # (N, C) per image
    std = np.stack([p.std(0) for p in pixels])
    pooled = np.concatenate(pixels)
    raw, _, _, source = dm._sampler.sample(64, step_seed(dm.seed, 0, 0, 0))
    x = raw.double() / 255
    if normalize == "image":
        m, s = mean[source.numpy()], std[source.numpy()]
        x = (x - torch.from_numpy(m)[..., None, None]) / torch.from_numpy(s)[..., None, None]
    elif normalize == "dataset":
        m, s = torch.from_numpy(pooled.mean(0)), torch.from_numpy(pooled.std(0))
        x = (x - m.view(1, -1, 1, 1)) / s.view(1, -1, 1, 1)
    torch.testing.assert_close(batch["image"].double(), x, atol=2e-5, rtol=1e-5)
    inside = batch["image"].permute(1, 0, 2, 3)[:, batch["fov"]]  # (C, FOV pixels of the batch)
    if normalize == "none":
        assert inside.mean() > 0.2 and inside.std(1).max() < 0.3
    else:
        assert inside.mean(1).abs().max() < 0.2, inside.mean(1)
        assert ((inside.std(1) - 1).abs() < 0.4).all(), inside.std(1)


def test_datamodule_whole_image_batches(tiny_datamodule):
    dm = tiny_datamodule()
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["image"].shape == (1, 3, 96, 96) and batch["label"].shape == (1, 96, 96)
    fov = batch["fov"][0]
    x = batch["image"][0][:, fov]
    assert x.mean(1).abs().max() < 1e-4 and (x.std(1) - 1).abs().max() < 1e-2


def test_readable_errors(tiny_datamodule):
    with pytest.raises(DatasetError, match="patch_size 200 is larger"):
        tiny_datamodule(patch_size=200).setup("fit")
    dm = tiny_datamodule()
    sample = dm.dataset.load("training")[0]
    from retina_lightning.data.datamodule import validate_sample

    bad = type(sample)(sample.name, sample.image, sample.label[:-1], sample.fov)
    with pytest.raises(DatasetError, match=f"image '{sample.name}': label has size"):
        validate_sample(bad, "synthetic", "label")


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("batch_size", -4, ">= 1"),
        ("batch_size", 0, ">= 1"),
        ("batch_size", 2.5, ">= 1"),
        ("patch_size", 0, ">= 1"),
        ("steps_per_epoch", 0, ">= 1"),
        ("vessel_fraction", 1.5, "[0, 1]"),
        ("vessel_fraction", -0.1, "[0, 1]"),
        ("eval_batch_size", 0, ">= 1"),
        ("num_workers", -1, ">= 0"),
    ],
)
def test_datamodule_refuses_out_of_range_numbers_at_construction(
    tiny_datamodule, key, value, valid
):
    """Issue 15 item 4: batch_size=-4 trained with 31-42 patches per step and 0 crashed in the
    sampler; every numeric setting is checked when the datamodule is built, naming the key,
    the value and the valid range."""
    with pytest.raises(ValueError, match=rf"data\.init_args\.{key} ") as err:
        tiny_datamodule(**{key: value})
    assert valid in str(err.value) and f"got {value}" in str(err.value)


def test_sampler_refuses_out_of_range_numbers():
    images, labels, fovs = _stack()
    for kwargs, match in (
        ({"window": 0}, r"window.*>= 1"),
        ({"window": 9, "vessel_fraction": 2.0}, r"vessel_fraction.*\[0, 1\]"),
    ):
        with pytest.raises(ValueError, match=match):
            PatchSampler(images, labels, fovs, **kwargs)
    sampler = PatchSampler(images, labels, fovs, window=9)
    for n in (0, -4):
        with pytest.raises(ValueError, match=rf"n \(.*>= 1.*got {n}"):
            sampler.sample(n, seed=0)
