"""Paired per-image comparison of two methods and per-method box plots.

Whether one method beats another on the same test images is a paired question
(:func:`paired_comparison`): the Wilcoxon signed-rank test of the per-image differences and a
seeded percentile-bootstrap confidence interval of their mean. With 20 DRIVE test images, the
differences between the published methods (third decimal of AUC, 002 Table 1 / 003 Table 1)
are often within that interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retina_lightning.leaderboard.results import LeaderboardError, RunResult, _float
from retina_lightning.tracking import canonical_dataset


@dataclass(frozen=True)
class PairedComparison:
    """Per-image paired comparison of method A against method B on the same images.

    Attributes:
        mean_diff: mean over images of ``A - B``.
        ci_low, ci_high: percentile-bootstrap confidence interval of the mean difference.
        p_value: two-sided Wilcoxon signed-rank test of the differences.
    """

    metric: str
    method_a: str
    method_b: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float = 0.95
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def __str__(self) -> str:
        verdict = "significant" if self.significant else "not significant"
        return (
            f"{self.method_a} - {self.method_b}, {self.metric} over {self.n} paired images: "
            f"difference {self.mean_diff:.4f} [{self.confidence:.0%} CI {self.ci_low:.4f}, "
            f"{self.ci_high:.4f}], p = {self.p_value:.2g}: {verdict} (alpha {self.alpha:g})"
        )


def _per_image_values(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """``{image: value}``, averaging an image's values over several runs (seeds)."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        if "image" not in row:
            raise LeaderboardError(f"per-image row without an 'image' column: {dict(row)}")
        if metric not in row:
            raise LeaderboardError(
                f"per-image rows have no {metric!r} column; columns: {sorted(row)}"
            )
        sums.setdefault(str(row["image"]), []).append(_float(row[metric]))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def paired_comparison(
    rows_a: Iterable[Mapping[str, Any]],
    rows_b: Iterable[Mapping[str, Any]],
    metric: str,
    names: tuple[str, str] = ("A", "B"),
    n_boot: int = 10_000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedComparison:
    """Paired test of two methods on the images both were tested on (matched by name;
    images where either value is NaN are left out; several rows of one image, e.g. one per
    seed, are averaged first).

    The p-value is :func:`scipy.stats.wilcoxon` (two-sided) of the differences, 1.0 when all
    differences are zero; the interval is the percentile bootstrap of the mean difference
    over ``n_boot`` resamples of the images, with ``numpy.random.default_rng(seed)``.
    """
    from scipy.stats import wilcoxon

    metric = metric.removeprefix("per_image/")
    a, b = _per_image_values(rows_a, metric), _per_image_values(rows_b, metric)
    common = sorted(k for k in a.keys() & b.keys() if math.isfinite(a[k]) and math.isfinite(b[k]))
    if len(common) < 2:
        raise LeaderboardError(
            f"paired comparison of {names[0]} and {names[1]} on {metric}: {len(common)} image(s) "
            f"in common ({len(a)} and {len(b)} images); both must be tested on the same images"
        )
    diff = np.array([a[k] - b[k] for k in common], dtype=np.float64)
    # scipy rejects an all-zero difference vector: identical methods, p = 1
    p = 1.0 if np.all(diff == 0) else float(wilcoxon(diff).pvalue)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_boot, diff.size))
    boot = diff[idx].mean(axis=1)
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return PairedComparison(
        metric,
        names[0],
        names[1],
        len(common),
        float(diff.mean()),
        float(lo),
        float(hi),
        p,
        confidence,
        alpha,
    )


def per_image_rows(runs: Iterable[RunResult], method: str, dataset: str | None = None) -> list:
    """All per-image rows of ``method``'s runs (on ``dataset``)."""
    ds = canonical_dataset(dataset) if dataset else None
    rows = [
        row
        for r in runs
        if r.method == method and (ds is None or r.dataset == ds)
        for row in r.per_image
    ]
    return rows


def save_method_boxplot(
    path: str | Path, runs: Sequence[RunResult], metric: str, dataset: str | None = None
) -> Path:
    """Box plot of per-image ``metric`` per method (004 section 6.5) via
    :func:`retina_lightning.reports.save_boxplot`; each image averaged over seeds."""
    from retina_lightning.reports import save_boxplot

    metric = metric.removeprefix("per_image/")
    per_method: dict[str, list[float]] = {}
    for method in sorted({r.method for r in runs}):
        rows = per_image_rows(runs, method, dataset)
        if rows and metric in rows[0]:
            per_method[method] = list(_per_image_values(rows, metric).values())
    if not per_method:
        raise LeaderboardError(f"no per-image {metric!r} values to plot")
    return save_boxplot(path, per_method, metric)
