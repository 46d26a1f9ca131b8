"""The opt-in channels-last callback: weights in NHWC, the same outputs, usable from the CLI."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from helpers import TINY_CLI

from retina_lightning.memory_format import ChannelsLast
from retina_lightning.models import UNet
from retina_lightning.tasks import SegmentationTask

REPO = Path(__file__).resolve().parents[1]
CALLBACK = "--trainer.callbacks+=retina_lightning.memory_format.ChannelsLast"


def _channels_last(module: torch.nn.Module) -> list[bool]:
    return [
        p.is_contiguous(memory_format=torch.channels_last)
        for p in module.parameters()
        if p.dim() == 4
    ]


def test_weights_become_channels_last_and_outputs_stay() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(UNet(3, 1, base_channels=4, depth=2)).eval()
    x = torch.randn(2, 3, 32, 32)
    before = task(x).detach()
    # 3x3 weights are not channels-last by chance (1x1 ones are both)
    assert not all(_channels_last(task))
    ChannelsLast().setup(None, task, "fit")
    assert all(_channels_last(task)) and len(_channels_last(task)) > 4
    after = task(x)
    assert after.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_a_fit_with_the_callback_trains_in_channels_last(tmp_path) -> None:
    from retina_lightning.cli import main

    config = str(REPO / "configs/synthetic/unet.yaml")
    cli = main(["fit", "--config", config, *TINY_CLI, CALLBACK, "--runs_dir", str(tmp_path)])
    assert any(isinstance(c, ChannelsLast) for c in cli.trainer.callbacks)
    assert all(_channels_last(cli.model))


def test_the_callback_adds_to_a_config_s_own_callbacks(capsys) -> None:
    from retina_lightning.cli import main

    config = str(REPO / "configs/drive/patch2image_light.yaml")
    with contextlib.suppress(SystemExit):
        main(["fit", "--config", config, CALLBACK, "--print_config"])
    printed = capsys.readouterr().out
    assert "retina_lightning.memory_format.ChannelsLast" in printed
    assert "EarlyStopping" in printed  # the config's own callback is kept
