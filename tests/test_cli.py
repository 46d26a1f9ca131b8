"""The `retina` command: help, config printing, every config parses, fit then test by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import LEARNABLE_CLI, TINY_CLI

from retina_lightning.cli import RunDirError, experiment_name, main, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
# trainer/ and data/ hold fragments layered after an experiment config
EXPERIMENT_CONFIGS = [c for c in CONFIGS if c.parent.name not in ("trainer", "data", "models")]

# A tiny run of the quickstart config: small images, few steps.
TINY = TINY_CLI
LEARNABLE = LEARNABLE_CLI


def _retina(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("retina")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "retina_lightning.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_experiment_names():
    assert experiment_name(["configs/synthetic/unet.yaml"]) == "synthetic/unet"
    assert experiment_name(["/a/b/configs/drive/dpn.yaml"]) == "drive/dpn"
    assert experiment_name(["/tmp/my.yaml"]) == "my"
    assert experiment_name(None) == "default"


def test_missing_checkpoint_is_explained(tmp_path):
    with pytest.raises(RunDirError, match="train first"):
        resolve_checkpoint("best", tmp_path, "synthetic/unet")


@pytest.mark.slow
def test_help_by_subprocess(tmp_path):
    """The installed console script starts (one subprocess: ~8 s of imports)."""
    out = _retina("--help", cwd=tmp_path)
    assert out.returncode == 0 and "fit" in out.stdout and "test" in out.stdout


def test_help_lists_every_command(capsys):
    """Issue 12: `retina --help` names every command, and each one answers --help."""
    from retina_lightning.cli import COMMANDS

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "distill", "predict", "data", "leaderboard"):
        assert f"\n  {name} " in out, name
    assert "patch2image" in out and set(COMMANDS) >= {"data", "leaderboard", "patch2image"}
    for name in ("predict", "data", "leaderboard", "patch2image"):
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code in (0, None), name
        assert "usage:" in capsys.readouterr().out, name
    assert main([]) == 2  # no command: the list, and a usage error


def test_subcommand_help_and_print_config(capsys):
    """In-process: what a subprocess would add is covered by test_help_by_subprocess."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "--data" in out and "--ckpt_path" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs/synthetic/unet.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["model"]["class_path"] == "retina_lightning.models.UNet"


@pytest.mark.parametrize("config", EXPERIMENT_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_prints(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("retina_lightning.tasks.")
    assert printed["data"]["class_path"].startswith("retina_lightning.data.")


def test_unknown_model_is_a_readable_error(tmp_path, monkeypatch, capsys):
    # the console script's path (main() reads sys.argv), in-process
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "retina",
            "fit",
            "--config",
            str(REPO / "configs/synthetic/unet.yaml"),
            "--model.init_args.model.class_path=retina_lightning.models.NoSuchNet",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "NoSuchNet" in err and "Traceback" not in err


@pytest.mark.slow
def test_fit_then_test_best_in_new_processes(tmp_path):
    config = str(REPO / "configs/synthetic/unet.yaml")
    fit = _retina("fit", "--config", config, *TINY, *LEARNABLE, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    runs = list((tmp_path / "runs" / "synthetic" / "unet").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.ckpt").is_file()
    assert (runs[0] / "config.yaml").is_file()
    test = _retina(
        "test", "--config", config, *TINY, *LEARNABLE, "--ckpt_path", "best", cwd=tmp_path
    )
    assert test.returncode == 0, test.stderr[-3000:]
    assert "--ckpt_path best ->" in test.stderr and "best-epoch" in test.stderr
    report = json.loads((runs[0] / "test" / "metrics.json").read_text())
    # learned: 0.926 here; chance is 0.5 and the 2-step TINY run scores 0.51, as would a
    # pipeline that misaligns labels or tests another model than it trained
    assert report["pooled"]["auroc"] > 0.85, report["pooled"]["auroc"]
    # a second fit never reuses the first run's directory
    again = _retina("fit", "--config", config, *TINY, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list((tmp_path / "runs" / "synthetic" / "unet").iterdir())) == 2


def test_checkpoint_errors_are_readable(tmp_path):
    """A file that is not a checkpoint, and a checkpoint of another model than the config's."""
    import torch

    from retina_lightning.models import UNet
    from retina_lightning.tasks import SegmentationTask

    config = str(REPO / "configs/synthetic/unet.yaml")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(RunDirError, match="not a readable checkpoint"):
        main(["test", "--config", config, "--ckpt_path", str(junk)])
    plain = tmp_path / "weights.pt"
    torch.save(UNet(base_channels=4).state_dict(), plain)
    with pytest.raises(RunDirError, match="not a Lightning checkpoint"):
        main(["test", "--config", config, "--ckpt_path", str(plain)])
    other = tmp_path / "dpn.ckpt"
    task = SegmentationTask(UNet(base_channels=4))
    hparams = {"model": {"class_path": "retina_lightning.models.DPN", "init_args": {}}}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, other)
    with pytest.raises(RunDirError, match="holds a DPN but the config builds a UNet"):
        main(["test", "--config", config, "--ckpt_path", str(other), "--runs_dir", str(tmp_path)])
