"""Shared fixtures: tiny synthetic data so that every test runs in seconds on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _deterministic_torch():
    # One intra-op thread: the tests use small tensors, where thread start-up costs more than
    # it saves, and pytest-xdist runs one worker per core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_datamodule():
    """A RetinaDataModule over six 96x96 synthetic images (4 train, 1 val, 2 test)."""
    from retina_lightning.data import OfficialSplit, RetinaDataModule, SyntheticFundus

    def make(**kwargs):
        defaults = dict(
            dataset=SyntheticFundus(num_train=5, num_test=2, height=96, width=96, seed=3),
            split=OfficialSplit(val_fraction=0.2),
            patch_size=32,
            batch_size=4,
            steps_per_epoch=3,
        )
        defaults.update(kwargs)
        return RetinaDataModule(**defaults)

    return make
