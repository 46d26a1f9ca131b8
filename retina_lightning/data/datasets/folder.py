"""Reader of a user's own folder of images, labels and optional FOV masks, with the rule
that matches a label to its image by file stem."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from retina_lightning.data.datasets.files import Entry, FileDataset, Scan, _index
from retina_lightning.types import Sample


def _match(stems: list[str], others: dict[str, Path], what: str, problems: list[str]) -> dict:
    """Assign each file of ``others`` to the image whose stem is the longest one equal to the
    file's stem or followed in it by ``_`` or ``-`` (``x.png``, ``x_label.png``, ``x-gt.tif``
    -> image ``x``). Returns ``{image stem: path}``; unassigned files and images with two
    files are problems."""
    by_image: dict[str, list[Path]] = {}
    for stem, path in others.items():
        owners = [s for s in stems if stem == s or stem.startswith((s + "_", s + "-"))]
        if not owners:
            problems.append(f"{what} {str(path)!r} matches no image stem")
            continue
        by_image.setdefault(max(owners, key=len), []).append(path)
    result = {}
    for stem, paths in by_image.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            problems.append(f"image {stem!r} has {len(paths)} {what} files ({names}); keep one")
            continue
        result[stem] = paths[0]
    return result


class FolderDataset(FileDataset):
    """A user's own images in a simple layout.

    Layout::

        root/images/x.jpg ...        any readable image (.png, .tif, .jpg, .ppm[.gz], ...)
        root/labels/x.png ...        binary label per image (0/1 or 0/255)
        root/masks/x.png ...         optional FOV masks (without them the FOV is derived)
    or, with subsets::

        root/<subset>/images/, root/<subset>/labels/, root/<subset>/masks/   (e.g. train, test)

    With ``images/`` directly under ``root`` the only subset is ``"all"``; otherwise every
    subfolder holding an ``images/`` folder is a subset, named after it.

    Matching rule: a label (or mask) belongs to the image whose file stem equals its stem, or
    is its stem's beginning followed by ``_`` or ``-`` (``x.png``, ``x_label.png``,
    ``x-gt.tif`` all label image ``x.jpg``); the longest such image stem wins (``x_b_label``
    goes to image ``x_b``, not ``x``). An image without a label, a label without an image and
    two labels for one image are errors.

    Args:
        root: see above.
        images / labels / masks: the folder names.
        derive: derive the FOV (003 sec. 4.1) when there is no mask folder; ``False`` makes
            the whole image the FOV (images without a dark surround).
        pixel_size_um: physical pixel size, if known.
    """

    layout: ClassVar[str] = (
        "  root/images/x.jpg, root/labels/x.png (or x_label.png), optional root/masks/x.png\n"
        "or root/<subset>/images/, root/<subset>/labels/, root/<subset>/masks/"
    )

    def __init__(
        self,
        root: str | Path | None = None,
        images: str = "images",
        labels: str = "labels",
        masks: str = "masks",
        derive: bool = True,
        pixel_size_um: float | None = None,
    ) -> None:
        super().__init__(root)
        self.images, self.labels, self.masks = images, labels, masks
        self.derive = derive
        self.pixel_size_um = pixel_size_um

    def subsets(self) -> tuple[str, ...]:
        root = self._require_root()
        if (root / self.images).is_dir():
            return ("all",)
        found = tuple(sorted(p.name for p in root.iterdir() if (p / self.images).is_dir()))
        if not found:
            raise self._layout_error(root, self.images)
        return found

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        root = self._require_root()
        base = root if subset == "all" and (root / self.images).is_dir() else root / subset
        scan = Scan()
        images = _index(base / self.images, scan.problems)
        if not images:
            raise self._layout_error(root, f"{base.relative_to(root) / self.images}/<image files>")
        labels_dir = self._require_dir(base, self.labels)
        stems = list(images)
        labels = _match(stems, _index(labels_dir, scan.problems), "label", scan.problems)
        mask_dir = base / self.masks
        has_masks = mask_dir.is_dir()
        masks = _match(stems, _index(mask_dir, scan.problems), "mask", scan.problems)
        for stem, image in images.items():
            label, mask = labels.get(stem), masks.get(stem)
            if label is None:
                self._missing(scan.problems, image, "label", labels_dir / f"{stem}.png")
            if has_masks and mask is None:
                self._missing(scan.problems, image, "FOV mask", mask_dir / f"{stem}.png")
            if label is not None and (mask is not None or not has_masks):
                scan.entries.append(Entry(stem, subset, image, label, mask))
        return scan

    def read(self, entry: Entry) -> Sample:
        if entry.fov is not None:
            return self._binary_sample(entry, fov_from="file")
        return self._binary_sample(entry, fov_from="derive" if self.derive else "none")
