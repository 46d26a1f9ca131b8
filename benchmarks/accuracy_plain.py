"""The plain-script row of the accuracy benchmark (``bench_accuracy.py --plain``).

Runs ``benchmarks/plain_unet.py`` (a suite-independent PyTorch script) with the same
wall-clock budget and threads as the suite's methods, then scores the test probabilities it
writes with the suite's own metrics (:mod:`retina_lightning.metrics`: pooled over the FOV
pixels, exact AUROC, the confusion metrics at 0.5, IterNet's connectivity), so the plain row
and the suite's rows share one definition of every number. The script has no validation
images, so it has no chosen threshold: its row is read at 0.5 and threshold-free.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import log

SCRIPT = Path(__file__).resolve().parent / "plain_unet.py"
#: the folder of its runs under ``runs/bench_accuracy/<budget>/``.
KEY = "plain_unet"
LABEL = "plain script (benchmarks/plain_unet.py)"
#: written beside the run's ``run.json``: the scored report (for ``--rebuild``).
REPORT = "bench_accuracy.json"


def score_maps(folder: Path, drive: Path) -> dict[str, Any]:
    """Score ``<folder>/<image>.npy`` probability maps against DRIVE's test labels (first
    observer) inside the FOV masks: ``{"pooled": ..., "per_image_mean": ...}`` with the keys
    of a ``retina test`` report (``auroc``, ``f1@0.5``, ``connectivity``, ...)."""
    from retina_lightning.data import DRIVE
    from retina_lightning.metrics import PooledBinaryMetrics, image_row, summarize_rows

    pooled = PooledBinaryMetrics()
    rows = []
    at_half = {"0.5": 0.5}
    for sample in DRIVE(drive).load("test"):
        path = folder / f"{sample.name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the plain script wrote no map for {sample.name}")
        prob = torch.from_numpy(np.load(path))
        target = torch.from_numpy(sample.label > 0)
        fov = torch.from_numpy(sample.fov)
        if prob.shape != target.shape:
            raise ValueError(
                f"{path}: map {tuple(prob.shape)} but {sample.name} is {tuple(target.shape)}"
            )
        pooled.update(prob, target, fov)
        rows.append(image_row(sample.name, prob, target, fov, at_half, connectivity=True))
    mean = {key: value[0] for key, value in summarize_rows(rows).items()}
    return {
        "pooled": pooled.report(at_half),
        "per_image_mean": mean,
        "per_image": rows,
        "images": len(rows),
    }


def run_plain(
    drive: Path,
    minutes: float,
    folder: Path,
    max_steps: int | None = None,
    provenance: dict[str, Any] | None = None,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train the plain script for ``minutes`` in a fresh process (this process's torch
    threads; ``options``: more of its arguments), score its test maps; the report is also
    saved as ``<folder>/<stamp>/REPORT``."""
    out = folder / time.strftime("%Y%m%d-%H%M%S")
    command = [sys.executable, str(SCRIPT), "--drive", str(drive), "--eval-at", f"{minutes:g}"]
    command += ["--out", str(out), "--threads", str(torch.get_num_threads())]
    if max_steps is not None:
        command += ["--max-steps", str(max_steps)]
    command += options
    log(f"[bench_accuracy] {LABEL}: {' '.join(command)}")
    subprocess.run(command, check=True)
    run = json.loads((out / "run.json").read_text())
    snapshot = run["snapshots"][-1]
    report = score_maps(out / f"{snapshot['minutes']:g}min", drive)
    report |= {
        "steps": snapshot["steps"],
        "fit_s": snapshot["train_s"],
        "num_parameters": run["params"],
        "minutes": minutes,
        "plain_command": " ".join(command),
        "results_dir": str(out),
        **(provenance or {}),
    }
    (out / REPORT).write_text(json.dumps(report, indent=2))
    return report


def latest_plain(folder: Path, drive: Path | None = None) -> dict[str, Any]:
    """The newest scored plain run under ``folder`` (``--rebuild``); a report saved without
    per-image rows is scored again from its maps when ``drive`` is given."""
    found = sorted(folder.glob(f"*/{REPORT}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"--rebuild: no scored plain-script run under {folder}/*/ (no {REPORT}); run "
            "without --rebuild first"
        )
    report = json.loads(found[-1].read_text())
    if "per_image" not in report and drive is not None:
        maps = Path(report["results_dir"]) / f"{report['minutes']:g}min"
        report |= score_maps(maps, drive)
    return report


def paired_notes(suite: dict[str, Any], plain: dict[str, Any], label: str) -> list[str]:
    """Per-image paired comparisons (Wilcoxon signed-rank, bootstrap interval of the mean
    difference: :func:`retina_lightning.leaderboard.stats.paired_comparison`) of a suite
    method's test images against the plain script's, on AUROC and F1 at 0.5."""
    from retina_lightning.leaderboard.results import LeaderboardError
    from retina_lightning.leaderboard.stats import paired_comparison

    try:
        with open(Path(suite["results_dir"]) / "per_image.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        return [
            str(paired_comparison(rows, plain["per_image"], metric, (label, "plain script")))
            for metric in ("auroc", "f1@0.5")
        ]
    except (OSError, KeyError, LeaderboardError) as error:  # a missing comparison is a note
        return [f"{label} - plain script: no paired comparison ({error})"]


def plain_row(report: dict[str, Any], source: str) -> dict[str, Any]:
    """The table row (``bench_accuracy.COLUMNS``): threshold-free and at 0.5 only."""
    pooled = report["pooled"]
    return {
        "method": LABEL,
        "source": source,
        "params": report.get("num_parameters"),
        "train steps": report["steps"],
        "epochs": None,
        "fit s": report["fit_s"],
        "threshold": 0.5,
        "AUC": pooled.get("auroc"),
        "Acc@0.5": pooled.get("acc@0.5"),
        "F1@0.5": pooled.get("f1@0.5"),
        "Conn": report.get("per_image_mean", {}).get("connectivity"),
        "note": "not the suite: fp32, host-side NumPy patches, no validation (0.5 only)",
    }
