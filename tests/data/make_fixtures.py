"""Tiny fixture folders in the exact published layouts of the datasets in
``retina_lightning/data/datasets/`` (40x48 px images, a few per subset).

Every image is a synthetic fundus: a bright disc (the FOV) on a near-black surround, crossed
by a few dark lines (the vessels). :func:`fundus` gives the arrays; the ``make_*`` functions
write them in each dataset's formats (DRIVE tif/gif with a palette 2nd_manual, STARE
``.ppm.gz`` archives and a flat folder, CHASE_DB1 jpg/png without masks, HRF, RITE colour A/V
maps, RAVIR grey levels, IDRiD, a user folder) and return the root to pass to the reader.

Run ``python tests/data/make_fixtures.py DEST`` to write them all into ``DEST``.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 40, 48
#: RITE's colours.
RED, BLUE, GREEN, WHITE, MAGENTA = (
    (255, 0, 0),
    (0, 0, 255),
    (0, 255, 0),
    (255, 255, 255),
    (255, 0, 255),
)


def disc(h: int = H, w: int = W, radius: float = 17.0) -> np.ndarray:
    """The FOV of every fixture image: a centred disc, ``(h, w)`` bool."""
    yy, xx = np.mgrid[:h, :w]
    return (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= radius**2


def fundus(index: int, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic fundus number ``index``: ``(image (h, w, 3) uint8, label (h, w) uint8 0/1,
    artery (h, w) bool)``. Two vertical vessels (the left one an artery) and one horizontal
    vein, placed by ``index``, clipped to the FOV disc."""
    fov = disc(h, w)
    rng = np.random.default_rng(index)
    image = np.zeros((h, w, 3), np.uint8)
    image[...] = rng.integers(0, 9, (h, w, 1), dtype=np.uint8)  # dark, noisy surround
    yy, xx = np.mgrid[:h, :w]
    inside = np.stack([180 + xx // 4, 90 + yy // 4, 40 + 0 * xx], -1).astype(np.uint8)
    image[fov] = inside[fov]
    c1, c2, r = 14 + index % 5, 30 + index % 4, 12 + index % 6
    artery = (np.abs(xx - c1) <= 1) & fov
    vein = ((np.abs(xx - c2) <= 1) | (np.abs(yy - r) <= 1)) & fov
    label = artery | vein
    image[label] = (110, 40, 20)
    return image, label.astype(np.uint8), artery & ~vein


def _save(array: np.ndarray, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if path.name.endswith(".gz"):
        buf = io.BytesIO()
        image.save(buf, fmt or "PPM", **kw)
        path.write_bytes(gzip.compress(buf.getvalue()))
    else:
        image.save(path, fmt, **kw)
    return path


def _binary255(label: np.ndarray) -> np.ndarray:
    return (label > 0).astype(np.uint8) * 255


def second_observer(index: int) -> np.ndarray:
    """The fixture's second observer: the first one with one vessel pixel column dropped."""
    label = fundus(index)[1].copy()
    label[:, W // 2] = 0
    return label


def _palette_gif(label01: np.ndarray, path: Path) -> Path:
    """Save a 0/1 map as a palette GIF with indices 0/1 (how DRIVE's 2nd_manual is stored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label01.astype(np.uint8), mode="P")
    image.putpalette([4, 2, 4, 252, 254, 252] + [0] * (256 * 3 - 6))
    image.save(path)
    return path


DRIVE_TRAINING = (21, 22, 23)
DRIVE_TEST = (1, 2, 3)


def make_drive(dest: Path) -> Path:
    """``DRIVE/{training,test}/{images,1st_manual,mask}`` + ``test/2nd_manual``; 3 + 3 images."""
    root = Path(dest) / "DRIVE"
    for subset, numbers in (("training", DRIVE_TRAINING), ("test", DRIVE_TEST)):
        for n in numbers:
            image, label, _ = fundus(n)
            stem = f"{n:02d}_{subset}"
            _save(image, root / subset / "images" / f"{stem}.tif")
            _save(_binary255(label), root / subset / "1st_manual" / f"{n:02d}_manual1.gif")
            _save(_binary255(disc()), root / subset / "mask" / f"{stem}_mask.gif")
            if subset == "test":
                _palette_gif(
                    second_observer(n), root / subset / "2nd_manual" / f"{n:02d}_manual2.gif"
                )
    return root


STARE_NAMES = ("im0001", "im0002", "im0003", "im0044")


def make_stare_archive(dest: Path) -> Path:
    """STARE as its three archives unpack, all files ``.ppm.gz``; ``stare-images`` also holds
    one unlabelled image (``im0010``), as the full STARE archive does. ``ah`` labels are grey
    (P5 data), ``vk`` labels colour (P6)."""
    root = Path(dest) / "STARE"
    for i, name in enumerate(STARE_NAMES):
        image, label, _ = fundus(100 + i)
        _save(image, root / "stare-images" / f"{name}.ppm.gz")
        _save(_binary255(label), root / "labels-ah" / f"{name}.ah.ppm.gz")
        vk = np.repeat(_binary255(second_observer(100 + i))[..., None], 3, -1)
        _save(vk, root / "labels-vk" / f"{name}.vk.ppm.gz")
    _save(fundus(199)[0], root / "stare-images" / "im0010.ppm.gz")
    return root


def make_stare_flat(dest: Path) -> Path:
    """STARE in one flat folder, plain ``.ppm`` except one ``.gz`` image (mixed is allowed)."""
    root = Path(dest) / "STARE_flat"
    for i, name in enumerate(STARE_NAMES):
        image, label, _ = fundus(100 + i)
        suffix = ".ppm.gz" if i == 0 else ".ppm"
        _save(image, root / f"{name}{suffix}")
        _save(_binary255(label), root / f"{name}.ah.ppm")
        _save(_binary255(second_observer(100 + i)), root / f"{name}.vk.ppm")
    return root


CHASE_NAMES = ("Image_01L", "Image_01R", "Image_02L", "Image_02R")


def make_chase(dest: Path) -> Path:
    """CHASE_DB1: one flat folder of ``Image_01L.jpg`` + ``_1stHO.png`` + ``_2ndHO.png``."""
    root = Path(dest) / "CHASEDB1"
    for i, name in enumerate(CHASE_NAMES):
        image, label, _ = fundus(200 + i)
        _save(image, root / f"{name}.jpg", quality=95)
        _save(_binary255(label), root / f"{name}_1stHO.png")
        _save(_binary255(second_observer(200 + i)), root / f"{name}_2ndHO.png")
    return root


HRF_NAMES = ("01_dr", "01_g", "01_h")


def make_hrf(dest: Path) -> Path:
    """HRF: ``images/01_dr.JPG`` (upper- and lower-case suffixes), ``manual1/01_dr.tif``,
    ``mask/01_dr_mask.tif`` (RGB masks, as HRF ships them)."""
    root = Path(dest) / "HRF"
    for i, name in enumerate(HRF_NAMES):
        image, label, _ = fundus(300 + i)
        _save(image, root / "images" / f"{name}.{'JPG' if i == 0 else 'jpg'}", "JPEG", quality=95)
        _save(_binary255(label), root / "manual1" / f"{name}.tif")
        mask = np.repeat(_binary255(disc())[..., None], 3, -1)
        _save(mask, root / "mask" / f"{name}_mask.tif")
    return root


def rite_av(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RITE fixture ``index``: ``(av RGB, vessel 0/1, expected classes with the defaults
    crossing -> artery (2), uncertain -> background (0))``. Arteries red, veins blue, the
    crossings of the left artery with the horizontal vein green, one white (uncertain) vein
    pixel, one magenta pixel and one anti-aliased red-ish pixel (221, 0, 34)."""
    _, label, artery = fundus(400 + index)
    vessel = label > 0
    rgb = np.zeros((H, W, 3), np.uint8)
    expected = np.zeros((H, W), np.uint8)
    rgb[vessel & ~artery], expected[vessel & ~artery] = BLUE, 1
    rgb[artery], expected[artery] = RED, 2
    # the vertical artery crosses the horizontal vein: fundus() gave those pixels to the vein
    r = 12 + (400 + index) % 6
    c1 = 14 + (400 + index) % 5
    rgb[r - 1 : r + 2, c1 - 1 : c1 + 2] = GREEN
    expected[r - 1 : r + 2, c1 - 1 : c1 + 2] = 2
    vein_pixels = np.argwhere(vessel & (rgb == BLUE).all(-1))
    (y0, x0), (y1, x1), (y2, x2) = vein_pixels[0], vein_pixels[1], vein_pixels[2]
    rgb[y0, x0], expected[y0, x0] = WHITE, 0
    rgb[y1, x1], expected[y1, x1] = MAGENTA, 2
    rgb[y2, x2], expected[y2, x2] = (221, 0, 34), 2
    return rgb, vessel.astype(np.uint8), expected


def make_rite(dest: Path) -> Path:
    """``RITE/AV_groundTruth/{training,test}/{images,av,vessel}``; 2 + 2 images."""
    root = Path(dest) / "RITE"
    k = 0
    for subset, numbers in (("training", (21, 22)), ("test", (1, 2))):
        for n in numbers:
            stem = f"{n:02d}_{subset}"
            base = root / "AV_groundTruth" / subset
            rgb, vessel, _ = rite_av(k)
            _save(fundus(400 + k)[0], base / "images" / f"{stem}.tif")
            _save(rgb, base / "av" / f"{stem}.png")
            _save(_binary255(vessel), base / "vessel" / f"{stem}.png")
            k += 1
    return root


def ravir_mask(index: int) -> tuple[np.ndarray, np.ndarray]:
    """RAVIR fixture ``index``: ``(grey mask 0/128/255, expected classes 0/1 vein/2 artery)``."""
    _, label, artery = fundus(500 + index)
    grey = np.zeros((H, W), np.uint8)
    grey[label > 0] = 255
    grey[artery] = 128
    expected = np.zeros((H, W), np.uint8)
    expected[label > 0] = 1
    expected[artery] = 2
    return grey, expected


def make_ravir(dest: Path) -> Path:
    """``RAVIR/train/{training_images,training_masks}`` (3 images), ``RAVIR/test`` (2)."""
    root = Path(dest) / "RAVIR"
    for i, case in enumerate((11, 17, 19)):
        grey_image = fundus(500 + i)[0][..., 1]
        _save(grey_image, root / "train" / "training_images" / f"IR_Case_{case:03d}.png")
        _save(ravir_mask(i)[0], root / "train" / "training_masks" / f"IR_Case_{case:03d}.png")
    for i, case in enumerate((28, 29)):
        _save(fundus(550 + i)[0][..., 1], root / "test" / f"IR_Case_{case:03d}.png")
    return root


def optic_disc(index: int) -> np.ndarray:
    """IDRiD fixture optic disc: a radius-5 disc left or right of the centre, ``(H, W)`` 0/1."""
    yy, xx = np.mgrid[:H, :W]
    cx = 16 if index % 2 else 32
    return ((yy - 20) ** 2 + (xx - cx) ** 2 <= 25).astype(np.uint8)


def make_idrid(dest: Path) -> Path:
    """IDRiD's segmentation part: 2 training, 1 test image; optic disc labels stored red on
    black (RGB tif), as IDRiD publishes them."""
    root = Path(dest) / "IDRiD"
    seg = root / "A. Segmentation"
    for folder, numbers in (("a. Training Set", (1, 2)), ("b. Testing Set", (55,))):
        for n in numbers:
            name = f"IDRiD_{n:02d}"
            _save(
                fundus(600 + n)[0], seg / "1. Original Images" / folder / f"{name}.jpg", quality=95
            )
            od = np.zeros((H, W, 3), np.uint8)
            od[optic_disc(n) > 0] = RED
            gt = seg / "2. All Segmentation Groundtruths" / folder / "5. Optic Disc"
            _save(od, gt / f"{name}_OD.tif")
    return root


def make_folder(dest: Path, subsets: bool = False) -> Path:
    """A user folder: ``images/{a,b,c}.png``, labels ``a_label.png``, ``b.png``, ``c-gt.png``
    (the three matching forms), ``masks/`` for all; with ``subsets``: ``train/`` (a, b) and
    ``test/`` (c) each with that layout, and no masks (FOV derived)."""
    root = Path(dest) / ("Folder_subsets" if subsets else "Folder")
    names = {"a": "a_label", "b": "b", "c": "c-gt"}
    for i, (stem, label_stem) in enumerate(names.items()):
        base = root / ("train" if stem != "c" else "test") if subsets else root
        image, label, _ = fundus(700 + i)
        _save(image, base / "images" / f"{stem}.png")
        _save(_binary255(label), base / "labels" / f"{label_stem}.png")
        if not subsets:
            _save(_binary255(disc()), base / "masks" / f"{stem}_mask.png")
    return root


MAKERS = {
    "drive": make_drive,
    "stare": make_stare_archive,
    "stare_flat": make_stare_flat,
    "chase_db1": make_chase,
    "hrf": make_hrf,
    "rite": make_rite,
    "ravir": make_ravir,
    "idrid": make_idrid,
    "folder": make_folder,
    "folder_subsets": lambda dest: make_folder(dest, subsets=True),
}


def make_all(dest: Path) -> dict[str, Path]:
    """Write every fixture into ``dest``; returns ``{name: root}``."""
    dest = Path(dest)
    return {name: make(dest) for name, make in MAKERS.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/data/make_fixtures.py DEST")
    for name, root in make_all(Path(sys.argv[1])).items():
        print(f"{name:15s} {root}")
