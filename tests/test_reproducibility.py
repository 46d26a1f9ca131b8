"""Same config, same seed: bit-identical validation / test numbers and final weights (two
in-process `retina fit` + `retina test` runs; patches, augmentation and dropout all seeded)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from retina_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "--config",
    str(REPO / "configs/synthetic/unet.yaml"),
    "--seed_everything=0",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.dataset.init_args.num_train=3",
    "--data.init_args.dataset.init_args.num_test=2",
    "--data.init_args.dataset.init_args.height=64",
    "--data.init_args.dataset.init_args.width=64",
    "--data.init_args.patch_size=32",
    "--data.init_args.batch_size=2",
    "--data.init_args.steps_per_epoch=2",
    # random flips, rotations and colour jitter, so the augmentation seeds are exercised too
    "--data.init_args.augment.rotation=20",
    "--model.init_args.model.init_args.base_channels=4",
    "--model.init_args.model.init_args.depth=2",
    "--model.init_args.model.init_args.dropout=0.2",
    "--model.init_args.connectivity=false",
    "--model.init_args.figures=false",
]


def _fit_and_test(runs_dir: Path) -> tuple[list[dict], dict, dict[str, torch.Tensor]]:
    main(["fit", *TINY, f"--runs_dir={runs_dir}"])
    (run,) = (runs_dir / "synthetic" / "unet").iterdir()
    with (run / "metrics.csv").open() as f:
        val_rows = [r for r in csv.DictReader(f) if r.get("val/auroc")]
    last = run / "checkpoints" / "last.ckpt"
    weights = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    main(["test", *TINY, f"--runs_dir={runs_dir}", f"--ckpt_path={last}"])
    report = json.loads((run / "test" / "metrics.json").read_text())
    return val_rows, report, weights


def test_two_fits_with_the_same_seed_are_identical(tmp_path):
    val_a, test_a, weights_a = _fit_and_test(tmp_path / "a")
    val_b, test_b, weights_b = _fit_and_test(tmp_path / "b")
    assert len(val_a) == 2  # one validation per epoch
    assert val_a == val_b  # every logged digit of every validation metric
    assert test_a["pooled"] == test_b["pooled"]
    assert test_a["per_image_mean"] == test_b["per_image_mean"]
    assert test_a["thresholds"] == test_b["thresholds"]
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    # the comparison can fail: another seed (initial weights, dropout) gives other weights
    main(["fit", *TINY, "--seed_everything=1", f"--runs_dir={tmp_path / 'c'}"])
    (run_c,) = (tmp_path / "c" / "synthetic" / "unet").iterdir()
    ckpt_c = torch.load(run_c / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not all(torch.equal(weights_a[k], ckpt_c["state_dict"][k]) for k in weights_a)
