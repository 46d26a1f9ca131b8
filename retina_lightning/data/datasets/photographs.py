"""Readers of the colour fundus photograph datasets with binary vessel labels: DRIVE,
STARE, CHASE_DB1 and HRF."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from retina_lightning.data.base import DatasetError
from retina_lightning.data.datasets.files import Entry, FileDataset, Scan, _index
from retina_lightning.types import Sample

# --------------------------------------------------------------------------------------------
# DRIVE


class DRIVE(FileDataset):
    """DRIVE (Staal et al., IEEE TMI 2004): 40 colour images 584x565 (HxW), official 20/20
    split, first observer as ground truth, published FOV masks, second observer on the test set
    (the human baseline of REFERENCE.md; 002 sec. 4.1).

    Layout (as unpacked from ``DRIVE.zip``; labels and masks may also be .png/.tif)::

        root/training/images/21_training.tif ... 40_training.tif
        root/training/1st_manual/21_manual1.gif ...
        root/training/mask/21_training_mask.gif ...
        root/test/images/01_test.tif ... 20_test.tif
        root/test/1st_manual/01_manual1.gif ...
        root/test/2nd_manual/01_manual2.gif ...     -> Sample.second_observer
        root/test/mask/01_test_mask.gif ...

    Args:
        root: the folder holding ``training/`` and ``test/``.
    """

    layout: ClassVar[str] = (
        "  root/training/images/21_training.tif\n"
        "  root/training/1st_manual/21_manual1.gif\n"
        "  root/training/mask/21_training_mask.gif\n"
        "  root/test/images/01_test.tif, test/1st_manual/01_manual1.gif,\n"
        "  root/test/2nd_manual/01_manual2.gif, test/mask/01_test_mask.gif"
    )

    def subsets(self) -> tuple[str, ...]:
        return ("training", "test")

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        root = self._require_root()
        scan = Scan()
        images = _index(self._require_dir(root, f"{subset}/images"), scan.problems)
        labels = _index(self._require_dir(root, f"{subset}/1st_manual"), scan.problems)
        masks = _index(self._require_dir(root, f"{subset}/mask"), scan.problems)
        second_dir = root / subset / "2nd_manual"
        seconds = _index(second_dir, scan.problems)
        if not images:
            raise self._layout_error(root, f"{subset}/images/*.tif")
        used: set[str] = set()
        for stem, path in images.items():
            number = stem.split("_")[0]
            label = labels.get(f"{number}_manual1")
            mask = masks.get(f"{stem}_mask")
            second = seconds.get(f"{number}_manual2")
            used.add(f"{number}_manual1")
            if label is None:
                self._missing(
                    scan.problems,
                    path,
                    "label",
                    root / subset / "1st_manual" / f"{number}_manual1.gif",
                )
            if mask is None:
                self._missing(
                    scan.problems, path, "FOV mask", root / subset / "mask" / f"{stem}_mask.gif"
                )
            if seconds and second is None:
                self._missing(
                    scan.problems, path, "second observer", second_dir / f"{number}_manual2.gif"
                )
            if label is not None and mask is not None:
                scan.entries.append(Entry(stem, subset, path, label, mask, second))
        self._orphans(scan.problems, "label", [p for s, p in labels.items() if s not in used])
        return scan

    def read(self, entry: Entry) -> Sample:
        return self._binary_sample(entry, fov_from="file")


# --------------------------------------------------------------------------------------------
# STARE


class STARE(FileDataset):
    """STARE (Hoover et al., IEEE TMI 2000): 20 colour images 605x700 (HxW) with vessel labels
    by two observers, Adam Hoover (``ah``, the usual ground truth, 002 sec. 4.1) and Valentina
    Kouznetsova (``vk``). No FOV masks and no split are published: the FOV is derived
    (IterNet, 003 sec. 4.1), the split is a protocol choice (``splits.py``: first 10/10,
    leave-one-out, 5-fold, IterNet's 16/4).

    Layouts (files plain ``.ppm`` or gzip ``.ppm.gz``, mixed freely)::

        root/stare-images/im0001.ppm.gz ...       the three archives as they unpack
        root/labels-ah/im0001.ah.ppm.gz ...
        root/labels-vk/im0001.vk.ppm.gz ...
    or
        root/im0001.ppm, root/im0001.ah.ppm, root/im0001.vk.ppm, ...   one flat folder

    The samples are the images that have a label of the chosen observer; images without one
    are not part of the vessel set (the full 397-image STARE archive may sit in
    ``stare-images/``; the checker reports how many were passed over). A label without its
    image is an error.

    Args:
        root: the folder holding the archives' folders, or the flat folder.
        labels: ``"ah"`` (default) or ``"vk"``: the ground truth; the other observer becomes
            ``second_observer`` when its labels are present.
    """

    layout: ClassVar[str] = (
        "  root/stare-images/im0001.ppm[.gz], root/labels-ah/im0001.ah.ppm[.gz],\n"
        "  root/labels-vk/im0001.vk.ppm[.gz]\n"
        "or one flat folder: root/im0001.ppm[.gz], root/im0001.ah.ppm[.gz], root/im0001.vk.ppm[.gz]"
    )
    OBSERVERS: ClassVar[tuple[str, str]] = ("ah", "vk")

    def __init__(self, root: str | Path | None = None, labels: Literal["ah", "vk"] = "ah") -> None:
        super().__init__(root)
        if labels not in self.OBSERVERS:
            raise DatasetError(f"STARE: labels must be 'ah' or 'vk', got {labels!r}")
        self.labels = labels

    def subsets(self) -> tuple[str, ...]:
        return ("all",)

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        root = self._require_root()
        scan = Scan()
        other = "vk" if self.labels == "ah" else "ah"
        if (root / "stare-images").is_dir():
            images = _index(root / "stare-images", scan.problems)
            truth = _index(root / f"labels-{self.labels}", scan.problems)
            second = _index(root / f"labels-{other}", scan.problems)
            truth_dir, second_dir = root / f"labels-{self.labels}", root / f"labels-{other}"
        else:
            flat = _index(root, scan.problems)
            images = {s: p for s, p in flat.items() if "." not in s}
            truth = {s: p for s, p in flat.items() if s.endswith(f".{self.labels}")}
            second = {s: p for s, p in flat.items() if s.endswith(f".{other}")}
            truth_dir = second_dir = root
        truth = {s.rsplit(".", 1)[0]: p for s, p in truth.items()}
        second = {s.rsplit(".", 1)[0]: p for s, p in second.items()}
        if not truth:
            raise self._layout_error(root, f"labels-{self.labels}/im0001.{self.labels}.ppm[.gz]")
        for stem, label in truth.items():
            image = images.get(stem)
            if image is None:
                self._orphans(scan.problems, f"{self.labels} label", [label])
                continue
            if second and stem not in second:
                self._missing(
                    scan.problems, image, f"{other} label", second_dir / f"{stem}.{other}.ppm.gz"
                )
                continue
            scan.entries.append(Entry(stem, subset, image, label, None, second.get(stem)))
        self._orphans(
            scan.problems, f"{other} label", [p for s, p in second.items() if s not in truth]
        )
        unlabelled = sorted(set(images) - set(truth))
        if unlabelled:
            scan.notes.append(
                f"{len(unlabelled)} image(s) without an {self.labels} vessel label in "
                f"{str(truth_dir)!r} are not part of the vessel set (first: "
                f"{', '.join(unlabelled[:5])})"
            )
        scan.entries.sort(key=lambda e: e.name)
        return scan

    def read(self, entry: Entry) -> Sample:
        sample = self._binary_sample(entry, fov_from="derive")
        sample.meta["observer"] = self.labels
        return sample


# --------------------------------------------------------------------------------------------
# CHASE_DB1


class CHASEDB1(FileDataset):
    """CHASE_DB1 (Owen et al. 2009; Fraz et al. 2012): 28 colour images 960x999 (HxW) of both
    eyes of 14 children, two observers (``1stHO`` ground truth, ``2ndHO`` -> second observer).
    No FOV masks (derived, IterNet 003 sec. 4.1) and no split (``splits.py``: first 20/8,
    14/14, 4-fold; 002 sec. 4.1, 004 sec. 6.1).

    Layout (one flat folder, as unpacked)::

        root/Image_01L.jpg, root/Image_01L_1stHO.png, root/Image_01L_2ndHO.png, ...

    Args:
        root: the folder holding the files.
    """

    layout: ClassVar[str] = (
        "  root/Image_01L.jpg, root/Image_01L_1stHO.png, root/Image_01L_2ndHO.png, ..."
    )

    def subsets(self) -> tuple[str, ...]:
        return ("all",)

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        root = self._require_root()
        scan = Scan()
        files = _index(root, scan.problems)
        images = {s: p for s, p in files.items() if not s.endswith(("_1stHO", "_2ndHO"))}
        first = {s[: -len("_1stHO")]: p for s, p in files.items() if s.endswith("_1stHO")}
        second = {s[: -len("_2ndHO")]: p for s, p in files.items() if s.endswith("_2ndHO")}
        if not first:
            raise self._layout_error(root, "Image_01L_1stHO.png")
        for stem, image in images.items():
            label = first.get(stem)
            if label is None:
                self._missing(scan.problems, image, "1stHO label", root / f"{stem}_1stHO.png")
                continue
            if second and stem not in second:
                self._missing(scan.problems, image, "2ndHO label", root / f"{stem}_2ndHO.png")
                continue
            scan.entries.append(Entry(stem, subset, image, label, None, second.get(stem)))
        self._orphans(scan.problems, "label", [p for s, p in first.items() if s not in images])
        self._orphans(scan.problems, "label", [p for s, p in second.items() if s not in images])
        return scan

    def read(self, entry: Entry) -> Sample:
        return self._binary_sample(entry, fov_from="derive")


# --------------------------------------------------------------------------------------------
# HRF


class HRF(FileDataset):
    """HRF, High-Resolution Fundus (Budai et al. 2013): 45 colour images 2336x3504 (HxW), 15
    healthy (``_h``), 15 diabetic retinopathy (``_dr``), 15 glaucoma (``_g``) (000 sec. II-A),
    with vessel labels and FOV masks.

    Layout (as unpacked; image suffixes ``.jpg`` or ``.JPG``)::

        root/images/01_dr.JPG, root/images/01_g.jpg, ...
        root/manual1/01_dr.tif, ...
        root/mask/01_dr_mask.tif, ...

    Args:
        root: the folder holding ``images/``, ``manual1/`` and ``mask/``.
    """

    layout: ClassVar[str] = (
        "  root/images/01_dr.JPG, root/manual1/01_dr.tif, root/mask/01_dr_mask.tif, ..."
    )

    def subsets(self) -> tuple[str, ...]:
        return ("all",)

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        root = self._require_root()
        scan = Scan()
        images = _index(self._require_dir(root, "images"), scan.problems)
        labels = _index(self._require_dir(root, "manual1"), scan.problems)
        masks = _index(self._require_dir(root, "mask"), scan.problems)
        for stem, image in images.items():
            label, mask = labels.get(stem), masks.get(f"{stem}_mask")
            if label is None:
                self._missing(scan.problems, image, "label", root / "manual1" / f"{stem}.tif")
            if mask is None:
                self._missing(scan.problems, image, "FOV mask", root / "mask" / f"{stem}_mask.tif")
            if label is not None and mask is not None:
                scan.entries.append(Entry(stem, subset, image, label, mask))
        self._orphans(scan.problems, "label", [p for s, p in labels.items() if s not in images])
        return scan

    def read(self, entry: Entry) -> Sample:
        return self._binary_sample(entry, fov_from="file")
