"""The images ``retina predict`` segments: a file or a folder, with FOV masks matched by name.

:class:`ImageFolder` reads one image (and its FOV: a mask file, or derived from the image) per
item; :class:`FolderDataModule` serves them to Lightning's predict loop and conditions each
batch on its device with the checkpoint's own :meth:`RetinaDataModule.prepare_whole`, the
method validation and test batches go through.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from retina_lightning.data.base import DatasetError
from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.data.fov import derive_fov
from retina_lightning.data.io import IMAGE_SUFFIXES, is_image_file, read_image, read_mask
from retina_lightning.data.io import split_suffix as _split_suffix
from retina_lightning.predict.checkpoint import PredictError
from retina_lightning.types import to_tensor_image

#: What one image produces: ``<stem><suffix>.png``.
OUTPUT_SUFFIXES = ("_prob", "_mask", "_overlay", "_width", "_av")
#: FOV file stems tried for an image stem ``s``, in order (DRIVE: ``01_test_mask.gif``).
FOV_STEM_PATTERNS = ("{}", "{}_mask", "{}_fov", "{}-mask", "{}_FOV", "{}_Mask")


def stem(path: Path) -> str:
    """The name of ``path`` without its image suffix (``.tif``, ``.nii.gz`` ...)."""
    return _split_suffix(path)[0]


def find_images(path: str | Path) -> list[Path]:
    """The image files of ``--input``: the file itself, or the folder's image files
    (not recursive), sorted by name, without ``<stem>_prob.png`` & co. of an image
    ``<stem>`` of the same folder (outputs written next to their inputs)."""
    path = Path(path)
    looked_for = ", ".join(IMAGE_SUFFIXES) + " (each also .gz)"
    if not path.exists():
        raise PredictError(f"--input {str(path)!r}: no such file or folder")
    if path.is_file():
        if not is_image_file(path):
            raise PredictError(
                f"--input {str(path)!r} is not an image file; extensions read: {looked_for}"
            )
        return [path]
    images = sorted(p for p in path.iterdir() if is_image_file(p))
    # maps of an earlier run written into the input folder are not inputs
    stems = {stem(p) for p in images}
    images = [
        p
        for p in images
        if not any(stem(p).endswith(s) and stem(p)[: -len(s)] in stems for s in OUTPUT_SUFFIXES)
    ]
    if not images:
        raise PredictError(
            f"--input {str(path)!r} holds no image file; extensions looked for: {looked_for}"
        )
    return images


def match_fov(image: Path, fov: Path | None) -> Path | None:
    """The FOV mask of ``image``: ``fov`` itself when it is a file; in a folder the file
    whose stem is the image's stem, or the stem followed by ``_mask`` / ``_fov`` (DRIVE's
    ``01_test_mask.gif`` for ``01_test.tif``); ``None`` when nothing matches."""
    if fov is None:
        return None
    if fov.is_file():
        return fov
    stems = {stem(p): p for p in fov.iterdir() if is_image_file(p)}
    name = stem(image)
    for pattern in FOV_STEM_PATTERNS:
        if pattern.format(name) in stems:
            return stems[pattern.format(name)]
    return None


def read_item(image_path: Path, fov_path: Path | None) -> dict[str, Any]:
    """One image as a whole-image item: ``image`` ``(C, H, W)`` uint8, ``fov`` ``(H, W)``
    bool (the mask file, or derived from the image), ``name`` (the stem), ``file``,
    ``fov_source`` (``file`` / ``derived``) and ``start`` (``time.perf_counter()`` before the
    read: DPN's disk-to-disk time, 002 section 4.4). Raises :class:`DatasetError` on an FOV
    of another size or an empty one."""
    start = time.perf_counter()
    image = read_image(image_path)
    h, w = image.shape[:2]
    if fov_path is not None:
        fov = read_mask(fov_path).astype(bool)
        if fov.shape != (h, w):
            raise DatasetError(
                f"FOV mask {str(fov_path)!r} is {fov.shape[1]}x{fov.shape[0]} (WxH) but the "
                f"image {str(image_path)!r} is {w}x{h}; pass the matching masks with --fov or "
                "leave --fov out to derive the FOV from the image"
            )
        source = "file"
    else:
        fov = derive_fov(image)
        source = "derived"
    if not fov.any():
        raise DatasetError(f"the FOV of {str(image_path)!r} is empty")
    return {
        "image": to_tensor_image(image),
        "fov": torch.from_numpy(np.ascontiguousarray(fov)),
        "name": stem(image_path),
        "file": image_path.name,
        "fov_source": source,
        "start": start,
    }


class ImageFolder(Dataset):
    """The images of ``retina predict``, one per item (:func:`read_item`). An image that
    cannot be read becomes an item with an ``error`` message and no ``image``: the writer
    reports it and the other images are still segmented."""

    def __init__(self, images: list[Path], fov: Path | None = None) -> None:
        self.images = list(images)
        self.fov = fov

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.images[index]
        try:
            item = read_item(path, match_fov(path, self.fov))
        except (DatasetError, OSError, ValueError) as e:
            return {"name": stem(path), "file": path.name, "error": str(e), "index": index}
        item["index"] = index
        return item


def collate_one(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of one item (images differ in size): tensors get a batch axis, the rest
    become one-element lists, as ``default_collate`` would give them."""
    (item,) = items
    return {k: v[None] if isinstance(v, torch.Tensor) else [v] for k, v in item.items()}


class FolderDataModule(LightningDataModule):
    """Serve a folder of images to ``Trainer.predict``, conditioned as in training.

    Args:
        images: the image files (:func:`find_images`).
        fov: an FOV mask file or a folder of masks matched by name (:func:`match_fov`);
            ``None`` derives each image's FOV.
        conditioning: the checkpoint's datamodule; its ``prepare_whole`` conditions each batch
            on the device (``raw`` keeps the image, ``fov`` the native size).
        num_workers: DataLoader workers reading images.
    """

    def __init__(
        self,
        images: list[Path],
        fov: Path | None,
        conditioning: RetinaDataModule,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = ImageFolder(images, fov)
        self.conditioning = conditioning
        self.num_workers = num_workers

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_one,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if "error" in batch:
            return batch
        return self.conditioning.prepare_whole(batch)
