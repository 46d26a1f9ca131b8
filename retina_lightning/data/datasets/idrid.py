"""Reader of IDRiD's segmentation part with the optic disc as target (patch2image, 004
sec. 6.1)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from retina_lightning.data.datasets.files import Entry, FileDataset, Scan, _index
from retina_lightning.types import Sample


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
