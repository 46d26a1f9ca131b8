"""Connectivity (IterNet 003) and vessel widths (SegRAVIR 000) on synthetic shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import dataset_dir
from PIL import Image
from scipy import ndimage as ndi

from retina_lightning.data.base import DatasetError
from retina_lightning.measure import (
    WidthResult,
    av_widths,
    compare_widths,
    connectivity,
    connectivity_curve,
    count_segments,
    find_prediction,
    read_prediction,
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


# --- vessel widths ---------------------------------------------------------------------------

TUBE_SIZE, TUBE_LENGTH = 200, 150
TUBE_WIDTHS = [4, 5, 6, 7, 8, 10, 12, 13, 16, 20]
TUBE_ANGLES = [0, 30, 45, 60, 90]


def _tube(width: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """A straight digital tube: pixels whose centre lies within ``width / 2`` of a line at
    ``angle`` degrees through the image centre, cut square at ``+-TUBE_LENGTH / 2``; and the
    coordinate ``t`` of every pixel along the line. The centre sits on a pixel centre for odd
    widths and between two for even ones, so an axis-aligned tube is exactly ``width`` pixels
    across."""
    c = TUBE_SIZE / 2 + (0.5 if width % 2 == 0 else 0.0)
    rows, cols = np.mgrid[:TUBE_SIZE, :TUBE_SIZE].astype(np.float64)
    theta = np.deg2rad(angle)
    t = (cols - c) * np.cos(theta) - (rows - c) * np.sin(theta)
    n = (cols - c) * np.sin(theta) + (rows - c) * np.cos(theta)
    return (np.abs(n) < width / 2) & (np.abs(t) < TUBE_LENGTH / 2), t


def _tube_errors(method: str, width: int) -> tuple[list[float], list[float]]:
    """Per angle, (mean diameter along the tube core - true width, mean over the whole
    skeleton - true width), in pixels. The core leaves out ``width + 2`` px at each end; the
    true width is the core's pixel area per unit length (exactly ``width`` at 0 / 90 degrees;
    at 45 degrees the pixel lattice makes a digital tube up to 0.6 px narrower or wider)."""
    core_errors, all_errors = [], []
    for angle in TUBE_ANGLES:
        tube, t = _tube(width, angle)
        half = TUBE_LENGTH // 2 - width - 2 + (0.5 if width % 2 else 0.0)  # whole columns
        band = np.abs(t) < half
        true_width = np.count_nonzero(tube & band) / (2 * half)
        result = vessel_widths(tube, method=method)
        core_errors.append(float(result.width_map[result.skeleton & band].mean()) - true_width)
        all_errors.append(result.mean - true_width)
    return core_errors, all_errors


def _ring(cy: float, cx: float, inner: float, width: int, size: int = 128) -> np.ndarray:
    """An annulus ``inner <= r < inner + width``: a curved vessel of every direction, no ends."""
    rows, cols = np.mgrid[:size, :size]
    r = np.hypot(rows - cy, cols - cx)
    return (r >= inner) & (r < inner + width)


@pytest.mark.parametrize("width", TUBE_WIDTHS)
def test_medial_axis_width_of_straight_tubes(width: int) -> None:
    """000's definition (twice the maximum distance to the medial axis, the default) on tubes
    4-20 px wide at 0/30/45/60/90 degrees. Measured over these 50 tubes: core error -0.99 to
    +0.25 px (mean -0.33; axis-aligned tubes read w - 1 for odd w, w for even w), whole
    skeleton -0.97 to +1.38 px (a square end reads up to sqrt(2) times wider)."""
    core, whole = _tube_errors("medial_axis", width)
    assert all(-1.0 - 1e-6 <= e <= 0.5 for e in core), core
    assert all(abs(e) <= 1.5 for e in whole), whole


@pytest.mark.parametrize("width", TUBE_WIDTHS)
def test_boundary_width_of_straight_tubes(width: int) -> None:
    """The older ``method="boundary"`` (twice the distance from the axis to the background) on
    the same tubes. Measured: core error -0.20 to +1.00 px (mean +0.30; odd axis-aligned tubes
    read w + 1), whole skeleton -2.15 to +0.97 px (the distance drops near the ends)."""
    core, whole = _tube_errors("boundary", width)
    assert all(-0.5 <= e <= 1.0 + 1e-6 for e in core), core
    assert all(-2.5 <= e <= 1.0 + 1e-6 for e in whole), whole


def test_mean_bias_of_the_two_methods_over_the_tube_grid() -> None:
    """Over the 50 tubes: medial_axis reads narrower than the true width on average (-0.33 px
    measured), boundary wider (+0.30 px)."""
    medial = np.mean([_tube_errors("medial_axis", w)[0] for w in (5, 8, 13, 20)])
    boundary = np.mean([_tube_errors("boundary", w)[0] for w in (5, 8, 13, 20)])
    assert -0.6 < medial < -0.1 and 0.1 < boundary < 0.6, (medial, boundary)


@pytest.mark.parametrize("width", [4, 7, 10, 15])
@pytest.mark.parametrize("method", ["medial_axis", "boundary"])
def test_ring_width(method: str, width: int) -> None:
    """A closed ring (all directions, no ends): both methods within 0.3 px (measured
    -0.11 .. +0.23 px medial_axis, -0.20 .. +0.17 px boundary)."""
    ring = _ring(99.7, 99.7, 50, width, size=200)
    true_width = np.count_nonzero(ring) / (2 * np.pi * (50 + width / 2))
    assert abs(vessel_widths(ring, method=method).mean - true_width) <= 0.3


@pytest.mark.parametrize("method", ["medial_axis", "boundary"])
def test_width_result_fields(method: str) -> None:
    result = vessel_widths(_diagonal_tube(9), method=method)
    assert result.unit == "px" and result.method == method
    assert result.diameters.shape == (np.count_nonzero(result.skeleton),)
    assert result.mean == pytest.approx(np.mean(result.diameters))
    assert result.std == pytest.approx(np.std(result.diameters))


def test_horizontal_odd_tube_core_is_w_minus_one_or_w_plus_one() -> None:
    """Between pixel centres: 000's maximum distance to the axis reaches the last vessel pixel
    centre (w - 1 on an odd axis-aligned tube), 2 x EDT the first background one (w + 1)."""
    mask = _horizontal_tube(7)
    medial = vessel_widths(mask).width_map[SIZE // 2, 20:-20]
    boundary = vessel_widths(mask, method="boundary").width_map[SIZE // 2, 20:-20]
    np.testing.assert_array_equal(medial, np.full(medial.shape, 6.0))
    np.testing.assert_array_equal(boundary, np.full(boundary.shape, 8.0))
    even = _horizontal_tube(8)  # the axis lies on one of the two middle rows: w either way
    for method in ("medial_axis", "boundary"):
        row = vessel_widths(even, method=method).width_map
        core = row[:, 20:-20][vessel_widths(even).skeleton[:, 20:-20]]
        np.testing.assert_array_equal(core, np.full(core.shape, 8.0))


def test_unknown_width_method_is_refused() -> None:
    with pytest.raises(ValueError, match="medial_axis"):
        vessel_widths(_horizontal_tube(5), method="edt")


@pytest.mark.parametrize("method", ["medial_axis", "boundary"])
def test_width_map_lives_on_the_skeleton(method: str) -> None:
    mask = _diagonal_tube(7)
    result = vessel_widths(mask, method=method)
    on = result.skeleton
    assert on.any() and not (on & ~mask).any() and not result.width_map[~on].any()
    assert np.count_nonzero(on) == skeleton_length(mask)
    np.testing.assert_array_equal(np.sort(result.width_map[on]), np.sort(result.diameters))


def test_one_pixel_vessel_has_medial_axis_diameter_zero() -> None:
    """Twice the maximum distance to the axis of a one-pixel line is 0 (boundary: 2)."""
    line = np.zeros((20, 40), dtype=bool)
    line[10, 5:35] = True
    medial = vessel_widths(line)
    assert medial.skeleton[10, 5:35].all() and medial.mean == 0.0
    assert vessel_widths(line, method="boundary").mean == 2.0


def test_vessels_do_not_borrow_each_others_axis() -> None:
    """A 1-px vessel one row below an 11-px one: the wide vessel's bottom pixels are nearer the
    thin vessel's axis (2 px) than their own (5 px) but are not counted for it."""
    mask = np.zeros((40, 80), dtype=bool)
    mask[10:21, 5:75] = True  # 11 px, axis on row 15
    mask[22, 5:75] = True  # 1 px, background row 21 between
    result = vessel_widths(mask)
    np.testing.assert_array_equal(result.width_map[15, 20:60], 10.0)
    np.testing.assert_array_equal(result.width_map[22, 20:60], 0.0)
    assert result.skeleton[22, 20:60].all()


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
    boundary = av_widths(av, pixel_size_um=12.5, method="boundary")
    assert boundary["artery"].method == "boundary"
    assert boundary["artery"].mean == pytest.approx(
        vessel_widths(av == ARTERY, 12.5, "boundary").mean
    )


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


# --- predicted against reference widths, MAPE (000 eq. 8, Table VI) -----------------------

_CROSS = ndi.generate_binary_structure(2, 1)


def _ring_av(artery_width: int, vein_width: int) -> np.ndarray:
    """A 128 x 128 A/V map: an artery ring and a vein ring (no ends, no contact, even after a
    one-pixel dilation)."""
    av = np.zeros((128, 128), dtype=np.uint8)
    av[_ring(40.3, 40.6, 20, artery_width)] = ARTERY
    av[_ring(86.4, 85.7, 22, vein_width)] = VEIN
    return av


def _dilate(av: np.ndarray) -> np.ndarray:
    out = np.zeros_like(av)
    for cls in (VEIN, ARTERY):
        out[ndi.binary_dilation(av == cls, _CROSS)] = cls
    return out


def test_compare_widths_one_pixel_dilation() -> None:
    """Predictions dilated by one pixel are 2 px wider (measured +1.96 .. +2.09 px on these
    rings), so eq. (8) over two images, one dilated and one exact, is about (2 / w) / 2."""
    refs = [_ring_av(8, 12), _ring_av(6, 10)]
    preds = [_dilate(refs[0]), refs[1].copy()]
    result = compare_widths(["a", "b"], preds, refs)
    assert sorted(result) == ["artery", "vein"]
    for name, cls, width in (("artery", ARTERY, 8), ("vein", VEIN, 12)):
        c = result[name]
        assert c.images == ["a", "b"] and c.unit == "px"
        ref_a = vessel_widths(refs[0] == cls).mean
        pred_a = vessel_widths(preds[0] == cls).mean
        assert c.ref[0] == pytest.approx(ref_a) and c.pred[0] == pytest.approx(pred_a)
        assert c.pred[1] == pytest.approx(c.ref[1])  # the exact prediction
        assert 1.75 < c.pred[0] - c.ref[0] < 2.25  # wider: the sign of the error
        assert c.mape == pytest.approx(100 * abs(pred_a - ref_a) / ref_a / 2)
        assert c.mape == pytest.approx(100 * 2 / width / 2, abs=1.5)  # 12.5 % / 8.3 %
    eroded = [np.where(ndi.binary_erosion(refs[0] != 0, _CROSS), refs[0], 0)]
    narrower = compare_widths(["a"], eroded, refs[:1], pixel_size_um=12.5)
    assert narrower["artery"].unit == "um"
    assert narrower["artery"].pred[0] < narrower["artery"].ref[0] - 1.5 * 12.5


def test_compare_widths_cases() -> None:
    ref = _ring_av(8, 12)
    only_artery = np.where(ref == ARTERY, ARTERY, 0).astype(np.uint8)
    # an image without reference veins is no vein case; a missed vein is a 100 % error
    result = compare_widths(["a", "b"], [ref, only_artery], [only_artery, ref])
    assert result["vein"].images == ["b"] and result["vein"].mape == pytest.approx(100.0)
    assert np.isnan(result["vein"].pred[0])
    vessel = compare_widths(["a"], [ref != 0], [ref != 0], av=False)
    assert sorted(vessel) == ["vessel"] and vessel["vessel"].mape == 0.0
    with pytest.raises(ValueError, match="as many"):
        compare_widths(["a"], [ref, ref], [ref])
    with pytest.raises(ValueError, match="WxH"):
        compare_widths(["a"], [ref[:64]], [ref])


def test_read_prediction_formats(tmp_path: Path) -> None:
    av = _ring_av(6, 8)
    rgb = np.zeros((*av.shape, 3), np.uint8)
    rgb[av == ARTERY], rgb[av == VEIN] = (255, 0, 0), (0, 80, 255)  # retina predict's colours
    Image.fromarray(rgb).save(tmp_path / "x_av.png")
    levels = np.select([av == ARTERY, av == VEIN], [128, 255], 0).astype(np.uint8)
    Image.fromarray(levels).save(tmp_path / "ravir.png")
    Image.fromarray(av).save(tmp_path / "labels.png")
    probs = np.stack([av == k for k in range(3)]).astype(np.float32) * 0.5 + 0.1
    np.save(tmp_path / "p_probs.npy", probs)
    np.save(tmp_path / "lab.npy", av)
    Image.fromarray(np.where(av > 0, 200, 60).astype(np.uint8)).save(tmp_path / "v_prob.png")
    for name in ("x_av.png", "ravir.png", "labels.png", "p_probs.npy", "lab.npy"):
        labels, is_av = read_prediction(tmp_path / name)
        assert is_av and labels.dtype == np.uint8, name
        np.testing.assert_array_equal(labels, av, err_msg=name)
    labels, is_av = read_prediction(tmp_path / "v_prob.png")  # a vessel probability: >= 0.5
    assert not is_av
    np.testing.assert_array_equal(labels, av > 0)
    rgb[0, 0] = (0, 255, 0)
    Image.fromarray(rgb).save(tmp_path / "green_av.png")
    with pytest.raises(DatasetError, match="neither red"):
        read_prediction(tmp_path / "green_av.png")
    assert find_prediction(tmp_path, "x") == tmp_path / "x_av.png"
    assert find_prediction(tmp_path, "p") == tmp_path / "p_probs.npy"
    assert find_prediction(tmp_path, "lab") == tmp_path / "lab.npy"
    assert find_prediction(tmp_path, "v") == tmp_path / "v_prob.png"
    assert find_prediction(tmp_path, "nothing") is None


def _fake_ravir(root: Path, maps: dict[str, np.ndarray]) -> None:
    """RAVIR's layout with the given A/V maps as labels (0 / 128 artery / 255 vein)."""
    images, masks = root / "train" / "training_images", root / "train" / "training_masks"
    for folder in (images, masks, root / "test"):
        folder.mkdir(parents=True)
    for name, av in maps.items():
        Image.fromarray(np.full(av.shape, 90, np.uint8)).save(images / f"{name}.png")
        grey = np.select([av == ARTERY, av == VEIN], [128, 255], 0).astype(np.uint8)
        Image.fromarray(grey).save(masks / f"{name}.png")


def test_data_widths_command_prints_mape(tmp_path: Path, capsys) -> None:
    """``retina data widths --pred``: one image predicted one pixel too wide (written as
    ``retina predict``'s ``_av.png``), one exactly (as class probabilities, ``.npy``)."""
    from retina_lightning.cli import main

    refs = {"IR_Case_001": _ring_av(8, 12), "IR_Case_002": _ring_av(6, 10)}
    _fake_ravir(tmp_path / "ravir", refs)
    pred = tmp_path / "pred"
    pred.mkdir()
    wide = _dilate(refs["IR_Case_001"])
    rgb = np.zeros((*wide.shape, 3), np.uint8)
    rgb[wide == ARTERY], rgb[wide == VEIN] = (255, 0, 0), (0, 80, 255)
    Image.fromarray(rgb).save(pred / "IR_Case_001_av.png")
    np.save(pred / "IR_Case_002.npy", np.stack([refs["IR_Case_002"] == k for k in range(3)]))
    argv = ["data", "widths", "--dataset", "ravir", "--root", str(tmp_path / "ravir")]
    assert main([*argv, "--pred", str(pred)]) == 0
    out = capsys.readouterr().out
    assert "RAVIR train: 2 images, ground-truth A/V maps (medial_axis)" in out
    assert "2 of 2 images" in out
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if "MAPE" in line and "%" in line
    }
    assert sorted(rows) == ["artery", "vein"]
    for name, width in (("artery", 8), ("vein", 12)):
        predicted, reference, mape = (float(rows[name][i]) for i in (2, 5, 8))
        assert rows[name][-1] == "(N=2)"
        expected = compare_widths(
            list(refs), [wide, refs["IR_Case_002"]], list(refs.values()), 12.5
        )[name]
        assert predicted == pytest.approx(expected.pred.mean(), abs=0.006)
        assert reference == pytest.approx(expected.ref.mean(), abs=0.006)
        assert mape == pytest.approx(expected.mape, abs=0.006)
        assert predicted > reference and mape == pytest.approx(100 * 2 / width / 2, abs=1.5)
    # the older measure on request; a missing prediction is left out with a warning
    (pred / "IR_Case_002.npy").unlink()
    assert main([*argv, "--pred", str(pred), "--method", "boundary"]) == 0
    captured = capsys.readouterr()
    assert "(boundary)" in captured.out and "1 of 2 images" in captured.out
    assert "no prediction for 1 image(s) (IR_Case_002)" in captured.err
    (pred / "IR_Case_001_av.png").unlink()
    assert main([*argv, "--pred", str(pred)]) == 2
    assert "holds no prediction" in capsys.readouterr().err


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


#: Mean over RAVIR's 23 labelled (training) images of the per-image mean diameter, microns,
#: (mean, sample SD): 000's medial-axis definition (the default) and the older boundary one.
RAVIR_TRAIN_WIDTHS_UM = {
    "medial_axis": {"artery": (75.73, 12.45), "vein": (78.22, 14.92)},
    "boundary": {"artery": (76.18, 10.96), "vein": (78.44, 12.57)},
}


@pytest.mark.real_data
@pytest.mark.parametrize("method", ["medial_axis", "boundary"])
def test_ravir_ground_truth_widths_printed_next_to_the_paper(capsys, method: str):
    """SegRAVIR (000 IV-C) on RAVIR's labelled images: mean diameters in microns, printed next
    to the paper's test-set reference (whose labels are not public), pinned to 0.01 um."""

    from retina_lightning.cli import main

    root = dataset_dir("RAVIR")
    argv = ["data", "widths", "--dataset", "ravir", "--root", str(root), "--method", method]
    assert main(argv) == 0
    out = capsys.readouterr().out
    print(out)
    assert "RAVIR train: 23 images" in out and "97.93 +- 8.62 um" in out and "113.98" in out
    means = {
        line.split()[0]: (float(line.split()[3]), float(line.split()[5]))
        for line in out.splitlines()
        if "mean diameter" in line
    }
    assert set(means) == {"artery", "vein"}
    for name, (mean, sd) in RAVIR_TRAIN_WIDTHS_UM[method].items():
        assert means[name][0] == pytest.approx(mean, abs=0.01), (name, means[name])
        assert means[name][1] == pytest.approx(sd, abs=0.01), (name, means[name])
