"""The laptop recipe and its bar (issue 14): the plain-script baseline
(``benchmarks/plain_unet.py``) and its row in the accuracy benchmark (``--plain``).

No timing is asserted: the scripts' clocks are bypassed with ``--max-steps``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import fixtures
from sklearn.metrics import f1_score, roc_auc_score

from retina_lightning.data import DRIVE

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import accuracy_plain, plain_unet  # noqa: E402
from benchmarks import bench_accuracy as ba  # noqa: E402
from benchmarks.reference import METHODS, find_methods  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def drive(tmp_path) -> Path:
    """A DRIVE layout of 3 training and 3 test images (40x48)."""
    return fixtures().make_drive(tmp_path / "data")


def test_plain_network_is_the_laptop_recipes():
    """Like for like: the plain script's U-Net has the laptop config's size and shape."""
    from retina_lightning.models import UNet

    config = yaml.safe_load((REPO / "configs/drive/laptop.yaml").read_text())
    args = config["model"]["init_args"]["model"]["init_args"]
    suite = UNet(**args)
    plain = plain_unet.SmallUNet()
    count = sum(p.numel() for p in plain.parameters())
    assert count == sum(p.numel() for p in suite.parameters()) == 117_073

    def shapes(model):
        return sorted(tuple(p.shape) for p in model.parameters())

    assert shapes(plain) == shapes(suite)
    data = config["data"]["init_args"]
    assert (data["patch_size"], data["batch_size"]) == (64, 32)
    assert config["optimizer"]["init_args"]["lr"] == 2e-3
    assert data["split"]["init_args"]["val_fraction"] == 0.0  # all 20 train, as the script


def test_plain_script_learns_and_writes_test_maps(drive, tmp_path):
    out = tmp_path / "plain"
    argv = ["--drive", str(drive), "--out", str(out), "--max-steps", "150", "--eval-at", "60"]
    small = ["--patch", "32", "--batch", "8", "--lr", "0.01", "--threads", "1"]
    log = plain_unet.main([*argv, *small])
    assert log["snapshots"][0]["steps"] == 150 and log["params"] == 117_073
    losses = [loss for _, loss in log["loss"]]
    assert len(losses) == 3 and losses[-1] < 0.7 * losses[0]  # it learns
    saved = json.loads((out / "run.json").read_text())
    assert saved["snapshots"] == log["snapshots"]
    for sample in DRIVE(drive).load("test"):
        prob = np.load(out / "60min" / f"{sample.name}.npy")
        assert prob.shape == sample.label.shape and prob.dtype == np.float32
        assert prob.min() >= 0.0 and prob.max() <= 1.0
    with pytest.raises(SystemExit, match="not empty"):  # never overwrites a run
        plain_unet.main(argv)


def test_plain_sampler_rotates_and_flips_image_and_label_together():
    rng = np.random.default_rng(0)
    images = rng.random((2, 20, 24)).astype(np.float32)
    x, y = plain_unet.sample_batch(images, images.copy(), 8, 64, rng)
    assert x.shape == y.shape == (64, 1, 8, 8)
    assert torch.equal(x, y)  # the same crop and transform for both


def test_score_maps_agrees_with_scikit_learn(drive, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    rng = np.random.default_rng(1)
    samples = DRIVE(drive).load("test")
    probs, targets = [], []
    for sample in samples:
        # informative but imperfect maps: the label plus noise
        prob = np.clip(0.6 * sample.label + 0.5 * rng.random(sample.label.shape), 0, 1)
        np.save(folder / f"{sample.name}.npy", prob.astype(np.float32))
        probs.append(prob[sample.fov])
        targets.append(sample.label[sample.fov] > 0)
    report = accuracy_plain.score_maps(folder, drive)
    p, t = np.concatenate(probs).astype(np.float32), np.concatenate(targets)
    assert report["images"] == len(samples)
    assert report["pooled"]["auroc"] == pytest.approx(roc_auc_score(t, p), abs=1e-6)
    assert report["pooled"]["f1@0.5"] == pytest.approx(f1_score(t, p >= 0.5), abs=1e-6)
    assert 0.0 <= report["per_image_mean"]["connectivity"] <= 1.0

    (folder / f"{samples[0].name}.npy").unlink()
    with pytest.raises(FileNotFoundError, match=samples[0].name):
        accuracy_plain.score_maps(folder, drive)


@pytest.mark.slow
def test_run_plain_scores_and_rebuilds(drive, tmp_path):
    torch.set_num_threads(1)
    folder = tmp_path / "runs" / "plain_unet"
    small = ("--patch", "32", "--batch", "4")
    report = accuracy_plain.run_plain(drive, 1.0, folder, 3, {"x": 1}, small)
    assert report["steps"] == 3 and report["num_parameters"] == 117_073 and report["x"] == 1
    assert [row["image"] for row in report["per_image"]] == ["01_test", "02_test", "03_test"]
    assert "--threads 1" in report["plain_command"]
    assert accuracy_plain.latest_plain(folder) == json.loads(json.dumps(report))
    row = accuracy_plain.plain_row(report, "plain, 1 min, DRIVE")
    assert row["AUC"] == report["pooled"]["auroc"] and row["threshold"] == 0.5
    assert row["train steps"] == 3
    with pytest.raises(FileNotFoundError, match="--rebuild"):
        accuracy_plain.latest_plain(tmp_path / "nothing")

    # a report saved without per-image rows is scored again from its maps
    (saved,) = folder.glob(f"*/{accuracy_plain.REPORT}")
    saved.write_text(json.dumps({k: v for k, v in report.items() if k != "per_image"}))
    assert accuracy_plain.latest_plain(folder, drive)["per_image"] == report["per_image"]

    # the suite's run, 0.01 better in AUROC and 0.02 worse in F1 on every image
    suite = tmp_path / "suite"
    suite.mkdir()
    with open(suite / "per_image.csv", "w") as f:
        f.write("image,auroc,f1@0.5\n")
        for row in report["per_image"]:
            f.write(f"{row['image']},{row['auroc'] + 0.01},{row['f1@0.5'] - 0.02}\n")
    auroc, f1 = accuracy_plain.paired_notes({"results_dir": str(suite)}, report, "Laptop")
    assert auroc.startswith("Laptop - plain script, auroc over 3 paired images: difference 0.0100")
    assert "f1@0.5 over 3 paired images: difference -0.0200" in f1
    (missing,) = accuracy_plain.paired_notes({"results_dir": str(tmp_path)}, report, "Laptop")
    assert (
        missing.startswith("Laptop - plain script: no paired comparison") and "per_image" in missing
    )


def test_laptop_is_a_benchmark_method_and_unet_still_names_one():
    assert [m.key for m in find_methods("laptop")] == ["laptop"]
    assert [m.key for m in find_methods("unet")] == ["unet"]  # the key wins over the class
    assert ba.recipe_steps(METHODS["laptop"]) == "the budget (max_time)"


def test_a_seeded_benchmark_keeps_its_runs_and_table_apart():
    assert ba.run_group(10, False) == "10min" and ba.run_group(10, False, 1) == "10min_seed1"
    assert ba.run_group(0.5, True, 2) == "tiny_seed2"
    args = ba.parse_args(["--methods", "laptop", "--plain", "--seed", "1", "--tag", "laptop"])
    assert (args.seed, args.tag, args.plain) == (1, "laptop", True)
