"""The FOV-masked metrics against scikit-learn and hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from retina_lightning.metrics import (
    PooledBinaryMetrics,
    confusion_metrics,
    counts_at,
    f1_threshold,
    image_metrics,
    summarize_rows,
    youden_threshold,
)


def _random(n_images=3, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n_images, h, w, generator=g) < 0.2).long()
    prob = (0.35 * target + 0.65 * torch.rand(n_images, h, w, generator=g)).clamp(0, 1)
    fov = torch.rand(n_images, h, w, generator=g) < 0.7
    return prob, target, fov


def test_confusion_metrics_by_hand():
    m = confusion_metrics(tp=8, fp=2, tn=85, fn=5)
    assert m["se"] == pytest.approx(8 / 13)
    assert m["sp"] == pytest.approx(85 / 87)
    assert m["acc"] == pytest.approx(93 / 100)
    assert m["precision"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(16 / 23)
    assert m["jaccard"] == pytest.approx(8 / 15)
    assert math.isnan(confusion_metrics(0, 0, 10, 0)["se"])  # no vessel: Se undefined


def test_exact_pooled_metrics_equal_sklearn_inside_fov():
    prob, target, fov = _random()
    metric = PooledBinaryMetrics()
    for i in range(prob.shape[0]):  # one update per image, as the task does
        metric.update(prob[i], target[i], fov[i])
    p, t = prob[fov].numpy(), target[fov].numpy()
    report = metric.report({"0.5": 0.5, "x": 0.62})
    assert report["auroc"] == pytest.approx(roc_auc_score(t, p), abs=1e-6)
    assert report["auprc"] == pytest.approx(average_precision_score(t, p), abs=1e-6)
    for name, thr in (("0.5", 0.5), ("x", 0.62)):
        tn, fp, fn, tp = confusion_matrix(t, p >= thr).ravel()
        assert report[f"se@{name}"] == pytest.approx(tp / (tp + fn))
        assert report[f"sp@{name}"] == pytest.approx(tn / (tn + fp))
        assert report[f"acc@{name}"] == pytest.approx((tp + tn) / t.size)
        assert report[f"f1@{name}"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_pixels_outside_the_fov_do_not_count():
    prob, target, fov = _random(n_images=1)
    metric = PooledBinaryMetrics()
    metric.update(prob[0], target[0], fov[0])
    before = metric.report({"0.5": 0.5})
    spoiled = prob.clone()
    spoiled[~fov] = 1.0 - target[~fov].float()  # perfectly wrong outside the FOV
    metric.reset()
    metric.update(spoiled[0], target[0], fov[0])
    assert metric.report({"0.5": 0.5}) == before
    whole = PooledBinaryMetrics()
    whole.update(spoiled[0], target[0], None)
    assert whole.report({"0.5": 0.5})["auroc"] < before["auroc"] - 0.05


def test_binned_metrics_approximate_exact():
    prob, target, fov = _random(n_images=4, h=40, w=40, seed=1)
    exact, binned = PooledBinaryMetrics(), PooledBinaryMetrics(bins=2001)
    for m in (exact, binned):
        m.update(prob, target, fov)
    e, b = exact.report({"0.5": 0.5}), binned.report({"0.5": 0.5})
    assert b["auroc"] == pytest.approx(e["auroc"], abs=2e-3)
    assert b["auprc"] == pytest.approx(e["auprc"], abs=5e-3)
    # bins are aligned so that 0.5 falls on a bin centre: confusion counts are exact there
    # up to probabilities within half a bin of 0.5
    assert b["f1@0.5"] == pytest.approx(e["f1@0.5"], abs=5e-3)


def test_youden_threshold_matches_sklearn_roc():
    prob, target, fov = _random(n_images=2, seed=2)
    p, t = prob[fov].numpy(), target[fov].numpy()
    fpr, tpr, thr = roc_curve(t, p)
    expected = thr[np.argmax(tpr - fpr)]
    metric = PooledBinaryMetrics()
    metric.update(prob, target, fov)
    assert metric.optimal_threshold() == pytest.approx(float(expected), abs=1e-6)
    assert youden_threshold(
        torch.tensor([0.0, 0.1, 0.5, 1.0]),
        torch.tensor([0.0, 0.8, 0.9, 1.0]),
        torch.tensor([1.0, 0.7, 0.3, 0.0]),
    ) == pytest.approx(0.7)


def test_f1_threshold_matches_sklearn_pr_curve_and_beats_youden_on_f1():
    prob, target, fov = _random(n_images=2, seed=4)
    p, t = prob[fov].numpy(), target[fov].numpy()
    precision, recall, thr = precision_recall_curve(t, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    expected = float(thr[np.argmax(f1)])
    metric = PooledBinaryMetrics()
    metric.update(prob, target, fov)
    chosen = metric.optimal_threshold("f1")
    assert chosen == pytest.approx(expected, abs=1e-6)
    best = f1_score(t, p >= chosen)
    assert best == pytest.approx(f1.max(), abs=1e-9)
    # no threshold on a fine grid (Youden's included) gives a higher F1
    grid = [*np.linspace(0.0, 1.0, 101), metric.optimal_threshold("youden")]
    assert all(f1_score(t, p >= g) <= best + 1e-12 for g in grid)
    # by hand: P/R at thresholds 0.2, 0.6, 0.9 -> F1 0.5, 0.8, 0.4
    assert f1_threshold(
        torch.tensor([0.4, 0.8, 1.0, 1.0]),
        torch.tensor([0.667, 0.8, 0.25, 0.0]),
        torch.tensor([0.2, 0.6, 0.9]),
    ) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="youden"):
        metric.optimal_threshold("dice")


def test_binned_f1_threshold_is_within_a_bin_of_exact():
    prob, target, fov = _random(n_images=4, h=40, w=40, seed=5)
    exact, binned = PooledBinaryMetrics(), PooledBinaryMetrics(bins=1001)
    for m in (exact, binned):
        m.update(prob, target, fov)
    e, b = exact.optimal_threshold("f1"), binned.optimal_threshold("f1")
    f1_e = exact.report({"t": e})["f1@t"]
    f1_b = exact.report({"t": b})["f1@t"]  # the binned choice, scored exactly
    assert f1_b == pytest.approx(f1_e, abs=2e-3)


def test_image_metrics_and_summary():
    prob, target, fov = _random(n_images=2, seed=3)
    rows = [image_metrics(prob[i], target[i], fov[i], {"0.5": 0.5}) for i in range(2)]
    for i, row in enumerate(rows):
        p, t = prob[i][fov[i]].numpy(), target[i][fov[i]].numpy()
        assert row["auroc"] == pytest.approx(roc_auc_score(t, p), abs=1e-6)
        tp, fp, tn, fn = counts_at(prob[i][fov[i]], target[i][fov[i]], 0.5)
        assert tp + fp + tn + fn == t.size
    summary = summarize_rows(rows)
    mean, std = summary["auroc"]
    values = [r["auroc"] for r in rows]
    assert mean == pytest.approx(np.mean(values))
    assert std == pytest.approx(np.std(values, ddof=1))
