"""Cross-dataset table: DRIVE <-> CHASE_DB1, train x test, with and without the resolution
option (issue 13; DPN's cross-training experiment, 002 section 4.5.3, Table 4).

Two steps, so the trainings can run in the background (one process per core):

    python benchmarks/cross_dataset.py train --method r2unet --dataset chase_db1 --resolution 540
    python benchmarks/cross_dataset.py table        # tests every checkpoint, writes the tables

``train`` is one ``retina fit``: the method's DRIVE config with a data fragment layered after it
(``configs/data/drive.yaml`` or ``configs/data/chase_db1_20_8.yaml``), so only the dataset
changes; ``--resolution 540`` adds ``--data.init_args.fov_diameter=540`` (DRIVE's FOV diameter:
CHASE_DB1 images are shrunk 1.7x). A DRIVE model needs no separate 540 run: DRIVE's FOVs are
535-541 px across, so its native model is the 540 model.

``table`` runs ``retina leaderboard cross``'s matrix twice per method: native (each model on
each test set at its native size) and at FOV diameter 540 (the CHASE_DB1 model trained at 540,
every test image resampled to 540, probabilities mapped back before the metrics), and writes
``benchmarks/results/cross_dataset.md`` / ``.csv`` with DPN's Table 4 and each dataset's second
observer beside them. Data: ``$RETINA_DATA_ROOT`` holding ``DRIVE/`` and ``CHASE_DB1/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METHODS = {
    # the 001 recipe as configs/drive/r2unet.yaml (10 epochs, early stopping)
    "r2unet": ("configs/drive/r2unet.yaml", []),
    # 004's patch phase (Light), capped at 15 epochs of 666 steps
    "light": ("configs/drive/patch2image_light.yaml", ["--trainer.max_epochs=15"]),
}
DATASETS = {
    "drive": ("configs/data/drive.yaml", "DRIVE"),
    "chase_db1": ("configs/data/chase_db1_20_8.yaml", "CHASE_DB1"),
}
WORKING_DIAMETER = 540
#: DPN 002 Table 4 (AUC) and the second observers (REFERENCE.md; F1 against the first observer)
PAPER_ROWS = [
    ("DPN (002 Table 4)", "STARE -> DRIVE", "auroc 0.9685"),
    ("DPN (002 Table 4)", "DRIVE -> STARE", "auroc 0.9559"),
    ("DPN (002 Table 4)", "DRIVE -> STARE, CLAHE on training images", "auroc 0.9689"),
]


def data_root() -> Path:
    root = Path(os.environ.get("RETINA_DATA_ROOT", "data")).expanduser()
    missing = [d for _, d in DATASETS.values() if not (root / d).is_dir()]
    if missing:
        sys.exit(f"cross_dataset: {root} lacks {missing}; set RETINA_DATA_ROOT to their folder")
    return root


def experiment(method: str, dataset: str, resolution: str) -> str:
    return f"cross/{method}/{dataset}_{resolution}"


def fit_command(
    method: str,
    dataset: str,
    resolution: str,
    runs_dir: Path | None = None,
    root: str | None = None,
) -> list[str]:
    """The ``retina fit`` of one cell; ``root`` defaults to this machine's data folder."""
    config, extra = METHODS[method]
    fragment, folder = DATASETS[dataset]
    cmd = ["retina", "fit", "--config", config, "--config", fragment]
    cmd.append(f"--data.init_args.dataset.init_args.root={root or data_root()}/{folder}")
    cmd += [*extra, f"--experiment={experiment(method, dataset, resolution)}"]
    if runs_dir is not None:
        cmd.append(f"--runs_dir={runs_dir}")
    if resolution != "native":
        cmd.append(f"--data.init_args.fov_diameter={int(resolution)}")
    return cmd


def train(ns: argparse.Namespace) -> int:
    cmd = fit_command(ns.method, ns.dataset, ns.resolution, Path(ns.runs_dir))
    print("$", " ".join(cmd), file=sys.stderr)
    start = time.time()
    rc = subprocess.call([str(Path(sys.executable).parent / "retina"), *cmd[1:]], cwd=REPO)
    print(
        f"[cross_dataset] {ns.method} on {ns.dataset} ({ns.resolution}): rc {rc}, "
        f"{(time.time() - start) / 60:.1f} min",
        file=sys.stderr,
    )
    return rc


def latest_checkpoint(runs_dir: Path, name: str) -> Path:
    from retina_lightning.runs import resolve_checkpoint

    return resolve_checkpoint("best", runs_dir, name)


def keep_run(checkpoint: Path, into: Path) -> None:
    """Copy a training run's config and curves (never its checkpoints) next to the table."""
    import shutil

    from retina_lightning.runs import run_dir_of

    run = run_dir_of(checkpoint)
    into.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "metrics.csv"):
        if (run / name).is_file():
            shutil.copy2(run / name, into / name)


def test_spec(dataset: str) -> dict[str, Any]:
    fragment, folder = DATASETS[dataset]
    data = yaml.safe_load((REPO / fragment).read_text())["data"]
    data["init_args"]["dataset"]["init_args"]["root"] = str(data_root() / folder)
    return data


def table(ns: argparse.Namespace) -> int:
    from retina_lightning.leaderboard import cross_dataset_matrix

    runs_dir = Path(ns.runs_dir)
    rows: list[dict[str, Any]] = []
    observers: dict[str, dict[str, float]] = {}
    for method in ns.methods:
        for resolution in ("native", str(WORKING_DIAMETER)):
            checkpoints = {
                "drive": latest_checkpoint(runs_dir, experiment(method, "drive", "native")),
                "chase_db1": latest_checkpoint(
                    runs_dir, experiment(method, "chase_db1", resolution)
                ),
            }
            matrix = cross_dataset_matrix(
                checkpoints,
                {d: test_spec(d) for d in DATASETS},
                f1_key="f1@opt",
                results_dir=RESULTS / "cross_dataset" / method / resolution,
                fov_diameter=None if resolution == "native" else WORKING_DIAMETER,
            )
            for train_on, ckpt in checkpoints.items():
                trained_at = "native" if train_on == "drive" else resolution
                keep_run(
                    ckpt, RESULTS / "cross_dataset" / method / "runs" / f"{train_on}_{trained_at}"
                )
            for (train_on, test_on), report in matrix.reports.items():
                pooled = report.get("pooled", {})
                rows.append(
                    {
                        "method": method,
                        "resolution": resolution,
                        "train": train_on,
                        "test": test_on,
                        "in_domain": train_on == test_on,
                        "auroc": pooled.get("auroc"),
                        "f1@opt": pooled.get("f1@opt"),
                        "f1@0.5": pooled.get("f1@0.5"),
                        "checkpoint": str(checkpoints[train_on]),
                    }
                )
                if "second_observer" in report:
                    observers[test_on] = report["second_observer"]
    print(write(rows, observers))
    return 0


def _f(x: Any) -> str:
    return "" if x is None else f"{float(x):.4f}"


def write(
    rows: list[dict[str, Any]], observers: dict[str, dict[str, float]], out: Path = RESULTS
) -> str:
    """``cross_dataset.csv`` (one row per method, resolution, train, test) and
    ``cross_dataset.md`` (native against fov 540 side by side) in ``out``; returns the md."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "cross_dataset.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    by = {(r["method"], r["resolution"], r["train"], r["test"]): r for r in rows}
    lines = [
        "# Cross-dataset: DRIVE <-> CHASE_DB1",
        "",
        "Pooled over the test images' FOV pixels; F1 at each model's validation-chosen threshold "
        "(its own dataset's validation images). Test sets: DRIVE's 20 official test images, "
        "CHASE_DB1's last 8 (Image_11L..Image_14R). `native`: every image at its own size; "
        f"`fov {WORKING_DIAMETER}`: every image (training and test) resampled so its FOV is "
        f"{WORKING_DIAMETER} px across (DRIVE's), probabilities mapped back before the metrics.",
        "Rebuilt by `python benchmarks/cross_dataset.py table` from the runs that "
        "`python benchmarks/cross_dataset.py train ...` made (commands in the CSV's folder).",
        "",
        "| method | train -> test | AUROC native | AUROC fov 540 | gain | F1 native | F1 fov 540 |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        for train_on in DATASETS:
            for test_on in DATASETS:
                a = by.get((method, "native", train_on, test_on))
                b = by.get((method, str(WORKING_DIAMETER), train_on, test_on))
                if a is None or b is None:
                    continue
                gain = (
                    f"{b['auroc'] - a['auroc']:+.4f}"
                    if a["auroc"] is not None and b["auroc"] is not None
                    else ""
                )
                where = f"{train_on} -> {test_on}" + (" (in-domain)" if train_on == test_on else "")
                lines.append(
                    f"| {method} | {where} "
                    f"| {_f(a['auroc'])} | {_f(b['auroc'])} | {gain} | {_f(a['f1@opt'])} "
                    f"| {_f(b['f1@opt'])} |"
                )
    lines += ["", "Second observer against the first (same test images and FOV):", ""]
    lines += ["| test set | Se | Sp | F1 |", "|---|---|---|---|"]
    for test_on, so in observers.items():
        lines.append(
            f"| {test_on} | {_f(so.get('se'))} | {_f(so.get('sp'))} | {_f(so.get('f1'))} |"
        )
    lines += [
        "",
        "Trainings (one `retina fit` each; `drive` at 540 is the native DRIVE model, whose FOVs "
        "are 535-541 px across):",
        "",
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        for dataset, resolution in (("drive", "native"), ("chase_db1", "native")) + (
            ("chase_db1", str(WORKING_DIAMETER)),
        ):
            fit = fit_command(method, dataset, resolution, root="$RETINA_DATA_ROOT")
            lines.append(
                f"- `python benchmarks/cross_dataset.py train --method {method} --dataset "
                f"{dataset} --resolution {resolution}` (= `{' '.join(fit)}`)"
            )
    lines += ["", "For scale, DPN (002 Table 4, STARE <-> DRIVE, its own protocol):", ""]
    lines += ["| method | direction | reported |", "|---|---|---|"]
    lines += [f"| {m} | {d} | {v} |" for m, d, v in PAPER_ROWS]
    text = "\n".join(lines) + "\n"
    (out / "cross_dataset.md").write_text(text)
    print(json.dumps({"written": str(out / "cross_dataset.md")}), file=sys.stderr)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="one retina fit of the table")
    t.add_argument("--method", choices=sorted(METHODS), required=True)
    t.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    t.add_argument("--resolution", choices=["native", str(WORKING_DIAMETER)], default="native")
    t.add_argument("--runs_dir", default="runs")
    b = sub.add_parser("table", help="test every checkpoint on both test sets, write the tables")
    b.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    b.add_argument("--runs_dir", default="runs")
    ns = parser.parse_args(argv)
    return train(ns) if ns.command == "train" else table(ns)


if __name__ == "__main__":
    sys.exit(main())
