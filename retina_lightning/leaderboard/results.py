"""Collecting evaluated runs (:func:`collect_runs`) as :class:`RunResult` rows.

Sources of runs:

* the suite's own results: ``<runs>/<experiment>/<timestamp>/test*/metrics.json`` with
  ``per_image.csv`` beside it and the run's ``config.yaml`` (method, dataset, split, seed),
  which every ``retina test`` writes;
* the W&B public API (``wandb.Api().runs(project)``), only when W&B may go online
  (:func:`~retina_lightning.tracking.wandb_online`): nothing here touches the network
  otherwise.

W&B's local run folders (``<run>/wandb/offline-run-*``) are not read: they are a private,
versioned format that changes with wandb releases, and the run folder that holds them holds
the same results in ``test*/metrics.json`` (issue 12). Pointed at one, :func:`collect_runs`
says where the results are or how to make them.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retina_lightning.identity import canonical_dataset, run_identity
from retina_lightning.tracking import SPEED_KEYS, flatten_report, wandb_online

#: Keys of flattened reports that describe a run rather than measure it.
_NON_METRICS = ("num_images", "num_parameters", *SPEED_KEYS)


class LeaderboardError(ValueError):
    """Runs or arguments that cannot make the requested table or comparison."""


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
        origin: ``results`` (metrics.json) or ``wandb-api`` (a W&B project).
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


def result_from_wandb_summary(
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    name: str,
    group: str,
    source: str,
    run_id: str | None = None,
) -> RunResult | None:
    """A :class:`RunResult` from a W&B run's summary (``test/<key>`` of
    :func:`~retina_lightning.tracking.flatten_report`) and config (the ``retina`` key that
    :class:`~retina_lightning.tracking.RetinaWandbLogger` stores); ``None`` for a run without
    test results. ``name`` and ``group`` (``<dataset>/<protocol>``) stand in for a missing
    ``retina`` key."""
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
        model=str(retina.get("model") or ""),
        experiment=str(retina.get("experiment") or name or ""),
        seed=retina.get("seed"),
        fold=retina.get("fold"),
        num_parameters=_int_or_none(facts.get("num_parameters")),
        num_images=_int_or_none(facts.get("num_images")),
        images_per_s=_speed(facts),
        second_observer=observer or None,
        origin="wandb-api",
        source=source,
        run_dir=str(Path(run_dir).resolve()) if run_dir else None,
        run_id=run_id,
    )


def _wandb_api_runs(project: str) -> list[RunResult]:
    """Runs of a W&B project through the public API. Only called when
    :func:`~retina_lightning.tracking.wandb_online` allows it. Per-image tables are not
    downloaded (paired tests need the local results)."""
    import wandb

    out = []
    for run in wandb.Api().runs(project):
        summary = dict(getattr(run.summary, "_json_dict", {}) or {})
        result = result_from_wandb_summary(
            summary, dict(run.config), run.name, run.group or "", run.url, run.id
        )
        if result is not None:
            out.append(result)
    return out


def _wandb_folder_notice(path: Path) -> str | None:
    """What to say when ``path`` is W&B's folder of a run (``<run>/wandb`` or
    ``<run>/wandb/offline-run-*``), which the leaderboard does not read; ``None`` otherwise."""
    if path.name == "wandb":
        run_dir = path.parent
    elif path.parent.name == "wandb" and re.match(r"(offline-)?run-", path.name):
        run_dir = path.parent.parent
    else:
        return None
    if any(run_dir.glob("test*/metrics.json")):
        return (
            f"{path}: W&B's run files are not read (the leaderboard reads test*/metrics.json); "
            f"this run's results are there: pass the run folder {run_dir}"
        )
    return (
        f"{path}: a W&B run without test results (the leaderboard reads test*/metrics.json, not "
        f"W&B's run files): run `retina test --config <config> --ckpt_path best` for the run in "
        f"{run_dir}, or upload it with `wandb sync {path}` and pass --project <entity>/<project>"
    )


def collect_runs(
    paths: Iterable[str | Path] = ("runs",),
    wandb_project: str | None = None,
    latest_only: bool = True,
) -> list[RunResult]:
    """Every evaluated run under ``paths`` (folders are searched recursively for
    ``test*/metrics.json``; a ``metrics.json`` can also be given directly).

    Args:
        paths: run roots (``runs/``), experiment folders, run folders or files.
        wandb_project: also read this W&B project through the API (``entity/project``),
            if and only if W&B may go online; otherwise it is skipped with a warning.
        latest_only: of several evaluations of one run on the same dataset (``test/``,
            ``test-2/``...), keep the latest.

    A path that is W&B's folder of a run (``<run>/wandb``, ``<run>/wandb/offline-run-*``)
    gives a warning saying where the run's results are, or how to make them. A run of the W&B
    project whose run folder was read here is skipped (the same evaluation twice).
    """
    results: list[RunResult] = []
    for path in map(Path, paths):
        if not path.exists():
            raise LeaderboardError(f"{path}: no such file or folder")
        if path.is_file():
            if path.name != "metrics.json":
                raise LeaderboardError(f"{path}: expected a folder or a test metrics.json")
            results.append(result_from_files(path))
            continue
        notice = _wandb_folder_notice(path)
        if notice:
            warnings.warn(notice, stacklevel=2)
            continue
        tests = sorted(p for p in path.rglob("metrics.json") if p.parent.name.startswith("test"))
        for metrics_json in tests:
            results.append(result_from_files(metrics_json, root=path))
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
    if wandb_project:
        if wandb_online():
            seen_dirs = {r.run_dir for r in results}
            results += [
                r
                for r in _wandb_api_runs(wandb_project)
                if not r.run_dir or r.run_dir not in seen_dirs
            ]
        else:
            warnings.warn(
                f"W&B project {wandb_project!r} not read: W&B is offline (WANDB_MODE, or no API "
                "key: run `wandb login` or set WANDB_API_KEY)",
                stacklevel=2,
            )
    return results
