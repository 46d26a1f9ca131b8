"""Artery / vein test evaluation (issue 16, item 6): the per-class AUROC, Se, Sp and F1 that
SegRAVIR reports (000 sec. V), against scikit-learn on known probabilities, and `test` of a
three-class model trained on the synthetic artery / vein maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score, roc_auc_score
from torch import nn

from retina_lightning.models import UNet
from retina_lightning.tasks import SegmentationTask
from retina_lightning.types import ARTERY, VEIN
from tests.helpers import InputLogits, quiet_trainer, whole_image_items


def _trainer(tmp_path, **kwargs):
    return quiet_trainer(tmp_path, **kwargs)


def _av_case(n: int = 3, side: int = 20):
    """Labels 0 / vein / artery, logits that favour the true class with noise, a disc FOV."""
    g = torch.Generator().manual_seed(4)
    u = torch.rand(n, side, side, generator=g)
    label = torch.where(u < 0.12, ARTERY, torch.where(u < 0.3, VEIN, 0)).long()
    logits = torch.randn(n, 3, side, side, generator=g)
    logits += 1.6 * nn.functional.one_hot(label, 3).permute(0, 3, 1, 2).float()
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    c = (side - 1) / 2
    fov = (((yy - c) ** 2 + (xx - c) ** 2) < (0.45 * side) ** 2).expand(n, -1, -1).contiguous()
    # outside the FOV the scores are confidently wrong: counting them would change every number
    logits[:, 0][~fov] = -9.0
    logits[:, 1][~fov] = 9.0
    return logits, label, fov


def test_per_class_metrics_match_scikit_learn(tmp_path):
    logits, label, fov = _av_case()
    items = whole_image_items(logits, label, fov)
    task = SegmentationTask(InputLogits(3), connectivity=False, figures=False)
    task.results_dir = tmp_path
    _trainer(tmp_path).test(task, dataloaders=torch.utils.data.DataLoader(items, batch_size=2))
    report = task.test_report

    m = fov.numpy()
    probs = torch.softmax(logits, 1).numpy()
    truth, predicted = label.numpy()[m], probs.argmax(1)[m]
    assert set(report["per_class"]) == {"vein", "artery"}
    for name, c in (("vein", VEIN), ("artery", ARTERY)):
        entry, is_c, said_c = report["per_class"][name], truth == c, predicted == c
        assert entry["auroc"] == pytest.approx(roc_auc_score(is_c, probs[:, c][m]), abs=1e-6)
        assert entry["se"] == pytest.approx(recall_score(is_c, said_c), abs=1e-9)
        assert entry["sp"] == pytest.approx(recall_score(~is_c, ~said_c), abs=1e-9)
        assert entry["f1"] == pytest.approx(f1_score(is_c, said_c), abs=1e-9)
    # vessel = not background: the binary metrics score 1 - p(background) against label > 0
    vessel = 1.0 - probs[:, 0][m]
    assert report["pooled"]["auroc"] == pytest.approx(roc_auc_score(truth > 0, vessel), abs=1e-6)
    # the classes really differ (a swapped class index would not pass the loop above)
    assert report["per_class"]["vein"]["f1"] != pytest.approx(
        report["per_class"]["artery"]["f1"], abs=1e-3
    )


@pytest.mark.slow
def test_av_model_learns_and_test_reports_each_class(tiny_datamodule, tmp_path):
    """A three-class U-Net on the synthetic A/V maps: `test` reports vein and artery rows
    that equal scikit-learn's on the model's own maps, each found well above chance. (90 steps
    find the vessels of each class; telling arteries from veins takes longer, so the
    artery-vs-vein ranking is not asserted here.)"""
    from retina_lightning.data import SyntheticFundus
    from retina_lightning.losses import DiceCELoss

    easy = SyntheticFundus(
        num_train=4,
        num_test=2,
        height=96,
        width=96,
        seed=5,
        vessel_contrast=2.0,
        noise_std=0.01,
        lesions=0.0,
    )
    dm = tiny_datamodule(
        dataset=easy, target="av", steps_per_epoch=30, batch_size=8, vessel_fraction=0.6
    )
    torch.manual_seed(0)
    task = SegmentationTask(
        UNet(in_channels=3, num_classes=3, base_channels=8, depth=2),
        loss=DiceCELoss(),
        lr=5e-3,
        connectivity=False,
        figures=False,
    )
    trainer = quiet_trainer(tmp_path, max_epochs=3)
    trainer.fit(task, dm)
    task.results_dir = tmp_path / "test"
    trainer.test(task, dm)
    report = task.test_report
    per_class = report["per_class"]
    assert set(per_class) == {"vein", "artery"}
    # each class's row, recomputed from the model's own maps
    task.eval()
    probs, labels, fovs = [], [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            batch = dm.prepare_whole(batch)
            probs.append(torch.softmax(task.model(batch["image"]), 1).numpy())
            labels.append(batch["label"].numpy())
            fovs.append(batch["fov"].numpy())
    probs, labels, fovs = np.concatenate(probs), np.concatenate(labels), np.concatenate(fovs)
    assert set(np.unique(labels)) == {0, VEIN, ARTERY}
    for name, c in (("vein", VEIN), ("artery", ARTERY)):
        is_c = labels[fovs] == c
        assert per_class[name]["auroc"] == pytest.approx(
            roc_auc_score(is_c, probs[:, c][fovs]), abs=1e-5
        )
        assert per_class[name]["f1"] == pytest.approx(
            f1_score(is_c, probs.argmax(1)[fovs] == c), abs=1e-6
        )
        assert per_class[name]["auroc"] > 0.85, per_class  # chance is 0.5
