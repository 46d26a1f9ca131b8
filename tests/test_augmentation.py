"""Augmentation alignment (issue 16, item 7): the image, its label and its FOV receive the same
random warp, from the kornia pipeline up to the training patches a step gives the network."""

from __future__ import annotations

import numpy as np
import torch

from retina_lightning.data import OfficialSplit, RetinaDataModule
from retina_lightning.data.base import RetinaDataset
from retina_lightning.data.transforms import Augment, Preprocess
from retina_lightning.types import Sample

#: every geometric op, no intensity op: the image's values stay comparable to the masks'
WARP = Augment(rotation=25.0, scale=(0.8, 1.25), brightness=0.0, contrast=0.0)


def _blocks(seed: int, n: int, side: int, block: int = 8) -> torch.Tensor:
    """Random 0/1 maps of ``block``-pixel squares: a warp moves them visibly, and the image's
    bilinear and the masks' nearest-neighbour resampling differ only on block edges."""
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(n, side // block, side // block, generator=g) < 0.4).float()
    return coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a > 0.5) == (b > 0.5)).float().mean())


def test_image_label_and_fov_receive_the_same_warp():
    label, fov = _blocks(1, 8, 64), _blocks(2, 8, 64)
    image = torch.stack([label, fov, label], 1)  # the image's content *is* its masks
    dm = RetinaDataModule(augment=WARP)
    x, y, f = dm.augment_batch(image, label.long(), fov.bool(), seed=7)
    assert not torch.equal(y, label.long())  # something moved
    assert y.dtype == torch.long and set(y.unique().tolist()) <= {0, 1}  # stays binary
    assert _agreement(x[:, 0], y.float()) > 0.97
    assert _agreement(x[:, 1], f.float()) > 0.97
    # what a separate draw for the masks gives: the bound above is far from it
    _, y_other, f_other = dm.augment_batch(image, label.long(), fov.bool(), seed=8)
    assert _agreement(x[:, 0], y_other.float()) < 0.85
    assert _agreement(x[:, 1], f_other.float()) < 0.85


def test_flips_and_quarter_turns_move_image_and_masks_exactly():
    label, fov = _blocks(3, 6, 32, block=1), _blocks(4, 6, 32, block=1)
    image = torch.stack([label, fov, 1 - label], 1)
    dm = RetinaDataModule(augment=Augment(brightness=0.0, contrast=0.0))
    x, y, f = dm.augment_batch(image, label.long(), fov.bool(), seed=3)
    assert not torch.equal(y, label.long())
    # kornia turns by an affine warp: exact up to float rounding
    torch.testing.assert_close(x[:, 0], y.float(), rtol=0, atol=1e-4)
    torch.testing.assert_close(x[:, 1], f.float(), rtol=0, atol=1e-4)


def test_intensity_augmentations_leave_label_and_fov_alone():
    label, fov = _blocks(5, 4, 32), _blocks(6, 4, 32)
    image = torch.stack([label, fov, label], 1) * 0.5 + 0.25
    dm = RetinaDataModule(
        augment=Augment(hflip=False, vflip=False, rot90=False, brightness=0.3, contrast=0.3)
    )
    x, y, f = dm.augment_batch(image, label.long(), fov.bool(), seed=0)
    assert not torch.allclose(x, image)
    assert torch.equal(y, label.long()) and torch.equal(f, fov.bool())


class _MaskImages(RetinaDataset):
    """Images whose red channel is the vessel label and green channel the FOV."""

    def subsets(self) -> tuple[str, ...]:
        return ("training", "test")

    def load(self, subset: str) -> list[Sample]:
        n = 3 if subset == "training" else 1
        label, fov = _blocks(10 if subset == "training" else 11, n, 96), _blocks(12, n, 96)
        fov = torch.maximum(fov, label)  # vessels inside the FOV, as on real images
        out = []
        for i in range(n):
            lab = label[i].numpy().astype(np.uint8)
            fo = fov[i].numpy().astype(bool)
            image = np.stack([lab * 255, fo * 255, np.zeros_like(lab)], -1).astype(np.uint8)
            out.append(Sample(name=f"{subset}{i}", image=image, label=lab, fov=fo))
        return out


def test_training_patches_keep_image_label_and_fov_aligned():
    """Through the sampler, the augmentations and the centre crop of the context window."""
    dm = RetinaDataModule(
        dataset=_MaskImages(),
        split=OfficialSplit(val_fraction=0.0),
        preprocess=Preprocess(normalize="none"),
        augment=WARP,
        patch_size=32,
        batch_size=16,
        vessel_fraction=0.5,
    )
    dm.setup("fit")
    batch = dm.training_patches(0, torch.device("cpu"))
    x, y, f = batch["image"], batch["label"], batch["fov"]
    assert x.shape == (16, 3, 32, 32) and y.shape == f.shape == (16, 32, 32)
    assert y.float().mean() > 0.1  # the patches hold vessels to compare
    assert _agreement(x[:, 0], y.float()) > 0.97
    assert _agreement(x[:, 1], f.float()) > 0.97
