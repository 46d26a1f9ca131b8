"""Figures of an evaluation: ROC / PR curves, per-image box plots, error panels.

What the papers show besides their tables:

* ROC curves (Se against 1 - Sp over thresholds, DPN 002 section 4.4) with the second human
  observer as a single operating point, and precision-recall curves (AUPRC, patch2image 004
  section 6.2), the more telling curve when vessels are ~12 % of the FOV pixels;
* per-image Jaccard box plots, one box per method (004 section 6.5, Figs. 8-11: "we encourage
  the use of the boxplots to highlight the stability of future models");
* image / ground truth / probability / binary map panels (002 section 4.5.2, Fig. 5), here
  with a colour-coded error map (true positives white, false positives red, false negatives
  blue, pixels outside the FOV dimmed since no metric counts them).

Everything is drawn with matplotlib's object API on the Agg canvas (``Figure`` +
``FigureCanvasAgg``): no pyplot state, no display, safe inside a Lightning run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image
from torch import Tensor
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

from retina_lightning.metrics import PooledBinaryMetrics, confusion_metrics, select_fov

__all__ = [
    "ERROR_COLOURS",
    "average_precision_from_curve",
    "curves_from_metric",
    "error_map",
    "pr_curve",
    "roc_auc_from_curve",
    "roc_curve",
    "save_boxplot",
    "save_curves",
    "save_panel",
    "select_best_worst",
]

#: Colours of the error map inside the FOV (uint8 RGB). TN stays black.
ERROR_COLOURS: dict[str, tuple[int, int, int]] = {
    "tp": (255, 255, 255),
    "fp": (255, 0, 0),
    "fn": (30, 144, 255),
    "tn": (0, 0, 0),
}
#: Outside the FOV a pixel's colour is ``OUTSIDE_GREY + OUTSIDE_DIM * colour`` (rounded down).
OUTSIDE_GREY = 40
OUTSIDE_DIM = 0.25
#: Curves are thinned to at most this many points before plotting (an exact ROC over the
#: DRIVE test set has ~10^6 distinct thresholds; the drawn line looks the same).
MAX_CURVE_POINTS = 4000
#: Longest side, in pixels, of one panel column (HRF's 3504 px images are shown smaller).
PANEL_MAX_SIDE = 600
#: Columns are enlarged to at least this width so that titles and legend fit.
PANEL_MIN_WIDTH = 240
#: Panel margins in pixels: between / around columns, above (column titles; + figure title)
#: and below (legend).
PANEL_GAP, PANEL_TOP, PANEL_TITLE, PANEL_BOTTOM = 6, 48, 30, 30


# --------------------------------------------------------------------------- curve data


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def roc_curve(
    probs: Tensor, targets: Tensor, fov: Tensor | None = None, thresholds: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the FOV pixels (torchmetrics ``binary_roc``; ``thresholds`` bins it)."""
    p, t = select_fov(probs.float(), targets, fov)
    fpr, tpr, _ = binary_roc(p, t.long(), thresholds=thresholds)
    return _as_numpy(fpr), _as_numpy(tpr)


def pr_curve(
    probs: Tensor, targets: Tensor, fov: Tensor | None = None, thresholds: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` of the FOV pixels (torchmetrics
    ``binary_precision_recall_curve``), recall decreasing, ending at ``(0, 1)``.

    Args:
        probs, targets: probabilities and 0/1 labels of the same shape.
        fov: optional field-of-view mask; only its pixels count (002 section 4.4).
        thresholds: ``None`` for the exact curve, an integer for that many equally spaced
            thresholds (bounded memory).
    """
    p, t = select_fov(probs.float(), targets, fov)
    precision, recall, _ = binary_precision_recall_curve(p, t.long(), thresholds=thresholds)
    # binned: a threshold above every probability predicts nothing (precision 0/0, recall 0);
    # 1 there, the convention of the curve's closing point
    precision = torch.nan_to_num(precision, nan=1.0)
    return _as_numpy(recall), _as_numpy(precision)


def curves_from_metric(
    metric: PooledBinaryMetrics,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The pooled ``(fpr, tpr)`` and ``(recall, precision)`` of a
    :class:`~retina_lightning.metrics.PooledBinaryMetrics`, exact or binned (call before
    ``reset()``)."""
    fpr, tpr, _ = metric.roc()
    if metric.bins is None:
        probs, targets = metric._flat()
        precision, recall, _ = binary_precision_recall_curve(probs, targets)
        return (_as_numpy(fpr), _as_numpy(tpr)), (_as_numpy(recall), _as_numpy(precision))
    neg, pos = metric.hist.double()
    tp = pos.flip(0).cumsum(0)  # pixels with p >= bin centre, from the top bin down
    fp = neg.flip(0).cumsum(0)
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1), torch.ones_like(tp))
    recall = tp / tp[-1].clamp_min(1)
    # torchmetrics' order: recall decreasing, closing at (recall 0, precision 1)
    recall = torch.cat([recall.flip(0), recall.new_zeros(1)])
    precision = torch.cat([precision.flip(0), precision.new_ones(1)])
    return (_as_numpy(fpr), _as_numpy(tpr)), (_as_numpy(recall), _as_numpy(precision))


def roc_auc_from_curve(fpr: Any, tpr: Any) -> float:
    """Trapezoidal area under ``(fpr, tpr)`` (points in either order)."""
    fpr, tpr = _as_numpy(fpr), _as_numpy(tpr)
    order = np.lexsort((tpr, fpr))
    x, y = fpr[order], tpr[order]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def average_precision_from_curve(recall: Any, precision: Any) -> float:
    """Step-wise average precision ``AP = sum_n (R_n - R_{n+1}) P_n`` (scikit-learn's and
    torchmetrics' definition) of a curve ordered by increasing threshold (recall decreasing,
    as :func:`pr_curve` returns); an increasing-recall curve is reversed first."""
    recall, precision = _as_numpy(recall), _as_numpy(precision)
    if recall.size > 1 and recall[0] < recall[-1]:
        recall, precision = recall[::-1], precision[::-1]
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def _thin(x: np.ndarray, y: np.ndarray, n: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, ...]:
    """At most ``n`` points of a curve, evenly spaced along its index, endpoints kept."""
    if x.size <= n:
        return x, y
    idx = np.unique(np.linspace(0, x.size - 1, n).round().astype(np.int64))
    return x[idx], y[idx]


def _save_png(fig: Figure, path: Path) -> Path:
    """Render ``fig`` on the Agg canvas and write an RGB PNG (no alpha channel: a quarter
    smaller than matplotlib's RGBA, which keeps a DRIVE panel well below 1 MB)."""
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG", compress_level=9)
    return path


def _check_curve(name: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(
            f"curve {name!r}: expected two 1-D arrays of the same length >= 2, got shapes "
            f"{a.shape} and {b.shape}"
        )


# ------------------------------------------------------------------------------ curves


def save_curves(
    out_dir: str | Path,
    curves: Mapping[str, tuple[Any, Any]],
    pr: Mapping[str, tuple[Any, Any]] | None = None,
    reference_points: Mapping[str, tuple[float, float]] | None = None,
    pr_reference_points: Mapping[str, tuple[float, float]] | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write ``roc.png`` (and ``pr.png`` when ``pr`` is given) into ``out_dir``.

    The ROC figure has two panels: the whole curve, and a zoom on the top-left corner
    (FPR <= 0.2, TPR >= 0.5) where retinal vessel methods differ (002 Table 1's AUCs span
    0.975-0.982).

    Args:
        out_dir: folder (created if missing).
        curves: ``{label: (fpr, tpr)}``; the legend shows each label with its AUC.
        pr: ``{label: (recall, precision)}`` (:func:`pr_curve`); the legend shows AP.
        reference_points: single ROC operating points ``{label: (1 - Sp, Se)}``, e.g. the
            second human observer of DRIVE, drawn as markers.
        pr_reference_points: single PR points ``{label: (Se, precision)}``.
        prefix: file name prefix (``"val_"`` -> ``val_roc.png``).

    Returns:
        The paths written.
    """
    if not curves:
        raise ValueError("save_curves: `curves` is empty; pass {label: (fpr, tpr)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig = Figure(figsize=(10.0, 4.6), dpi=100, layout="constrained")
    full, zoom = fig.subplots(1, 2)
    for label, (fpr, tpr) in curves.items():
        x, y = _as_numpy(fpr), _as_numpy(tpr)
        _check_curve(label, x, y)
        auc = roc_auc_from_curve(x, y)
        xs, ys = _thin(x, y)
        (line,) = full.plot(xs, ys, lw=1.5, label=f"{label} (AUC {auc:.4f})")
        zoom.plot(xs, ys, lw=1.5, color=line.get_color())
    for label, (x, y) in (reference_points or {}).items():
        for ax in (full, zoom):
            ax.plot([x], [y], "k*" if "observer" in label.lower() else "o", ms=10, label=label)
    full.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1)
    full.set(xlim=(0, 1), ylim=(0, 1.01), title="ROC curve")
    zoom.set(xlim=(0, 0.2), ylim=(0.5, 1.0), title="ROC curve (zoom)")
    for ax in (full, zoom):
        ax.set(xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)")
        ax.grid(alpha=0.3)
    full.legend(loc="lower right", fontsize=8)
    paths.append(_save_png(fig, out / f"{prefix}roc.png"))

    if pr:
        fig = Figure(figsize=(5.4, 4.6), dpi=100, layout="constrained")
        ax = fig.subplots()
        for label, (recall, precision) in pr.items():
            r, p = _as_numpy(recall), _as_numpy(precision)
            _check_curve(label, r, p)
            ap = average_precision_from_curve(r, p)
            rs, ps = _thin(r, p)
            ax.step(rs, ps, where="post", lw=1.5, label=f"{label} (AP {ap:.4f})")
        for label, (x, y) in (pr_reference_points or {}).items():
            ax.plot([x], [y], "k*" if "observer" in label.lower() else "o", ms=10, label=label)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="recall (sensitivity)",
            ylabel="precision",
            title="Precision-recall curve",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        paths.append(_save_png(fig, out / f"{prefix}pr.png"))
    return paths


# ----------------------------------------------------------------------------- box plot


def save_boxplot(
    path: str | Path, per_image: Mapping[str, Sequence[float]], metric: str = "jaccard@opt"
) -> Path:
    """One box per method / run of a per-image metric, every image drawn as a dot
    (patch2image 004 section 6.5, Figs. 8-11: Jaccard box plots).

    Args:
        path: the PNG to write (folders created).
        per_image: ``{method: [value per image]}``; NaNs (e.g. Se of an image without
            vessels) are left out and the box label gives the count kept.
        metric: the metric's name, for the axis label.
    """
    if not per_image:
        raise ValueError("save_boxplot: `per_image` is empty; pass {method: [values]}")
    labels, data = [], []
    for name, values in per_image.items():
        v = np.asarray(list(values), dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise ValueError(f"save_boxplot: method {name!r} has no finite {metric} value")
        labels.append(f"{name}\n(n={v.size})")
        data.append(v)
    width = min(max(3.0 + 1.1 * len(data), 4.5), 16.0)
    fig = Figure(figsize=(width, 4.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.boxplot(data, showmeans=True, widths=0.55, whis=1.5, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    rng = np.random.default_rng(0)  # fixed jitter: the same figure on every run
    for i, v in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.15, 0.15, v.size), v, "o", ms=3, alpha=0.6, color="C0")
    ax.set(ylabel=metric, title=f"{metric} per image (line: median, triangle: mean)")
    ax.grid(axis="y", alpha=0.3)
    return _save_png(fig, Path(path))


# -------------------------------------------------------------------------------- panel


def error_map(label: np.ndarray, pred: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 error map of a binary prediction against the ground truth.

    Inside the FOV: TP white, FP red, FN blue, TN black (:data:`ERROR_COLOURS`). Outside it
    the same colours dimmed over grey (``OUTSIDE_GREY + OUTSIDE_DIM * colour``), since no
    metric counts those pixels (002 section 4.4).
    """
    truth = np.asarray(label) > 0
    pred = np.asarray(pred).astype(bool)
    if truth.ndim != 2 or pred.shape != truth.shape:
        raise ValueError(
            f"error_map: label {truth.shape} and prediction {pred.shape} must be the same (H, W)"
        )
    inside = np.ones(truth.shape, bool) if fov is None else np.asarray(fov).astype(bool)
    if inside.shape != truth.shape:
        raise ValueError(f"error_map: fov {inside.shape} does not match label {truth.shape}")
    out = np.zeros((*truth.shape, 3), dtype=np.uint8)
    out[pred & truth] = ERROR_COLOURS["tp"]
    out[pred & ~truth] = ERROR_COLOURS["fp"]
    out[~pred & truth] = ERROR_COLOURS["fn"]
    dimmed = (OUTSIDE_GREY + OUTSIDE_DIM * out[~inside].astype(np.float32)).astype(np.uint8)
    out[~inside] = dimmed
    return out


def _display(image: np.ndarray) -> np.ndarray:
    """An image for ``imshow``: (H, W, 1) -> (H, W)."""
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


def panel_geometry(
    h: int, w: int, title: bool = True, max_side: int = PANEL_MAX_SIDE
) -> tuple[int, int, int, int]:
    """Pixel sizes of a :func:`save_panel` figure for an ``h x w`` image:
    ``(column width, column height, figure width, figure height)``. A column shows the
    image at native size, shrunk so its long side is at most ``max_side``, enlarged so its
    width is at least :data:`PANEL_MIN_WIDTH`."""
    scale = min(1.0, max_side / max(h, w))
    scale = max(scale, PANEL_MIN_WIDTH / w)
    col_w, col_h = round(w * scale), round(h * scale)
    fig_w = 4 * col_w + 5 * PANEL_GAP
    fig_h = col_h + PANEL_TOP + (PANEL_TITLE if title else 0) + PANEL_BOTTOM
    return col_w, col_h, fig_w, fig_h


def save_panel(
    path: str | Path,
    image: np.ndarray,
    label: np.ndarray,
    prob: np.ndarray,
    fov: np.ndarray | None,
    threshold: float,
    title: str = "",
    max_side: int = PANEL_MAX_SIDE,
) -> Path:
    """Four columns: image | ground truth | probability | errors at ``threshold``
    (002 section 4.5.2, Fig. 5, with the binary map replaced by :func:`error_map`).

    Args:
        path: the PNG to write.
        image: ``(H, W, 3|1)`` uint8 fundus image.
        label: ``(H, W)`` ground truth (non-zero = vessel).
        prob: ``(H, W)`` vessel probability in [0, 1].
        fov: ``(H, W)`` bool field of view, or ``None`` (whole image).
        threshold: a pixel is vessel when ``prob >= threshold``.
        title: figure title (e.g. ``"01_test  (best F1@opt)"``).
        max_side: each column is drawn at most this many pixels on its long side.

    The error column's title gives Se, Sp and F1 inside the FOV at ``threshold``.
    """
    image = np.asarray(image)
    prob = np.asarray(prob, dtype=np.float32)
    h, w = prob.shape
    if image.shape[:2] != (h, w) or np.asarray(label).shape != (h, w):
        raise ValueError(
            f"save_panel: image {image.shape[:2]}, label {np.asarray(label).shape} and prob "
            f"{prob.shape} must have the same (H, W)"
        )
    pred = prob >= threshold
    errors = error_map(label, pred, fov)
    inside = np.ones((h, w), bool) if fov is None else np.asarray(fov, bool)
    truth = np.asarray(label) > 0
    tp = int((pred & truth & inside).sum())
    fp = int((pred & ~truth & inside).sum())
    fn = int((~pred & truth & inside).sum())
    tn = int(inside.sum()) - tp - fp - fn
    m = confusion_metrics(tp, fp, tn, fn)

    col_w, col_h, fig_w, fig_h = panel_geometry(h, w, bool(title), max_side)
    dpi = 100
    # +0.25 px: Agg truncates the figure size to whole pixels
    fig = Figure(figsize=((fig_w + 0.25) / dpi, (fig_h + 0.25) / dpi), dpi=dpi)
    if title:
        fig.suptitle(title, y=1.0 - 8 / fig_h, va="top", fontsize=11)
    columns = [
        (
            _display(image),
            "image",
            {"cmap": "gray"} if image.ndim == 2 or image.shape[2] == 1 else {},
        ),
        (truth.astype(np.uint8), "ground truth", {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (prob, "probability", {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}),
        (
            errors,
            f"errors @ {threshold:.3f}\nSe {m['se']:.3f}  Sp {m['sp']:.3f}  F1 {m['f1']:.3f}",
            {},
        ),
    ]
    # nearest neighbour when enlarging small images, antialiasing when shrinking large ones
    interpolation = "nearest" if col_w >= w else "antialiased"
    for i, (data, name, kwargs) in enumerate(columns):
        left = PANEL_GAP + i * (col_w + PANEL_GAP)
        box = (left / fig_w, PANEL_BOTTOM / fig_h, col_w / fig_w, col_h / fig_h)
        ax = fig.add_axes(box)
        ax.imshow(data, interpolation=interpolation, aspect="auto", **kwargs)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    handles = [
        Patch(facecolor=np.array(ERROR_COLOURS[k]) / 255, edgecolor="0.5", label=text)
        for k, text in (("tp", "TP"), ("fp", "FP"), ("fn", "FN"))
    ]
    handles.append(
        Patch(facecolor=(np.array([OUTSIDE_GREY] * 3) / 255), edgecolor="0.5", label="outside FOV")
    )
    fig.legend(
        handles=handles,
        loc="lower right",
        ncol=4,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(1.0, 0.0),
    )
    return _save_png(fig, Path(path))


def select_best_worst(
    rows: Sequence[Mapping[str, Any]], key: str = "f1@opt", k: int = 1
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The ``k`` rows with the highest and the ``k`` with the lowest ``key`` (higher is
    better), rows whose value is missing or NaN left out.

    Returns:
        ``(best, worst)``: best first in ``best``, worst first in ``worst``; ties keep the
        rows' order. With fewer than ``2 k`` rows the two lists share rows.
    """
    if k < 1:
        raise ValueError(f"select_best_worst: k must be >= 1, got {k}")
    scored = []
    for i, row in enumerate(rows):
        value = row.get(key)
        if isinstance(value, (int, float)) and not math.isnan(float(value)):
            scored.append((float(value), i, row))
    if not scored and rows:
        raise ValueError(
            f"select_best_worst: no row has a finite {key!r}; columns are {sorted(rows[0])}"
        )
    best = sorted(scored, key=lambda s: (-s[0], s[1]))[:k]
    worst = sorted(scored, key=lambda s: (s[0], s[1]))[:k]
    return [s[2] for s in best], [s[2] for s in worst]
