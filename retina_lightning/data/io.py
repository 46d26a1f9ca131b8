"""Reading the image and label files of the public fundus datasets.

Every public dataset uses its own formats: DRIVE ``.tif`` images with ``.gif`` labels (some of
them palette GIFs), STARE gzip-compressed ``.ppm.gz``, CHASE_DB1 ``.jpg`` with ``.png`` labels,
HRF ``.JPG``/``.tif``, RAVIR 8-bit grey ``.png``. The functions here read all of them with PIL
(and :mod:`gzip`) and return plain numpy arrays in one convention:

* :func:`read_image` -> ``(H, W, 3)`` (colour) or ``(H, W, 1)`` (grey / infrared) ``uint8``
  (:func:`read_image_bits` also returns the bit depth the data was scaled from);
* :func:`read_mask` -> ``(H, W)`` ``uint8`` 0/1, binarised robustly, rejecting maps that are
  not plausibly binary;
* :func:`read_label_levels` -> ``(H, W)`` ``uint8`` class map from grey levels (RAVIR's
  0/128/255);
* :func:`read_rgb` -> ``(H, W, 3)`` ``uint8`` colour-coded labels (RITE's A/V maps).

Any file that cannot be decoded (truncated download, not an image) raises
:class:`~retina_lightning.data.base.DatasetError` naming the file; nothing is skipped.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from retina_lightning.data.base import DatasetError

#: File suffixes the readers understand (each also as ``<suffix>.gz``).
IMAGE_SUFFIXES = (".tif", ".tiff", ".gif", ".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pbm", ".bmp")

#: Fraction of a label's pixels allowed in the ambiguous middle band (25 %..75 % of full
#: scale) before :func:`read_mask` refuses it as "not binary". JPEG ringing at vessel edges
#: stays far below it: the 40 DRIVE labels re-saved as JPEG at quality 50 put at most 0.09 %
#: of their pixels in the band. Grey images, probability maps and multi-level maps exceed it
#: (RAVIR's 0/128/255 masks: 3.5 % to 7.4 % at 128).
MAX_AMBIGUOUS_FRACTION = 0.01

#: Bit depths of integer image data: cameras write 10, 12 or 14 significant bits into 16-bit
#: files. See :func:`bit_depth`.
IMAGE_BIT_DEPTHS = (8, 10, 12, 14, 16)


def split_suffix(path: str | Path) -> tuple[str, str]:
    """``"im0001.ah.ppm.gz"`` -> ``("im0001.ah", ".ppm.gz")``: the stem without the image
    suffix (and ``.gz``), and that suffix in lower case. Unknown suffixes give ``(name, "")``."""
    name = Path(path).name
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        for full in (suffix + ".gz", suffix):
            if lower.endswith(full):
                return name[: -len(full)], full
    return name, ""


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_SUFFIXES` (plain or ``.gz``)."""
    return Path(path).is_file() and split_suffix(path)[1] != ""


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, UnidentifiedImageError)


def _unreadable(path: Path, e: Exception) -> DatasetError:
    return DatasetError(
        f"cannot read {str(path)!r}: {type(e).__name__}: {e}. The file is truncated, "
        "corrupt or not an image: re-download or re-extract it"
    )


def _read_bytes(path: Path) -> bytes:
    # the whole file first, so that no file handle stays open (multi-frame GIF / TIFF)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        return fh.read()


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode ``path`` (first frame of a multi-frame file)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"file not found: {str(path)!r}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = Image.open(io.BytesIO(_read_bytes(path)))
            image.seek(0)
            image.load()
        # PIL's TIFF reader only warns about a short read; a partial image is no image.
        for w in caught:
            if "truncated" in str(w.message).lower():
                raise OSError(str(w.message))
    except _DECODE_ERRORS as e:
        raise _unreadable(path, e) from e
    return image


def _tiff_bits_per_sample(image: Image.Image) -> int:
    """Bits per sample a TIFF stores (0 for other formats)."""
    tags = getattr(image, "tag_v2", None)
    value = tags.get(258) if tags is not None else None  # BitsPerSample
    if value is None:
        return 0
    return int(max(value)) if isinstance(value, tuple | list) else int(value)


def _read_wide_colour_tiff(path: Path) -> np.ndarray:
    """A colour TIFF of more than 8 bits per sample, which PIL cuts to its high byte (a
    12-bit image to 16 levels): read with tifffile (a scikit-image dependency)."""
    import tifffile

    try:
        array = tifffile.imread(io.BytesIO(_read_bytes(path)), key=0)
    except Exception as e:  # noqa: BLE001 - tifffile raises its own exception types
        raise _unreadable(path, e) from e
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar configuration: (C, H, W)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise DatasetError(f"{str(path)!r}: colour TIFF of shape {array.shape} not understood")
    return array[..., :3]


def bit_depth(array: np.ndarray) -> int:
    """The bit depth of integer image data: 8 for uint8, otherwise the smallest of
    :data:`IMAGE_BIT_DEPTHS` whose full scale ``2**bits - 1`` holds the maximum (issue 15
    item 5: a 12-bit camera image in a 16-bit TIFF has maximum <= 4095 and is 12-bit data).

    The rule reads the depth from the content: a 16-bit image darker than 2**14 everywhere
    would read as 14-bit. ``retina data check`` reports the depths per subset and flags a
    subset whose images differ, which such an image would show."""
    if array.dtype in (np.uint8, bool):
        return 8
    maximum = int(array.max()) if array.size else 0
    for bits in IMAGE_BIT_DEPTHS:
        if maximum <= 2**bits - 1:
            return bits
    raise ValueError(f"maximum {maximum} exceeds 16 bits")


def _to_uint8(array: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    """Scale an integer or float image to uint8 by its bit depth (:func:`bit_depth`):
    ``(uint8 array, bits)``; float data in [0, 1] reports its float width."""
    if array.dtype == np.uint8:
        return array, 8
    if array.dtype == bool:
        return array.astype(np.uint8) * 255, 8
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 65535:
            raise DatasetError(
                f"{str(path)!r}: integer image with values in [{array.min()}, {array.max()}]; "
                "expected 8-bit or 16-bit unsigned data"
            )
        bits = bit_depth(array)
        top = 2**bits - 1  # 4095 -> 255 for 12-bit data, 65535 -> 255 for 16-bit (rounded)
        return ((array.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8), bits
    if np.issubdtype(array.dtype, np.floating):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if lo < 0.0 or hi > 1.0:
            raise DatasetError(
                f"{str(path)!r}: floating-point image with values in [{lo:g}, {hi:g}]; expected "
                "[0, 1]: convert it to 8-bit"
            )
        return np.round(np.nan_to_num(array) * 255.0).astype(np.uint8), array.dtype.itemsize * 8
    raise DatasetError(f"{str(path)!r}: unsupported pixel type {array.dtype}")


def read_image(path: str | Path) -> np.ndarray:
    """Read a fundus image as ``(H, W, 3)`` RGB or ``(H, W, 1)`` grey ``uint8``.

    Palette images are expanded through their palette, alpha is dropped, integer data of more
    than 8 bits is scaled to 8 bits by its bit depth (``v * 255 / (2**bits - 1)``, bits from
    :func:`bit_depth`: 10, 12, 14 or 16), ``.gz`` files are decompressed first.
    """
    return read_image_bits(path)[0]


def read_image_bits(path: str | Path) -> tuple[np.ndarray, int]:
    """:func:`read_image` and the bit depth the data was scaled from (8 for 8-bit files)."""
    path = Path(path)
    image = _open(path)
    mode = image.mode
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        if mode in ("1", "LA"):
            image = image.convert("L")
        array, bits = _to_uint8(np.asarray(image), path)
        return array[..., None], bits
    if mode == "P":
        rgb = np.asarray(image.convert("RGB"))
        grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        return (rgb[..., :1].copy() if grey else rgb), 8
    if mode in ("RGB", "RGBA", "RGBX") and _tiff_bits_per_sample(image) > 8:
        return _to_uint8(_read_wide_colour_tiff(path), path)
    if mode != "RGB":
        image = image.convert("RGB")
    return _to_uint8(np.asarray(image), path)


def _raw_grey(path: Path) -> tuple[np.ndarray, float]:
    """A label file as one grey channel in its own value range, and that range's full scale.

    Palette files go through their palette (DRIVE's ``2nd_manual`` GIFs store indices 0/1
    with a black/white palette); colour files take the channel maximum, so a red-on-black
    annotation (IDRiD) counts as foreground.
    """
    image = _open(path)
    if image.mode == "P":
        image = image.convert("RGB")
    if image.mode in ("1",):
        return np.asarray(image).astype(np.uint8), 1.0
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGB" if image.mode != "LA" else "L")
    if image.mode not in ("L", "RGB", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 3:
        array = array.max(axis=-1)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64), 1.0 if float(np.nanmax(array)) <= 1.0 else 255.0
    maximum = int(array.max()) if array.size else 0
    if maximum <= 1:
        scale = 1.0
    elif maximum <= 255:
        scale = 255.0
    else:
        scale = 65535.0
    return array, scale


def binarise(
    grey: np.ndarray,
    scale: float,
    threshold: float = 0.5,
    max_ambiguous: float = MAX_AMBIGUOUS_FRACTION,
    source: str = "label",
) -> np.ndarray:
    """Binarise a label map at ``threshold * scale``, refusing maps that are not binary.

    A map with at most two distinct values is binary whatever the values (0/1, 0/255, 1/2):
    the upper value is foreground (unless the single value is 0). Otherwise the fraction of
    pixels in the middle band ``(0.25, 0.75) * scale`` must stay below ``max_ambiguous``
    (JPEG ringing passes, grey images and multi-level maps do not), and some pixel must reach
    the upper band (a 0/1/2 class-index map does not).
    """
    if grey.dtype == np.uint8:  # HRF / IDRiD labels have 8-12 Mpx: count instead of sorting
        values = np.flatnonzero(np.bincount(grey.ravel(), minlength=256)).astype(np.uint8)
    else:
        values = np.unique(grey)
    if len(values) == 1:
        return np.full(grey.shape, 1 if float(values[0]) >= threshold * scale else 0, np.uint8)
    if len(values) == 2:
        return (grey == values[1]).astype(np.uint8)
    g = grey.astype(np.float64) / scale
    ambiguous = float(((g > 0.25) & (g < 0.75)).mean())
    if ambiguous > max_ambiguous:
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise DatasetError(
            f"{source}: not a binary label map: {len(values)} distinct values ({shown}), "
            f"{ambiguous:.1%} of the pixels between 25 % and 75 % of full scale (at most "
            f"{max_ambiguous:.1%} allowed for compression noise). Expected a 0/1 or 0/255 map; "
            "check that the right file sits in the label folder (not an image, a probability "
            "map or a multi-class map)"
        )
    if float(values[-1]) < 0.25 * scale:
        # e.g. 0/1/2: a class-index map, or a 0/1 map with noise; thresholding at mid-scale
        # would silently return an empty label
        raise DatasetError(
            f"{source}: {len(values)} distinct small values ({', '.join(map(str, values[:8]))}): "
            "this looks like a class-index map, not a 0/1 or 0/255 binary label"
        )
    return (g >= threshold).astype(np.uint8)


def read_mask(
    path: str | Path, threshold: float = 0.5, max_ambiguous: float = MAX_AMBIGUOUS_FRACTION
) -> np.ndarray:
    """Read a binary label or FOV mask as ``(H, W)`` ``uint8`` 0/1.

    Args:
        path: the file (any of :data:`IMAGE_SUFFIXES`, optionally ``.gz``).
        threshold: foreground cut as a fraction of the file's full scale (1 for 0/1 maps,
            255 for 8-bit, 65535 for 16-bit).
        max_ambiguous: see :func:`binarise`.

    Raises:
        DatasetError: unreadable file, or a map that is not plausibly binary.
    """
    path = Path(path)
    grey, scale = _raw_grey(path)
    return binarise(grey, scale, threshold, max_ambiguous, source=repr(str(path)))


def read_label_levels(path: str | Path, levels: dict[int, int], tolerance: int = 24) -> np.ndarray:
    """Read a grey-level class map (RAVIR: ``{0: 0, 128: 2, 255: 1}``) as ``(H, W)`` uint8.

    Each pixel takes the class of the nearest listed grey level; a pixel farther than
    ``tolerance`` from every level makes the file invalid (the error lists the levels found).
    """
    path = Path(path)
    grey, _ = _raw_grey(path)
    keys = np.array(sorted(levels), dtype=np.int64)
    dist = np.abs(grey.astype(np.int64)[..., None] - keys)
    nearest = dist.argmin(axis=-1)
    off = dist.min(axis=-1) > tolerance
    if off.any():
        found = np.unique(grey)
        shown = ", ".join(str(v) for v in found[:10]) + (", ..." if len(found) > 10 else "")
        raise DatasetError(
            f"{str(path)!r}: label grey levels ({shown}) do not match the expected levels "
            f"{sorted(levels)} (+-{tolerance}); {int(off.sum())} pixels are off. Is this the "
            "right label file?"
        )
    lut = np.array([levels[int(k)] for k in keys], dtype=np.uint8)
    return lut[nearest]


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a colour-coded label file as ``(H, W, 3)`` uint8 RGB (palette expanded, alpha
    dropped), for maps whose classes are colours (RITE's artery/vein maps)."""
    path = Path(path)
    image = _open(path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)
