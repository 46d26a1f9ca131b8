"""The machinery every file reader shares: :class:`Entry` and :class:`Scan` (what
``scan(subset)`` finds), the index of a folder's image files by stem, and
:class:`FileDataset` (``load`` = ``scan`` + ``read``; layout errors that show the expected
tree, size checks, the binary image + label + FOV sample)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from retina_lightning.data.base import DatasetError, RetinaDataset
from retina_lightning.data.fov import derive_fov
from retina_lightning.data.io import read_image_bits, read_mask, split_suffix
from retina_lightning.types import Sample


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
