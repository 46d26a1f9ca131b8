"""The DRIVE-shaped synthetic dataset (:class:`SyntheticFundus`, images cached in-process)
and the preview sheet of ``python -m retina_lightning.data.synthetic``."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from retina_lightning.data.base import RetinaDataset
from retina_lightning.data.synthetic.generator import generate_fundus
from retina_lightning.data.synthetic.style import FundusStyle
from retina_lightning.types import ARTERY, VEIN, Sample


@functools.lru_cache(maxsize=64)
def _cached_fundus(seed: int, height: int, width: int, style: FundusStyle) -> Sample:
    return generate_fundus(seed, height, width, style=style)


def _copy_sample(sample: Sample, name: str, meta: dict[str, Any]) -> Sample:
    """A copy with fresh arrays, so that callers editing a Sample never corrupt the cache."""
    return dataclasses.replace(
        sample,
        name=name,
        image=sample.image.copy(),
        label=sample.label.copy(),
        fov=sample.fov.copy(),
        second_observer=None if sample.second_observer is None else sample.second_observer.copy(),
        av=None if sample.av is None else sample.av.copy(),
        meta={**sample.meta, **meta},
    )


class SyntheticFundus(RetinaDataset):
    """DRIVE-shaped synthetic dataset (no files): ``training`` and ``test`` subsets.

    Image ``i`` of a subset is drawn by :func:`generate_fundus` with a seed derived from
    ``(seed, subset, i)`` by ``numpy.random.SeedSequence``, so adding images never changes
    the others, and the two subsets never share an image. Images are cached in-process.

    Args:
        root: ignored (accepted so every dataset takes ``root``).
        num_train, num_test: number of images per subset (DRIVE: 20 / 20).
        height, width: image size (DRIVE: 584 x 565).
        seed: dataset seed.
        **style: appearance knobs of :class:`FundusStyle` (``vessel_contrast``, ``noise_std``...).
    """

    _SUBSETS = ("training", "test")
    has_av = True

    def __init__(
        self,
        root: str | Path | None = None,
        num_train: int = 20,
        num_test: int = 20,
        height: int = 584,
        width: int = 565,
        seed: int = 0,
        n_trees: int = FundusStyle.n_trees,
        vessel_contrast: float = FundusStyle.vessel_contrast,
        thin_contrast_radius: float = FundusStyle.thin_contrast_radius,
        noise_std: float = FundusStyle.noise_std,
        blur_sigma: float = FundusStyle.blur_sigma,
        texture_std: float = FundusStyle.texture_std,
        branching: float = FundusStyle.branching,
        lesions: float = FundusStyle.lesions,
    ) -> None:
        super().__init__(root)
        if num_train < 0 or num_test < 0:
            raise ValueError(f"num_train / num_test must be >= 0, got {num_train} / {num_test}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.num_train, self.num_test = num_train, num_test
        self.height, self.width, self.seed = height, width, seed
        self.style = FundusStyle(
            n_trees=n_trees,
            vessel_contrast=vessel_contrast,
            thin_contrast_radius=thin_contrast_radius,
            noise_std=noise_std,
            blur_sigma=blur_sigma,
            texture_std=texture_std,
            branching=branching,
            lesions=lesions,
        )

    def subsets(self) -> tuple[str, ...]:
        return self._SUBSETS

    def image_seed(self, subset: str, index: int) -> int:
        """The :func:`generate_fundus` seed of image ``index`` of ``subset``."""
        self._check_subset(subset)
        key = [self.seed, self._SUBSETS.index(subset), index]
        hi, lo = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
        return (int(hi) << 32) | int(lo)

    def load(self, subset: str) -> list[Sample]:
        self._check_subset(subset)
        count = self.num_train if subset == "training" else self.num_test
        samples = []
        for i in range(count):
            image_seed = self.image_seed(subset, i)
            cached = _cached_fundus(image_seed, self.height, self.width, self.style)
            meta = {"subset": subset, "index": i, "dataset_seed": self.seed}
            samples.append(_copy_sample(cached, f"{i + 1:02d}_{subset}", meta))
        return samples


def _preview(
    path: str | Path = "previews/synthetic_sheet.png", drive_root: str | Path | None = None
) -> Path:
    """Save a sheet of 2 synthetic images (image / vessels / artery-vein map), with DRIVE's
    ``21_training`` (image / manual) below when ``drive_root`` (the DRIVE folder, default
    ``$RETINA_DATA_ROOT/DRIVE``) holds it: ``python -m retina_lightning.data.synthetic``."""
    import os

    from PIL import Image

    rows = []
    for seed in (0, 1):
        s = generate_fundus(seed)
        avc = np.zeros((*s.av.shape, 3), np.uint8)
        avc[s.av == VEIN] = (40, 90, 255)
        avc[s.av == ARTERY] = (255, 60, 40)
        lab = np.repeat(s.label[..., None] * 255, 3, axis=2)
        rows.append(np.concatenate([s.image, lab, avc], axis=1))
    if drive_root is None and os.environ.get("RETINA_DATA_ROOT"):
        drive_root = Path(os.environ["RETINA_DATA_ROOT"]) / "DRIVE"
    drive = Path(drive_root or "DRIVE") / "training"
    if (drive / "images/21_training.tif").is_file():
        img = np.asarray(Image.open(drive / "images/21_training.tif").convert("RGB"))
        gt = np.asarray(Image.open(drive / "1st_manual/21_manual1.gif").convert("L"))
        if img.shape == rows[0].shape[:1] + (rows[0].shape[1] // 3, 3):
            gt3 = np.repeat(gt[..., None], 3, axis=2)
            rows.append(np.concatenate([img, gt3, np.zeros_like(img)], axis=1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    return out
