"""Resolution: resample fundus images so that the field of view spans a fixed number of pixels.

A model learns vessel calibres in pixels. CHASE_DB1's FOV is ~920 px across, DRIVE's ~540, so
a DRIVE model sees CHASE_DB1 vessels 1.7x wider than anything it was trained on (issue 13;
DPN's cross-training experiment, 002 section 4.5.3, Table 4, trains and tests at each dataset's
native size). With ``fov_diameter`` set, every image (training, validation, test, predict) is
resampled so that its FOV is ``fov_diameter`` pixels across, the network runs at that scale,
and its probabilities are mapped back to the image's own grid before metrics and outputs, so
every number is computed against the original labels.

The FOV diameter is its horizontal extent (columns holding an FOV pixel): DRIVE's circular
FOV is cut at the top and bottom in some images, never at the sides.

Resolution follows the model (issue 22): every ``retina fit`` records the median FOV diameter of
its training images in the checkpoint (``RetinaDataModule.state_dict``), and evaluation /
prediction resample an image to it whenever its own FOV differs by more than
:data:`FOV_TOLERANCE`, so another camera's images are seen at the scale the model learned
(DRIVE -> CHASE_DB1 AUROC 0.875 -> 0.942 in the issue 13 matrix) while images of the training
camera run untouched.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retina_lightning.types import Sample, to_tensor_image

#: DRIVE's median FOV diameter in pixels (official masks: 535-541 px, median 540)
DRIVE_FOV_DIAMETER = 540

#: Relative scale difference within which an image runs at its native size when the model's
#: training FOV diameter is followed (not when ``fov_diameter`` is set explicitly): one camera's
#: FOVs differ by ~1 % (DRIVE: 535-541 px), so its images stay bit-identical; another camera's
#: differ by 10 % or more (CHASE_DB1's ~920 px is 1.7x DRIVE's).
FOV_TOLERANCE = 0.05


def parse_fov_diameter(text: str) -> int | str:
    """The ``--fov_diameter`` option of ``retina predict`` and ``retina leaderboard cross``
    (an argparse ``type=``): ``"ckpt"`` (the model's: its explicit ``fov_diameter``, else the
    FOV diameter recorded of its training images, followed beyond :data:`FOV_TOLERANCE`),
    ``"native"`` (no resampling) or a diameter in pixels >= 16."""
    if text in ("ckpt", "native"):
        return text
    if not text.isdigit() or int(text) < 16:
        raise argparse.ArgumentTypeError(
            f"--fov_diameter {text!r}: expected 'ckpt', 'native' or a diameter in pixels >= 16"
        )
    return int(text)


def fov_diameter(fov: np.ndarray | Tensor) -> int:
    """Horizontal extent in pixels of an ``(H, W)`` FOV mask (0 for an empty mask)."""
    columns = fov.any(0) if isinstance(fov, np.ndarray) else fov.bool().any(-2)
    return int(columns.sum())


def scaled_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W) * scale``, rounded, at least 1 px."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def scale_for(fov: np.ndarray | Tensor, target: int | None) -> float:
    """Factor that brings ``fov``'s diameter to ``target`` px (1.0 when ``target`` is None)."""
    if target is None:
        return 1.0
    diameter = fov_diameter(fov)
    if diameter == 0:
        raise ValueError("fov_diameter: the FOV mask is empty, so the image's scale is unknown")
    return target / diameter


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resampling of ``(B, C, H, W)`` float images, antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_labels(label: Tensor, size: tuple[int, int], num_classes: int) -> Tensor:
    """Class map ``(B, H, W)`` resampled by area share: each output pixel takes the class that
    covers most of it (bilinear weights on the one-hot maps when enlarging). Unlike nearest
    neighbour this keeps a 1 px vessel's share of the area when shrinking."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    onehot = F.one_hot(label.long(), max(num_classes, 2)).permute(0, 3, 1, 2).float()
    return resize_image(onehot, size).argmax(1).to(label.dtype)


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Boolean mask ``(B, H, W)`` resampled by area share (at least half the pixel inside)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.bool()
    return resize_image(mask[:, None].float(), size)[:, 0] >= 0.5


def resize_probabilities(probs: Tensor, size: tuple[int, int]) -> Tensor:
    """Probabilities ``(B, K, h, w)`` back onto the original ``(H, W)`` grid (bilinear)."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs.float(), size=size, mode="bilinear", align_corners=False)


def resample_sample(sample: Sample, target: int | None) -> Sample:
    """``sample`` with image, labels, FOV and second observer resampled so that its FOV is
    ``target`` pixels across (unchanged when ``target`` is None or the scale is 1)."""
    scale = scale_for(sample.fov, target)
    size = scaled_size(sample.shape, scale)
    if size == tuple(sample.shape):
        return sample
    image = to_tensor_image(sample.image)[None].float()
    image = resize_image(image, size).round().clamp(0, 255).to(torch.uint8)

    def labels(arr: np.ndarray | None) -> np.ndarray | None:
        if arr is None:
            return None
        t = torch.from_numpy(np.ascontiguousarray(arr))[None]
        return resize_labels(t, size, int(arr.max()) + 1)[0].numpy().astype(arr.dtype)

    fov = resize_mask(torch.from_numpy(sample.fov.astype(bool))[None], size)[0].numpy()
    return replace(
        sample,
        image=np.ascontiguousarray(image[0].permute(1, 2, 0).numpy()),
        label=labels(sample.label),
        av=labels(sample.av),
        fov=fov.astype(sample.fov.dtype),
        second_observer=labels(sample.second_observer),
        pixel_size_um=None if sample.pixel_size_um is None else sample.pixel_size_um / scale,
        meta={**sample.meta, "original_size": tuple(sample.shape), "scale": scale},
    )


def batch_scale(fov: Tensor, target: int | None, tolerance: float = 0.0) -> float:
    """One scale for a batch of same-size images: the median of its images' scales (images of
    one camera differ by a few pixels); 1.0 when it lies within ``tolerance`` of 1 (relative)."""
    if target is None:
        return 1.0
    scale = float(np.median([scale_for(f, target) for f in fov]))
    return 1.0 if abs(scale - 1.0) <= tolerance else scale


def median_fov_diameter(fovs: list[np.ndarray]) -> int:
    """The median FOV diameter (px) of a set of FOV masks: what a checkpoint records of its
    training images (:data:`FOV_TOLERANCE`)."""
    if not fovs:
        raise ValueError("median_fov_diameter: no FOV masks")
    return int(round(float(np.median([fov_diameter(f) for f in fovs]))))
