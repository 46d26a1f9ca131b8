"""Leaderboard tables (:func:`leaderboard_table`): Markdown / CSV.

A table row is a ``(dataset, protocol, method)``: the mean +- sample standard deviation over
its runs (seeds, or folds of a k-fold protocol: 004 section 5.1 averages folds), the number of
runs, the parameter count and the speed when measured. The papers' numbers
(:mod:`retina_lightning.reference`) and the second human observer (002 / 003 tables' "2nd
observer" row) are extra rows.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retina_lightning.leaderboard.results import LeaderboardError, RunResult
from retina_lightning.reference import ReportedResult, reported
from retina_lightning.tracking import canonical_dataset

#: Columns of the default table: the papers' five numbers (002 / 003 tables), at the
#: validation-chosen operating point.
DEFAULT_METRICS = ("se@opt", "sp@opt", "acc@opt", "auroc", "f1@opt")


def _base_metric(metric: str) -> str:
    """``f1@opt`` -> ``f1``; ``per_image/f1@opt`` -> ``f1``; ``auroc`` -> ``auroc``."""
    return metric.rsplit("/", 1)[-1].split("@", 1)[0]


@dataclass
class LeaderboardRow:
    """One row: ``values[metric] = (mean, std)`` over ``n`` runs (std NaN when ``n < 2``).
    ``kind`` is ``ours``, ``reported`` (a paper's number) or ``observer`` (the second human
    annotator on the same test images)."""

    method: str
    dataset: str
    protocol: str
    kind: str
    n: int
    values: dict[str, tuple[float, float]]
    num_parameters: float | None = None
    images_per_s: float | None = None
    source: str = ""

    def value(self, metric: str) -> float:
        return self.values.get(metric, (math.nan, math.nan))[0]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "-"
    if math.isfinite(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


@dataclass
class Leaderboard:
    """A leaderboard: :meth:`to_markdown` for the README / a terminal, :meth:`to_csv` for
    spreadsheets (separate ``<metric>_mean`` / ``<metric>_std`` columns, full precision)."""

    rows: list[LeaderboardRow]
    metrics: list[str]

    def to_markdown(self) -> str:
        head = ["method", "kind", "dataset", "protocol", "n", "params", *self.metrics]
        head += ["images/s", "source"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [
                r.method,
                r.kind,
                r.dataset,
                r.protocol,
                str(r.n) if r.kind == "ours" else "-",
                f"{int(r.num_parameters):,}" if r.num_parameters else "-",
                *(_fmt(*r.values.get(m, (math.nan, math.nan))) for m in self.metrics),
                f"{r.images_per_s:.2f}" if r.images_per_s else "-",
                r.source,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        cols = [f"{m}_{s}" for m in self.metrics for s in ("mean", "std")]
        writer.writerow(
            ["method", "kind", "dataset", "protocol", "n", "num_parameters", "images_per_s"]
            + cols
            + ["source"]
        )
        for r in self.rows:
            vals = []
            for m in self.metrics:
                mean, std = r.values.get(m, (math.nan, math.nan))
                vals += [
                    repr(mean) if math.isfinite(mean) else "",
                    repr(std) if math.isfinite(std) else "",
                ]
            writer.writerow(
                [
                    r.method,
                    r.kind,
                    r.dataset,
                    r.protocol,
                    r.n,
                    int(r.num_parameters) if r.num_parameters else "",
                    r.images_per_s or "",
                    *vals,
                    r.source,
                ]
            )
        return buf.getvalue()


def _reported_row(rec: ReportedResult, metrics: Sequence[str]) -> LeaderboardRow:
    values = {}
    for m in metrics:
        base = _base_metric(m)
        if not m.startswith("per_image") and base in rec.metrics:
            values[m] = (float(rec.metrics[base]), math.nan)
    notes = [rec.citation]
    if rec.threshold:
        notes.append(f"threshold {rec.threshold}")
    if not rec.fov:
        notes.append("no FOV mask")
    return LeaderboardRow(
        method=rec.label,
        dataset=rec.dataset,
        protocol=rec.protocol,
        kind="observer" if rec.method == "second_observer" else "reported",
        n=0,
        values=values,
        num_parameters=rec.extra.get("num_parameters"),
        images_per_s=rec.extra.get("fps"),
        source="; ".join(notes),
    )


def leaderboard_table(
    runs: Sequence[RunResult],
    metrics: Sequence[str] = DEFAULT_METRICS,
    sort_by: str | None = None,
    include_reported: bool = True,
    dataset: str | None = None,
    descending: bool = True,
) -> Leaderboard:
    """Rows = ``(dataset, protocol, method)``, columns = ``metrics`` as mean +- sample std over
    the runs of a row (seeds / folds).

    Args:
        runs: from :func:`collect_runs`.
        metrics: flat metric keys (``auroc``, ``f1@opt``, ``per_image/f1@opt``,
            ``connectivity``...).
        sort_by: metric to sort by (default: the first of ``metrics``); rows without it last.
        include_reported: add the papers' rows for the datasets shown
            (:func:`retina_lightning.reference.reported`), matched by metric name (``f1@opt``
            and ``f1@0.5`` both show a paper's F1; the source column says which threshold the
            paper used).
        dataset: keep only this test dataset.
        descending: larger is better (every metric of the suite).
    """
    metrics = list(metrics)
    if not metrics:
        raise LeaderboardError("no metric to show: pass e.g. metrics=['auroc', 'f1@opt']")
    sort_by = sort_by or metrics[0]
    ds = canonical_dataset(dataset) if dataset else None
    runs = [r for r in runs if ds is None or r.dataset == ds]
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.dataset, r.protocol, r.method), []).append(r)
    rows: list[LeaderboardRow] = []
    observers: dict[tuple[str, str], list[dict[str, float]]] = {}
    for (d, protocol, method), group in groups.items():
        values = {m: _mean_std([r.metrics.get(m, math.nan) for r in group]) for m in metrics}
        if sort_by not in values:
            values[sort_by] = _mean_std([r.metrics.get(sort_by, math.nan) for r in group])
        params = [r.num_parameters for r in group if r.num_parameters]
        speed = [r.images_per_s for r in group if r.images_per_s]
        seeds = sorted({r.seed for r in group if r.seed is not None})
        rows.append(
            LeaderboardRow(
                method=method,
                dataset=d,
                protocol=protocol,
                kind="ours",
                n=len(group),
                values=values,
                num_parameters=float(np.mean(params)) if params else None,
                images_per_s=float(np.mean(speed)) if speed else None,
                source="seeds " + ",".join(map(str, seeds)) if seeds else "",
            )
        )
        for r in group:
            if r.second_observer:
                observers.setdefault((d, protocol), []).append(r.second_observer)
    for (d, protocol), entries in observers.items():
        values = {}
        for m in metrics:
            base = _base_metric(m)
            if not m.startswith("per_image") and base in entries[0]:
                values[m] = (float(np.mean([e[base] for e in entries])), math.nan)
        rows.append(
            LeaderboardRow(
                "second_observer",
                d,
                protocol,
                "observer",
                0,
                values,
                source="2nd annotation of the same test images",
            )
        )
    if include_reported:
        for d in sorted({ds} if ds else {r.dataset for r in rows}):
            rows += [_reported_row(rec, metrics) for rec in reported(d)]

    def key(row: LeaderboardRow) -> tuple[int, float]:
        v = row.value(sort_by)
        return (0, -v if descending else v) if math.isfinite(v) else (1, 0.0)

    rows.sort(key=key)
    return Leaderboard(rows, metrics)
