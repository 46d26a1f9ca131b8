"""The reproduction ledger: collecting saved runs and the statistics of the gap to a paper."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import reproduction  # noqa: E402


def _metrics(auc: float, f1: float) -> dict:
    block = {"auroc": auc, "f1@0.5": f1, "acc@0.5": 0.96, "se@0.5": 0.8, "sp@0.5": 0.97}
    return {"pooled": {"auroc": auc - 0.01}, "unmasked": {"per_image_mean": block}}


def _fake_patch2image_run(root: Path, auc: float, f1: float) -> Path:
    """The folders `retina patch2image` writes: patch/<ts>/{test,test-2}, finetune/<ts>/test."""
    for phase, tests in (("patch", ("test", "test-2")), ("finetune", ("test",))):
        run = root / phase / "20261201-120000"
        for k, name in enumerate(tests):
            (run / name).mkdir(parents=True)
            report = _metrics(auc - 0.001 * k, f1)
            (run / name / "metrics.json").write_text(json.dumps(report))
            (run / name / "per_image.csv").write_text("image,auroc\n01,0.9\n")
        (run / "metrics.csv").write_text("epoch,val/auroc\n0,0.9\n")
        (run / "config.yaml").write_text("seed_everything: 0\n")
    return root


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduction, "LEDGER_DIR", tmp_path / "ledger")
    return tmp_path


def test_collect_and_build_mean_sd_and_gap_interval(ledger):
    values = [(0.9801, 0.7930), (0.9812, 0.7961), (0.9795, 0.7902)]
    for seed, (auc, f1) in enumerate(values):
        run = _fake_patch2image_run(ledger / "runs" / f"seed{seed}", auc, f1)
        reproduction.collect(
            "patch2image", run, f"drive/patch2image_light/seed{seed}", "test cpu", "retina ..."
        )
    seed0 = ledger / "ledger" / "drive" / "patch2image_light" / "seed0"
    assert (seed0 / "finetune" / "metrics.json").is_file()
    assert (seed0 / "frozen" / "metrics.json").is_file()  # the second test of the patch run
    assert (seed0 / "patch" / "metrics.csv").is_file()  # training curves travel too
    assert json.loads((seed0 / "run.json").read_text())["hardware"] == "test cpu"
    with pytest.raises(SystemExit, match="never overwritten"):
        reproduction.collect(
            "patch2image", ledger / "runs" / "seed0", "drive/patch2image_light/seed0", "x", "y"
        )

    rows = reproduction.ledger_rows()
    auc = next(
        r
        for r in rows
        if r["protocol"] == "004 image fine-tuned" and r["metric"] == "auc" and r["n"] == 3
    )
    aucs = [v[0] for v in values]
    assert auc["ours_mean"] == pytest.approx(statistics.fmean(aucs))
    assert auc["ours_std"] == pytest.approx(statistics.stdev(aucs))
    gap, lo, hi = reproduction.gap_interval(auc["_values"], auc["paper"])
    half = 4.303 * statistics.stdev(aucs) / math.sqrt(3)  # t(0.975, 2 dof)
    assert gap == pytest.approx(statistics.fmean(aucs) - 0.9808)
    assert (lo, hi) == pytest.approx((gap - half, gap + half))
    frozen = next(r for r in rows if r["protocol"] == "004 image frozen" and r["metric"] == "auc")
    assert frozen["ours_mean"] == pytest.approx(statistics.fmean(aucs) - 0.001)

    csv_path, md_path = reproduction.write_ledger(rows, ledger / "out")
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:11] == [
        "method", "dataset", "protocol", "metric", "paper", "ours_mean", "ours_std", "n",
        "hardware", "hours", "command",
    ]  # fmt: skip
    md = md_path.read_text()
    assert "| patch2image Light | drive | 004 image fine-tuned | auc | 0.9808 |" in md
    # rows without runs say why and how long they would take
    pending = next(r for r in rows if r["method"] == "IterNet")
    assert pending["n"] == 0 and "h " in pending["note"]


def test_gap_interval_needs_two_runs_and_a_paper_value():
    assert reproduction.gap_interval([0.98], 0.97) is None
    assert reproduction.gap_interval([0.98, 0.99], None) is None


def test_checkpoint_curve_maps_each_test_to_its_step_and_draws_it(ledger, monkeypatch):
    """DPN-style runs: every epoch's checkpoint tested in order (test, test-2, ...); the curve
    pairs each result with its checkpoint's step, the last step's test is the ledger value."""
    run = ledger / "runs" / "dpn" / "20261201-120000"
    ckpts = [run / "checkpoints" / f"epoch{e:03d}-step{200 * (e + 1):06d}.ckpt" for e in range(3)]
    aucs = [0.90, 0.93, 0.95]
    for k, auc in enumerate(aucs):
        folder = run / ("test" if k == 0 else f"test-{k + 1}")
        folder.mkdir(parents=True)
        report = {
            "pooled": {"auroc": auc, "f1@opt": auc - 0.2, "f1@0.5": auc - 0.25},
            "thresholds": {"0.5": 0.5, "opt": 0.4},
        }
        (folder / "metrics.json").write_text(json.dumps(report))
    (run / "test_order.txt").write_text("\n".join(str(c) for c in ckpts) + "\n")
    (run / "metrics.csv").write_text("epoch,step\n")
    reproduction.collect("checkpoints", run, "drive/dpn/seed0", "cpu", "retina fit ...")
    curve = (ledger / "ledger" / "drive" / "dpn" / "seed0" / "curve.csv").read_text().splitlines()
    assert [line.split(",")[:3] for line in curve[1:]] == [
        ["200", "epoch000-step000200.ckpt", "0.9"],
        ["400", "epoch001-step000400.ckpt", "0.93"],
        ["600", "epoch002-step000600.ckpt", "0.95"],
    ]
    dpn = next(
        r for r in reproduction.ledger_rows() if r["method"] == "DPN" and r["metric"] == "auc"
    )
    assert dpn["ours_mean"] == pytest.approx(0.95)
    _, md = reproduction.write_ledger(reproduction.ledger_rows(), ledger / "out")
    assert "| seed0 | 600 | 0.9500 |" in md.read_text()
    assert (ledger / "out" / "reproduction_dpn_curve.png").stat().st_size > 1000
    # a test folder without its checkpoint listed is refused, not guessed
    (run / "test_order.txt").write_text(str(ckpts[0]) + "\n")
    with pytest.raises(SystemExit, match="test_order.txt"):
        reproduction.collect("checkpoints", run, "drive/dpn/seed1", "cpu", "retina fit ...")
