"""Issue 22, part 4: the trained models shipped inside the package (``retina models``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA_ROOT, needs
from sklearn.metrics import f1_score, roc_auc_score

from retina_lightning.cli import main
from retina_lightning.predict import load_predictor
from retina_lightning.zoo import ZOO_DIR, ZooError, available, expand_model_option, get

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("chase_db1", "drive", "drive+chase_db1")
RESULTS = REPO / "benchmarks" / "results" / "zoo"


def test_the_package_ships_three_models_in_a_few_megabytes():
    models = available()
    assert set(SHIPPED) <= set(models)
    total = sum(m.checkpoint.stat().st_size for m in models.values())
    assert total < 5e6, f"{total / 1e6:.1f} MB of shipped weights"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_is_weights_only_and_agrees_with_its_card(name):
    model = get(name)
    ckpt = torch.load(model.checkpoint, map_location="cpu", weights_only=True)  # no code
    assert not {"optimizer_states", "loops", "callbacks", "lr_schedulers"} & set(ckpt)
    card = model.card
    assert card["name"] == name
    assert card["fov_diameter"] == ckpt["RetinaDataModule"]["train_fov_diameter"]
    assert card["threshold"] == pytest.approx(float(ckpt["state_dict"]["threshold"]), abs=1e-4)
    assert card["threshold_criterion"].startswith(ckpt["hyper_parameters"]["threshold_criterion"])
    assert card["steps"] == ckpt["global_step"] > 0
    assert card["seed"] == 0 and "retina fit" in card["command"]
    assert all(d["dataset"] and d["terms"] for d in card["training_data"])
    # what it was trained on, and no path of the machine that trained it
    assert card["trained_on"]["precision"] in ("bf16-mixed", "32-true")
    for text in (model.config.read_text(), json.dumps(ckpt["datamodule_hyper_parameters"])):
        assert "/work/" not in text and "/home/" not in text
    # the card's numbers are the committed cross-camera results
    summary = json.loads((RESULTS / "summary.json").read_text())
    rows = {r["test"]: r["metrics"] for r in summary["rows"] if r["model"] == name}
    assert rows and card["results"] == rows


def test_retina_models_lists_the_models_and_prints_a_card(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED)
    assert main(["models", "drive"]) == 0
    out = capsys.readouterr().out
    card = get("drive").card
    assert f"fov_diameter: {card['fov_diameter']}" in out and "threshold:" in out
    assert "terms:" in out and "command:" in out
    assert main(["models", "drve"]) == 2
    assert "did you mean 'drive'" in capsys.readouterr().err


def test_model_option_expands_to_the_shipped_config_and_checkpoint():
    drive = get("drive")
    argv = expand_model_option(["test", "--model", "drive", "--config", "other.yaml"])
    assert argv == [
        "test",
        "--config",
        str(drive.config),
        "--config",
        "other.yaml",  # later files still override the model's config
        "--ckpt_path",
        str(drive.checkpoint),
        "--experiment",
        "models/drive",
    ]
    assert expand_model_option(["test", "--model=drive"])[2] == str(drive.config)
    # LightningCLI's own --model (a class path) and other commands are left alone
    for argv in (
        ["test", "--model=retina_lightning.tasks.SegmentationTask"],
        ["fit", "--model", "drive"],
        ["test", "--model.init_args.figures=false"],
    ):
        assert expand_model_option(argv) == argv
    with pytest.raises(ZooError, match="did you mean 'drive'"):
        expand_model_option(["test", "--model", "drve"])
    with pytest.raises(ZooError, match="--ckpt_path"):
        expand_model_option(["test", "--model", "drive", "--ckpt_path", "x.ckpt"])


def _drive_rows(name: str) -> dict[str, dict[str, str]]:
    path = RESULTS / f"{name.replace('+', '_')}__drive" / "per_image.csv"
    return {row["image"]: row for row in csv.DictReader(path.open())}


@pytest.mark.real_data
@needs("DRIVE")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_committed_numbers_on_drive_images(name):
    """Three DRIVE test images through the shipped weights, scored by scikit-learn: the AUC and
    F1 at the shipped threshold of the committed per_image.csv (retina test --model)."""
    from retina_lightning.data import DRIVE

    predictor = load_predictor(get(name).checkpoint, device="cpu")
    rows = _drive_rows(name)
    for sample in DRIVE(DATA_ROOT / "DRIVE").load("test")[:3]:
        fov = sample.fov.astype(bool)
        prob = predictor(sample.image, fov)[0][fov]
        label = sample.label[fov] > 0
        row = rows[sample.name]
        assert roc_auc_score(label, prob) == pytest.approx(float(row["auroc"]), abs=1e-4)
        f1 = f1_score(label, prob >= predictor.threshold)
        assert f1 == pytest.approx(float(row["f1@opt"]), abs=1e-4)
        assert float(row["auroc"]) > 0.95  # a trained model, not noise


@pytest.mark.real_data
@needs("DRIVE")
def test_predict_and_test_run_a_shipped_model_with_no_other_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in ZOO_DIR.rglob("*"))
    images = tmp_path / "in"
    images.mkdir()
    for n in ("01", "02"):
        (images / f"{n}_test.tif").symlink_to(DATA_ROOT / "DRIVE/test/images" / f"{n}_test.tif")
    assert main(["predict", "--model", "drive", "--input", str(images), "--output", "out"]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [r["name"] for r in rows] == ["01_test", "02_test"]
    assert float(rows[0]["threshold"]) == pytest.approx(get("drive").card["threshold"], abs=1e-4)
    assert float(rows[0]["scale"]) == 1.0  # DRIVE on a DRIVE model: native size
    assert (tmp_path / "out" / "01_test_mask.png").is_file()
    root = f"--data.init_args.dataset.init_args.root={DATA_ROOT / 'DRIVE'}"
    main(["test", "--model", "drive", root, "--model.init_args.figures=false"])
    report = json.loads((tmp_path / "runs/models/drive/test/metrics.json").read_text())
    summary = json.loads((RESULTS / "summary.json").read_text())
    committed = next(
        r["metrics"]["default"]
        for r in summary["rows"]
        if r["model"] == "drive" and r["test"].startswith("DRIVE")
    )
    assert report["pooled"]["auroc"] == pytest.approx(committed["auroc"], abs=1e-5)
    assert report["num_images"] == 20
    assert sorted(p.name for p in ZOO_DIR.rglob("*")) == before  # nothing written there
    assert main(["predict", "--model", "nope", "--input", str(images), "--output", "o2"]) == 2
    assert "no shipped model 'nope'" in capsys.readouterr().err
    np.testing.assert_equal((tmp_path / "o2").exists(), False)


@pytest.mark.parametrize(
    "configs",
    [
        ["configs/data/drive.yaml", "configs/models/drive.yaml"],
        ["configs/data/chase_db1_20_8.yaml", "configs/models/chase_db1.yaml"],
        ["configs/data/drive_chase_db1.yaml", "configs/models/drive_chase_db1.yaml"],
    ],
)
def test_the_training_commands_of_the_cards_compose(configs, capsys):
    """Each shipped model's overlay, layered as its card's command does, gives the recipe."""
    import yaml

    args = ["fit", "--config", str(REPO / "configs/drive/laptop.yaml")]
    for c in configs:
        args += ["--config", str(REPO / c)]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--print_config"])
    assert stop.value.code in (0, None)
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["max_epochs"] * cfg["data"]["init_args"]["steps_per_epoch"] == 10_000
    assert cfg["model"]["init_args"]["threshold_criterion"] == "f1"
    assert cfg["seed_everything"] == 0
