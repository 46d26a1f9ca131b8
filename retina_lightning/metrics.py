"""Pixel metrics of vessel segmentation, computed inside the field of view (FOV).

One definition of every number the suite reports, shared by validation, test, per-image rows,
the human-baseline row and the leaderboard:

* threshold-free: AUROC and average precision (AUPRC) over the pooled FOV pixels, exact
  (every pixel kept, torchmetrics' functional ROC/AP) or binned (a ``bins``-bucket histogram,
  memory independent of the number of pixels: for HRF-size test sets);
* at a threshold ``t`` (a pixel is vessel when ``p >= t``): sensitivity (Se, recall),
  specificity (Sp), accuracy (Acc), precision, F1 (= Dice on binary maps) and Jaccard, from
  the confusion counts (:func:`confusion_metrics`);
* the operating point: 0.5, and an optimum chosen on validation images and applied unchanged
  to the test images (choosing it on the test set itself would leak the answer): Youden's
  J = Se + Sp - 1 on the ROC curve (as DPN, 002 section IV-B, picks "the optimal operating
  point of the ROC curve"), or the threshold of maximal F1 on the precision-recall curve (the
  "a priori" threshold of bob.ip.binseg). With ~12 % vessel pixels the two differ: Youden's
  point trades precision for sensitivity, the F1 point does not.

:class:`PooledBinaryMetrics` is a ``torchmetrics.Metric``: its states are ``cat`` (exact) or
``sum`` (binned) reduced, so DDP gathers the pixels of every rank before computing, and the
result does not depend on the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torchmetrics
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
)

#: Threshold-dependent metric names, in report order.
CONFUSION_METRICS = ("se", "sp", "acc", "precision", "f1", "jaccard")


def select_fov(prob: Tensor, target: Tensor, fov: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Flatten ``prob`` and ``target`` to the pixels inside ``fov`` (all pixels when ``None``)."""
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ")
    if fov is None:
        return prob.reshape(-1), target.reshape(-1)
    if fov.shape != prob.shape:
        raise ValueError(f"fov {tuple(fov.shape)} does not match prob {tuple(prob.shape)}")
    fov = fov.bool()
    return prob[fov], target[fov]


def confusion_metrics(tp: float, fp: float, tn: float, fn: float) -> dict[str, float]:
    """Se, Sp, Acc, precision, F1, Jaccard from confusion counts.

    Se = TP/(TP+FN), Sp = TN/(TN+FP), Acc = (TP+TN)/(TP+FP+TN+FN), Pr = TP/(TP+FP),
    F1 = 2TP/(2TP+FP+FN), Jaccard = TP/(TP+FP+FN). A ratio whose denominator is 0 is NaN
    (e.g. Se of an image with no vessel), never silently 0 or 1.
    """

    def ratio(a: float, b: float) -> float:
        return float(a) / float(b) if b > 0 else math.nan

    return {
        "se": ratio(tp, tp + fn),
        "sp": ratio(tn, tn + fp),
        "acc": ratio(tp + tn, tp + fp + tn + fn),
        "precision": ratio(tp, tp + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": ratio(tp, tp + fp + fn),
    }


def counts_at(prob: Tensor, target: Tensor, threshold: float) -> tuple[int, int, int, int]:
    """(TP, FP, TN, FN) of flat ``prob`` against flat binary ``target`` at ``prob >= threshold``."""
    pred = prob >= threshold
    truth = target.bool()
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    return tp, fp, int(truth.numel()) - tp - fp - fn, fn


def youden_threshold(fpr: Tensor, tpr: Tensor, thresholds: Tensor) -> float:
    """The threshold maximising Youden's J = TPR - FPR (the ROC point farthest above chance)."""
    j = tpr - fpr
    best = int(torch.argmax(j))
    return float(thresholds[best].clamp(0.0, 1.0))


def f1_threshold(precision: Tensor, recall: Tensor, thresholds: Tensor) -> float:
    """The threshold maximising F1 = 2 P R / (P + R) on a precision-recall curve.

    ``precision[i]`` and ``recall[i]`` belong to ``thresholds[i]``; extra trailing curve points
    without a threshold (torchmetrics' and scikit-learn's final (P=1, R=0)) are ignored.
    """
    n = thresholds.numel()
    p, r = precision[:n].double(), recall[:n].double()
    f1 = 2 * p * r / (p + r).clamp_min(1e-12)
    best = int(torch.argmax(f1))
    return float(thresholds[best].clamp(0.0, 1.0))


#: the criteria :meth:`PooledBinaryMetrics.optimal_threshold` chooses an operating point by.
THRESHOLD_CRITERIA = ("youden", "f1")


def image_metrics(
    prob: Tensor, target: Tensor, fov: Tensor | None, thresholds: dict[str, float]
) -> dict[str, float]:
    """Metrics of one image: AUROC, AP, and the confusion metrics at each named threshold
    (keys ``f"{metric}@{name}"``, e.g. ``f1@0.5``, ``f1@opt``)."""
    p, t = select_fov(prob.float(), target, fov)
    t = t.long()
    row: dict[str, float] = {}
    has_both = bool(t.any()) and not bool(t.all())
    row["auroc"] = float(binary_auroc(p, t)) if has_both else math.nan
    row["auprc"] = float(binary_average_precision(p, t)) if has_both else math.nan
    for name, thr in thresholds.items():
        for key, value in confusion_metrics(*counts_at(p, t, thr)).items():
            row[f"{key}@{name}"] = value
    return row


def image_row(
    name: str,
    prob: Tensor,
    target: Tensor,
    fov: Tensor | None,
    thresholds: dict[str, float],
    *,
    unmasked: bool = False,
    connectivity: bool = False,
) -> dict[str, Any]:
    """One test image's ``per_image.csv`` row: ``image``, :func:`image_metrics` inside
    ``fov``; with ``unmasked``, ``nofov_*`` columns scored on every pixel at 0.5 (004's
    protocol); with ``connectivity``, IterNet's connectivity area
    (:func:`~retina_lightning.measure.connectivity_curve`, CPU)."""
    row: dict[str, Any] = {"image": name}
    row.update(image_metrics(prob, target, fov, thresholds))
    if unmasked:
        whole = image_metrics(prob, target, None, {"0.5": 0.5})
        row.update({f"nofov_{k}": v for k, v in whole.items()})
    if connectivity:
        from retina_lightning.measure import connectivity_curve

        inside = fov.cpu().numpy() if fov is not None else None
        _, _, area = connectivity_curve(
            prob.float().cpu().numpy(), target.cpu().numpy() > 0, inside
        )
        row["connectivity"] = float(area)
    return row


class PooledBinaryMetrics(torchmetrics.Metric):
    """AUROC, AUPRC, ROC curve and confusion metrics pooled over every FOV pixel seen.

    Args:
        bins: ``None`` keeps every pixel (exact, as the papers compute); an integer bins the
            probabilities into that many equal-width buckets on [0, 1] (memory O(bins); the
            AUROC error is below 1e-3 for ``bins >= 1000``).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, bins: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if bins is not None and bins < 10:
            raise ValueError(f"bins must be None (exact) or >= 10, got {bins}")
        self.bins = bins
        if bins is None:
            self.add_state("probs", default=[], dist_reduce_fx="cat")
            self.add_state("targets", default=[], dist_reduce_fx="cat")
        else:
            self.add_state(
                "hist", default=torch.zeros(2, bins, dtype=torch.long), dist_reduce_fx="sum"
            )

    def update(self, prob: Tensor, target: Tensor, fov: Tensor | None = None) -> None:
        p, t = select_fov(prob.detach().float(), target, fov)
        if self.bins is None:
            self.probs.append(p)
            self.targets.append(t.to(torch.uint8))
        else:
            idx = (p.clamp(0, 1) * (self.bins - 1)).round().long() + self.bins * t.long()
            self.hist += torch.bincount(idx, minlength=2 * self.bins).view(2, self.bins)

    def _flat(self) -> tuple[Tensor, Tensor]:
        probs = torchmetrics.utilities.dim_zero_cat(self.probs)
        targets = torchmetrics.utilities.dim_zero_cat(self.targets).long()
        return probs, targets

    def roc(self) -> tuple[Tensor, Tensor, Tensor]:
        """(fpr, tpr, thresholds), thresholds decreasing."""
        if self.bins is None:
            return binary_roc(*self._flat())
        neg, pos = self.hist.double()
        # pixels with p >= bin k's centre: cumulative sums from the top bin down
        tp = pos.flip(0).cumsum(0)
        fp = neg.flip(0).cumsum(0)
        centres = torch.linspace(1.0, 0.0, self.bins, device=tp.device, dtype=torch.double)
        zero = torch.zeros(1, device=tp.device, dtype=torch.double)
        fpr = torch.cat([zero, fp / fp[-1].clamp_min(1)])
        tpr = torch.cat([zero, tp / tp[-1].clamp_min(1)])
        thresholds = torch.cat([zero + 1.0, centres])
        return fpr.float(), tpr.float(), thresholds.float()

    def counts(self, threshold: float) -> tuple[int, int, int, int]:
        if self.bins is None:
            return counts_at(*self._flat(), threshold)
        neg, pos = self.hist
        first = math.ceil(threshold * (self.bins - 1) - 1e-9)  # bins whose centre is >= t
        tp, fp = int(pos[first:].sum()), int(neg[first:].sum())
        fn, tn = int(pos.sum()) - tp, int(neg.sum()) - fp
        return tp, fp, tn, fn

    def compute(self) -> dict[str, Tensor]:
        """AUROC and AUPRC (the threshold-free metrics) as tensors, for logging."""
        return self._threshold_free()

    def _threshold_free(self) -> dict[str, Tensor]:
        if self.bins is None:
            probs, targets = self._flat()
            return {
                "auroc": binary_auroc(probs, targets),
                "auprc": binary_average_precision(probs, targets),
            }
        fpr, tpr, _ = self.roc()
        neg, pos = self.hist.double()
        tp = pos.flip(0).cumsum(0)
        fp = neg.flip(0).cumsum(0)
        precision = tp / (tp + fp).clamp_min(1)
        recall = tp / tp[-1].clamp_min(1)
        ap = torch.sum(torch.diff(torch.cat([recall.new_zeros(1), recall])) * precision)
        return {"auroc": torch.trapezoid(tpr, fpr), "auprc": ap.float()}

    def report(self, thresholds: dict[str, float]) -> dict[str, float]:
        """Every pooled metric as floats: ``auroc``, ``auprc`` and ``f"{m}@{name}"``, over the
        pixels of every process (states are gathered first under DDP)."""
        with self.sync_context():
            out = {k: float(v) for k, v in self._threshold_free().items()}
            for name, thr in thresholds.items():
                for key, value in confusion_metrics(*self.counts(thr)).items():
                    out[f"{key}@{name}"] = value
        return out

    def pr_curve(self) -> tuple[Tensor, Tensor, Tensor]:
        """(precision, recall, thresholds) of the pooled pixels; ``precision[i]`` and
        ``recall[i]`` count the pixels with ``p >= thresholds[i]``."""
        if self.bins is None:
            return binary_precision_recall_curve(*self._flat())
        neg, pos = self.hist.double()
        tp, fp = pos.flip(0).cumsum(0), neg.flip(0).cumsum(0)
        precision = (tp / (tp + fp).clamp_min(1)).float()
        recall = (tp / tp[-1].clamp_min(1)).float()
        centres = torch.linspace(1.0, 0.0, self.bins, device=tp.device)
        return precision, recall, centres

    def optimal_threshold(self, criterion: str = "youden") -> float:
        """The operating point of the pooled pixels (of every process): ``"youden"``, the
        maximum of Se + Sp - 1 on the ROC curve, or ``"f1"``, the maximum of F1 on the
        precision-recall curve."""
        if criterion not in THRESHOLD_CRITERIA:
            raise ValueError(
                f"threshold criterion must be one of {THRESHOLD_CRITERIA}, got {criterion!r}"
            )
        with self.sync_context():
            if criterion == "youden":
                return youden_threshold(*self.roc())
            return f1_threshold(*self.pr_curve())

    def curves(self) -> dict[str, Tensor]:
        """The pooled ROC curve (``fpr``, ``tpr``) and PR curve (``precision``, ``recall``)."""
        with self.sync_context():
            fpr, tpr, _ = self.roc()
            precision, recall, _ = self.pr_curve()
        return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}


def summarize_rows(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation over images of every numeric column (NaNs skipped)."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))] if rows else []
    out = {}
    for key in keys:
        values = torch.tensor([r[key] for r in rows], dtype=torch.double)
        values = values[~torch.isnan(values)]
        if values.numel() == 0:
            out[key] = (math.nan, math.nan)
            continue
        std = float(values.std()) if values.numel() > 1 else 0.0
        out[key] = (float(values.mean()), std)
    return out


#: ``metrics.json``'s description of the unmasked scores (``unmasked_metrics``).
UNMASKED_PROTOCOL = "every image pixel (no FOV mask), threshold 0.5 (004)"


def build_test_report(
    *,
    model: str,
    num_parameters: int,
    thresholds: Mapping[str, float],
    threshold_criterion: str,
    metrics_in_fov: bool,
    pooled: Mapping[str, float],
    rows: Sequence[Mapping[str, Any]],
    infer_seconds: float = 0.0,
    unmasked_pooled: Mapping[str, float] | None = None,
    per_class: Mapping[str, tuple[Mapping[str, float], Sequence[int]]] | None = None,
    second_counts: Sequence[int] | None = None,
    per_dataset: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The test report (``metrics.json``) from the numbers a test run collected.

    Args:
        model, num_parameters: the network's class name and size.
        thresholds: the operating points, ``{"0.5": 0.5, "opt": t}``.
        threshold_criterion: how ``opt`` was chosen (``"youden"``, ``"f1"`` or ``"fixed"``).
        metrics_in_fov: whether only FOV pixels were counted.
        pooled: :meth:`PooledBinaryMetrics.report` of every test pixel.
        rows: one dict per image (``image`` plus numeric columns, e.g. :func:`image_metrics`;
            ``nofov_*`` columns are the unmasked per-image scores), in dataset order.
        infer_seconds: model inference time of all images (``images_per_s``; ``None`` if 0).
        unmasked_pooled: the pooled scores without FOV mask (004's protocol, issue 12): adds
            the ``unmasked`` section.
        per_class: one-vs-rest ``{name: (threshold-free metrics, (TP, FP, TN, FN))}`` of each
            foreground class (artery / vein): adds ``per_class``.
        second_counts: (TP, FP, TN, FN) of the second human observer against the first;
            adds ``second_observer`` when any pixel was counted.
        per_dataset: ``{dataset: pooled scores}`` of a multi-dataset test (rows carry a
            ``dataset`` column): adds ``per_dataset`` with each dataset's pooled scores and
            per-image mean / std.
    """
    per_image = summarize_rows(list(rows))
    report: dict[str, Any] = {
        "model": model,
        "num_parameters": num_parameters,
        "thresholds": dict(thresholds),
        "threshold_criterion": threshold_criterion,
        "metrics_in_fov": metrics_in_fov,
        "num_images": len(rows),
        # model inference only (preprocessed image on the device -> probabilities)
        "images_per_s": len(rows) / infer_seconds if infer_seconds else None,
        "pooled": dict(pooled),
        "per_image_mean": {k: v[0] for k, v in per_image.items()},
        "per_image_std": {k: v[1] for k, v in per_image.items()},
    }
    if unmasked_pooled is not None:
        nofov = {k[len("nofov_") :]: v for k, v in per_image.items() if k.startswith("nofov_")}
        report["unmasked"] = {
            "protocol": UNMASKED_PROTOCOL,
            "pooled": dict(unmasked_pooled),
            "per_image_mean": {k: v[0] for k, v in nofov.items()},
            "per_image_std": {k: v[1] for k, v in nofov.items()},
        }
    if per_class:
        report["per_class"] = {
            name: {**{k: float(v) for k, v in free.items()}, **confusion_metrics(*counts)}
            for name, (free, counts) in per_class.items()
        }
    if second_counts is not None and sum(second_counts):
        report["second_observer"] = confusion_metrics(*second_counts)
    if per_dataset:
        report["per_dataset"] = {}
        for name, scores in per_dataset.items():
            mine = [r for r in rows if r.get("dataset") == name]
            summary = summarize_rows(list(mine))
            report["per_dataset"][name] = {
                "num_images": len(mine),
                "pooled": dict(scores),
                "per_image_mean": {k: v[0] for k, v in summary.items()},
                "per_image_std": {k: v[1] for k, v in summary.items()},
            }
    return report
