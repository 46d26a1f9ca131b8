"""Readers of the artery/vein datasets: RITE (colour-coded A/V maps of the DRIVE images,
:func:`rite_av_classes`) and RAVIR (grey-level A/V maps of infrared SLO images)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from retina_lightning.data.base import DatasetError
from retina_lightning.data.datasets.files import Entry, FileDataset, Scan, _index
from retina_lightning.data.io import read_image_bits, read_label_levels, read_rgb
from retina_lightning.types import ARTERY, BACKGROUND, VEIN, Sample

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
