"""The cross-camera table of the shipped models, with default flags (issue 22, part 5).

    RETINA_DATA_ROOT=/data python benchmarks/zoo_cross_camera.py [--models drive ...]

For every shipped model (``retina models``) and every test set (DRIVE's 20 official test
images; CHASE_DB1's last 8, Image_11L..Image_14R):

1. ``retina test --model NAME --config <data fragment> --data...root=...``: the suite's pooled
   FOV metrics at the shipped threshold, with the default resolution (the model's training FOV
   diameter, followed beyond 5 %) and, for contrast, ``--data.init_args.fov_diameter=native``;
2. ``retina predict --model NAME --input <the test images> --output <tmp> --save_probs``, no
   other flag (DRIVE: ``--fov`` its masks; CHASE_DB1 publishes none, so predict derives them as
   the reader does), scored by an independent scorer (scikit-learn) against the first
   observer inside the dataset's FOV: AUC, F1 at the shipped threshold, and the best F1 any
   threshold reaches on those test images (an oracle, for the gap of the a-priori threshold).

Writes ``benchmarks/results/zoo_cross_camera.md``, ``benchmarks/results/zoo/summary.json`` and
each cell's ``metrics.json`` / ``per_image.csv``; the model cards' ``results`` read the summary
(``python scripts/ship_model.py NAME --card_only``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import cpu_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
OUT = RESULTS / "zoo"
#: test sets: (data fragment, dataset folder under RETINA_DATA_ROOT)
TEST_SETS = {
    "DRIVE test (20)": ("configs/data/drive.yaml", "DRIVE"),
    "CHASE_DB1 last 8": ("configs/data/chase_db1_20_8.yaml", "CHASE_DB1"),
}


def retina(*args: str) -> None:
    cmd = [sys.executable, "-m", "retina_lightning.cli", *args]
    print("$ retina " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def latest(folder: Path) -> Path:
    return max(folder.glob("test*"), key=lambda p: p.stat().st_mtime)


def samples_of(dataset: str, root: Path) -> list[Any]:
    from retina_lightning.data import CHASEDB1, DRIVE, FirstNSplit, OfficialSplit

    if dataset == "DRIVE":
        return OfficialSplit()(DRIVE(root / "DRIVE")).test
    return FirstNSplit(n_train=20, n_test=8, subset="all")(CHASEDB1(root / "CHASE_DB1")).test


def score_predict(model: str, dataset: str, root: Path, threshold: float) -> dict[str, float]:
    """``retina predict --model`` with no other flag on the test images, scored by
    scikit-learn inside the dataset's FOV (pooled over pixels)."""
    samples = samples_of(dataset, root)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        fov_args: list[str] = []
        for s in samples:
            src = Path(s.meta["image"]) if "image" in s.meta else None
            if src is None:
                raise SystemExit(f"{dataset}: sample {s.name} has no image path in its meta")
            (inputs / src.name).symlink_to(src)
        if dataset == "DRIVE":
            fov_args = ["--fov", str(root / "DRIVE" / "test" / "mask")]
        retina(
            "predict", "--model", model, "--input", str(inputs), "--output", str(out),
            "--save_probs", "--no_progress", *fov_args,
        )  # fmt: skip
        probs, labels = [], []
        for s in samples:
            stem = Path(s.meta["image"]).stem
            p = np.load(out / f"{stem}_probs.npy")
            prob = p[0] if p.shape[0] == 1 else 1.0 - p[0]
            fov = s.fov.astype(bool)
            probs.append(prob[fov])
            labels.append(s.label[fov] > 0)
    return _scores(np.concatenate(probs), np.concatenate(labels), threshold)


def _scores(prob: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score

    precision, recall, _ = precision_recall_curve(label, prob)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return {
        "auroc": float(roc_auc_score(label, prob)),
        "f1@shipped": float(f1_score(label, prob >= threshold)),
        "f1_best_threshold": float(f1.max()),
    }


def score_enlarged(
    model: str, root: Path, threshold: float, factor: int = 3, count: int = 10
) -> dict[str, Any]:
    """A larger camera, simulated: DRIVE's first ``count`` test images enlarged ``factor``
    times (bicubic; masks and labels nearest), FOV ~540 x factor px, through ``retina predict
    --model`` with default flags and with ``--fov_diameter native``, scored by scikit-learn."""
    from PIL import Image

    samples = samples_of("DRIVE", root)[:count]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs, masks = Path(tmp) / "in", Path(tmp) / "mask"
        inputs.mkdir()
        masks.mkdir()
        big = {}
        for s in samples:
            h, w = s.shape
            size = (w * factor, h * factor)
            Image.fromarray(s.image).resize(size, Image.BICUBIC).save(inputs / f"{s.name}.png")
            fov = Image.fromarray(s.fov.astype(np.uint8) * 255).resize(size, Image.NEAREST)
            fov.save(masks / f"{s.name}_mask.png")
            label = Image.fromarray((s.label > 0).astype(np.uint8)).resize(size, Image.NEAREST)
            big[s.name] = (np.asarray(fov) > 0, np.asarray(label) > 0)
        for mode, extra in (("default", []), ("native", ["--fov_diameter", "native"])):
            pred = Path(tmp) / f"out_{mode}"
            retina(
                "predict", "--model", model, "--input", str(inputs), "--output", str(pred),
                "--fov", str(masks), "--save_probs", "--no_progress", *extra,
            )  # fmt: skip
            probs, labels = [], []
            for name, (fov, label) in big.items():
                p = np.load(pred / f"{name}_probs.npy")
                prob = p[0] if p.shape[0] == 1 else 1.0 - p[0]
                probs.append(prob[fov])
                labels.append(label[fov])
                (pred / f"{name}_probs.npy").unlink()
            out[mode] = _scores(np.concatenate(probs), np.concatenate(labels), threshold)
    return out


def main(argv: list[str] | None = None) -> int:
    from retina_lightning.zoo import available

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", help="default: every shipped model")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("RETINA_DATA_ROOT", "data")).expanduser().resolve()
    models = available()
    names = args.models or list(models)
    OUT.mkdir(parents=True, exist_ok=True)
    rows, enlarged = [], []
    start = time.time()
    with tempfile.TemporaryDirectory() as runs:
        for name in names:
            card = models[name].card
            for test, (fragment, folder) in TEST_SETS.items():
                metrics: dict[str, Any] = {}
                for mode in ("default", "native"):
                    extra = ["--data.init_args.fov_diameter=native"] if mode == "native" else []
                    retina(
                        "test", "--model", name, "--config", fragment,
                        f"--data.init_args.dataset.init_args.root={root / folder}",
                        "--runs_dir", runs, "--model.init_args.figures=false", *extra,
                    )  # fmt: skip
                    result = latest(Path(runs) / "models" / name)
                    report = json.loads((result / "metrics.json").read_text())
                    pooled = report["pooled"]
                    metrics[mode] = {
                        k: pooled[k] for k in ("auroc", "f1@opt", "se@opt", "sp@opt", "f1@0.5")
                    }
                    if mode == "default":
                        cell = OUT / f"{name.replace('+', '_')}__{folder.lower()}"
                        cell.mkdir(parents=True, exist_ok=True)
                        for f in ("metrics.json", "per_image.csv"):
                            shutil.copy(result / f, cell / f)
                    shutil.rmtree(result)
                metrics["predict"] = score_predict(name, folder, root, card["threshold"])
                rows.append({"model": name, "test": test, "metrics": metrics})
                print(name, test, json.dumps(metrics["default"]), json.dumps(metrics["predict"]))
            enlarged.append({"model": name, **score_enlarged(name, root, card["threshold"])})
            print(name, "enlarged", json.dumps(enlarged[-1]))
    load = os.getloadavg()
    summary = {
        "command": "RETINA_DATA_ROOT=/data python benchmarks/zoo_cross_camera.py",
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, load {load[0]:.2f}",
        "minutes": round((time.time() - start) / 60, 1),
        "rows": rows,
        "enlarged": enlarged,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    write_table(summary, models)
    return 0


def write_table(summary: dict[str, Any], models: dict[str, Any]) -> None:
    lines = [
        "# Shipped models on two cameras, default flags (issue 22)",
        "",
        "Each shipped model (`retina models`) on DRIVE's 20 test images and CHASE_DB1's last 8, "
        "as a user runs it: `retina test --model NAME` (the suite's pooled FOV metrics at the "
        "shipped threshold; images resampled to the model's FOV diameter when theirs differs "
        "by more than 5 %), the same with `--data.init_args.fov_diameter=native` (the old "
        "default), and `retina predict --model NAME --input DIR --output DIR` scored by "
        "scikit-learn inside the dataset's FOV.",
        "",
        "| model (FOV px, threshold) | test set | AUC | F1 @shipped | Se | Sp | F1 @0.5 "
        "| AUC native | predict: AUC | predict: F1 @shipped | best-threshold F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        card = models[row["model"]].card
        d, n, p = row["metrics"]["default"], row["metrics"]["native"], row["metrics"]["predict"]
        lines.append(
            f"| {row['model']} ({card['fov_diameter']}, {card['threshold']:.3f}) | {row['test']} "
            f"| {d['auroc']:.4f} | {d['f1@opt']:.4f} | {d['se@opt']:.4f} | {d['sp@opt']:.4f} "
            f"| {d['f1@0.5']:.4f} | {n['auroc']:.4f} | {p['auroc']:.4f} | {p['f1@shipped']:.4f} "
            f"| {p['f1_best_threshold']:.4f} |"
        )
    lines += [
        "",
        "A larger camera, simulated: DRIVE's test images 01-10 enlarged 3x (1695 x 1752 px, FOV "
        "~1620 px; bicubic, labels and masks nearest), `retina predict --model NAME` with "
        "default flags and with `--fov_diameter native`, scored by scikit-learn:",
        "",
        "| model | AUC default | F1 @shipped default | AUC native | F1 @shipped native |",
        "|---|---|---|---|---|",
    ]
    for row in summary.get("enlarged", []):
        d, n = row["default"], row["native"]
        lines.append(
            f"| {row['model']} | {d['auroc']:.4f} | {d['f1@shipped']:.4f} | {n['auroc']:.4f} "
            f"| {n['f1@shipped']:.4f} |"
        )
    lines += [
        "",
        f"Rerun: `{summary['command']}` ({summary['minutes']} min on {summary['machine']}). "
        "Per-image rows: `benchmarks/results/zoo/<model>__<dataset>/per_image.csv`. "
        "Training commands: the model cards (`retina models NAME`).",
    ]
    (RESULTS / "zoo_cross_camera.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
