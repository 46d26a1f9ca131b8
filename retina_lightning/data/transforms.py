"""Preprocessing and augmentation, on whatever device the batch is on (kornia).

:class:`Preprocess` is the papers' input conditioning: colour channels (RGB; the green channel,
where vessel contrast is highest; gray as patch2image, 004 section 4.1), gamma correction
(004: 1.7), CLAHE (kornia ``equalize_clahe``, or scikit-image ``equalize_adapthist`` as 004's
code uses; 004, and DPN on STARE, 002 section IV-A), in either order, then a normalisation to
zero mean and unit variance inside the FOV, per image or with the training set's statistics.
The conditioning steps run once per whole image and keep uint8 storage, so training patches
are cut from already-conditioned images (CLAHE on a patch would differ from CLAHE on the image
the network sees at test time).

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
import numpy as np
import torch
from kornia.enhance import equalize_clahe
from torch import Tensor

from retina_lightning.data.resolution import batch_scale, resize_image, resize_mask, scaled_size

Channels = Literal["rgb", "green", "gray"]
Normalization = Literal["image", "dataset", "none"]
Order = Literal["clahe-gamma", "gamma-clahe"]
ClaheBackend = Literal["kornia", "skimage"]
#: RGB -> gray weights: ITU-R BT.601 luma, BT.709 luminance (scikit-image ``rgb2gray``).
LUMA = {"601": (0.299, 0.587, 0.114), "709": (0.2125, 0.7154, 0.0721)}


def rescale_intensity(x: Tensor) -> Tensor:
    """Stretch each image and channel of ``(B, C, H, W)`` linearly to [0, 1] (scikit-image
    ``rescale_intensity(img, out_range=(0, 1))``, which 004's ``_process_img`` applies after the
    gray conversion and after the gamma); a constant image stays as it is."""
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def clahe_skimage(x: Tensor, clip: float, grid: tuple[int, int]) -> Tensor:
    """scikit-image's CLAHE (``equalize_adapthist``) on each image and channel of ``x`` in
    [0, 1]: ``clip_limit=clip`` (scikit-image's normalised clip, 0.01 by default) and tiles of
    ``image size / grid`` (scikit-image's default kernel is 1/8 of each side: ``grid (8, 8)``).
    Runs on the CPU (NumPy) and returns to ``x``'s device."""
    from skimage.exposure import equalize_adapthist

    arr = x.detach().float().cpu().numpy()
    out = np.empty_like(arr)
    h, w = arr.shape[-2:]
    kernel = (max(h // int(grid[0]), 1), max(w // int(grid[1]), 1))
    for b in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            out[b, c] = equalize_adapthist(arr[b, c], kernel_size=kernel, clip_limit=clip)
    return torch.from_numpy(out).to(x.device)


@dataclass
class Preprocess:
    """Input conditioning applied to every image (train, validation, test, predict).

    The steps, in order: channels; ``rescale``; CLAHE and gamma in the given ``order``;
    ``rescale`` again after the gamma. 004's public code (``routines._process_img``) is
    ``channels: gray, rescale: true, clahe: true, clahe_backend: skimage, clahe_clip: 0.01,
    gamma: 1.7, order: clahe-gamma`` (sec. 6.1.2 lists gray, gamma, CLAHE without an order;
    the code applies CLAHE first).

    Args:
        channels: ``rgb`` keeps 3 channels; ``green`` keeps the green channel; ``gray`` uses
            the ``luma`` weights. One-channel sources (infrared) are replicated for ``rgb``.
        luma: gray weights: ``601`` (ITU-R BT.601: 0.299, 0.587, 0.114) or ``709`` (BT.709:
            0.2125, 0.7154, 0.0721, scikit-image ``rgb2gray``, 004's code).
        gamma: ``out = in ** gamma`` on [0, 1] (scikit-image ``adjust_gamma``; 004's 1.7
            darkens mid-tones, deepening thin vessels against the background); 1.0 disables
            it.
        order: ``clahe-gamma`` (004's code) or ``gamma-clahe``.
        rescale: stretch to [0, 1] after the channel conversion and after the gamma (004).
        clahe: contrast-limited adaptive histogram equalisation per channel.
        clahe_backend: ``kornia`` (``equalize_clahe``, on the batch's device) or ``skimage``
            (``equalize_adapthist``, CPU, 004's code).
        clahe_clip: CLAHE clip limit, in the backend's convention (kornia: 2.0 is mild;
            scikit-image: 0.01 is its default).
        clahe_grid: CLAHE tile grid (scikit-image: tiles of image size / grid).
        normalize: ``image``: each image to zero mean / unit std inside its FOV; ``dataset``:
            one mean / std from the training images; ``none``: values in [0, 1] (004).
    """

    channels: Channels = "rgb"
    gamma: float = 1.0
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_grid: tuple[int, int] = (8, 8)
    normalize: Normalization = "image"
    order: Order = "clahe-gamma"
    rescale: bool = False
    luma: Literal["601", "709"] = "601"
    clahe_backend: ClaheBackend = "kornia"

    def __post_init__(self) -> None:
        if self.order not in ("clahe-gamma", "gamma-clahe"):
            raise ValueError(
                f"preprocess.order must be 'clahe-gamma' or 'gamma-clahe', got {self.order!r}"
            )
        if self.clahe_backend not in ("kornia", "skimage"):
            raise ValueError(
                f"preprocess.clahe_backend must be 'kornia' or 'skimage', got "
                f"{self.clahe_backend!r}"
            )
        if str(self.luma) not in LUMA:
            raise ValueError(f"preprocess.luma must be '601' or '709', got {self.luma!r}")
        if not self.gamma > 0:
            raise ValueError(f"preprocess.gamma must be > 0 (1.0 disables it), got {self.gamma}")

    @property
    def out_channels(self) -> int:
        return 3 if self.channels == "rgb" else 1

    def condition(self, image: Tensor) -> Tensor:
        """Channels, rescale, CLAHE and gamma: ``(B, C, H, W)`` uint8 -> ``(B, C', H, W)``
        uint8."""
        x = image.float() / 255.0
        c = x.shape[1]
        if self.channels == "rgb":
            x = x if c == 3 else x.expand(-1, 3, -1, -1)
        elif self.channels == "green":
            x = x[:, 1:2] if c == 3 else x
        elif self.channels == "gray":
            if c == 3:
                w = torch.tensor(LUMA[str(self.luma)], device=x.device).view(1, 3, 1, 1)
                x = (x * w).sum(1, keepdim=True)
        else:
            raise ValueError(
                f"preprocess.channels must be rgb, green or gray, got {self.channels!r}"
            )
        if self.rescale:
            x = rescale_intensity(x)
        steps = (self._clahe, self._gamma)
        for step in steps if self.order == "clahe-gamma" else steps[::-1]:
            x = step(x)
        return (x * 255.0).round().clamp(0, 255).to(torch.uint8)

    def _gamma(self, x: Tensor) -> Tensor:
        if self.gamma == 1.0:
            return x
        x = x.clamp_min(0).pow(self.gamma)
        return rescale_intensity(x) if self.rescale else x

    def _clahe(self, x: Tensor) -> Tensor:
        if not self.clahe:
            return x
        grid = (int(self.clahe_grid[0]), int(self.clahe_grid[1]))
        if self.clahe_backend == "skimage":
            return clahe_skimage(x, self.clahe_clip, grid)
        return equalize_clahe(x.contiguous(), clip_limit=self.clahe_clip, grid_size=grid)

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


def condition_whole(
    image: Tensor,
    fov: Tensor,
    preprocess: Preprocess,
    dataset_stats: tuple[Tensor, Tensor] | None = None,
    fov_diameter: int | None = None,
    tolerance: float = 0.0,
) -> Tensor:
    """The network input for a batch of whole uint8 images ``(B, C, H, W)`` with their FOV
    masks ``(B, H, W)``: the one conditioning path of validation, test, ``retina predict``, the
    cross-dataset matrix and patch2image's image phase.

    With ``fov_diameter`` the images are first resampled so that their FOV spans that many
    pixels (:mod:`retina_lightning.data.resolution`), unless their scale lies within
    ``tolerance`` of 1; the input then has that working size, and callers map the probabilities
    back with ``resize_probabilities``. Normalisation uses
    ``dataset_stats`` (mean, std of the training images) when ``preprocess.normalize`` is
    ``dataset`` and they are given, else each image's own statistics inside its FOV.
    """
    fov = fov.bool()
    if fov_diameter is not None:
        size = scaled_size(tuple(image.shape[-2:]), batch_scale(fov, fov_diameter, tolerance))
        image = resize_image(image.float(), size).round().clamp(0, 255).to(torch.uint8)
        fov = resize_mask(fov, size)
    conditioned = preprocess.condition(image)
    if preprocess.normalize == "dataset" and dataset_stats is not None:
        mean, std = (t.to(image.device).view(1, -1, 1, 1) for t in dataset_stats)
    else:
        mean, std = preprocess.fov_stats(conditioned, fov)
    return preprocess.normalise(conditioned, mean, std)
