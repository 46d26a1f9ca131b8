"""Two-process DDP on CPU (gloo): `retina fit` and `retina test` with configs/trainer/ddp.yaml
of a three-class (artery / vein) U-Net, then single-process `retina validate` and `retina test`
of the same checkpoint must give the same numbers: the validation threshold the DDP fit chose
and stored, the pooled, per-image, per-class and second-observer test numbers. Three
validation and three test images on two processes (2 + 1): a sampler that pads with a
duplicate would count one twice, and counts kept on one rank would miss an image."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retina_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
NUM_TEST = 3  # odd: two ranks cannot split it evenly

TINY = [
    "--config",
    str(REPO / "configs/synthetic/unet_av.yaml"),
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.dataset.init_args.num_train=6",
    f"--data.init_args.dataset.init_args.num_test={NUM_TEST}",
    "--data.init_args.dataset.init_args.height=64",
    "--data.init_args.dataset.init_args.width=64",
    "--data.init_args.split.init_args.val_fraction=0.5",  # 3 validation images: 2 + 1
    "--data.init_args.patch_size=32",
    "--data.init_args.batch_size=2",
    "--data.init_args.steps_per_epoch=2",
    "--model.init_args.model.init_args.base_channels=4",
    "--model.init_args.model.init_args.depth=2",
    "--model.init_args.connectivity=false",
    "--model.init_args.figures=false",
]
DDP = [
    "--config",
    str(REPO / "configs/trainer/ddp.yaml"),
    "--trainer.accelerator=cpu",
    "--trainer.devices=2",
    "--trainer.sync_batchnorm=false",  # SyncBatchNorm needs GPUs
]


def _retina(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("retina")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "retina_lightning.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=540
    )


@pytest.fixture(scope="module")
def ddp_root(tmp_path_factory) -> Path:
    """A DDP fit and a DDP test of its last checkpoint, in a fresh folder."""
    root = tmp_path_factory.mktemp("ddp")
    fit = _retina("fit", *TINY, *DDP, cwd=root)
    assert fit.returncode == 0, fit.stderr[-4000:]
    test = _retina("test", *TINY, *DDP, "--ckpt_path", "last", cwd=root)
    assert test.returncode == 0, test.stderr[-4000:]
    return root


def _run_with_checkpoints(root: Path) -> Path:
    runs = [
        p
        for p in (root / "runs" / "synthetic" / "unet_av").iterdir()
        if (p / "checkpoints").is_dir()
    ]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_ddp_test_equals_single_process_test(ddp_root: Path, monkeypatch):
    run = _run_with_checkpoints(ddp_root)
    ddp = json.loads((run / "test" / "metrics.json").read_text())
    monkeypatch.chdir(ddp_root)
    main(["test", *TINY, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    single = json.loads((run / "test-2" / "metrics.json").read_text())
    assert single["num_images"] == NUM_TEST
    assert ddp["num_images"] == NUM_TEST, "an image was evaluated twice (or skipped) under DDP"
    for key in ("auroc", "auprc", "f1@0.5", "f1@opt", "acc@opt"):
        assert ddp["pooled"][key] == pytest.approx(single["pooled"][key], abs=1e-6), key
    # counts that each rank keeps for its own images and rank 0 reports: gathered, not rank 0's
    assert set(ddp["per_class"]) == {"vein", "artery"}
    for name, entry in single["per_class"].items():
        for key in ("auroc", "se", "sp", "acc", "f1"):
            assert ddp["per_class"][name][key] == pytest.approx(entry[key], abs=1e-6), (name, key)
    for key in ("se", "sp", "f1", "acc"):
        assert ddp["second_observer"][key] == pytest.approx(
            single["second_observer"][key], abs=1e-9
        ), key
    with (run / "test" / "per_image.csv").open() as f:
        ddp_rows = list(csv.DictReader(f))
    with (run / "test-2" / "per_image.csv").open() as f:
        single_rows = list(csv.DictReader(f))
    assert [r["image"] for r in ddp_rows] == [r["image"] for r in single_rows]
    assert len(ddp_rows) == NUM_TEST
    for a, b in zip(ddp_rows, single_rows):
        assert float(a["auroc"]) == pytest.approx(float(b["auroc"]), abs=1e-6)


@pytest.mark.slow
def test_ddp_validation_threshold_equals_single_process(ddp_root: Path, monkeypatch):
    """The threshold the DDP fit chose on its 3 validation images (2 on rank 0, 1 on rank 1)
    and stored, against one process validating the same weights afresh."""
    import torch

    run = _run_with_checkpoints(ddp_root)
    last = run / "checkpoints" / "last.ckpt"
    stored = float(
        torch.load(last, map_location="cpu", weights_only=False)["state_dict"]["threshold"]
    )
    monkeypatch.chdir(ddp_root)
    cli = main(["validate", *TINY, "--ckpt_path", str(last)])
    assert cli.model.threshold_criterion == "f1" and cli.model.fixed_threshold is None
    single = float(cli.model.threshold)
    assert single != pytest.approx(0.5, abs=1e-3)  # chosen, not the default
    assert stored == pytest.approx(single, abs=1e-6), "DDP pooled other validation pixels"
    auroc = float(cli.trainer.callback_metrics["val/auroc"])
    with (run / "metrics.csv").open() as f:
        logged = [float(r["val/auroc"]) for r in csv.DictReader(f) if r.get("val/auroc")]
    assert logged and logged[-1] == pytest.approx(auroc, abs=1e-5)


@pytest.mark.slow
def test_ddp_fit_writes_one_run_directory(ddp_root: Path):
    """Every process of one `retina fit` must use rank 0's run directory (the launcher
    re-executes the command line, so each process would otherwise make its own)."""
    runs = sorted(p.name for p in (ddp_root / "runs" / "synthetic" / "unet_av").iterdir())
    assert len(runs) == 1, f"one DDP fit made {len(runs)} run directories: {runs}"
