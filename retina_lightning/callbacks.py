"""What a test run leaves behind, written by a Lightning callback (issue 12).

:class:`~retina_lightning.tasks.SegmentationTask` computes the test report
(:func:`~retina_lightning.metrics.build_test_report`) and attaches a :class:`ReportWriter`
through ``configure_callbacks``, so ``retina test``, a plain ``Trainer.test``, the
cross-dataset matrix and patch2image all get, in the task's ``results_dir`` (default
``<default_root_dir>/test``):

* ``metrics.json`` (the report) and ``per_image.csv`` (one row per test image);
* with ``figures``: ROC / PR curves with the second observer as a point, a per-image Jaccard
  box plot (004 section 6.5) and the best / worst image panels (002 section 4.5.2, Fig. 5);
* the per-image table and figures in W&B (:func:`~retina_lightning.tracking.log_test_results`)
  and the summary table in the log (:func:`format_report`).

The writer runs in ``on_test_end``: Lightning calls the callbacks' ``on_test_epoch_end``
before the module's, where the report is finished. Files are written on global rank zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from retina_lightning.metrics import CONFUSION_METRICS

__all__ = ["BestWorstPanels", "ReportWriter", "format_report", "write_test_report"]


def _numpy(x: Any, dtype: Any = None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


class BestWorstPanels:
    """The best and the worst test image by a per-image score (higher is better; NaN scores
    are skipped; the first image wins a tie): two images in memory whatever the size of the
    test set, drawn as panels by :meth:`save`."""

    def __init__(self, key: str = "f1@opt") -> None:
        self.key = key
        self.items: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        self.items = {}

    def offer(self, row: Mapping[str, Any], image: Any, label: Any, prob: Any, fov: Any) -> None:
        """Keep this image if its ``row[key]`` beats the best or the worst so far. ``image`` is
        ``(H, W, C)``, ``label`` / ``prob`` / ``fov`` ``(H, W)``, tensors or arrays (copied to
        CPU numpy only when kept)."""
        score = float(row.get(self.key, math.nan))
        if math.isnan(score):
            return
        best, worst = self.items.get("best"), self.items.get("worst")
        to_best = best is None or score > best["score"]
        to_worst = worst is None or score < worst["score"]
        if not (to_best or to_worst):
            return
        item = {
            "name": row["image"],
            "score": score,
            "image": _numpy(image),
            "label": _numpy(label),
            "prob": _numpy(prob, np.float32),
            "fov": _numpy(fov),
        }
        if to_best:
            self.items["best"] = item
        if to_worst:
            self.items["worst"] = item

    def save(self, out: Path, threshold: float) -> list[Path]:
        """``panel_{best,worst}_<image>.png`` (image / truth / probability / errors at
        ``threshold``) in ``out``."""
        from retina_lightning.reports import save_panel

        paths = []
        for which, item in self.items.items():
            path = out / f"panel_{which}_{item['name']}.png"
            title = f"{which}: {item['name']} (F1 {item['score']:.4f} at t={threshold:.3f})"
            save_panel(
                path, item["image"], item["label"], item["prob"], item["fov"], threshold, title
            )
            paths.append(path)
        return paths


def _fmt_csv(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def write_test_report(
    out: Path, report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> None:
    """``out/metrics.json`` (the report, NaN kept) and ``out/per_image.csv`` (the rows; NaN
    as an empty cell)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=True))
    if rows:
        keys = list(rows[0])
        lines = [",".join(keys)]
        for row in rows:
            lines.append(",".join(_fmt_csv(row[k]) for k in keys))
        (out / "per_image.csv").write_text("\n".join(lines) + "\n")


def save_test_figures(
    out: Path,
    report: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Any],
    panels: BestWorstPanels | None = None,
) -> list[Path]:
    """ROC / PR curves (with the human observer as a point), a per-image Jaccard box plot
    (004's recommendation) and the panels of the best and worst test images."""
    from retina_lightning.reports import save_boxplot, save_curves

    name = report["model"]
    so = report.get("second_observer")
    points = {"2nd observer": (1.0 - so["sp"], so["se"])} if so else None
    figures = list(
        save_curves(
            out,
            {name: (_numpy(curves["fpr"]), _numpy(curves["tpr"]))},
            pr={name: (_numpy(curves["recall"]), _numpy(curves["precision"]))},
            reference_points=points,
        )
    )
    values = [r["jaccard@opt"] for r in rows if not math.isnan(r["jaccard@opt"])]
    if values:
        path = out / "boxplot_jaccard.png"
        save_boxplot(path, {name: values}, "jaccard@opt")
        figures.append(path)
    if panels is not None:
        figures += panels.save(out, report["thresholds"]["opt"])
    return figures


class ReportWriter(Callback):
    """Write a :class:`~retina_lightning.tasks.SegmentationTask`'s test results (see the
    module docstring).

    Reads from the task: ``test_report`` and ``test_rows`` (set in its
    ``on_test_epoch_end``), ``test_curves``, ``results_dir`` and ``figures``; each
    ``test_step`` returns ``{"rows", "prob"}``, from which the best / worst panels are kept.
    """

    def __init__(self, panel_key: str = "f1@opt") -> None:
        self.panels = BestWorstPanels(panel_key)

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.panels.reset()

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not getattr(pl_module, "figures", False) or not isinstance(outputs, Mapping):
            return
        for i, row in enumerate(outputs["rows"]):
            self.panels.offer(
                row,
                batch["raw"][i].permute(1, 2, 0),
                batch["label"][i],
                outputs["prob"][i],
                batch["fov"][i],
            )

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        report = getattr(pl_module, "test_report", None)
        if report is None or not trainer.is_global_zero:
            return
        rows = pl_module.test_rows
        out = pl_module.results_dir or Path(trainer.default_root_dir) / "test"
        write_test_report(out, report, rows)
        rank_zero_info(f"test results written to {out}")
        figures = (
            save_test_figures(out, report, rows, pl_module.test_curves, self.panels)
            if pl_module.figures
            else []
        )
        from retina_lightning.tracking import log_test_results

        log_test_results(trainer.loggers, report, rows, figures)
        rank_zero_info(format_report(report))


def _threshold_origin(report: Mapping[str, Any]) -> str:
    criterion = report.get("threshold_criterion", "youden")
    return "fixed in the config" if criterion == "fixed" else f"{criterion}, chosen on validation"


def format_report(report: Mapping[str, Any]) -> str:
    """The test summary as a fixed-width table (pooled over pixels, and mean +- std over
    images), with the second human observer as a row when the dataset has one."""
    cols = ("auroc", "auprc", *CONFUSION_METRICS)
    head = f"{'':28s}" + "".join(f"{c:>16s}" for c in cols)
    lines = [
        f"{report['model']} ({report['num_parameters']:,} parameters), "
        f"{report['num_images']} test images, thresholds 0.5 and opt="
        f"{report['thresholds']['opt']:.4f} ({_threshold_origin(report)})",
        head,
    ]

    def cell(v: float | None, s: float | None = None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return f"{'-':>16s}"
        return f"{v:>7.4f} +- {s:<5.3f}" if s is not None else f"{v:>16.4f}"

    pooled, mean, std = report["pooled"], report["per_image_mean"], report["per_image_std"]
    for t in ("0.5", "opt"):
        lines.append(
            f"{'pooled @' + t:28s}"
            + "".join(cell(pooled.get(c if c in ("auroc", "auprc") else f"{c}@{t}")) for c in cols)
        )
    for t in ("0.5", "opt"):
        keys = [c if c in ("auroc", "auprc") else f"{c}@{t}" for c in cols]
        lines.append(
            f"{'per image @' + t:28s}" + "".join(cell(mean.get(k), std.get(k)) for k in keys)
        )
    unmasked = report.get("unmasked")
    if unmasked:
        keys = [c if c in ("auroc", "auprc") else f"{c}@0.5" for c in cols]
        lines.append(
            f"{'no FOV mask, pooled @0.5':28s}"
            + "".join(cell(unmasked["pooled"].get(k)) for k in keys)
        )
        um, us = unmasked["per_image_mean"], unmasked["per_image_std"]
        lines.append(
            f"{'no FOV mask, per image @0.5':28s}"
            + "".join(cell(um.get(k), us.get(k)) for k in keys)
        )
    for name, part in report.get("per_dataset", {}).items():
        for t in ("0.5", "opt"):
            label = f"{name} ({part['num_images']}) pooled @{t}"
            lines.append(
                f"{label:28s}"
                + "".join(
                    cell(part["pooled"].get(c if c in ("auroc", "auprc") else f"{c}@{t}"))
                    for c in cols
                )
            )
    if "connectivity" in mean:
        lines.append(
            f"{'connectivity (per image)':28s}{cell(mean['connectivity'], std['connectivity'])}"
        )
    if "second_observer" in report:
        so = report["second_observer"]
        lines.append(f"{'2nd observer (human)':28s}" + "".join(cell(so.get(c)) for c in cols))
    return "\n".join(lines)
