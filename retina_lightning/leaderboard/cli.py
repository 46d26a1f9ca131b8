"""Command line (``retina leaderboard ...``)::

retina leaderboard runs/ --dataset drive --metric auroc --metric f1@opt --sort auroc
retina leaderboard runs/ --compare dpn unet --metric f1@opt --boxplot f1.png
retina leaderboard cross --checkpoints a.ckpt b.ckpt --configs x.yaml y.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retina_lightning.data.resolution import parse_fov_diameter
from retina_lightning.leaderboard.cross import cross_dataset_matrix
from retina_lightning.leaderboard.results import LeaderboardError, collect_runs
from retina_lightning.leaderboard.stats import (
    paired_comparison,
    per_image_rows,
    save_method_boxplot,
)
from retina_lightning.leaderboard.tables import DEFAULT_METRICS, leaderboard_table


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


def _cross_main(argv: list[str]) -> int:
    from retina_lightning.runs import experiment_name

    parser = argparse.ArgumentParser(
        prog="retina leaderboard cross",
        description="Test every checkpoint on every dataset config: train x test matrices of "
        "AUROC and F1 (each checkpoint keeps its own preprocessing and threshold).",
    )
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        help="checkpoint files, or names of shipped models (`retina models`)",
    )
    parser.add_argument("--configs", nargs="+", required=True, help="experiment configs (data)")
    parser.add_argument("--names", nargs="+", help="row names (default: the run's experiment)")
    parser.add_argument("--f1", default="f1@opt", choices=["f1@opt", "f1@0.5"])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--format", choices=["md", "csv"], default="md")
    parser.add_argument("--output", help="write the matrices here instead of stdout")
    parser.add_argument("--results_dir", help="keep every test's metrics.json here")
    parser.add_argument(
        "--fov_diameter",
        type=parse_fov_diameter,
        default="ckpt",
        help="resample test images so their FOV is this many pixels across: 'ckpt' (default: "
        "each checkpoint's training setting), 'native', or a number (540 = DRIVE's scale)",
    )
    ns = parser.parse_args(argv)
    from retina_lightning.zoo import available

    shipped = available()
    ckpts = [
        shipped[p].checkpoint if p in shipped and not Path(p).exists() else Path(p)
        for p in ns.checkpoints
    ]
    labels = {m.checkpoint: name for name, m in shipped.items()}
    names = ns.names or [labels.get(p) or _checkpoint_label(p) for p in ckpts]
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
        fov_diameter=ns.fov_diameter,
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
    parser.add_argument(
        "paths",
        nargs="*",
        help="run folders or folders of runs holding test*/metrics.json (default: runs)",
    )
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
    paths = ns.paths or [p for p in ("runs",) if Path(p).is_dir()]
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
