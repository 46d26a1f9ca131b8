"""A stopped-and-resumed fit equals an uninterrupted one (issue 16, item 10): the same patches
after the resume, the same weights and optimiser state at the end, the same validation numbers.

The "kill" stops the first fit after its first epoch (a killed `retina fit` leaves exactly that:
``last.ckpt`` of the last finished epoch, test_resume.py); the resumed fit is a fresh module,
datamodule and Trainer, as a new process builds them, started from that ``last.ckpt``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from lightning import seed_everything
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from retina_lightning.data import OfficialSplit, RetinaDataModule, SyntheticFundus
from retina_lightning.models import UNet
from retina_lightning.tasks import SegmentationTask
from tests.helpers import quiet_trainer

STEPS, EPOCHS = 3, 3


class Record(Callback):
    """The (epoch, step) -> digest of each training batch's patches, and the validation AUROC
    and threshold of each epoch."""

    def __init__(self) -> None:
        self.patches: dict[tuple[int, int], str] = {}
        self.val: dict[int, tuple[float, float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        digest = hashlib.sha1()
        for key in ("image", "label", "fov"):
            digest.update(batch[key].detach().cpu().contiguous().numpy().tobytes())
        self.patches[(trainer.current_epoch, batch_idx)] = digest.hexdigest()

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        if "val/auroc" in metrics:
            self.val[trainer.current_epoch] = (
                float(metrics["val/auroc"]),
                float(pl_module.threshold),
            )


def _fit(
    root: Path, max_epochs: int, ckpt_path: str | None = None
) -> tuple[SegmentationTask, Record]:
    seed_everything(0)  # what `retina fit` does first in every process (seed_everything: 0)
    dm = RetinaDataModule(
        dataset=SyntheticFundus(num_train=4, num_test=1, height=64, width=64, seed=2),
        split=OfficialSplit(val_fraction=0.25),
        patch_size=32,
        batch_size=2,
        steps_per_epoch=STEPS,
        vessel_fraction=0.3,
        seed=5,
    )
    task = SegmentationTask(
        UNet(in_channels=3, base_channels=4, depth=2, dropout=0.2),
        connectivity=False,
        figures=False,
    )
    record = Record()
    trainer = quiet_trainer(
        root,
        max_epochs=max_epochs,
        enable_checkpointing=True,
        callbacks=[record, ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)],
    )
    trainer.fit(task, dm, ckpt_path=ckpt_path)
    return task, record


@pytest.mark.slow
def test_stopped_and_resumed_fit_equals_an_uninterrupted_one(tmp_path):
    whole, whole_log = _fit(tmp_path / "whole", EPOCHS)
    _, first_log = _fit(tmp_path / "resumed", 1)  # stopped after epoch 0
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    # _fit seeds the global RNG afresh, as a new process does: not where the first fit left it
    resumed, resumed_log = _fit(tmp_path / "resumed", EPOCHS, ckpt_path=str(last))

    assert set(resumed_log.patches) == {(e, s) for e in range(1, EPOCHS) for s in range(STEPS)}
    for key, digest in resumed_log.patches.items():
        assert digest == whole_log.patches[key], f"epoch {key[0]} step {key[1]}: other patches"
    for key, digest in first_log.patches.items():
        assert digest == whole_log.patches[key]
    assert resumed.global_step == whole.global_step == EPOCHS * STEPS
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after the resume")
    assert resumed_log.val[EPOCHS - 1] == pytest.approx(whole_log.val[EPOCHS - 1], abs=1e-7)
