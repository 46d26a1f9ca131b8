"""Leaderboards: the suite's runs side by side with the papers' numbers, with the spread over
seeds, paired per-image tests between methods, and train x test cross-dataset matrices.

Sources of runs (:func:`collect_runs`):

* the suite's own results: ``<runs>/<experiment>/<timestamp>/test*/metrics.json`` with
  ``per_image.csv`` beside it and the run's ``config.yaml`` (method, dataset, split, seed);
* W&B run folders (``wandb/offline-run-*``, ``wandb/run-*``) written by
  :class:`~retina_lightning.tracking.RetinaWandbLogger`, read without a server;
* the W&B public API (``wandb.Api().runs(project)``), only when W&B may go online
  (:func:`~retina_lightning.tracking.wandb_online`): nothing here touches the network
  otherwise.

A table row (:func:`leaderboard_table`) is a ``(dataset, protocol, method)``: the mean +- sample
standard deviation over its runs (seeds, or folds of a k-fold protocol: 004 section 5.1
averages folds), the number of runs, the parameter count and the speed when measured. The
papers' numbers (:mod:`retina_lightning.reference`) and the second human observer (002 / 003
tables' "2nd observer" row) are extra rows.

Whether one method beats another on the same test images is a paired question
(:func:`paired_comparison`): the Wilcoxon signed-rank test of the per-image differences and a
seeded percentile-bootstrap confidence interval of their mean. With 20 DRIVE test images, the
differences between the published methods (third decimal of AUC, 002 Table 1 / 003 Table 1)
are often within that interval.

Command line (``retina leaderboard ...``)::

    retina leaderboard runs/ --dataset drive --metric auroc --metric f1@opt --sort auroc
    retina leaderboard runs/ --compare dpn unet --metric f1@opt --boxplot f1.png
    retina leaderboard cross --checkpoints a.ckpt b.ckpt --configs x.yaml y.yaml
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retina_lightning.reference import ReportedResult, reported
from retina_lightning.tracking import (
    SPEED_KEYS,
    OfflineRun,
    canonical_dataset,
    flatten_report,
    read_offline_run,
    run_identity,
    wandb_online,
)

#: Columns of the default table: the papers' five numbers (002 / 003 tables), at the
#: validation-chosen operating point.
DEFAULT_METRICS = ("se@opt", "sp@opt", "acc@opt", "auroc", "f1@opt")
#: Keys of flattened reports that describe a run rather than measure it.
_NON_METRICS = ("num_images", "num_parameters", *SPEED_KEYS)


class LeaderboardError(ValueError):
    """Runs or arguments that cannot make the requested table or comparison."""


# ------------------------------------------------------------------------------------ runs
@dataclass
class RunResult:
    """One evaluated run.

    Attributes:
        method, dataset, protocol: the row it belongs to (see
            :class:`~retina_lightning.tracking.RunIdentity`).
        metrics: flat test metrics (keys of :func:`~retina_lightning.tracking.flatten_report`
            without speed / size keys: ``auroc``, ``f1@opt``, ``per_image/f1@opt``...).
        per_image: one dict per test image (``image`` plus per-image metrics), possibly empty.
        second_observer: the human baseline on the same test images, when the data has one.
        origin: ``results`` (metrics.json), ``wandb-offline`` or ``wandb-api``.
        source: the file, folder or URL it was read from.
    """

    method: str
    dataset: str
    protocol: str
    metrics: dict[str, float]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    experiment: str = ""
    seed: int | None = None
    fold: int | None = None
    num_parameters: int | None = None
    num_images: int | None = None
    images_per_s: float | None = None
    second_observer: dict[str, float] | None = None
    origin: str = "results"
    source: str = ""
    run_dir: str | None = None
    run_id: str | None = None


def _float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_per_image_csv(path: str | Path) -> list[dict[str, Any]]:
    """``per_image.csv`` as dicts: ``image`` stays a string, every other column a float
    (empty cells, written for undefined ratios, become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (v if k == "image" else _float(v)) for k, v in row.items()} for row in rows]


def _split_flat(flat: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float], dict]:
    """flattened report -> (metrics, second observer, run facts)."""
    metrics, observer, facts = {}, {}, {}
    for key, value in flat.items():
        if key.startswith("second_observer/"):
            observer[key.split("/", 1)[1]] = value
        elif key in _NON_METRICS:
            facts[key] = value
        else:
            metrics[key] = value
    return metrics, observer, facts


def _speed(facts: Mapping[str, float]) -> float | None:
    for key in ("images_per_s", "fps"):
        if math.isfinite(facts.get(key, math.nan)):
            return float(facts[key])
    spi = facts.get("seconds_per_image", math.nan)
    return 1.0 / spi if math.isfinite(spi) and spi > 0 else None


def _int_or_none(value: Any) -> int | None:
    v = _float(value)
    return int(v) if math.isfinite(v) else None


def _experiment_from_path(run_dir: Path, root: Path) -> str:
    """``<root>/drive/dpn/<timestamp>`` -> ``drive/dpn``; when ``root`` is the experiment or
    the run folder itself, the two folders above the run folder."""
    try:
        rel = run_dir.parent.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(".")
    if rel.parts:
        return "/".join(rel.parts)
    return "/".join(run_dir.resolve().parent.parts[-2:])


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        warnings.warn(
            f"{path}: cannot read the run's config ({err}); method / dataset / seed "
            "are guessed from the folder names",
            stacklevel=3,
        )
        return {}


def _test_index(test_dir: Path) -> int:
    m = re.fullmatch(r"test(?:-(\d+))?", test_dir.name)
    return int(m.group(1) or 1) if m else 0


def result_from_files(metrics_json: str | Path, root: str | Path | None = None) -> RunResult:
    """A :class:`RunResult` from ``<run>/test*/metrics.json``, its ``per_image.csv`` and the
    run's ``config.yaml`` (a ``config.yaml`` inside the test folder wins: it describes the
    data that was tested, e.g. for a cross-dataset evaluation)."""
    metrics_json = Path(metrics_json)
    test_dir = metrics_json.parent
    run_dir = test_dir.parent
    root = Path(root) if root is not None else run_dir.parent
    config: dict[str, Any] = {}
    for candidate in (test_dir / "config.yaml", run_dir / "config.yaml"):
        if candidate.is_file():
            config = _load_yaml(candidate)
            break
    experiment = config.get("experiment") or _experiment_from_path(run_dir, root)
    ident = run_identity(experiment, config)
    report = json.loads(metrics_json.read_text())
    metrics, observer, facts = _split_flat(flatten_report(report))
    per_image_csv = test_dir / "per_image.csv"
    return RunResult(
        method=ident.method,
        dataset=ident.dataset,
        protocol=ident.protocol,
        metrics=metrics,
        per_image=read_per_image_csv(per_image_csv) if per_image_csv.is_file() else [],
        model=str(report.get("model") or ident.model),
        experiment=ident.experiment,
        seed=ident.seed,
        fold=ident.fold,
        num_parameters=_int_or_none(facts.get("num_parameters")),
        num_images=_int_or_none(facts.get("num_images")),
        images_per_s=_speed(facts),
        second_observer=observer or None,
        origin="results",
        source=str(metrics_json),
        run_dir=str(run_dir.resolve()),
    )


def _result_from_summary(
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    name: str,
    group: str,
    origin: str,
    source: str,
    per_image: list[dict[str, Any]],
    run_id: str | None,
) -> RunResult | None:
    flat = {
        k[len("test/") :]: float(v)
        for k, v in summary.items()
        if k.startswith("test/") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if "auroc" not in flat:
        return None  # a fit-only run, no test results
    metrics, observer, facts = _split_flat(flat)
    retina = config.get("retina") if isinstance(config.get("retina"), Mapping) else {}
    g_dataset, _, g_protocol = (group or "").partition("/")
    run_dir = retina.get("run_dir")
    return RunResult(
        method=str(retina.get("method") or name or "unknown"),
        dataset=canonical_dataset(str(retina.get("dataset") or g_dataset or "unknown")),
        protocol=str(retina.get("protocol") or g_protocol or "official"),
        metrics=metrics,
        per_image=per_image,
        model=str(retina.get("model") or ""),
        experiment=str(retina.get("experiment") or name or ""),
        seed=retina.get("seed"),
        fold=retina.get("fold"),
        num_parameters=_int_or_none(facts.get("num_parameters")),
        num_images=_int_or_none(facts.get("num_images")),
        images_per_s=_speed(facts),
        second_observer=observer or None,
        origin=origin,
        source=source,
        run_dir=str(Path(run_dir).resolve()) if run_dir else None,
        run_id=run_id,
    )


def result_from_wandb_folder(folder: str | Path) -> RunResult | None:
    """A :class:`RunResult` from a W&B run folder (``None`` if it holds no test results)."""
    run: OfflineRun = read_offline_run(folder)
    result = _result_from_summary(
        run.summary,
        run.config,
        run.name,
        run.group,
        "wandb-offline",
        str(run.folder),
        run.table("test/per_image"),
        run.run_id,
    )
    if result is not None:  # RetinaWandbLogger writes into <run_dir>/wandb/
        result.run_dir = str(run.folder.resolve().parent.parent)
    return result


def _wandb_api_runs(project: str) -> list[RunResult]:
    """Runs of a W&B project through the public API. Only called when
    :func:`~retina_lightning.tracking.wandb_online` allows it. Per-image tables are not
    downloaded (paired tests need the local results)."""
    import wandb

    out = []
    for run in wandb.Api().runs(project):
        summary = dict(getattr(run.summary, "_json_dict", {}) or {})
        result = _result_from_summary(
            summary, dict(run.config), run.name, run.group or "", "wandb-api", run.url, [], run.id
        )
        if result is not None:
            out.append(result)
    return out


def _wandb_folders(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*run-*")
        if p.is_dir() and p.parent.name == "wandb" and re.match(r"(offline-)?run-", p.name)
    )


def collect_runs(
    paths: Iterable[str | Path] = ("runs",),
    wandb_project: str | None = None,
    latest_only: bool = True,
) -> list[RunResult]:
    """Every evaluated run under ``paths`` (folders are searched recursively; a
    ``metrics.json`` or a W&B run folder can also be given directly).

    Args:
        paths: run roots (``runs/``), experiment folders, run folders or files.
        wandb_project: also read this W&B project through the API (``entity/project``),
            if and only if W&B may go online; otherwise it is skipped with a warning.
        latest_only: of several evaluations of one run on the same dataset (``test/``,
            ``test-2/``...), keep the latest.

    A W&B run folder that belongs to a run whose ``metrics.json`` was found is skipped (the
    same evaluation twice); of several W&B folders of one run id (a resumed run), the one
    with test results read last wins.
    """
    results: list[RunResult] = []
    wandb_results: dict[str, RunResult] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise LeaderboardError(f"{path}: no such file or folder")
        if path.is_file():
            if path.name != "metrics.json":
                raise LeaderboardError(f"{path}: expected a folder or a test metrics.json")
            results.append(result_from_files(path))
            continue
        if re.match(r"(offline-)?run-", path.name) and path.parent.name == "wandb":
            folders = [path]
        else:
            folders = _wandb_folders(path)
        tests = sorted(p for p in path.rglob("metrics.json") if p.parent.name.startswith("test"))
        for metrics_json in tests:
            results.append(result_from_files(metrics_json, root=path))
        for folder in folders:
            try:
                result = result_from_wandb_folder(folder)
            except (OSError, ValueError) as err:
                warnings.warn(f"{folder}: skipped, not readable ({err})", stacklevel=2)
                continue
            if result is not None:
                wandb_results[result.run_id or str(folder)] = result
    if latest_only:
        latest: dict[tuple[str, str], RunResult] = {}
        for r in results:
            key = (r.run_dir or r.source, r.dataset)
            old = latest.get(key)
            if old is None or _test_index(Path(r.source).parent) > _test_index(
                Path(old.source).parent
            ):
                latest[key] = r
        results = list(latest.values())
    seen_dirs = {r.run_dir for r in results}
    results += [r for r in wandb_results.values() if not r.run_dir or r.run_dir not in seen_dirs]
    if wandb_project:
        if wandb_online():
            results += _wandb_api_runs(wandb_project)
        else:
            warnings.warn(
                f"W&B project {wandb_project!r} not read: W&B is offline (WANDB_MODE, or no API "
                "key: run `wandb login` or set WANDB_API_KEY)",
                stacklevel=2,
            )
    return results


# ----------------------------------------------------------------------------------- table
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


# ------------------------------------------------------------------------ paired comparison
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


# ---------------------------------------------------------------------------- cross-dataset
@dataclass
class CrossDatasetMatrix:
    """Train x test matrices (rows: the checkpoint's training data, columns: the test data);
    ``in_domain[i, j]`` marks a checkpoint tested on its own dataset (the diagonal when the
    names line up). ``reports[(row, col)]`` is the full test report."""

    train: list[str]
    test: list[str]
    auroc: np.ndarray
    f1: np.ndarray
    in_domain: np.ndarray
    f1_key: str = "f1@opt"
    reports: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: ``{(row index, column index): one-line reason}`` of the cells that could not be tested
    missing: dict[tuple[int, int], str] = field(default_factory=dict)

    def missing_lines(self) -> list[str]:
        """One line per missing cell: ``train x test: reason``."""
        return [
            f"{self.train[i]} x {self.test[j]}: {reason}"
            for (i, j), reason in sorted(self.missing.items())
        ]

    def _table(self, title: str, values: np.ndarray) -> list[str]:
        lines = [f"{title} (rows: trained on, columns: tested on; * = in-domain)", ""]
        lines.append("| train \\ test | " + " | ".join(self.test) + " |")
        lines.append("|---|" + "---|" * len(self.test))
        for i, name in enumerate(self.train):
            cells = [
                "missing"
                if (i, j) in self.missing
                else f"{values[i, j]:.4f}{'*' if self.in_domain[i, j] else ''}"
                for j in range(len(self.test))
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    def to_markdown(self) -> str:
        lines = self._table("AUROC", self.auroc) + [""] + self._table(self.f1_key, self.f1)
        if self.missing:
            lines += ["", "Missing cells:", *(f"- {line}" for line in self.missing_lines())]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["train", "test", "in_domain", "auroc", self.f1_key, "missing"])
        for i, tr in enumerate(self.train):
            for j, te in enumerate(self.test):
                w.writerow(
                    [
                        tr,
                        te,
                        bool(self.in_domain[i, j]),
                        repr(float(self.auroc[i, j])),
                        repr(float(self.f1[i, j])),
                        self.missing.get((i, j), ""),
                    ]
                )
        return buf.getvalue()


def datamodule_from_config(config: str | Path | Mapping[str, Any]) -> Any:
    """A :class:`~retina_lightning.data.RetinaDataModule` from an experiment config file
    (its ``data:`` section) or from a ``{class_path, init_args}`` mapping."""
    import yaml
    from jsonargparse import ArgumentParser

    from retina_lightning.data import RetinaDataModule

    if isinstance(config, (str, Path)):
        raw = yaml.safe_load(Path(config).read_text()) or {}
        where = str(config)
    else:
        raw, where = dict(config), "mapping"
    data = raw.get("data", raw)
    if not isinstance(data, Mapping) or "class_path" not in data:
        raise LeaderboardError(
            f"{where}: expected a `data:` section with class_path / init_args (as in "
            "configs/synthetic/unet.yaml)"
        )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(RetinaDataModule, "data", required=True)
    return parser.instantiate_classes(parser.parse_object({"data": dict(data)})).data


def _public_state(obj: Any) -> tuple[str, str]:
    state = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return type(obj).__name__, repr(sorted(state.items(), key=lambda kv: kv[0]))


def cross_dataset_matrix(
    checkpoints: Mapping[str, str | Path],
    datasets: Mapping[str, str | Path | Mapping[str, Any] | Any],
    f1_key: str = "f1@opt",
    accelerator: str = "cpu",
    results_dir: str | Path | None = None,
    connectivity: bool = False,
    fov_diameter: int | str | None = "ckpt",
) -> CrossDatasetMatrix:
    """Test every checkpoint on every dataset (DPN's cross-training experiment, 002 section
    4.5.3 / Table 4: a model trained on one dataset applied to another without retraining).

    Each checkpoint keeps its own preprocessing (from the datamodule config saved in the
    checkpoint) and its own validation-chosen threshold (the ``threshold`` buffer); only the
    images, labels, FOV masks and split come from the test dataset. With
    ``normalize: dataset`` the mean / std are those of the *test* dataset's training images.

    Args:
        checkpoints: ``{name: checkpoint path}`` (rows).
        datasets: ``{name: config file | data mapping | RetinaDataModule}`` (columns).
        f1_key: which F1 fills the second matrix (``f1@opt`` or ``f1@0.5``).
        accelerator: Lightning accelerator for the test passes.
        results_dir: also write each test's ``metrics.json`` / ``per_image.csv`` to
            ``<results_dir>/<row>__<col>/``.
        connectivity: compute IterNet's connectivity per image (slow).
        fov_diameter: the scale every test image is resampled to (issue 13): ``"ckpt"``
            (default) the checkpoint's own training setting, ``None`` native size, or a
            diameter in pixels (e.g. 540, DRIVE's, for a model trained on DRIVE without it).
    """
    import tempfile

    import torch
    from lightning import Trainer

    from retina_lightning.data import RetinaDataModule
    from retina_lightning.data.base import DatasetError
    from retina_lightning.tasks import SegmentationTask

    train, test = list(checkpoints), list(datasets)
    # a column whose data cannot be read is reported missing (issue 15, item 8): the other
    # cells are still tested and the matrix still printed
    targets: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for name, spec in datasets.items():
        try:
            dm = spec if isinstance(spec, RetinaDataModule) else datamodule_from_config(spec)
            dm.setup("test")
            targets[name] = dm
        except (DatasetError, LeaderboardError, OSError) as err:
            where = f"{spec}: " if isinstance(spec, (str, Path)) else ""
            broken[name] = where + " ".join(str(err).split())
    auroc = np.full((len(train), len(test)), np.nan)
    f1 = np.full_like(auroc, np.nan)
    in_domain = np.zeros(auroc.shape, dtype=bool)
    reports: dict[tuple[str, str], dict[str, Any]] = {}
    missing = {
        (i, test.index(col)): reason for i in range(len(train)) for col, reason in broken.items()
    }
    scratch = tempfile.TemporaryDirectory() if results_dir is None else None
    out_root = Path(results_dir) if results_dir is not None else Path(scratch.name)  # type: ignore[union-attr]
    try:
        for i, (row, ckpt) in enumerate(checkpoints.items()):
            ckpt = Path(ckpt)
            if not ckpt.is_file():
                raise LeaderboardError(f"checkpoint {ckpt}: no such file")
            raw = torch.load(ckpt, map_location="cpu", weights_only=False)
            source = None
            if raw.get("datamodule_hyper_parameters"):
                source = RetinaDataModule.load_from_checkpoint(ckpt)
            else:
                warnings.warn(
                    f"{ckpt} holds no datamodule config (trained outside `retina fit`?): "
                    "each test set's own preprocessing is used",
                    stacklevel=2,
                )
            for j, col in enumerate(test):
                if col in broken:
                    continue
                target = targets[col]
                task = SegmentationTask.load_from_checkpoint(ckpt, map_location="cpu")
                task.connectivity = connectivity
                if hasattr(task, "figures"):
                    task.figures = False
                task.results_dir = out_root / f"{row}__{col}".replace("/", "_")
                dm = RetinaDataModule(
                    dataset=target.dataset,
                    split=target.split,
                    target=target.target,
                    preprocess=source.preprocess if source is not None else target.preprocess,
                    patch_size=target.patch_size,
                    batch_size=target.batch_size,
                    steps_per_epoch=target.steps_per_epoch,
                    eval_batch_size=target.eval_batch_size,
                    num_workers=target.num_workers,
                    seed=target.seed,
                    fov_diameter=(
                        (source.fov_diameter if source is not None else target.fov_diameter)
                        if fov_diameter == "ckpt"
                        else fov_diameter
                    ),
                )
                trainer = Trainer(
                    accelerator=accelerator,
                    devices=1,
                    logger=False,
                    enable_checkpointing=False,
                    enable_progress_bar=False,
                    enable_model_summary=False,
                    default_root_dir=out_root,
                )
                trainer.test(task, datamodule=dm, verbose=False)
                report = task.test_report or {}
                reports[(row, col)] = report
                pooled = report.get("pooled", {})
                auroc[i, j] = _float(pooled.get("auroc"))
                f1[i, j] = _float(pooled.get(f1_key))
                if source is not None:
                    in_domain[i, j] = _public_state(source.dataset) == _public_state(target.dataset)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return CrossDatasetMatrix(train, test, auroc, f1, in_domain, f1_key, reports, missing)


# ------------------------------------------------------------------------------------- CLI
def _metrics_arg(values: list[str] | None) -> list[str]:
    if not values:
        return list(DEFAULT_METRICS)
    return [m.strip() for v in values for m in v.split(",") if m.strip()]


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        print(f"written to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _checkpoint_label(path: Path) -> str:
    """``.../runs/drive/dpn/<stamp>/checkpoints/x.ckpt`` -> ``drive/dpn``; else the stem."""
    parts = path.resolve().parts
    if "runs" in parts and path.parent.name == "checkpoints":
        i = len(parts) - 1 - parts[::-1].index("runs")
        return "/".join(parts[i + 1 : -3]) or path.stem
    return path.stem


def _fov_diameter_option(text: str) -> int | str | None:
    if text in ("ckpt", "native"):
        return None if text == "native" else text
    if not text.isdigit() or int(text) < 16:
        raise LeaderboardError(
            f"--fov_diameter {text!r}: expected 'ckpt', 'native' or a diameter in pixels >= 16"
        )
    return int(text)


def _cross_main(argv: list[str]) -> int:
    from retina_lightning.runs import experiment_name

    parser = argparse.ArgumentParser(
        prog="retina leaderboard cross",
        description="Test every checkpoint on every dataset config: train x test matrices of "
        "AUROC and F1 (each checkpoint keeps its own preprocessing and threshold).",
    )
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint files")
    parser.add_argument("--configs", nargs="+", required=True, help="experiment configs (data)")
    parser.add_argument("--names", nargs="+", help="row names (default: the run's experiment)")
    parser.add_argument("--f1", default="f1@opt", choices=["f1@opt", "f1@0.5"])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--format", choices=["md", "csv"], default="md")
    parser.add_argument("--output", help="write the matrices here instead of stdout")
    parser.add_argument("--results_dir", help="keep every test's metrics.json here")
    parser.add_argument(
        "--fov_diameter",
        default="ckpt",
        help="resample test images so their FOV is this many pixels across: 'ckpt' (default: "
        "each checkpoint's training setting), 'native', or a number (540 = DRIVE's scale)",
    )
    ns = parser.parse_args(argv)
    ckpts = [Path(p) for p in ns.checkpoints]
    names = ns.names or [_checkpoint_label(p) for p in ckpts]
    if len(names) != len(ckpts) or len(set(names)) != len(names):
        parser.error(f"--names must give {len(ckpts)} distinct names, got {names}")
    cols = [experiment_name([c]) for c in ns.configs]
    if len(set(cols)) != len(cols):
        cols = [f"{c}#{k}" for k, c in enumerate(cols)]
    matrix = cross_dataset_matrix(
        dict(zip(names, ckpts)),
        dict(zip(cols, ns.configs)),
        f1_key=ns.f1,
        accelerator=ns.accelerator,
        results_dir=ns.results_dir,
        fov_diameter=_fov_diameter_option(ns.fov_diameter),
    )
    if not ns.names:  # a checkpoint trained on exactly one of the columns takes its name
        rows = [
            matrix.test[int(np.flatnonzero(d)[0])] if d.sum() == 1 else n
            for n, d in zip(matrix.train, matrix.in_domain)
        ]
        if len(set(rows)) == len(rows):
            matrix.reports = {
                (rows[matrix.train.index(r)], c): v for (r, c), v in matrix.reports.items()
            }
            matrix.train = rows
    _write(matrix.to_markdown() if ns.format == "md" else matrix.to_csv(), ns.output)
    for line in matrix.missing_lines():
        print(f"retina leaderboard cross: missing {line}", file=sys.stderr)
    return 1 if matrix.missing else 0


def leaderboard_main(argv: Sequence[str] | None = None) -> int:
    """``retina leaderboard [paths...] [--metric M ...] [--sort M] [--format md|csv]
    [--output FILE] [--dataset D] [--compare A B] [--boxplot FILE] [--project P]``, and
    ``retina leaderboard cross ...`` for cross-dataset matrices. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "cross":
        return _cross_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="retina leaderboard",
        description="Tabulate test results (mean +- std over seeds) next to the papers' "
        "numbers; paired per-image tests between methods. `retina leaderboard cross --help` "
        "for cross-dataset matrices.",
    )
    parser.add_argument("paths", nargs="*", help="run folders / W&B folders (default: runs)")
    parser.add_argument("--metric", action="append", help=f"column(s); default {DEFAULT_METRICS}")
    parser.add_argument("--sort", help="metric to sort by (default: the first --metric)")
    parser.add_argument("--format", choices=["md", "csv"], default="md")
    parser.add_argument("--output", help="write the table here instead of stdout")
    parser.add_argument("--dataset", help="only this test dataset (drive, stare, chase_db1...)")
    parser.add_argument("--no-reported", action="store_true", help="leave out the papers' rows")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="paired test of 2 methods")
    parser.add_argument("--boxplot", help="PNG of the per-image values of the sort metric")
    parser.add_argument("--project", help="also read this W&B project (only when online)")
    parser.add_argument("--all-tests", action="store_true", help="keep test-2/... evaluations")
    ns = parser.parse_args(argv)
    paths = ns.paths or [p for p in ("runs", "wandb") if Path(p).is_dir()]
    if not paths and not ns.project:
        print("retina leaderboard: no runs/ folder here; pass the folders to read", file=sys.stderr)
        return 2
    try:
        runs = collect_runs(paths, wandb_project=ns.project, latest_only=not ns.all_tests)
        if not runs:
            print(
                f"retina leaderboard: no test results under {', '.join(map(str, paths))}; "
                "evaluate first with `retina test --config <config> --ckpt_path best`",
                file=sys.stderr,
            )
            return 1
        metrics = _metrics_arg(ns.metric)
        sort_by = ns.sort or metrics[0]
        table = leaderboard_table(
            runs, metrics, sort_by, include_reported=not ns.no_reported, dataset=ns.dataset
        )
        _write(table.to_markdown() if ns.format == "md" else table.to_csv(), ns.output)
        metric = sort_by.removeprefix("per_image/")
        if ns.compare:
            a, b = ns.compare
            result = paired_comparison(
                per_image_rows(runs, a, ns.dataset),
                per_image_rows(runs, b, ns.dataset),
                metric,
                names=(a, b),
            )
            print(result)
        if ns.boxplot:
            print(f"box plot: {save_method_boxplot(ns.boxplot, runs, metric, ns.dataset)}")
    except LeaderboardError as err:
        print(f"retina leaderboard: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(leaderboard_main())
