"""Connectivity (IterNet 003) and vessel widths (SegRAVIR 000) on synthetic shapes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import dataset_dir

from retina_lightning.measure import (
    WidthResult,
    av_widths,
    connectivity,
    connectivity_curve,
    count_segments,
    skeleton_length,
    vessel_widths,
    width_mape,
)
from retina_lightning.types import ARTERY, VEIN

SIZE = 96


def _horizontal_tube(width: int, size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    top = size // 2 - width // 2
    mask[top : top + width, 10 : size - 10] = True
    return mask


def _diagonal_tube(width: int, size: int = SIZE) -> np.ndarray:
    """Pixels whose centre lies within ``width / 2`` of the line ``row = col``."""
    rows, cols = np.mgrid[:size, :size]
    inside = np.abs(rows - cols) / np.sqrt(2) < width / 2
    return inside & (cols > 10) & (cols < size - 10)


# --- vessel widths --------------------------------------------------------------------------


@pytest.mark.parametrize("width", [5, 9])
@pytest.mark.parametrize("tube", [_horizontal_tube, _diagonal_tube], ids=["horizontal", "diag"])
def test_tube_width_within_one_pixel(tube, width: int) -> None:
    result = vessel_widths(tube(width))
    assert result.unit == "px"
    assert abs(result.mean - width) <= 1.0
    assert result.diameters.shape == (np.count_nonzero(result.width_map),)
    assert result.std == pytest.approx(np.std(result.diameters))


def test_horizontal_odd_tube_core_is_w_plus_one() -> None:
    """2 x EDT reaches the first background pixel centre: w + 1 on an odd axis-aligned tube."""
    result = vessel_widths(_horizontal_tube(7))
    row = result.width_map[SIZE // 2, 20:-20]
    np.testing.assert_array_equal(row, np.full(row.shape, 8.0))


def test_width_map_lives_on_the_skeleton() -> None:
    mask = _diagonal_tube(7)
    result = vessel_widths(mask)
    on = result.width_map > 0
    assert on.any() and not (on & ~mask).any()
    assert np.count_nonzero(on) == skeleton_length(mask)
    np.testing.assert_array_equal(np.sort(result.width_map[on]), np.sort(result.diameters))


def test_probability_map_is_thresholded_at_half() -> None:
    mask = _horizontal_tube(5)
    prob = np.where(mask, 0.6, 0.4)
    np.testing.assert_array_equal(vessel_widths(prob).width_map, vessel_widths(mask).width_map)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        vessel_widths(prob * 255)


def test_microns_scale_linearly() -> None:
    mask = _diagonal_tube(6)
    px = vessel_widths(mask)
    um = vessel_widths(mask, pixel_size_um=12.5)
    assert um.unit == "um"
    assert um.mean == pytest.approx(12.5 * px.mean)
    assert um.std == pytest.approx(12.5 * px.std)
    np.testing.assert_allclose(um.width_map, 12.5 * px.width_map, rtol=1e-6)


def test_empty_mask() -> None:
    result = vessel_widths(np.zeros((8, 8), dtype=bool))
    assert result.diameters.size == 0 and np.isnan(result.mean) and not result.width_map.any()


def test_av_widths_split_artery_and_vein() -> None:
    av = np.zeros((SIZE, SIZE), dtype=np.uint8)
    av[_horizontal_tube(5)] = ARTERY
    av[_horizontal_tube(9).T & (av == 0)] = VEIN
    widths = av_widths(av, pixel_size_um=12.5)
    assert sorted(widths) == ["artery", "vein"]
    assert abs(widths["artery"].mean / 12.5 - 5) <= 1.0
    assert abs(widths["vein"].mean / 12.5 - 9) <= 1.0
    probs = np.stack([av == k for k in range(3)]).astype(np.float32)
    assert av_widths(probs)["vein"].mean == pytest.approx(widths["vein"].mean / 12.5)


def test_mape_self_is_zero_and_hand_values() -> None:
    ref = vessel_widths(_diagonal_tube(9), pixel_size_um=12.5)
    assert width_mape(ref, ref) == 0.0

    def result(mean: float) -> WidthResult:
        return WidthResult(np.zeros((1, 1)), np.array([mean]), mean, 0.0, "um")

    assert width_mape(result(8.0), result(10.0)) == pytest.approx(20.0)
    # per image, then averaged over images: (|10-8|/10 + |100-110|/100) / 2 = 15 %
    both = width_mape([result(8.0), result(110.0)], [result(10.0), result(100.0)])
    assert both == pytest.approx(15.0)
    with pytest.raises(ValueError, match="units differ"):
        width_mape(vessel_widths(_diagonal_tube(9)), ref)


# --- connectivity ---------------------------------------------------------------------------


def _line() -> np.ndarray:
    """A one-pixel horizontal line of 60 pixels: S_G = 1, L = 60, S_Max = 0.05 * 60 = 3."""
    mask = np.zeros((20, 80), dtype=np.uint8)
    mask[10, 10:70] = 1
    return mask


def test_line_ground_truth_statistics() -> None:
    assert count_segments(_line()) == 1
    assert skeleton_length(_line()) == 60


def test_connectivity_broken_line_hand() -> None:
    gt = _line()
    three = gt.copy()
    three[10, [30, 50]] = 0  # 3 pieces: |3 - 1| / 3
    assert connectivity(three, gt) == pytest.approx(1 - 2 / 3)
    five = gt.copy()
    five[10, [20, 30, 40, 50]] = 0  # 5 pieces: |5 - 1| = 4 > S_Max = 3 -> 0
    assert connectivity(five, gt) == 0.0
    assert connectivity(gt, gt) == 1.0
    assert connectivity(gt.astype(bool), gt) == 1.0


def test_connectivity_diagonal_pixels_are_one_segment() -> None:
    diag = np.eye(12, dtype=bool)
    assert count_segments(diag) == 1  # 8-connectivity


def test_connectivity_ignores_segments_outside_fov() -> None:
    gt = _line()
    pred = gt.copy()
    pred[2, 2:5] = 1  # a spurious segment
    assert connectivity(pred, gt) == pytest.approx(1 - 1 / 3)
    fov = np.ones(gt.shape, dtype=bool)
    fov[:5] = False
    assert connectivity(pred, gt, fov) == 1.0


def test_connectivity_curve_hand() -> None:
    gt = _line()
    prob = np.where(gt > 0, 0.9, 0.05)
    prob[10, [30, 50]] = 0.405
    thresholds, c, auc = connectivity_curve(prob, gt)
    np.testing.assert_allclose(thresholds, np.arange(1, 100) / 100)
    # theta <= 0.40: the whole line; 0.41..0.90: 3 pieces; 0.91..0.99: nothing (0 segments)
    expected = np.concatenate([np.full(40, 1.0), np.full(50, 1 / 3), np.full(9, 2 / 3)])
    np.testing.assert_allclose(c, expected)
    area = 0.39 * 1 + 0.01 * (1 + 1 / 3) / 2 + 0.49 / 3 + 0.01 * (1 / 3 + 2 / 3) / 2 + 0.08 * 2 / 3
    assert auc == pytest.approx(area / 0.98)


def test_connectivity_curve_perfect_binary_and_bounds() -> None:
    gt = _line()
    _, c, auc = connectivity_curve(gt.astype(np.float64), gt)
    assert auc == 1.0 and np.all(c == 1.0)
    rng = np.random.default_rng(0)
    _, _, auc_noise = connectivity_curve(rng.random(gt.shape), gt)
    assert 0.0 <= auc_noise < 1.0
    _, c_one, auc_one = connectivity_curve(gt.astype(np.float32), gt, thresholds=np.array([0.5]))
    assert c_one.tolist() == [1.0] and auc_one == 1.0
    with pytest.raises(ValueError, match="increasing"):
        connectivity_curve(gt.astype(np.float32), gt, thresholds=np.array([0.6, 0.5]))


def test_connectivity_curve_respects_fov() -> None:
    gt = _line()
    prob = gt.astype(np.float64)
    prob[2, 2:5] = 0.7  # a spurious segment outside the FOV
    fov = np.ones(gt.shape, dtype=bool)
    fov[:5] = False
    _, c, auc = connectivity_curve(prob, gt, fov)
    assert auc == 1.0
    _, c_all, _ = connectivity_curve(prob, gt)
    np.testing.assert_allclose(c_all[:70], 1 - 1 / 3)  # theta <= 0.70 sees 2 segments


@pytest.mark.real_data
def test_ravir_ground_truth_widths_printed_next_to_the_paper(capsys):
    """SegRAVIR (000 IV-C) on RAVIR's labelled images: mean diameters in microns, printed next
    to the paper's test-set reference (whose labels are not public)."""

    from retina_lightning.cli import main

    root = dataset_dir("RAVIR")
    assert main(["data", "widths", "--dataset", "ravir", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "RAVIR train: 23 images" in out and "97.93 +- 8.62 um" in out and "113.98" in out
    means = {
        line.split()[0]: float(line.split()[3])
        for line in out.splitlines()
        if "mean diameter" in line
    }
    assert set(means) == {"artery", "vein"}
    assert all(40.0 < m < 200.0 for m in means.values())  # 3 to 16 pixels of 12.5 um
