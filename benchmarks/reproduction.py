"""The reproduction ledger: each method trained to its paper's recipe, next to the paper's number.

Two steps, both from saved runs (checkpoints are never committed):

* ``collect`` copies what a finished run measured (``metrics.json``, ``per_image.csv``, the
  training curves ``metrics.csv`` and the resolved ``config.yaml``) from a run directory into
  ``benchmarks/results/reproduction/<dataset>/<method>/<run>/`` together with ``run.json``
  (the command, the hardware, the wall-clock hours);
* ``build`` (the default) reads every collected run and writes
  ``benchmarks/results/reproduction.csv`` and ``.md``: one row per (method, dataset, protocol,
  metric) with the paper's number, our mean and standard deviation over runs (seeds), and,
  in the ``.md``, the 95 % t-interval of the gap to the paper. A row that has no run yet
  says why and how long it would take.

::

    python benchmarks/reproduction.py collect --kind patch2image --run runs/light/seed0 \\
        --into drive/patch2image_light/seed0 --hardware "AMD EPYC, 1 core, fp32" \\
        --command "retina patch2image --config configs/drive/patch2image_light.yaml ..."
    python benchmarks/reproduction.py            # rebuild reproduction.csv / .md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LEDGER_DIR = RESULTS / "reproduction"

COLUMNS = (
    "method",
    "dataset",
    "protocol",
    "metric",
    "paper",
    "ours_mean",
    "ours_std",
    "n",
    "hardware",
    "hours",
    "command",
    "note",
)

#: two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (no SciPy needed).
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One (method, dataset, protocol) of the ledger and where its numbers come from.

    Attributes:
        method: the method's name in the table.
        folder: ``<dataset>/<method key>`` below ``benchmarks/results/reproduction``.
        protocol: the paper whose protocol it follows and the variant (e.g. ``004 image
            fine-tuned``).
        phase: the results folder of each run to read (``finetune``, ``frozen``, ``patch``,
            ``test``).
        block: the part of ``metrics.json`` to read (dotted: ``unmasked.per_image_mean``,
            ``pooled``).
        metrics: ledger metric name -> (key in the block, the paper's value or ``None``).
        paper_where: where the paper's numbers are (table / section).
        command: how the runs were (or would be) made.
        pending: why there is no run yet, with estimated hours on this CPU and on a GPU.
    """

    method: str
    folder: str
    protocol: str
    phase: str
    block: str
    metrics: dict[str, tuple[str, float | None]]
    paper_where: str
    command: str
    pending: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_P2I_CMD = (
    "retina patch2image --config configs/drive/{cfg}.yaml "
    "--data.init_args.dataset.init_args.root=$DRIVE --seed_everything=$SEED "
    "--data.init_args.seed=$SEED --trainer.precision=32-true --trainer.max_epochs=60 "
    "--image_epochs 60 --image_patience 30 --no_scratch --experiment {key}/seed$SEED"
)
_MINIUNET_CMD = (
    "retina patch2image --config configs/drive/patch2image_miniunet.yaml "
    "--data.init_args.dataset.init_args.root=$DRIVE --seed_everything=$SEED "
    "--data.init_args.seed=$SEED --trainer.precision=bf16-mixed --trainer.max_epochs=60 "
    "--image_epochs 60 --image_patience 30 --no_scratch --experiment miniunet/seed$SEED"
)
_P2I_BLOCK = "unmasked.per_image_mean"
_P2I_NOTE = (
    "004's protocol: whole image, no FOV mask, threshold 0.5, metrics averaged over the 20 "
    "test images (the authors' code); patch phase capped at 60 epochs, image phase at 60 "
    "epochs with early stopping after 30 (004: 300 image epochs)"
)


def _p2i(phase: str, protocol: str, values: dict[str, float], **kw: Any) -> dict[str, Any]:
    keys = {"auc": "auroc", "f1": "f1@0.5", "acc": "acc@0.5", "se": "se@0.5", "sp": "sp@0.5"}
    return dict(
        phase=phase,
        protocol=protocol,
        block=_P2I_BLOCK,
        metrics={m: (keys[m], v) for m, v in values.items()},
        **kw,
    )


#: what the ledger tracks, in table order.
ENTRIES: tuple[Entry, ...] = (
    Entry(
        method="patch2image Light",
        folder="drive/patch2image_light",
        **_p2i("patch", "004 patch (overlapping patches)", {"auc": 0.9811, "f1": 0.7970}),
        paper_where="004 Table 1, Light Patch",
        command=_P2I_CMD.format(cfg="patch2image_light", key="light"),
        note=_P2I_NOTE + "; the Patch row blends 32 px tiles at stride 16",
    ),
    Entry(
        method="patch2image Light",
        folder="drive/patch2image_light",
        **_p2i("frozen", "004 image frozen", {"auc": 0.9800, "f1": 0.7939}),
        paper_where="004 Table 1, Light Image/Frozen",
        command=_P2I_CMD.format(cfg="patch2image_light", key="light"),
        note=_P2I_NOTE,
    ),
    Entry(
        method="patch2image Light",
        folder="drive/patch2image_light",
        **_p2i(
            "finetune",
            "004 image fine-tuned",
            {"auc": 0.9808, "f1": 0.7949, "acc": 0.9632, "se": 0.8187, "sp": 0.9772},
        ),
        paper_where="004 Table 1, Light Image/Fine-tuned",
        command=_P2I_CMD.format(cfg="patch2image_light", key="light"),
        note=_P2I_NOTE
        + ". AUC is within the 0.003 target; Dice is above the paper by 0.0103 (the target "
        "was +-0.01), with Sp above and Se below it: at 0.5 our maps are slightly more "
        "conservative, and AUC, Acc and Dice all come out higher. 004 reports one run: with "
        "the seed-to-seed spread measured here (Dice sd 0.0024) the 95 % prediction interval "
        "of a single run's gap is +0.0103 +- 0.0119, which holds 004's Dice. Not isolated "
        "(each would cost a 3-seed rerun): the checkpoint and plateau criterion (validation "
        "AUROC on whole images here, the validation loss on patches in 004's code) and the "
        "epoch caps, which train less than 004, not more: the patch phase reached its 60 "
        "epochs in every seed (best validation AUROC at epochs 36, 50, 52), the image phase "
        "stopped early in two (best at 17, 25) and reached 60 in the third (best at 37); "
        "curves in the run folders",
    ),
    Entry(
        method="patch2image Mini-Unet",
        folder="drive/patch2image_miniunet",
        **_p2i("patch", "004 patch (overlapping patches)", {"auc": 0.9865, "f1": 0.8218}),
        paper_where="004 Table 1, Mini-Unet Patch",
        command=_MINIUNET_CMD,
        note=_P2I_NOTE + "; the Patch row blends 32 px tiles at stride 16",
    ),
    Entry(
        method="patch2image Mini-Unet",
        folder="drive/patch2image_miniunet",
        **_p2i("frozen", "004 image frozen", {"auc": 0.9864, "f1": 0.8204}),
        paper_where="004 Table 1, Mini-Unet Image/Frozen",
        command=_MINIUNET_CMD,
        note=_P2I_NOTE,
    ),
    Entry(
        method="patch2image Mini-Unet",
        folder="drive/patch2image_miniunet",
        **_p2i(
            "finetune",
            "004 image fine-tuned",
            {"auc": 0.9866, "f1": 0.8246, "acc": 0.9691, "se": 0.8342, "sp": 0.9822},
        ),
        paper_where="004 Table 1, Mini-Unet Image/Fine-tuned",
        command=_MINIUNET_CMD,
        note=_P2I_NOTE
        + ". Three seeds (1.5-2.1 h each on one core in bf16, the suite's default on this "
        "CPU; Light's seeds ran in fp32; seeds 1 and 2 ran side by side, one core each): AUC "
        "0.9865 in every seed against 004's 0.9866, Dice 0.8242 +- 0.0008 against 0.8246, "
        "inside the 0.003 / 0.01 targets, with Sp above and Se below the paper as for Light. "
        "Each patch phase ran its 60 epochs (best validation AUROC at epochs 46, 57, 27); the "
        "image phase stopped early (best at epochs 4, 28, 7): on Mini-Unet whole-image "
        "fine-tuning changes little, as in 004 (Patch 0.9865 -> Fine-tuned 0.9866 there)",
    ),
    Entry(
        method="R2U-Net",
        folder="drive/r2unet",
        phase="test",
        protocol="001 (its own recipe)",
        block="pooled",
        metrics={"f1": ("f1@0.5", None), "auc": ("auroc", None)},
        paper_where="001 Table 1 (validation Dice 0.1399 at epoch 2, 0.0193 at epoch 7)",
        command="retina fit --config configs/drive/r2unet.yaml && retina test --ckpt_path best",
        note=(
            "001 reports no test numbers, only a collapse on its validation images (Dice 0.1399 "
            "at epoch 2, 0.0193 at epoch 7, early stop). The same recipe here (plain BCE, Adam "
            "1e-3, 10 epochs, patience 5, separate recurrent weights) does not collapse: "
            "validation F1@0.5 rises from 0.59 (epoch 0) to 0.76 (epoch 8, the best "
            "checkpoint; training curve in the run folder), so unweighted BCE on ~12 % vessel "
            "pixels is not by itself what broke 001's run; what did is in 001's pipeline, "
            "which it does not publish. For scale: Alom et al.'s own, longer training is quoted "
            "by 003 at AUC 0.9784, F1 0.8171"
        ),
    ),
    Entry(
        method="DPN",
        folder="drive/dpn",
        phase="test",
        protocol="002 (all 20 training images)",
        block="pooled",
        metrics={"auc": ("auroc", 0.9815), "f1": ("f1@opt", 0.8293)},
        paper_where="002 Table 1",
        command="retina fit --config configs/drive/dpn.yaml && retina test --ckpt_path last",
        note=(
            "002 trains 100k iterations (500 epochs of 200 crops); a one-core CPU run buys a "
            "small share of that (the `hours` column): the checkpoint of every epoch is "
            "tested, and the curve of test AUROC against iterations "
            "(`reproduction_dpn_curve.png`, table below) shows where it heads"
        ),
        extra={"curve": True},
    ),
    Entry(
        method="IterNet",
        folder="drive/iternet",
        phase="test",
        protocol="003 (whole image)",
        block="pooled",
        metrics={"auc": ("auroc", 0.9813), "f1": ("f1@opt", 0.8218)},
        paper_where="003 Table 1",
        command="retina fit --config configs/drive/iternet.yaml && retina test --ckpt_path last",
        pending=(
            "not run: 8.2 M parameters, ~27 s per training step on 2 CPU cores (15 min table): "
            "12,400 steps = ~93 h on this CPU; a GPU run is what make gpu-check prepares"
        ),
    ),
)


# ------------------------------------------------------------------------------ collect


def _newest(folder: Path, pattern: str) -> Path | None:
    found = sorted(p for p in folder.glob(pattern) if p.is_dir())
    return found[-1] if found else None


def _copy_results(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "per_image.csv"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def _copy_fit(run: Path, dst: Path) -> None:
    """The training curves and the resolved config of a fit."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "config.yaml"):
        if (run / name).is_file():
            shutil.copy2(run / name, dst / name)


def _started(run: Path) -> float:
    """When a run began: its directory's name is its start time (``%Y%m%d-%H%M%S``, local
    time, as ``retina`` names them); the directory's mtime otherwise."""
    try:
        return time.mktime(time.strptime(run.name[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return run.stat().st_mtime


def _step_of(checkpoint: str) -> int:
    """The global step in a checkpoint name such as ``epoch003-step000800.ckpt``."""
    name = Path(checkpoint).stem
    for part in name.split("-"):
        if part.startswith("step") and part[4:].isdigit():
            return int(part[4:])
    raise SystemExit(f"no step in the checkpoint name {checkpoint!r} (expected ...-stepNNNN)")


def collect(kind: str, run: Path, into: str, hardware: str, command: str, note: str = "") -> Path:
    """Copy a finished run's measurements into ``reproduction/<into>/`` with ``run.json``.

    ``kind="patch2image"``: ``run`` is the experiment folder of ``retina patch2image``
    (``patch/<ts>/test`` = Patch row, ``patch/<ts>/test-2`` = Image/Frozen,
    ``finetune/<ts>/test`` = Image/Fine-tuned). ``kind="fit"``: ``run`` is one run directory
    (``<ts>/``) with its ``test/`` results.
    """
    dst = LEDGER_DIR / into
    if dst.exists():
        raise SystemExit(f"{dst} exists: collected results are never overwritten; remove it first")
    files: list[Path] = []
    if kind == "patch2image":
        patch = _newest(run / "patch", "*")
        finetune = _newest(run / "finetune", "*")
        if patch is None or finetune is None or not (finetune / "test").is_dir():
            raise SystemExit(f"{run}: no finished patch and finetune phases to collect")
        _copy_results(patch / "test", dst / "patch")
        _copy_results(patch / "test-2", dst / "frozen")
        _copy_results(finetune / "test", dst / "finetune")
        _copy_fit(patch, dst / "patch")
        _copy_fit(finetune, dst / "finetune")
        start, end = patch, finetune / "test" / "metrics.json"
    elif kind == "fit":
        tests = sorted(p for p in run.glob("test*") if (p / "metrics.json").is_file())
        if not tests:
            raise SystemExit(f"{run}: no test results to collect")
        _copy_results(tests[-1], dst / "test")
        _copy_fit(run, dst / "test")
        start, end = run, tests[-1] / "metrics.json"
    elif kind == "checkpoints":
        order = run / "test_order.txt"
        tests = sorted(
            (p for p in run.glob("test*") if (p / "metrics.json").is_file()),
            key=lambda p: int(p.name.split("-")[1]) if "-" in p.name else 1,
        )
        ckpts = order.read_text().split() if order.is_file() else []
        if not tests or len(ckpts) != len(tests):
            raise SystemExit(
                f"{run}: {len(tests)} test folders but {len(ckpts)} checkpoints in "
                "test_order.txt: test each checkpoint in order, listing it there"
            )
        rows = []
        for ckpt, test in zip(ckpts, tests):
            report = json.loads((test / "metrics.json").read_text())
            pooled = report["pooled"]
            rows.append(
                {
                    "step": _step_of(ckpt),
                    "checkpoint": Path(ckpt).name,
                    "auroc": pooled["auroc"],
                    "f1@opt": pooled["f1@opt"],
                    "f1@0.5": pooled["f1@0.5"],
                    "threshold": report["thresholds"]["opt"],
                }
            )
        rows.sort(key=lambda r: r["step"])
        dst.mkdir(parents=True)
        with (dst / "curve.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        last = tests[[_step_of(c) for c in ckpts].index(rows[-1]["step"])]
        _copy_results(last, dst / "test")
        _copy_fit(run, dst / "test")
        start, end = run, tests[-1] / "metrics.json"
    else:
        raise SystemExit(f"--kind must be patch2image, fit or checkpoints, got {kind!r}")
    files = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    hours = (end.stat().st_mtime - _started(start)) / 3600.0
    record = {"command": command, "hardware": hardware, "hours": round(hours, 3), "run": str(run)}
    if note:
        record["note"] = note
    (dst / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"collected {len(files)} files into {dst} ({hours:.2f} h)")
    return dst


# -------------------------------------------------------------------------------- build


def _dig(report: dict[str, Any], dotted: str) -> dict[str, Any]:
    node: Any = report
    for part in dotted.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def runs_of(entry: Entry) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(run folder, metrics block, run.json) of every collected run of ``entry``."""
    out = []
    for run in sorted((LEDGER_DIR / entry.folder).glob("*")):
        path = run / entry.phase / "metrics.json"
        if path.is_file():
            block = _dig(json.loads(path.read_text()), entry.block)
            meta = (
                json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
            )
            out.append((run, block, meta))
    return out


def _fmt(v: float | None, digits: int = 4) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def ledger_rows() -> list[dict[str, Any]]:
    rows = []
    for entry in ENTRIES:
        runs = runs_of(entry)
        hardware = sorted({m.get("hardware", "") for _, _, m in runs} - {""})
        hours = [m["hours"] for _, _, m in runs if "hours" in m]
        for metric, (key, paper) in entry.metrics.items():
            values = [float(b[key]) for _, b, _ in runs if isinstance(b.get(key), (int, float))]
            row: dict[str, Any] = {
                "method": entry.method,
                "dataset": entry.folder.split("/")[0],
                "protocol": entry.protocol,
                "metric": metric,
                "paper": paper,
                "ours_mean": statistics.fmean(values) if values else None,
                "ours_std": statistics.stdev(values) if len(values) > 1 else None,
                "n": len(values),
                "hardware": "; ".join(hardware),
                "hours": statistics.fmean(hours) if hours else None,
                "command": entry.command,
                "note": entry.note if values else entry.pending or "no run collected yet",
                "_values": values,
                "_where": entry.paper_where,
            }
            rows.append(row)
    return rows


def gap_interval(values: list[float], paper: float | None) -> tuple[float, float, float] | None:
    """Mean gap to the paper and its 95 % t-interval (needs >= 2 runs and a paper value)."""
    if paper is None or len(values) < 2:
        return None
    n = len(values)
    gap = statistics.fmean(values) - paper
    half = T975[min(n - 1, len(T975)) - 1] * statistics.stdev(values) / math.sqrt(n)
    return gap, gap - half, gap + half


def write_ledger(rows: list[dict[str, Any]], out: Path = RESULTS) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "reproduction.csv", out / "reproduction.md"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "paper": _fmt(row["paper"]),
                    "ours_mean": _fmt(row["ours_mean"]),
                    "ours_std": _fmt(row["ours_std"]),
                    "hours": _fmt(row["hours"], 2),
                }
            )
    lines = [
        "# Reproduction ledger",
        "",
        "Each method trained to its paper's recipe (or as much of it as stated) and scored with "
        "the paper's own protocol. Rebuilt from the collected runs under "
        "`benchmarks/results/reproduction/` by `python benchmarks/reproduction.py`; each run "
        "folder holds the command, hardware and hours (`run.json`), the test metrics and the "
        "training curves.",
        "",
        "| method | dataset | protocol | metric | paper | ours (mean +- sd) | n | gap, 95 % CI "
        "| hours / run | hardware | paper source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = _fmt(row["ours_mean"])
        if row["ours_std"] is not None:
            ours += f" +- {row['ours_std']:.4f}"
        interval = gap_interval(row["_values"], row["paper"])
        if interval is not None:
            gap = f"{interval[0]:+.4f} [{interval[1]:+.4f}, {interval[2]:+.4f}]"
        elif row["paper"] is not None and row["ours_mean"] is not None:
            gap = f"{row['ours_mean'] - row['paper']:+.4f} (n=1)"
        else:
            gap = "-"
        lines.append(
            f"| {row['method']} | {row['dataset']} | {row['protocol']} | {row['metric']} | "
            f"{_fmt(row['paper']) or '-'} | {ours or '-'} | {row['n']} | {gap} | "
            f"{_fmt(row['hours'], 2) or '-'} | {row['hardware'] or '-'} | {row['_where']} |"
        )
    for entry in ENTRIES:
        if entry.extra.get("curve"):
            lines += curve_section(entry, out)
    lines += ["", "## Notes and commands", ""]
    seen = set()
    for row in rows:
        key = (row["method"], row["protocol"])
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"- **{row['method']}, {row['protocol']}**: {row['note']}.")
        lines.append(f"  Command: `{row['command']}`")
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def curve_section(entry: Entry, out: Path) -> list[str]:
    """Test AUROC / F1 against training iterations of every collected run of ``entry``
    (``curve.csv``), as a table and a figure beside the ledger."""
    curves = {}
    for run in sorted((LEDGER_DIR / entry.folder).glob("*")):
        path = run / "curve.csv"
        if path.is_file():
            with path.open() as fh:
                curves[run.name] = list(csv.DictReader(fh))
    if not curves:
        return []
    slug = entry.folder.split("/")[-1]
    lines = ["", f"## {entry.method}: test metrics against training iterations", ""]
    lines += ["| run | step | AUROC | F1@opt | F1@0.5 | threshold |", "|---|---|---|---|---|---|"]
    for name, rows in curves.items():
        for r in rows:
            lines.append(
                f"| {name} | {int(r['step']):,} | {float(r['auroc']):.4f} | "
                f"{float(r['f1@opt']):.4f} | {float(r['f1@0.5']):.4f} | "
                f"{float(r['threshold']):.4f} |"
            )
    paper = {m: v for m, (_, v) in entry.metrics.items()}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return lines
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in curves.items():
        steps = [int(r["step"]) for r in rows]
        ax.plot(steps, [float(r["auroc"]) for r in rows], "o-", label=f"{name}: test AUROC")
        ax.plot(steps, [float(r["f1@opt"]) for r in rows], "s--", label=f"{name}: test F1@opt")
    for metric, value in paper.items():
        if value is not None:
            ax.axhline(value, color="gray", lw=0.8, ls=":")
            ax.text(ax.get_xlim()[0], value, f" paper {metric} {value}", va="bottom", fontsize=8)
    ax.set_xlabel("training iterations (batch 1)")
    ax.set_ylabel("DRIVE test, inside the FOV")
    ax.set_title(f"{entry.method}, {entry.protocol}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    figure = out / f"reproduction_{slug}_curve.png"
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    lines += ["", f"![{entry.method} curve]({figure.name})"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command_name")
    c = sub.add_parser("collect", help="copy a finished run's measurements into the ledger")
    c.add_argument("--kind", choices=("patch2image", "fit", "checkpoints"), required=True)
    c.add_argument("--run", type=Path, required=True)
    c.add_argument("--into", required=True, help="<dataset>/<method>/<run name>")
    c.add_argument("--hardware", required=True)
    c.add_argument("--command", required=True, help="the command that made the run")
    c.add_argument("--note", default="", help="anything a reader needs about this run")
    sub.add_parser("build", help="rebuild reproduction.csv / .md (the default)")
    ns = parser.parse_args(argv)
    if ns.command_name == "collect":
        collect(ns.kind, ns.run, ns.into, ns.hardware, ns.command, ns.note)
    csv_path, md_path = write_ledger(ledger_rows())
    print(f"wrote {csv_path} and {md_path}")
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
