"""Readers of the public retinal datasets, one class per published file layout.

Each class is a :class:`~retina_lightning.data.base.RetinaDataset`: ``subsets()`` names the
publisher's folders, ``load(subset)`` returns the images of one subset sorted by name as
:class:`~retina_lightning.types.Sample` records. Every reader works in two steps, which the
data checker (``check.py``) also uses to report all bad files at once:

* ``scan(subset)`` pairs files by name and returns :class:`Scan` (entries + problems such as
  an image without a label or a label without an image);
* ``read(entry)`` decodes one entry into a :class:`Sample` (unreadable file, label of another
  size than its image, non-binary label -> :class:`DatasetError` naming the file).

``load`` raises on the first problem; nothing is skipped silently. ``Sample.meta`` holds the
file paths, the subset, ``bit_depth`` (of the image file, ``io.bit_depth``) and
``fov_source``: ``"published"`` (the dataset's own FOV masks), ``"derived"``
(:func:`~retina_lightning.data.fov.derive_fov`, IterNet 003 sec. 4.1), ``"drive"`` (RITE with
DRIVE's masks) or ``"none"`` (the whole frame, RAVIR).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from retina_lightning.data.base import DatasetError, RetinaDataset
from retina_lightning.data.fov import derive_fov
from retina_lightning.data.io import (
    read_image_bits,
    read_label_levels,
    read_mask,
    read_rgb,
    split_suffix,
)
from retina_lightning.types import ARTERY, BACKGROUND, VEIN, Sample

__all__ = [
    "CHASEDB1",
    "DATASETS",
    "DRIVE",
    "HRF",
    "RAVIR",
    "RITE",
    "STARE",
    "Entry",
    "FileDataset",
    "FolderDataset",
    "IDRiDOpticDisc",
    "Scan",
    "build_dataset",
    "dataset_node",
    "rite_av_classes",
]


# --------------------------------------------------------------------------------------------
# shared machinery


@dataclass
class Entry:
    """One image of a subset and the files that belong to it (``None``: not published)."""

    name: str
    subset: str
    image: Path
    label: Path | None = None
    fov: Path | None = None
    second_observer: Path | None = None
    av: Path | None = None


@dataclass
class Scan:
    """What ``scan(subset)`` found: the complete entries, file-pairing problems, and notes
    (informative lines for the data checker, e.g. images that carry no label by design)."""

    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _index(folder: Path, problems: list[str] | None = None) -> dict[str, Path]:
    """Image files of ``folder`` keyed by stem (``im0001.ah.ppm.gz`` -> ``im0001.ah``).

    Two files with one stem (``a.ppm`` and ``a.ppm.gz``) are a problem: which one is meant?
    """
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        stem, suffix = split_suffix(path)
        if not suffix or not path.is_file():
            continue
        if stem in found:
            msg = f"two files for {stem!r} in {str(folder)!r}: {found[stem].name}, {path.name}"
            if problems is None:
                raise DatasetError(msg + "; keep one")
            problems.append(msg + "; keep one")
            continue
        found[stem] = path
    return found


def _listing(root: Path, limit: int = 12) -> str:
    """The first names under ``root`` (two levels), to show what a wrong root holds."""
    names: list[str] = []
    try:
        for child in sorted(root.iterdir()):
            names.append(child.name + ("/" if child.is_dir() else ""))
            if child.is_dir():
                for grandchild in sorted(child.iterdir())[:4]:
                    names.append(
                        f"{child.name}/{grandchild.name}" + ("/" if grandchild.is_dir() else "")
                    )
            if len(names) >= limit:
                break
    except OSError as e:
        return f"(cannot list: {e})"
    if not names:
        return "(empty folder)"
    shown = names[:limit]
    return ", ".join(shown) + (", ..." if len(names) > limit else "")


_FOV_SOURCE = {"file": "published", "derive": "derived", "none": "none"}


class FileDataset(RetinaDataset):
    """A reader of one published layout: :meth:`scan` pairs files, :meth:`read` decodes one.

    Subclasses set :attr:`layout` (the expected tree, shown in errors) and implement
    :meth:`subsets`, :meth:`scan` and :meth:`read`.
    """

    #: The expected file tree, printed when a root does not match it.
    layout: ClassVar[str] = ""

    @abstractmethod
    def scan(self, subset: str) -> Scan:
        """Find the files of ``subset`` and the problems of the layout, reading no image."""

    @abstractmethod
    def read(self, entry: Entry) -> Sample:
        """Read one scanned entry into a :class:`Sample`."""

    def load(self, subset: str) -> list[Sample]:
        self._check_subset(subset)
        scan = self.scan(subset)
        if scan.problems:
            shown = "\n  ".join(scan.problems[:10])
            more = f"\n  ... and {len(scan.problems) - 10} more" if len(scan.problems) > 10 else ""
            raise DatasetError(
                f"{self.name} ({subset}): {len(scan.problems)} problem(s) under "
                f"{str(self.root)!r}:\n  {shown}{more}\nRun `retina data check` to list every "
                "problem of the dataset"
            )
        return [self.read(entry) for entry in scan.entries]

    # -- helpers ------------------------------------------------------------------------------

    def _layout_error(self, root: Path, missing: str) -> DatasetError:
        hint = ""
        first = missing.split("/")[0]
        for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            if (child / first).exists():
                hint = f" The folder {str(child)!r} has it: point `root` there."
                break
        return DatasetError(
            f"{self.name}: {str(root)!r} does not match the published layout: {missing!r} not "
            f"found.{hint}\nExpected:\n{self.layout}\nFound: {_listing(root)}"
        )

    def _require_dir(self, root: Path, relative: str) -> Path:
        folder = root / relative
        if not folder.is_dir():
            raise self._layout_error(root, relative)
        return folder

    @staticmethod
    def _missing(problems: list[str], entry_image: Path, what: str, expected: Path) -> None:
        problems.append(f"{entry_image.name}: no {what} (expected {str(expected)!r})")

    @staticmethod
    def _orphans(problems: list[str], what: str, paths: list[Path]) -> None:
        for path in paths:
            problems.append(f"{what} {str(path)!r} has no image")

    def _check_size(self, image_path: Path, shape: tuple[int, int], **arrays) -> None:
        for what, (array, path) in arrays.items():
            if array is not None and tuple(array.shape[:2]) != shape:
                raise DatasetError(
                    f"{self.name}: {what} {str(path)!r} is {array.shape[0]}x{array.shape[1]} "
                    f"(HxW) but its image {str(image_path)!r} is {shape[0]}x{shape[1]}; a label "
                    "or mask must have its image's size (wrong file, or a resized copy?)"
                )

    def _binary_sample(
        self,
        entry: Entry,
        fov_from: Literal["file", "derive", "none"],
        fov_source: str | None = None,
    ) -> Sample:
        """Read image + binary label (+ FOV mask file, + second observer) of ``entry``."""
        image, bits = read_image_bits(entry.image)
        shape = (image.shape[0], image.shape[1])
        label = read_mask(entry.label) if entry.label is not None else None
        second = read_mask(entry.second_observer) if entry.second_observer else None
        fov_file = read_mask(entry.fov) if fov_from == "file" and entry.fov else None
        self._check_size(
            entry.image,
            shape,
            label=(label, entry.label),
            second_observer=(second, entry.second_observer),
            fov_mask=(fov_file, entry.fov),
        )
        if fov_file is not None:
            fov = fov_file.astype(bool)
        elif fov_from == "derive":
            fov = derive_fov(image)
        else:
            fov = np.ones(shape, dtype=bool)
        meta = self._meta(entry, fov_source or _FOV_SOURCE[fov_from])
        meta["bit_depth"] = bits
        if label is None:
            label = np.zeros(shape, dtype=np.uint8)
            meta["unlabelled"] = True
        return Sample(
            name=entry.name,
            image=image,
            label=label,
            fov=fov,
            second_observer=second,
            pixel_size_um=self.pixel_size_um,
            meta=meta,
        )

    def _meta(self, entry: Entry, fov_source: str) -> dict:
        return {
            "dataset": self.name,
            "subset": entry.subset,
            "image": str(entry.image),
            "label": str(entry.label) if entry.label else None,
            "fov": str(entry.fov) if entry.fov else None,
            "second_observer": str(entry.second_observer) if entry.second_observer else None,
            "av": str(entry.av) if entry.av else None,
            "fov_source": fov_source,
        }


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


# --------------------------------------------------------------------------------------------
# RITE


AVClass = Literal["artery", "vein", "background"]
_AV_INDEX = {"artery": ARTERY, "vein": VEIN, "background": BACKGROUND}


def rite_av_classes(
    rgb: np.ndarray, crossing: AVClass = "artery", uncertain: AVClass = "background"
) -> np.ndarray:
    """RITE's colour-coded A/V map -> ``(H, W)`` uint8 0 background / 1 vein / 2 artery.

    Each channel is cut at 128, so that the few anti-aliased pixels of the published files
    (e.g. (221, 0, 34), (19, 0, 236)) take their dominant colour: black -> background, red ->
    artery, blue -> vein, white -> ``uncertain``; green (a crossing) and any other mix of two
    primaries (magenta (255, 0, 255): 40 pixels in the 40 files; cyan: 3) -> ``crossing``.
    """
    if crossing not in _AV_INDEX or uncertain not in _AV_INDEX:
        raise DatasetError(
            f"RITE: crossing / uncertain must be one of {sorted(_AV_INDEX)}, got "
            f"{crossing!r} / {uncertain!r}"
        )
    r, g, b = (rgb[..., i] >= 128 for i in range(3))
    out = np.full(rgb.shape[:2], _AV_INDEX[crossing], dtype=np.uint8)
    out[~r & ~g & ~b] = BACKGROUND
    out[r & ~g & ~b] = ARTERY
    out[~r & ~g & b] = VEIN
    out[r & g & b] = _AV_INDEX[uncertain]
    return out


class RITE(FileDataset):
    """RITE (Hu et al., MICCAI 2013): artery/vein labels of the 40 DRIVE images, same split
    (000 sec. II-A, Table V).

    Layout (as published)::

        root/AV_groundTruth/{training,test}/images/21_training.tif ...   the DRIVE images
        root/AV_groundTruth/{training,test}/av/21_training.png ...       RGB A/V map
        root/AV_groundTruth/{training,test}/vessel/21_training.png ...   binary vessel map

    (``root`` may also be the ``AV_groundTruth`` folder itself.) Colours of ``av/``: red
    artery, blue vein, green crossing, white uncertain, black background. They map to the
    class indices of ``types.py`` (0 background, 1 vein, 2 artery) by
    :func:`rite_av_classes`, with this default choice:

    * ``crossing="artery"``: at most retinal artery/vein crossings the artery lies in front
      of the vein, so the visible vessel at a crossing is the artery;
    * ``uncertain="background"``: the annotator could not tell the class; the 0/1/2 target
      has no "ignore" index, and leaving these pixels (3.3 % of RITE's vessel pixels) out of the
      A/V classes is the closest to ignoring them. The binary ``vessel/`` map keeps them (and
      crossings) as vessel.

    ``Sample.av`` always holds the A/V map; ``Sample.label`` is the ``vessel/`` map
    (``target="vessel"``) or the A/V map (``target="av"``). RITE has no FOV masks of its own:
    with ``drive_root`` they are DRIVE's (``drive_root/{subset}/mask/21_training_mask.gif``),
    otherwise derived (003 sec. 4.1).

    Args:
        root: the folder holding ``AV_groundTruth/`` (or that folder).
        target: ``"vessel"`` or ``"av"``: what ``Sample.label`` holds.
        crossing / uncertain: class of green / white pixels: ``"artery"``, ``"vein"`` or
            ``"background"``.
        drive_root: a DRIVE root (see :class:`DRIVE`) whose FOV masks to use.
    """

    has_av = True
    layout: ClassVar[str] = (
        "  root/AV_groundTruth/{training,test}/images/21_training.tif\n"
        "  root/AV_groundTruth/{training,test}/av/21_training.png\n"
        "  root/AV_groundTruth/{training,test}/vessel/21_training.png"
    )

    def __init__(
        self,
        root: str | Path | None = None,
        target: Literal["vessel", "av"] = "vessel",
        crossing: AVClass = "artery",
        uncertain: AVClass = "background",
        drive_root: str | Path | None = None,
    ) -> None:
        super().__init__(root)
        if target not in ("vessel", "av"):
            raise DatasetError(f"RITE: target must be 'vessel' or 'av', got {target!r}")
        rite_av_classes(np.zeros((1, 1, 3), np.uint8), crossing, uncertain)  # validates
        self.target = target
        self.crossing = crossing
        self.uncertain = uncertain
        self.drive_root = Path(drive_root).expanduser() if drive_root is not None else None

    def subsets(self) -> tuple[str, ...]:
        return ("training", "test")

    def _base(self) -> Path:
        root = self._require_root()
        if (root / "AV_groundTruth").is_dir():
            return root / "AV_groundTruth"
        if (root / "training").is_dir() or (root / "test").is_dir():
            return root
        raise self._layout_error(root, "AV_groundTruth/training/av")

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        base = self._base()
        scan = Scan()
        images = _index(self._require_dir(base, f"{subset}/images"), scan.problems)
        avs = _index(self._require_dir(base, f"{subset}/av"), scan.problems)
        vessels = _index(self._require_dir(base, f"{subset}/vessel"), scan.problems)
        masks: dict[str, Path] = {}
        if self.drive_root is not None:
            mask_dir = self.drive_root / subset / "mask"
            if not mask_dir.is_dir():
                raise DatasetError(
                    f"RITE: drive_root {str(self.drive_root)!r} has no {subset}/mask folder; "
                    "point drive_root at the DRIVE folder holding training/ and test/ (or leave "
                    "it unset to derive the FOV)"
                )
            masks = _index(mask_dir, scan.problems)
        for stem, image in images.items():
            av, vessel = avs.get(stem), vessels.get(stem)
            mask = masks.get(f"{stem}_mask")
            ok = True
            for what, path, folder in (("A/V map", av, "av"), ("vessel map", vessel, "vessel")):
                if path is None:
                    self._missing(
                        scan.problems, image, what, base / subset / folder / f"{stem}.png"
                    )
                    ok = False
            if self.drive_root is not None and mask is None:
                expected = self.drive_root / subset / "mask" / f"{stem}_mask.gif"
                self._missing(scan.problems, image, "DRIVE FOV mask", expected)
                ok = False
            if ok:
                scan.entries.append(Entry(stem, subset, image, vessel, mask, None, av))
        self._orphans(scan.problems, "A/V map", [p for s, p in avs.items() if s not in images])
        return scan

    def read(self, entry: Entry) -> Sample:
        if entry.av is None:
            raise DatasetError(f"RITE: entry {entry.name!r} has no A/V map")
        sample = self._binary_sample(
            entry,
            fov_from="file" if entry.fov is not None else "derive",
            fov_source="drive" if entry.fov is not None else "derived",
        )
        rgb = read_rgb(entry.av)
        self._check_size(entry.image, sample.shape, av_map=(rgb, entry.av))
        av = rite_av_classes(rgb, self.crossing, self.uncertain)
        sample.av = av
        if self.target == "av":
            sample.label = av
        sample.meta.update(target=self.target, crossing=self.crossing, uncertain=self.uncertain)
        return sample


# --------------------------------------------------------------------------------------------
# RAVIR


class RAVIR(FileDataset):
    """RAVIR (Hatamizadeh et al., 000 sec. III-A): infrared SLO images 768x768, 12.5 microns per
    pixel, artery/vein labels; 23 labelled training images, 19 test images whose labels are kept
    by the challenge server.

    Layout (as distributed for the challenge)::

        root/train/training_images/IR_Case_011.png ...   8-bit grey IR images
        root/train/training_masks/IR_Case_011.png ...    0 background, 128 artery, 255 vein
        root/test/IR_Case_028.png ...                    test images, no labels

    Grey levels map to ``types.py``'s classes: 0 -> 0 background, 255 -> 1 vein, 128 -> 2
    artery (levels within +-24 of these, anything else is an error). Images are ``(H, W, 1)``;
    the SLO frame has no dark surround, so the FOV is the whole image (``fov_source="none"``).

    The ``test`` subset has no labels. ``load("test")`` therefore raises unless
    ``allow_unlabelled=True``, which returns the test images with an all-zero label and
    ``meta["unlabelled"] = True`` (for prediction / export only: never for metrics).

    Args:
        root: the folder holding ``train/`` and ``test/``.
        target: what ``Sample.label`` holds: ``"vessel"`` (default; artery or vein -> 1, the
            binary label ``types.Sample`` promises unless the A/V target is asked for) or
            ``"av"`` (the 0/1/2 map). ``Sample.av`` always holds the A/V map, which is what
            the datamodule's ``target: av`` reads.
        allow_unlabelled: allow loading the unlabelled ``test`` subset.
    """

    pixel_size_um = 12.5
    LEVELS: ClassVar[dict[int, int]] = {0: BACKGROUND, 128: ARTERY, 255: VEIN}
    has_av = True
    layout: ClassVar[str] = (
        "  root/train/training_images/IR_Case_011.png\n"
        "  root/train/training_masks/IR_Case_011.png\n"
        "  root/test/IR_Case_028.png"
    )

    def __init__(
        self,
        root: str | Path | None = None,
        target: Literal["vessel", "av"] = "vessel",
        allow_unlabelled: bool = False,
    ) -> None:
        super().__init__(root)
        if target not in ("av", "vessel"):
            raise DatasetError(f"RAVIR: target must be 'av' or 'vessel', got {target!r}")
        self.target = target
        self.allow_unlabelled = allow_unlabelled

    def subsets(self) -> tuple[str, ...]:
        return ("train", "test")

    def load(self, subset: str) -> list[Sample]:
        if subset == "test" and not self.allow_unlabelled:
            raise DatasetError(
                "RAVIR: the 'test' images have no public labels (they are scored by the RAVIR "
                "challenge server), so they cannot be a test set here. Hold out training images "
                "instead (e.g. split: KFoldSplit with subset: train), or set "
                "allow_unlabelled: true to load them for prediction only"
            )
        return super().load(subset)

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        root = self._require_root()
        scan = Scan()
        if subset == "test":
            images = _index(self._require_dir(root, "test"), scan.problems)
            scan.entries = [Entry(s, subset, p) for s, p in images.items()]
            scan.notes.append("test labels are not public: samples are unlabelled")
            return scan
        images = _index(self._require_dir(root, "train/training_images"), scan.problems)
        masks = _index(self._require_dir(root, "train/training_masks"), scan.problems)
        for stem, image in images.items():
            mask = masks.get(stem)
            if mask is None:
                expected = root / "train" / "training_masks" / f"{stem}.png"
                self._missing(scan.problems, image, "label", expected)
                continue
            scan.entries.append(Entry(stem, subset, image, None, None, None, mask))
        self._orphans(scan.problems, "label", [p for s, p in masks.items() if s not in images])
        return scan

    def read(self, entry: Entry) -> Sample:
        image, bits = read_image_bits(entry.image)
        shape = (image.shape[0], image.shape[1])
        meta = self._meta(entry, "none")
        meta.update(target=self.target, bit_depth=bits)
        if entry.av is None:
            av, label = None, np.zeros(shape, dtype=np.uint8)
            meta["unlabelled"] = True
        else:
            av = read_label_levels(entry.av, self.LEVELS)
            self._check_size(entry.image, shape, label=(av, entry.av))
            label = av if self.target == "av" else (av > 0).astype(np.uint8)
            meta["label"] = str(entry.av)
        return Sample(
            name=entry.name,
            image=image,
            label=label,
            fov=np.ones(shape, dtype=bool),
            av=av,
            pixel_size_um=self.pixel_size_um,
            meta=meta,
        )


# --------------------------------------------------------------------------------------------
# IDRiD optic disc


class IDRiDOpticDisc(FileDataset):
    """IDRiD (Porwal et al. 2018), segmentation part, optic disc target (patch2image, 004
    sec. 6.1): colour images 2848x4288 (HxW), 54 training and 27 test images, binary optic
    disc masks. No FOV masks: derived (003 sec. 4.1).

    Layout (as unpacked; ``root`` may hold ``A. Segmentation`` or be it)::

        root/A. Segmentation/1. Original Images/a. Training Set/IDRiD_01.jpg ...
        root/A. Segmentation/1. Original Images/b. Testing Set/IDRiD_55.jpg ...
        root/A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/5. Optic Disc/
            IDRiD_01_OD.tif ...
        root/A. Segmentation/2. All Segmentation Groundtruths/b. Testing Set/5. Optic Disc/
            IDRiD_55_OD.tif ...

    Args:
        root: see above.
    """

    FOLDERS: ClassVar[dict[str, str]] = {"training": "a. Training Set", "test": "b. Testing Set"}
    layout: ClassVar[str] = (
        "  root/A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_01.jpg\n"
        "  root/A. Segmentation/2. All Segmentation Groundtruths/{a. Training Set,b. Testing Set}"
        "/5. Optic Disc/IDRiD_01_OD.tif"
    )

    def subsets(self) -> tuple[str, ...]:
        return ("training", "test")

    def _base(self) -> Path:
        root = self._require_root()
        if (root / "A. Segmentation").is_dir():
            return root / "A. Segmentation"
        if (root / "1. Original Images").is_dir():
            return root
        raise self._layout_error(root, "A. Segmentation/1. Original Images")

    def scan(self, subset: str) -> Scan:
        self._check_subset(subset)
        base = self._base()
        scan = Scan()
        folder = self.FOLDERS[subset]
        images = _index(self._require_dir(base, f"1. Original Images/{folder}"), scan.problems)
        gt = f"2. All Segmentation Groundtruths/{folder}/5. Optic Disc"
        labels = _index(self._require_dir(base, gt), scan.problems)
        for stem, image in images.items():
            label = labels.get(f"{stem}_OD")
            if label is None:
                self._missing(
                    scan.problems, image, "optic disc label", base / gt / f"{stem}_OD.tif"
                )
                continue
            scan.entries.append(Entry(stem, subset, image, label))
        self._orphans(
            scan.problems,
            "label",
            [p for s, p in labels.items() if s.removesuffix("_OD") not in images],
        )
        return scan

    def read(self, entry: Entry) -> Sample:
        return self._binary_sample(entry, fov_from="derive")


# --------------------------------------------------------------------------------------------
# a user's own folder


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


def _import_class(path: str) -> type:
    """``retina_lightning.data.STARE`` (or a bare class name of :data:`DATASETS`) -> class."""
    import importlib

    by_name = {cls.__name__: cls for cls in DATASETS.values()}
    if "." not in path:
        if path in by_name:
            return by_name[path]
        raise DatasetError(f"unknown dataset class {path!r}; known: {sorted(by_name)}")
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise DatasetError(f"cannot import the dataset class {path!r}: {e}") from e


def dataset_node(config: str | Path) -> tuple[type, dict]:
    """The dataset (class, init_args) of a config file: ``data.init_args.dataset`` of a
    ``retina`` config, ``init_args.dataset`` of a data config, or a ``class_path`` /
    ``init_args`` dataset node on its own."""
    import yaml

    path = Path(config)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"--config {str(path)!r}: cannot read it: {e}") from e
    node = cfg if isinstance(cfg, dict) else {}
    if isinstance(node.get("data"), dict):
        node = node["data"]
    if isinstance(node.get("init_args"), dict) and isinstance(
        node["init_args"].get("dataset"), dict
    ):
        node = node["init_args"]["dataset"]
    elif isinstance(node.get("dataset"), dict):
        node = node["dataset"]
    if not isinstance(node.get("class_path"), str):
        raise DatasetError(
            f"--config {str(path)!r} holds no dataset: expected data.init_args.dataset (a "
            "retina config) or a class_path / init_args node, e.g. class_path: "
            "retina_lightning.data.STARE, init_args: {root: data/STARE, labels: vk}"
        )
    return _import_class(node["class_path"]), dict(node.get("init_args") or {})


def build_dataset(
    name: str | None = None,
    root: str | Path | None = None,
    config: str | Path | None = None,
    options: dict | None = None,
) -> RetinaDataset:
    """The dataset of ``retina data check|widths``: a registered ``name`` or the dataset node
    of a ``config`` file, with ``options`` (init_args, e.g. STARE's ``labels: vk``; issue 15
    item 16) and ``root`` on top."""
    import inspect

    if config is not None:
        cls, kwargs = dataset_node(config)
    elif name is not None:
        cls, kwargs = DATASETS[name], {}
    else:
        raise DatasetError("name a dataset (--dataset) or a config file (--config)")
    kwargs.update(options or {})
    if root is not None:
        kwargs["root"] = root
    signature = inspect.signature(cls.__init__).parameters
    params = [name for name in signature if name != "self"]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not open_ended:
        raise DatasetError(
            f"{cls.__name__} has no option {unknown[0]!r}; its options: {', '.join(params)}"
        )
    try:
        return cls(**kwargs)
    except DatasetError:
        raise
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{cls.__name__}({kwargs}): {e}") from e


#: Dataset readers by the lower-case name used in configs and ``retina data check``.
DATASETS: dict[str, type[RetinaDataset]] = {
    "drive": DRIVE,
    "stare": STARE,
    "chase_db1": CHASEDB1,
    "hrf": HRF,
    "rite": RITE,
    "ravir": RAVIR,
    "idrid": IDRiDOpticDisc,
    "folder": FolderDataset,
}
