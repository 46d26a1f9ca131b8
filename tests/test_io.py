"""16-bit images holding fewer significant bits (issue 15 item 5): a 12-bit fundus photograph
saved as a 16-bit TIFF was scaled by 65535 and kept 16 grey levels; it must read as its 8-bit
copy, and ``retina data check`` must say which bit depth it inferred."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from retina_lightning.data.check import check_dataset, format_report
from retina_lightning.data.datasets import FolderDataset
from retina_lightning.data.io import IMAGE_BIT_DEPTHS, bit_depth, read_image, read_image_bits
from retina_lightning.data.synthetic import generate_fundus


def _widen(image8: np.ndarray, bits: int) -> np.ndarray:
    """The 8-bit image as ``bits``-bit data in a uint16 array (255 -> 2**bits - 1)."""
    top = 2**bits - 1
    return np.round(image8.astype(np.float64) * top / 255).astype(np.uint16)


@pytest.mark.parametrize("bits", [10, 12, 14, 16])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_tiff_reads_as_its_8_bit_copy_whatever_its_significant_bits(
    tmp_path, bits, channels
):
    image8 = generate_fundus(3, 48, 56).image
    if channels == 1:
        image8 = image8[..., 1:2]
    wide = _widen(image8, bits)
    path = tmp_path / f"eye{bits}.tif"
    tifffile.imwrite(path, wide[..., 0] if channels == 1 else wide, photometric=None)
    array, depth = read_image_bits(path)
    assert depth == bits and array.dtype == np.uint8 and array.shape == image8.shape
    # round trip through 2**bits - 1 levels: equal up to quantisation (exact for bits >= 8)
    np.testing.assert_array_equal(array, image8)
    np.testing.assert_array_equal(read_image(path), array)


def test_bit_depth_is_the_smallest_standard_depth_holding_the_maximum():
    assert IMAGE_BIT_DEPTHS == (8, 10, 12, 14, 16)
    for maximum, depth in ((0, 8), (255, 8), (256, 10), (1023, 10), (4095, 12), (4096, 14)):
        assert bit_depth(np.array([[0, maximum]], np.uint16)) == depth, maximum
    assert bit_depth(np.array([[0, 65535]], np.uint16)) == 16
    assert bit_depth(np.zeros((2, 2), np.uint8)) == 8
    # a 16-bit PNG of full-range data still scales by 65535 (25700 = 100 * 257 -> 100)
    assert bit_depth(np.array([[0, 25700, 65535]], np.uint16)) == 16


def test_data_check_reports_the_inferred_bit_depth(tmp_path):
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, bits in enumerate((8, 12, 12)):
        s = generate_fundus(10 + i, 40, 40)
        name = f"eye{i}"
        if bits == 8:
            Image.fromarray(s.image).save(root / "images" / f"{name}.png")
        else:
            tifffile.imwrite(root / "images" / f"{name}.tif", _widen(s.image, bits))
        Image.fromarray(s.label * 255).save(root / "labels" / f"{name}.png")
    report = check_dataset(FolderDataset(root))
    assert report.ok, report.problems
    assert report.subsets[0].bit_depths == {8: 1, 12: 2}
    text = format_report(report)
    assert "bit depth:    12 (2), 8 (1)" in text
    # mixed depths in one subset: said, as images of one dataset should share a scale
    assert "images of different bit depths" in text
