"""Evaluation figures: error-map colours, PNG files and sizes, curve areas, best/worst rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from retina_lightning.data.synthetic import generate_fundus
from retina_lightning.metrics import PooledBinaryMetrics
from retina_lightning.reports import (
    ERROR_COLOURS,
    OUTSIDE_DIM,
    OUTSIDE_GREY,
    average_precision_from_curve,
    curves_from_metric,
    error_map,
    panel_geometry,
    pr_curve,
    roc_auc_from_curve,
    roc_curve,
    save_boxplot,
    save_curves,
    save_panel,
    select_best_worst,
)


def _scores(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, generator=g) < 0.2).long()
    prob = (0.35 * target + 0.65 * torch.rand(n, generator=g)).clamp(0, 1)
    fov = torch.rand(n, generator=g) < 0.8
    return prob, target, fov


def test_error_map_colours_on_a_hand_made_4x4_case():
    label = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], np.uint8)
    pred = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]], bool)
    fov = np.ones((4, 4), bool)
    fov[3] = False  # last row outside the FOV: TP, FP, FN, TN dimmed
    rgb = error_map(label, pred, fov)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    tp, fp, fn, tn = (np.array(ERROR_COLOURS[k]) for k in ("tp", "fp", "fn", "tn"))
    expected = np.array(
        [[tp, fn, fp, tn], [tp, fn, fp, tn], [tn, tn, tn, tn], [tp, fp, fn, tn]], np.uint8
    )
    dim = (OUTSIDE_GREY + OUTSIDE_DIM * expected[3].astype(np.float32)).astype(np.uint8)
    expected[3] = dim
    np.testing.assert_array_equal(rgb, expected)
    # the hand values: TP white, FP red, FN blue-ish, TN black; outside: 40 + colour / 4
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 2]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (30, 144, 255) and tuple(rgb[2, 0]) == (0, 0, 0)
    assert tuple(rgb[3, 0]) == (103, 103, 103) and tuple(rgb[3, 1]) == (103, 40, 40)
    assert tuple(rgb[3, 2]) == (47, 76, 103) and tuple(rgb[3, 3]) == (40, 40, 40)
    # without a FOV every pixel counts
    np.testing.assert_array_equal(error_map(label, pred)[3, 1], ERROR_COLOURS["fp"])


def test_error_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        error_map(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="fov"):
        error_map(np.zeros((4, 4)), np.zeros((4, 4)), np.ones((3, 4), bool))


def test_panel_png_has_the_computed_size(tmp_path):
    s = generate_fundus(1, 48, 64)
    prob = np.clip(s.label * 0.8 + 0.1, 0, 1).astype(np.float32)
    # 64 px wide columns are enlarged to 240 (titles must fit): 240 x 180 each,
    # figure 4 * 240 + 5 * 6 = 990 wide, 180 + 48 (+ 30 with a title) + 30 high
    assert panel_geometry(48, 64, title=False) == (240, 180, 990, 258)
    assert panel_geometry(48, 64, title=True) == (240, 180, 990, 288)
    # DRIVE images are shown at native size; HRF (3504 x 2336) shrunk to 600 px
    assert panel_geometry(584, 565)[:2] == (565, 584)
    assert panel_geometry(2336, 3504)[:2] == (600, 400)
    out = save_panel(tmp_path / "a" / "panel.png", s.image, s.label, prob, s.fov, 0.5, "x")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (990, 288)
        pixels = np.asarray(im)
    # the error column holds true-positive white and outside-FOV grey
    err = pixels[78 : 78 + 180, 6 + 3 * 246 : 6 + 3 * 246 + 240]
    assert (err == 255).all(-1).any() and (err == OUTSIDE_GREY).all(-1).any()
    grey = save_panel(tmp_path / "g.png", s.image[..., 1:2], s.label, prob, None, 0.5, title="")
    with Image.open(grey) as im:
        assert im.size == (990, 258)


def test_panel_rejects_mismatched_inputs(tmp_path):
    s = generate_fundus(1, 48, 64)
    with pytest.raises(ValueError, match="same"):
        save_panel(tmp_path / "p.png", s.image, s.label, np.zeros((48, 60)), s.fov, 0.5)


def test_curves_areas_match_scikit_learn():
    prob, target, fov = _scores()
    p, t = prob[fov].numpy(), target[fov].numpy()
    fpr, tpr = roc_curve(prob, target, fov)
    recall, precision = pr_curve(prob, target, fov)
    assert roc_auc_from_curve(fpr, tpr) == pytest.approx(roc_auc_score(t, p), abs=1e-6)
    assert average_precision_from_curve(recall, precision) == pytest.approx(
        average_precision_score(t, p), abs=1e-6
    )
    # increasing-recall input is reversed, not misread
    assert average_precision_from_curve(recall[::-1], precision[::-1]) == pytest.approx(
        average_precision_score(t, p), abs=1e-6
    )
    # binned curves: bounded size, close to exact
    r_b, p_b = pr_curve(prob, target, fov, thresholds=200)
    assert r_b.shape == (201,)
    assert average_precision_from_curve(r_b, p_b) == pytest.approx(
        average_precision_score(t, p), abs=0.02
    )


@pytest.mark.parametrize("bins", [None, 1000])
def test_curves_from_pooled_metric_agree_with_its_numbers(bins):
    prob, target, fov = _scores(seed=1)
    metric = PooledBinaryMetrics(bins=bins)
    metric.update(prob[:200], target[:200], fov[:200])
    metric.update(prob[200:], target[200:], fov[200:])
    (fpr, tpr), (recall, precision) = curves_from_metric(metric)
    values = metric.compute()
    assert roc_auc_from_curve(fpr, tpr) == pytest.approx(float(values["auroc"]), abs=1e-6)
    assert average_precision_from_curve(recall, precision) == pytest.approx(
        float(values["auprc"]), abs=1e-6
    )
    assert recall[-1] == 0 and precision[-1] == 1


def test_save_curves_writes_roc_and_pr(tmp_path):
    prob, target, fov = _scores()
    roc = roc_curve(prob, target, fov)
    worse = roc_curve((prob + torch.rand(prob.shape) * 0.5).clamp(0, 1), target, fov)
    paths = save_curves(
        tmp_path / "figs",
        {"model": roc, "noisy": worse},
        {"model": pr_curve(prob, target, fov)},
        reference_points={"2nd observer": (0.03, 0.78)},
        pr_reference_points={"2nd observer": (0.78, 0.81)},
    )
    assert [p.name for p in paths] == ["roc.png", "pr.png"]
    sizes = []
    for p in paths:
        with Image.open(p) as im:
            sizes.append(im.size)
    assert sizes == [(1000, 460), (540, 460)]
    only_roc = save_curves(tmp_path, {"m": roc}, None, prefix="val_")
    assert [p.name for p in only_roc] == ["val_roc.png"]
    with pytest.raises(ValueError, match="same length"):
        save_curves(tmp_path, {"bad": (np.zeros(3), np.zeros(4))})


def test_boxplot_one_box_per_method(tmp_path):
    rng = np.random.default_rng(0)
    per_image = {
        "UNet": rng.uniform(0.6, 0.7, 20).tolist(),
        "DPN": [*rng.uniform(0.62, 0.72, 19).tolist(), math.nan],
    }
    out = save_boxplot(tmp_path / "box" / "jaccard.png", per_image, "jaccard@opt")
    with Image.open(out) as im:
        assert im.size == (520, 460)  # 3 + 1.1 inches per method, at 100 dpi
    with pytest.raises(ValueError, match="no finite"):
        save_boxplot(tmp_path / "x.png", {"empty": [math.nan]}, "f1@opt")


def test_select_best_worst():
    rows = [
        {"image": "a", "f1@opt": 0.7},
        {"image": "b", "f1@opt": math.nan},
        {"image": "c", "f1@opt": 0.9},
        {"image": "d", "f1@opt": 0.5},
        {"image": "e", "f1@opt": 0.9},
    ]
    best, worst = select_best_worst(rows)
    assert [r["image"] for r in best] == ["c"] and [r["image"] for r in worst] == ["d"]
    best, worst = select_best_worst(rows, k=2)
    assert [r["image"] for r in best] == ["c", "e"]  # tie: the earlier row first
    assert [r["image"] for r in worst] == ["d", "a"]
    best, worst = select_best_worst(rows, key="f1@opt", k=10)
    assert len(best) == len(worst) == 4  # the NaN row is never selected
    with pytest.raises(ValueError, match="no row has a finite"):
        select_best_worst([{"image": "a", "f1@opt": math.nan}])
