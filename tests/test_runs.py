"""Run folders, checkpoints and errors of the ``retina`` command (issue 15, items 2, 3, 6, 10,
11, 12, 13; item 9 is in test_resume.py). Every fit is a tiny synthetic one in-process; the
tests that need a trained run copy the one run the module fits."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY_CLI

from retina_lightning.cli import main
from retina_lightning.data.base import DatasetError
from retina_lightning.runs import (
    RunDirError,
    best_checkpoint,
    checkpoint_score,
    remove_unused_run,
    resolve_checkpoint,
    trim_metrics_csv,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/synthetic/unet.yaml")
TINY = [
    "--config",
    CONFIG,
    *TINY_CLI,
    "--model.init_args.model.init_args.depth=2",
    "--model.init_args.connectivity=false",
    "--model.init_args.figures=false",
    "--trainer.log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """One epoch of the tiny U-Net (base_channels 4): a run folder with best-*.ckpt,
    last.ckpt (global step 2), config.yaml, hparams.yaml and metrics.csv."""
    runs = tmp_path_factory.mktemp("fitted") / "runs"
    return Path(main(["fit", *TINY, "--runs_dir", str(runs)]).run_dir)


@pytest.fixture
def run(fitted: Path, tmp_path: Path) -> Path:
    """A copy of the fitted run as the only run of ``synthetic/unet`` under tmp_path/runs."""
    copy = tmp_path / "runs" / "synthetic" / "unet" / fitted.name
    shutil.copytree(fitted, copy)
    return copy


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _console(monkeypatch, capsys, *argv: str) -> tuple[int | str | None, str]:
    """``retina ARGV`` as the console script runs it (``main()`` reads sys.argv)."""
    monkeypatch.setattr(sys, "argv", ["retina", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


# ------------------------------------------------------------------- item 2: fit from a file
def test_fit_from_a_checkpoint_file_opens_a_new_run(run, tmp_path):
    before = _files(run)
    cli = main(
        [
            "fit", *TINY, "--runs_dir", str(tmp_path / "runs"), "--trainer.max_epochs=2",
            "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
        ]
    )  # fmt: skip
    assert Path(cli.run_dir).resolve() != run.resolve()
    assert _files(run) == before  # the earlier run's last.ckpt, config.yaml ... untouched
    new = torch.load(Path(cli.run_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert new["global_step"] == 4  # the file's training state went on: 2 steps + 2
    assert len(list(run.parent.iterdir())) == 2


# ------------------------------------------------------------- item 3: best by the score
def _scored(path: Path, score: float, mode: str = "max") -> Path:
    key = f"ModelCheckpoint{{'monitor': 'val/auroc', 'mode': '{mode}', 'every_n_train_steps': 0}}"
    state = {"monitor": "val/auroc", "current_score": torch.tensor(score)}
    torch.save({"state_dict": {}, "callbacks": {key: state}}, path)
    return path


def test_best_is_the_best_score_not_the_newest_file(tmp_path):
    ckpts = tmp_path / "runs" / "drive" / "unet" / "20260101-000000" / "checkpoints"
    ckpts.mkdir(parents=True)
    better = _scored(ckpts / "best-epoch010-auroc0.9358.ckpt", 0.9358)
    _scored(ckpts / "best-epoch019-auroc0.9280.ckpt", 0.9280)  # written later: newer mtime
    assert resolve_checkpoint("best", tmp_path / "runs", "drive/unet") == better
    # a monitor to minimise
    low = _scored(tmp_path / "a.ckpt", 0.1, "min")
    assert best_checkpoint([low, _scored(tmp_path / "b.ckpt", 0.3, "min")]) == low


def test_checkpoint_score_reads_what_the_cli_writes(fitted):
    (best,) = (fitted / "checkpoints").glob("best-*.ckpt")
    score, mode = checkpoint_score(best)
    assert mode == "max"
    assert f"auroc{score:.4f}" in best.name  # the score in the file name is the stored one


# -------------------------------------------------- item 6: each test keeps its own config
def test_each_test_keeps_its_config_beside_its_results(run, tmp_path):
    from retina_lightning.leaderboard import result_from_files

    fit_files = {k: v for k, v in _files(run).items() if not k.startswith("checkpoints")}
    test = ["test", *TINY, "--runs_dir", str(tmp_path / "runs"), "--ckpt_path", "last"]
    main(test)
    main([*test, "--seed_everything=7"])
    assert not (run / "test_config.yaml").exists()
    now = _files(run)
    assert {k: now[k] for k in fit_files} == fit_files  # config, hparams, metrics.csv as fit left
    configs = [yaml.safe_load((run / d / "config.yaml").read_text()) for d in ("test", "test-2")]
    assert [c["seed_everything"] for c in configs] == [0, 7]
    # the leaderboard reads each evaluation with the config it ran with
    seeds = [result_from_files(run / d / "metrics.json").seed for d in ("test", "test-2")]
    assert seeds == [0, 7]


# ------------------------------------------------- item 10: no empty folder of a failed fit
BAD_ROOT = [
    "fit",
    "--config",
    str(REPO / "configs/drive/unet.yaml"),
    "--trainer.enable_progress_bar=false",
    "--data.init_args.dataset.init_args.root=/nonexistent/DRIVE",
]


def test_a_fit_that_fails_in_its_setup_leaves_no_run_folder(tmp_path):
    with pytest.raises(DatasetError, match="/nonexistent/DRIVE"):
        main([*BAD_ROOT, "--runs_dir", str(tmp_path / "runs")])
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert not (tmp_path / "runs" / "drive").exists()


def test_remove_unused_run_keeps_a_run_with_results(tmp_path):
    run = tmp_path / "runs" / "x" / "1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("a: 1\n")
    (run / "metrics.csv").write_text("epoch,step\n")
    assert not remove_unused_run(run, tmp_path / "runs") and run.is_dir()
    (run / "metrics.csv").unlink()
    assert remove_unused_run(run, tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []


# ---------------------------------------------------- item 11: one line, not a traceback
def test_expected_errors_print_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RETINA_DEBUG", raising=False)
    code, err = _console(monkeypatch, capsys, *BAD_ROOT, "--runs_dir", str(tmp_path / "runs"))
    assert code == 1
    assert (
        "Traceback (most recent" not in err
        and "retina: error: DRIVE: data root '/nonexistent/DRIVE'" in err
    )
    assert "RETINA_DEBUG=1" in err
    code, err = _console(
        monkeypatch, capsys, "test", "--config", CONFIG, "--runs_dir", str(tmp_path / "none"),
        "--ckpt_path", "best",
    )  # fmt: skip
    assert code == 2 and "Traceback (most recent" not in err
    assert "retina: error: --ckpt_path best: no checkpoint found" in err and "train first" in err
    # RETINA_DEBUG=1: the exception itself, for the traceback
    monkeypatch.setenv("RETINA_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["retina", *BAD_ROOT, "--runs_dir", str(tmp_path / "runs")])
    with pytest.raises(DatasetError):
        main()


# ------------------------------------------------------------ item 12: typos in a config
def _typo(tmp_path: Path, monkeypatch, capsys, yaml_text: str, *extra: str) -> str:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    code, err = _console(
        monkeypatch, capsys, "fit", "--config", CONFIG, "--config", str(bad), *extra
    )
    assert code == 2 and "Traceback (most recent" not in err
    assert len(err.strip().splitlines()) <= 6, err
    return err


def test_a_misspelt_key_names_the_key_the_file_and_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RETINA_DEBUG", raising=False)
    err = _typo(tmp_path, monkeypatch, capsys, "trainer:\n  max_epoch: 3\n")
    assert "'trainer.max_epoch'" in err and str(tmp_path / "bad.yaml") in err
    assert "did you mean: trainer.max_epochs" in err
    nested = "model:\n  init_args:\n    model:\n      init_args:\n        base_channel: 8\n"
    err = _typo(tmp_path, monkeypatch, capsys, nested)
    assert "UNet takes no argument 'base_channel'" in err and str(tmp_path / "bad.yaml") in err
    assert "model.init_args.model.init_args.base_channel" in err
    assert "did you mean: base_channels" in err


def test_an_unknown_class_suggests_the_known_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RETINA_DEBUG", raising=False)
    err = _typo(
        tmp_path, monkeypatch, capsys, "seed_everything: 0\n",
        "--model.init_args.model.class_path=retina_lightning.models.UNett",
    )  # fmt: skip
    assert "no class or module 'UNett' in retina_lightning.models on the command line" in err
    assert "did you mean: UNet" in err


# ------------------------------------------------- item 13: a checkpoint of other widths
def test_other_layer_sizes_name_the_hyperparameter(run, tmp_path):
    with pytest.raises(RunDirError, match="base_channels 4 in the checkpoint, 8 in the config"):
        main(
            [
                "test", *TINY, "--runs_dir", str(tmp_path / "runs"), "--ckpt_path", "last",
                "--model.init_args.model.init_args.base_channels=8",
            ]
        )  # fmt: skip


# ---------------------------------------------------------------------- item 9 (function)
def test_trim_metrics_csv_drops_the_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\r\n0,0,1\r\n0,1,2\r\n1,2,3\r\n0,0,\r\n1,3,4\r\n")
    assert trim_metrics_csv(path, 2) == 2
    assert path.read_bytes().decode() == "epoch,step,train/loss\r\n0,0,1\r\n0,1,2\r\n0,0,\r\n"
