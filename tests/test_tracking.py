"""W&B offline runs (no network), run identity, the run-directory CSV logger, test results
sent to W&B, and the leaderboard reading a tracked run from its metrics.json."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from lightning import Trainer

from retina_lightning.leaderboard import collect_runs, read_per_image_csv
from retina_lightning.tracking import (
    RetinaWandbLogger,
    RunCSVLogger,
    configure_loggers,
    flatten_report,
    log_test_results,
    protocol_name,
    run_identity,
    wandb_api_key_configured,
    wandb_online,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No API key, no netrc, W&B's own folders inside tmp_path."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


@pytest.fixture
def offline_wandb(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    yield
    import wandb

    wandb.finish()


def test_offline_unless_a_key_is_configured(no_credentials, monkeypatch, tmp_path):
    assert not wandb_api_key_configured() and not wandb_online()
    assert RetinaWandbLogger()._offline
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert not wandb_api_key_configured()  # an entry for another host
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    assert wandb_api_key_configured() and wandb_online()
    assert not RetinaWandbLogger()._offline
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert not wandb_online() and RetinaWandbLogger()._offline
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_online()
    assert RetinaWandbLogger(offline=True)._offline  # an explicit choice wins


def test_run_identity_from_configs():
    split = {
        "class_path": "retina_lightning.data.KFoldSplit",
        "init_args": {"num_folds": 5, "fold": 2},
    }
    config = {
        "seed_everything": 7,
        "model": {"init_args": {"model": {"class_path": "retina_lightning.models.DPN"}}},
        "data": {
            "init_args": {
                "dataset": {"class_path": "retina_lightning.data.CHASEDB1"},
                "split": split,
            }
        },
    }
    ident = run_identity("chase/dpn", config)
    assert (ident.method, ident.dataset, ident.protocol, ident.fold, ident.seed, ident.model) == (
        "dpn",
        "chase_db1",
        "5fold",
        2,
        7,
        "DPN",
    )
    assert ident.group == "chase_db1/5fold" and "dpn" in ident.tags
    first = {"class_path": "x.FirstNSplit", "init_args": {"n_train": 10, "n_test": 10}}
    assert protocol_name(first) == ("first10-10", None)
    assert protocol_name({"class_path": "x.LeaveOneOutSplit", "init_args": {"index": 3}}) == (
        "loo",
        3,
    )
    assert protocol_name(None) == ("official", None)
    # no config: the experiment name alone; split suffixes of config names are not methods
    assert run_identity("stare/iternet").dataset == "stare"
    for name in ("unet_16_4", "unet_5fold", "unet_first10", "unet_loo", "unet"):
        assert run_identity(f"stare/{name}").method == "unet"
    assert run_identity("drive/unet_short").method == "unet_short"
    assert run_identity("default", {}).method == "unknown"


def test_flatten_report_keys():
    report = {
        "model": "UNet",
        "num_parameters": 10,
        "thresholds": {"0.5": 0.5, "opt": 0.3},
        "num_images": 2,
        "pooled": {"auroc": 0.9, "f1@opt": 0.8},
        "per_image_mean": {"auroc": 0.91, "connectivity": 0.7},
        "per_image_std": {"auroc": 0.01, "connectivity": 0.1},
        "second_observer": {"f1": 0.78},
        "per_class": {"artery": {"auroc": 0.95}},
    }
    assert flatten_report(report) == {
        "auroc": 0.9,
        "f1@opt": 0.8,
        "per_image/auroc": 0.91,
        "per_image/connectivity": 0.7,
        "per_image_std/auroc": 0.01,
        "per_image_std/connectivity": 0.1,
        "connectivity": 0.7,
        "second_observer/f1": 0.78,
        "artery_auroc": 0.95,
        "threshold": 0.3,
        "num_images": 2.0,
        "num_parameters": 10.0,
    }


def test_csv_logger_appends_to_an_existing_run(tmp_path):
    run = tmp_path / "run"
    first = RunCSVLogger()
    configure_loggers(first, run, "synthetic/unet")
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.save()
    second = RunCSVLogger()  # e.g. `retina fit --ckpt_path last` in a new process
    configure_loggers([second], run, "synthetic/unet")
    second.log_metrics({"train/loss": 0.5, "val/auroc": 0.7}, step=1)
    second.save()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [(r["step"], r["train/loss"], r.get("val/auroc")) for r in rows] == [
        ("0", "1.0", ""),
        ("1", "0.5", "0.7"),
    ]
    explicit = RunCSVLogger(save_dir=str(tmp_path / "elsewhere"))
    configure_loggers(explicit, run, "synthetic/unet")
    assert Path(explicit.log_dir) == tmp_path / "elsewhere"


class _FakeWandbRun:
    """The two methods of a ``wandb`` run that :func:`log_test_results` calls."""

    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.summary: dict = {}

    def log(self, payload: dict) -> None:
        self.logged.append(payload)


def test_log_test_results_fills_the_wandb_summary(no_credentials, tmp_path):
    import wandb
    from PIL import Image

    report = {"pooled": {"auroc": 0.9, "f1@opt": 0.8}, "per_image_mean": {"f1@opt": 0.79}}
    rows = [{"image": "01_test", "f1@opt": 0.78}, {"image": "02_test", "f1@opt": 0.8}]
    Image.new("RGB", (8, 8)).save(tmp_path / "roc.png")
    (tmp_path / "notes.txt").write_text("not an image")
    wb, csv_logger = RetinaWandbLogger(offline=True), RunCSVLogger(save_dir=str(tmp_path))
    wb._experiment = run = _FakeWandbRun()
    log_test_results([csv_logger, wb], report, rows, [tmp_path / "roc.png", tmp_path / "notes.txt"])
    assert run.summary == {"test/auroc": 0.9, "test/f1@opt": 0.8, "test/per_image/f1@opt": 0.79}
    (payload,) = run.logged
    assert set(payload) == {"test/per_image", "test/figures/roc"}
    table = payload["test/per_image"]
    assert isinstance(table, wandb.Table) and table.columns == ["image", "f1@opt"]
    assert table.data == [["01_test", 0.78], ["02_test", 0.8]]
    log_test_results([csv_logger], report, rows)  # no W&B logger: nothing to do, no error


def test_offline_wandb_run_sits_in_the_run_folder(offline_wandb, tmp_path, tiny_datamodule):
    """A fit + test with the W&B logger offline: the W&B folder lands in the run folder, and
    the leaderboard lists the run once, from ``test/metrics.json``, with the identity of the
    run's config (the W&B folder is not read, issue 12)."""
    import yaml

    from retina_lightning.models import UNet
    from retina_lightning.tasks import SegmentationTask

    run_dir = tmp_path / "runs" / "synthetic" / "unet" / "20260101-000000"
    run_dir.mkdir(parents=True)
    config = {
        "seed_everything": 3,
        "data": {"init_args": {"dataset": {"class_path": "x.SyntheticFundus"}}},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))  # as LightningCLI saves it
    wb, csv_logger = RetinaWandbLogger(tags=["smoke"]), RunCSVLogger()
    configure_loggers([wb, csv_logger], run_dir, "synthetic/unet", config, "fit")
    init = wb._wandb_init
    assert (init["name"], init["group"], init["job_type"]) == ("unet", "synthetic/official", "fit")
    assert {"smoke", "synthetic", "official", "unet"} <= set(init["tags"])
    assert init["config"]["retina"]["seed"] == 3
    assert init["config"]["retina"]["run_dir"] == str(run_dir.resolve())
    task = SegmentationTask(UNet(3, 1, base_channels=4, depth=2), connectivity=False)
    dm = tiny_datamodule(steps_per_epoch=2, batch_size=2)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=[csv_logger, wb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )
    trainer.fit(task, datamodule=dm)
    task.results_dir = run_dir / "test"
    trainer.test(task, datamodule=dm, verbose=False)
    import wandb

    wandb.finish()
    wandb.teardown()  # waits for the service process to flush the offline run to disk

    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    assert folder.name.endswith(f"-{run_id}") and (run_dir / "metrics.csv").is_file()
    (r,) = collect_runs([tmp_path / "runs"])
    assert (r.origin, r.source) == ("results", str(run_dir / "test" / "metrics.json"))
    assert (r.method, r.dataset, r.protocol, r.seed, r.fold) == (
        "unet",
        "synthetic",
        "official",
        3,
        None,
    )
    assert r.metrics["auroc"] == pytest.approx(task.test_report["pooled"]["auroc"], abs=1e-12)
    assert not math.isnan(r.metrics["f1@opt"])
    assert r.num_images == task.test_report["num_images"] and len(r.per_image) == r.num_images
    assert [x["image"] for x in r.per_image] == [
        x["image"] for x in read_per_image_csv(run_dir / "test" / "per_image.csv")
    ]
    with pytest.warns(UserWarning, match="pass the run folder"):
        assert collect_runs([folder]) == []


@pytest.mark.slow
def test_cli_with_the_wandb_trainer_config(offline_wandb, tmp_path, monkeypatch):
    """`retina fit/test --config <experiment> --config configs/trainer/wandb.yaml`: the W&B
    folder and the CSV log land in the run directory; the test summary reaches the W&B run."""
    from retina_lightning.cli import main

    monkeypatch.chdir(tmp_path)
    tiny = [
        "--config",
        str(REPO / "configs/synthetic/unet.yaml"),
        "--config",
        str(REPO / "configs/trainer/wandb.yaml"),
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--data.init_args.dataset.init_args.num_train=3",
        "--data.init_args.dataset.init_args.num_test=2",
        "--data.init_args.dataset.init_args.height=64",
        "--data.init_args.dataset.init_args.width=64",
        "--data.init_args.patch_size=32",
        "--data.init_args.batch_size=2",
        "--data.init_args.steps_per_epoch=2",
        "--model.init_args.model.init_args.base_channels=4",
        "--model.init_args.connectivity=false",
    ]
    main(["fit", *tiny])
    import wandb

    wandb.finish()
    main(["test", *tiny, "--ckpt_path", "last"])
    wandb.finish()
    wandb.teardown()  # waits for the service process to flush the offline runs to disk
    (run_dir,) = (tmp_path / "runs" / "synthetic" / "unet").iterdir()
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "test" / "metrics.json").is_file()
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2  # fit and test: the same W&B run id, continued
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    assert all(f.name.endswith(f"-{run_id}") for f in folders)
    assert not (tmp_path / "wandb").exists()


@pytest.mark.parametrize("name", ["csv", "tensorboard", "wandb", "ddp"])
def test_trainer_configs_compose_with_an_experiment(name, capsys):
    import yaml

    from retina_lightning.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config", str(REPO / "configs/synthetic/unet.yaml"),
                "--config", str(REPO / f"configs/trainer/{name}.yaml"),
                "--print_config",
            ]
        )  # fmt: skip
    assert exit_info.value.code in (0, None)
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    if name == "ddp":
        assert (trainer["strategy"], trainer["sync_batchnorm"]) == ("ddp", True)
    else:
        paths = [lg["class_path"] for lg in trainer["logger"]]
        assert paths[0] == "retina_lightning.tracking.RunCSVLogger"  # metrics.csv always
        assert len(paths) == (1 if name == "csv" else 2)
