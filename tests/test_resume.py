"""A real crash: `retina fit` is SIGKILLed after its first checkpoint, and `retina fit
--ckpt_path last` continues the same run directory from the saved epoch to max_epochs, with
every step once in metrics.csv (issue 15, item 9)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from retina_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
STEPS = 2  # training steps per epoch

TINY = [
    "--config",
    str(REPO / "configs/synthetic/unet.yaml"),
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.dataset.init_args.num_train=3",
    "--data.init_args.dataset.init_args.num_test=1",
    "--data.init_args.dataset.init_args.height=64",
    "--data.init_args.dataset.init_args.width=64",
    "--data.init_args.patch_size=32",
    "--data.init_args.batch_size=2",
    f"--data.init_args.steps_per_epoch={STEPS}",
    "--model.init_args.model.init_args.base_channels=4",
    "--model.init_args.model.init_args.depth=2",
    "--model.init_args.connectivity=false",
]


def _retina_command() -> list[str]:
    exe = Path(sys.executable).with_name("retina")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "retina_lightning.cli"]


# The suite's CSV logger, flushed at every logging call, so a killed process leaves its rows
# (Lightning's default flushes every 100 steps and deletes metrics.csv of a resumed run).
CSV = [
    "--trainer.logger=retina_lightning.tracking.RunCSVLogger",
    "--trainer.logger.init_args.flush_logs_every_n_steps=1",
    "--trainer.log_every_n_steps=1",
]


def _val_rows(metrics_csv: Path) -> list[dict[str, str]]:
    with metrics_csv.open() as f:
        return [r for r in csv.DictReader(f) if r.get("val/auroc")]


def _metrics_csv(root: Path) -> Path | None:
    found = sorted(root.rglob("metrics.csv"))
    return found[0] if found else None


def _wait_for_epoch(root: Path, epoch: int, proc: subprocess.Popen, log: Path, timeout: float):
    """Poll (no fixed sleep) until metrics.csv under ``root`` has the validation row of
    ``epoch``; the process must still be running: it is meant to be killed mid-training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = _metrics_csv(root)
        if path is not None and any(int(r["epoch"]) >= epoch for r in _val_rows(path)):
            return
        if proc.poll() is not None:
            pytest.fail(f"retina fit exited ({proc.returncode}) early:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no validation of epoch {epoch} after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_killed_fit_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    log = tmp_path / "fit.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*_retina_command(), "fit", *TINY, *CSV, "--trainer.max_epochs=1000"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        try:
            _wait_for_epoch(tmp_path, 2, proc, log, timeout=300)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (run,) = (tmp_path / "runs" / "synthetic" / "unet").iterdir()
    metrics_csv = _metrics_csv(tmp_path)
    logged = max(int(r["epoch"]) for r in _val_rows(metrics_csv))
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    epoch = saved["epoch"]
    # last.ckpt follows the training: the epoch validated last, or the one before when the
    # kill fell between the CSV row and the checkpoint write of the same validation
    assert logged - 1 <= epoch <= logged, (
        f"last.ckpt holds epoch {epoch} but epochs up to {logged} were validated before the "
        "kill: `last` must be refreshed every epoch, not only when val/auroc improves"
    )
    assert saved["global_step"] == (epoch + 1) * STEPS  # all steps of that epoch are done

    # resume in the same run directory for two more epochs
    monkeypatch.chdir(tmp_path)
    max_epochs = epoch + 3
    main(["fit", *TINY, *CSV, f"--trainer.max_epochs={max_epochs}", "--ckpt_path", "last"])
    assert [p.name for p in (tmp_path / "runs" / "synthetic" / "unet").iterdir()] == [run.name]
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == max_epochs * STEPS  # no step trained twice or skipped
    assert final["epoch"] == max_epochs - 1  # written at the last epoch's validation
    # metrics.csv kept the killed process's rows up to its checkpoint, lost those after it
    # (the resumed process logs these steps again) and got the resumed epochs appended, with
    # epoch and step numbers continuing from the checkpoint: every step and epoch once
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["epoch"]), int(r["step"])) for r in rows if r.get("val/auroc")] == [
        (e, (e + 1) * STEPS - 1) for e in range(max_epochs)
    ]
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == list(range(max_epochs * STEPS))


def test_resume_drops_the_rows_logged_after_the_checkpoint(tmp_path, monkeypatch):
    """What kill -9 leaves: metrics.csv rows of the steps after last.ckpt. The resumed fit
    logs those steps again, so it drops them first (issue 15, item 9)."""
    monkeypatch.chdir(tmp_path)
    tiny = [*TINY, *CSV, "--model.init_args.figures=false"]
    main(["fit", *tiny, "--trainer.max_epochs=1"])
    (run,) = (tmp_path / "runs" / "synthetic" / "unet").iterdir()
    metrics_csv = run / "metrics.csv"
    with metrics_csv.open() as f:
        header = next(csv.reader(f))
    with metrics_csv.open("a", newline="") as f:  # epoch 1 of a process killed before its end
        writer = csv.DictWriter(f, header)
        writer.writerows({"epoch": 1, "step": step, "train/loss": 999} for step in (2, 3))
        writer.writerow({"epoch": 1, "step": 3, "val/auroc": 0.999})
    main(["fit", *tiny, "--trainer.max_epochs=2", "--ckpt_path", "last"])
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [0, 1, 2, 3]
    assert [(r["epoch"], r["step"]) for r in rows if r.get("val/auroc")] == [("0", "1"), ("1", "3")]
    assert "999" not in metrics_csv.read_text()
