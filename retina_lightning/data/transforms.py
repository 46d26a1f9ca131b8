"""Preprocessing and augmentation, on whatever device the batch is on (kornia).

:class:`Preprocess` is the papers' input conditioning: colour channels (RGB; the green channel,
where vessel contrast is highest; gray as patch2image, 004 section 4.1), gamma correction
(004: 1.7), CLAHE (kornia ``equalize_clahe``; 004, and DPN on STARE, 002 section IV-A), then a
normalisation to zero mean and unit variance inside the FOV, per image or with the training
set's statistics. The first three steps run once per whole image and keep uint8 storage, so
training patches are cut from already-conditioned images (CLAHE on a patch would differ from
CLAHE on the image the network sees at test time).

:class:`Augment` lists the training augmentations; :func:`build_augmentation` turns it into a
kornia ``AugmentationSequential`` over (image, label, FOV) whose geometric ops move all three
together (labels and FOV resampled with nearest neighbour, so they stay binary) and whose
intensity ops touch the image only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import kornia.augmentation as K
import torch
from kornia.enhance import equalize_clahe
from torch import Tensor

Channels = Literal["rgb", "green", "gray"]
Normalization = Literal["image", "dataset", "none"]


@dataclass
class Preprocess:
    """Input conditioning applied to every image (train, validation, test, predict).

    Args:
        channels: ``rgb`` keeps 3 channels; ``green`` keeps the green channel; ``gray`` uses
            ITU-R 601 luma. One-channel sources (infrared) are replicated for ``rgb``.
        gamma: ``out = in ** (1 / gamma)`` on [0, 1] (patch2image's gamma 1.7 brightens the
            dark vessels' surroundings); 1.0 disables it.
        clahe: contrast-limited adaptive histogram equalisation per channel.
        clahe_clip: CLAHE clip limit (kornia's convention).
        clahe_grid: CLAHE tile grid.
        normalize: ``image``: each image to zero mean / unit std inside its FOV; ``dataset``:
            one mean / std from the training images; ``none``: values in [0, 1].
    """

    channels: Channels = "rgb"
    gamma: float = 1.0
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_grid: tuple[int, int] = (8, 8)
    normalize: Normalization = "image"

    @property
    def out_channels(self) -> int:
        return 3 if self.channels == "rgb" else 1

    def condition(self, image: Tensor) -> Tensor:
        """Channels, gamma and CLAHE: ``(B, C, H, W)`` uint8 -> ``(B, C', H, W)`` uint8."""
        x = image.float() / 255.0
        c = x.shape[1]
        if self.channels == "rgb":
            x = x if c == 3 else x.expand(-1, 3, -1, -1)
        elif self.channels == "green":
            x = x[:, 1:2] if c == 3 else x
        elif self.channels == "gray":
            if c == 3:
                w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
                x = (x * w).sum(1, keepdim=True)
        else:
            raise ValueError(
                f"preprocess.channels must be rgb, green or gray, got {self.channels!r}"
            )
        if self.gamma != 1.0:
            x = x.clamp_min(0).pow(1.0 / self.gamma)
        if self.clahe:
            x = equalize_clahe(
                x.contiguous(), clip_limit=self.clahe_clip, grid_size=self.clahe_grid
            )
        return (x * 255.0).round().clamp(0, 255).to(torch.uint8)

    @staticmethod
    def fov_stats(image: Tensor, fov: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image, per-channel mean and std inside the FOV of a conditioned uint8 batch,
        on the [0, 1] scale: two ``(B, C, 1, 1)`` tensors."""
        x = image.float() / 255.0
        w = fov.unsqueeze(1).float()
        n = w.sum((2, 3), keepdim=True).clamp_min(1)
        mean = (x * w).sum((2, 3), keepdim=True) / n
        var = (((x - mean) ** 2) * w).sum((2, 3), keepdim=True) / n
        return mean, var.sqrt().clamp_min(1e-3)

    def normalise(self, image: Tensor, mean: Tensor | None, std: Tensor | None) -> Tensor:
        """uint8 conditioned image -> float network input (outside-FOV pixels are not zeroed:
        the network sees the dark surround as it is, losses and metrics ignore it)."""
        x = image.float() / 255.0
        if self.normalize == "none" or mean is None or std is None:
            return x
        return (x - mean) / std


@dataclass
class Augment:
    """Training augmentations (applied to patches on the device, seeded per step).

    Args:
        hflip: horizontal flips with probability 0.5.
        vflip: vertical flips with probability 0.5.
        rot90: rotations by multiples of 90 degrees.
        rotation: free rotation range in degrees (``+-rotation``); 0 disables it.
        scale: ``(min, max)`` isotropic scaling of an affine transform, or ``None``.
        brightness: ColorJiggle brightness factor (0 disables).
        contrast: ColorJiggle contrast factor.
        saturation: ColorJiggle saturation factor (RGB only).
        hue: ColorJiggle hue factor (RGB only).
        gamma: ``(min, max)`` random gamma, or ``None``.
    """

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    rotation: float = 0.0
    scale: tuple[float, float] | None = None
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.0
    hue: float = 0.0
    gamma: tuple[float, float] | None = None

    def context(self, patch_size: int) -> int:
        """Side of the window to cut before augmenting so that a rotated / zoomed-out patch
        still has real pixels in its corners after the centre crop back to ``patch_size``."""
        factor = 1.0
        if self.rotation:
            factor *= math.sqrt(2.0)
        if self.scale is not None:
            factor /= min(self.scale)
        return int(math.ceil(patch_size * factor / 2.0)) * 2 if factor > 1.0 else patch_size


def build_augmentation(augment: Augment, channels: int) -> K.AugmentationSequential | None:
    """kornia pipeline over (image, masks): data_keys input, mask. Label and FOV travel as the
    two channels of one mask tensor, so each geometric op warps them in a single pass."""
    ops: list[K.AugmentationBase2D] = []
    if augment.hflip:
        ops.append(K.RandomHorizontalFlip(p=0.5))
    if augment.vflip:
        ops.append(K.RandomVerticalFlip(p=0.5))
    if augment.rot90:
        ops.append(K.RandomRotation90(times=(0, 3), p=1.0))
    if augment.rotation or augment.scale is not None:
        ops.append(
            K.RandomAffine(
                degrees=augment.rotation, scale=augment.scale, p=1.0, padding_mode="zeros"
            )
        )
    color = {"brightness": augment.brightness, "contrast": augment.contrast}
    if channels == 3:
        color.update(saturation=augment.saturation, hue=augment.hue)
    if any(v for v in color.values()):
        ops.append(K.ColorJiggle(**color, p=1.0))
    if augment.gamma is not None:
        ops.append(K.RandomGamma(gamma=augment.gamma, p=1.0))
    if not ops:
        return None
    return K.AugmentationSequential(*ops, data_keys=["input", "mask"])
