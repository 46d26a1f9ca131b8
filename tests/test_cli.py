"""The `retina` command: help, config printing, every config parses, fit then test by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import TINY_CLI

from retina_lightning.cli import RunDirError, experiment_name, main, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
EXPERIMENT_CONFIGS = [c for c in CONFIGS if c.parent.name not in ("trainer",)]

# A tiny run of the quickstart config: small images, few steps.
TINY = TINY_CLI


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


def test_help_by_subprocess(tmp_path):
    out = _retina("--help", cwd=tmp_path)
    assert out.returncode == 0 and "fit" in out.stdout and "test" in out.stdout
    out = _retina("fit", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "--data" in out.stdout and "--ckpt_path" in out.stdout
    out = _retina(
        "fit", "--config", str(REPO / "configs/synthetic/unet.yaml"), "--print_config", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["init_args"]["model"]["class_path"] == "retina_lightning.models.UNet"


@pytest.mark.parametrize("config", EXPERIMENT_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_prints(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("retina_lightning.tasks.")
    assert printed["data"]["class_path"].startswith("retina_lightning.data.")


def test_unknown_model_is_a_readable_error(tmp_path):
    out = _retina(
        "fit",
        "--config",
        str(REPO / "configs/synthetic/unet.yaml"),
        "--model.init_args.model.class_path=retina_lightning.models.NoSuchNet",
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "NoSuchNet" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_fit_then_test_best_in_new_processes(tmp_path):
    config = str(REPO / "configs/synthetic/unet.yaml")
    fit = _retina("fit", "--config", config, *TINY, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    runs = list((tmp_path / "runs" / "synthetic" / "unet").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.ckpt").is_file()
    assert (runs[0] / "config.yaml").is_file()
    test = _retina("test", "--config", config, *TINY, "--ckpt_path", "best", cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "--ckpt_path best ->" in test.stderr and "best-epoch000" in test.stderr
    report = json.loads((runs[0] / "test" / "metrics.json").read_text())
    assert 0.0 <= report["pooled"]["auroc"] <= 1.0
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
