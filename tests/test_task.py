"""SegmentationTask: multi-output routing, thresholds, a short fit that really learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_curve,
    recall_score,
    roc_curve,
)
from torch import nn

from retina_lightning.callbacks import format_report
from retina_lightning.losses import BCELoss, DeepSupervisionLoss
from retina_lightning.models import UNet
from retina_lightning.tasks import SegmentationTask
from retina_lightning.tasks.segmentation import NonFiniteLossError
from retina_lightning.types import SegOutput
from tests.helpers import InputLogits, quiet_trainer, whole_image_items


class TwoHeads(nn.Module):
    """A body with a main head and a side head (deep supervision in miniature)."""

    required_multiple = 1

    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        self.body = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.main_head = nn.Conv2d(4, num_classes, 1)
        self.side_head = nn.Conv2d(4, num_classes, 1)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return SegOutput(main=self.main_head(h), aux=[self.side_head(h)])


def _trainer(tmp_path, **kwargs):
    return quiet_trainer(tmp_path, **kwargs)


def _batch():
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(2, 3, 16, 16, generator=g),
        "label": (torch.rand(2, 16, 16, generator=g) < 0.3).long(),
        "fov": torch.ones(2, 16, 16, dtype=torch.bool),
    }


def test_multi_output_model_routes_every_output_to_the_loss():
    task = SegmentationTask(TwoHeads(), loss=DeepSupervisionLoss(BCELoss()))
    task.training_step(_batch(), 0).backward()
    assert task.model.side_head.weight.grad.abs().sum() > 0
    assert task.model.main_head.weight.grad.abs().sum() > 0
    # a pixel loss sees only the main output: the side head gets no gradient
    plain = SegmentationTask(TwoHeads(), loss=BCELoss())
    plain.training_step(_batch(), 0).backward()
    assert plain.model.side_head.weight.grad is None
    assert plain.model.main_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("criterion", ["youden", "f1"])
def test_validation_chooses_the_threshold_by_the_configured_criterion(criterion):
    task = SegmentationTask(
        UNet(in_channels=3, base_channels=4, depth=2), threshold_criterion=criterion
    )
    task.log = lambda *args, **kwargs: None  # no Trainer attached
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 30, 30, generator=g) < 0.15).long()
    prob = (0.4 * target + 0.6 * torch.rand(2, 30, 30, generator=g)).clamp(0, 1)
    task.val_metrics.update(prob, target)
    expected = task.val_metrics.optimal_threshold(criterion)
    task.on_validation_epoch_end()
    assert float(task.threshold) == pytest.approx(expected, abs=1e-6)
    other = "f1" if criterion == "youden" else "youden"
    task.val_metrics.update(prob, target)
    assert task.val_metrics.optimal_threshold(other) != pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="threshold_criterion=youden or f1"):
        SegmentationTask(UNet(in_channels=3, base_channels=4, depth=2), threshold_criterion="x")


def test_non_finite_loss_names_the_step():
    task = SegmentationTask(TwoHeads())
    batch = _batch()
    batch["image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="global step 0"):
        task.training_step(batch, 0)


def test_channel_mismatch_is_explained(tiny_datamodule, tmp_path):
    from retina_lightning.data import Preprocess

    dm = tiny_datamodule(preprocess=Preprocess(channels="green"))
    task = SegmentationTask(UNet(in_channels=3, base_channels=4, depth=2))
    with pytest.raises(ValueError, match="in_channels: 1"):
        _trainer(tmp_path, max_steps=1).fit(task, dm)


@pytest.mark.slow
def test_short_fit_learns_and_test_writes_results(tiny_datamodule, tmp_path):
    from retina_lightning.data import SyntheticFundus

    # high-contrast, lesion-free images: learnable in a few CPU seconds
    easy = SyntheticFundus(
        num_train=5,
        num_test=2,
        height=128,
        width=128,
        seed=3,
        vessel_contrast=2.0,
        noise_std=0.01,
        lesions=0.0,
    )
    dm = tiny_datamodule(dataset=easy, steps_per_epoch=15, batch_size=8, vessel_fraction=0.3)
    task = SegmentationTask(UNet(in_channels=3, base_channels=8, depth=2), lr=5e-3)
    trainer = _trainer(tmp_path, max_epochs=4)
    losses = []

    from lightning.pytorch.callbacks import Callback

    class LossLog(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer.callbacks.append(LossLog())
    trainer.fit(task, dm)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    task.results_dir = tmp_path / "test"
    trainer.test(task, dm)
    report = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert report["pooled"]["auroc"] > 0.75  # chance is 0.5
    assert report["num_images"] == 2

    # the threshold is the F1-maximising point of the validation pixels (the default
    # criterion, issue 22), recomputed here with scikit-learn; Youden's lies elsewhere
    val_prob, val_label, val_fov = _whole_image_probs(task, dm, dm.val_dataloader())
    precision, recall, cut = precision_recall_curve(val_label[val_fov], val_prob[val_fov])
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    best = float(np.clip(cut[np.argmax(f1)], 0.0, 1.0))
    fpr, tpr, roc_cut = roc_curve(val_label[val_fov], val_prob[val_fov])
    youden = float(np.clip(roc_cut[np.argmax(tpr - fpr)], 0.0, 1.0))
    assert abs(float(task.threshold) - 0.5) > 0.01, "threshold left at its 0.5 default"
    assert float(task.threshold) == pytest.approx(best, abs=1e-5)
    assert report["thresholds"]["opt"] == pytest.approx(best, abs=1e-5)
    assert abs(best - youden) > 0.01
    assert report["threshold_criterion"] == "f1"

    # the 2nd observer row: the second annotation scored against the first inside the FOV
    second = np.concatenate([s.second_observer[s.fov > 0].ravel() for s in dm.samples.test])
    first_obs = np.concatenate([s.label[s.fov > 0].ravel() for s in dm.samples.test])
    so = report["second_observer"]
    assert so["se"] == pytest.approx(recall_score(first_obs, second), abs=1e-9)
    assert so["sp"] == pytest.approx(recall_score(1 - first_obs, 1 - second), abs=1e-9)
    assert so["f1"] == pytest.approx(f1_score(first_obs, second), abs=1e-9)
    assert so["acc"] == pytest.approx(accuracy_score(first_obs, second), abs=1e-9)
    assert 0.5 < so["f1"] < 1.0  # two observers disagree on thin vessels, not everywhere

    # connectivity: IterNet's area of each test image's own probability map (a map scored
    # against another image's labels, or a wrong threshold sweep, gives another number)
    from retina_lightning.measure import connectivity_curve

    prob, label, fov = _whole_image_probs(task, dm, dm.test_dataloader(), stack=False)
    areas = [connectivity_curve(p, t > 0, f)[2] for p, t, f in zip(prob, label, fov)]
    swapped = [connectivity_curve(p, t > 0, f)[2] for p, t, f in zip(prob, label[::-1], fov)]
    assert report["per_image_mean"]["connectivity"] == pytest.approx(np.mean(areas), abs=1e-9)
    assert np.mean(areas) != pytest.approx(np.mean(swapped), abs=1e-3)
    assert 0.0 < np.mean(areas) < 1.0
    csv = (tmp_path / "test" / "per_image.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("image,auroc,auprc")
    assert "2nd observer" in format_report(report)


def _whole_image_probs(task, dm, loader, stack=True):
    """Vessel probabilities, labels and FOVs of a loader's whole images (numpy), computed
    here with the task's model, outside the Trainer."""
    probs, labels, fovs = [], [], []
    task.eval()
    with torch.no_grad():
        for batch in loader:
            batch = dm.prepare_whole(batch)
            probs.append(torch.sigmoid(task.model(batch["image"]))[:, 0].numpy())
            labels.append(batch["label"].numpy())
            fovs.append(batch["fov"].numpy())
    if not stack:
        return (
            [a for p in probs for a in p],
            [a for t in labels for a in t],
            [a for f in fovs for a in f],
        )
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(fovs)


def test_unmasked_metrics_score_every_pixel_beside_the_fov_ones(tmp_path):
    """004's protocol (no FOV mask, threshold 0.5) next to the FOV one, both against
    scikit-learn on known probabilities."""
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(1)
    n, side = 3, 24
    label = (torch.rand(n, side, side, generator=g) < 0.2).long()
    image = torch.randn(n, 1, side, side, generator=g) + 1.5 * label[:, None].float() - 0.8
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    fov = (((yy - 11.5) ** 2 + (xx - 11.5) ** 2) < 10.0**2).expand(n, -1, -1).contiguous()
    # outside the FOV: dark surround the network calls background, as a real one should
    image[:, 0][~fov] = -6.0
    label[~fov] = 0
    items = whole_image_items(image, label, fov)
    loader = torch.utils.data.DataLoader(items, batch_size=1)
    task = SegmentationTask(
        InputLogits(1), unmasked_metrics=True, connectivity=False, figures=False
    )
    task.results_dir = tmp_path
    _trainer(tmp_path).test(task, dataloaders=loader)
    report = task.test_report
    prob = torch.sigmoid(image[:, 0])
    m = fov.numpy()
    assert report["pooled"]["auroc"] == pytest.approx(
        roc_auc_score(label.numpy()[m], prob.numpy()[m]), abs=1e-6
    )
    whole = report["unmasked"]
    assert whole["pooled"]["auroc"] == pytest.approx(
        roc_auc_score(label.numpy().ravel(), prob.numpy().ravel()), abs=1e-6
    )
    # the easy dark surround raises the unmasked AUROC and accuracy, as it does 004's numbers
    assert whole["pooled"]["auroc"] > report["pooled"]["auroc"]
    assert whole["pooled"]["acc@0.5"] > report["pooled"]["acc@0.5"]
    per_image_f1 = [
        f1_score(label[i].numpy().ravel(), prob[i].numpy().ravel() >= 0.5) for i in range(n)
    ]
    assert whole["per_image_mean"]["f1@0.5"] == pytest.approx(sum(per_image_f1) / n, abs=1e-6)
    text = format_report(report)
    assert "no FOV mask, pooled @0.5" in text and "no FOV mask, per image @0.5" in text
    rows = (tmp_path / "per_image.csv").read_text().splitlines()
    assert "nofov_f1@0.5" in rows[0]


class IdentityConv(nn.Module):
    """A 1x1 convolution with weight 1: under bf16 autocast its output is bfloat16."""

    required_multiple = 1
    num_classes = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        nn.init.ones_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return self.conv(x)


def test_evaluation_runs_in_float32_under_bf16_autocast():
    model = IdentityConv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(1, 1, 4, 4)).dtype == torch.bfloat16  # what training sees
    task = SegmentationTask(model)
    x = torch.randn(1, 1, 8, 8) * 3.0 + 0.123456
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = task.predict_probs(x)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs[:, 0], torch.sigmoid(x[:, 0]), rtol=0, atol=1e-7)
