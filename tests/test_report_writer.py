"""The test report as a plain function and as a callback (issue 12): a plain ``Trainer.test``
writes ``metrics.json``, ``per_image.csv`` and the figures through the ``ReportWriter`` the
task attaches itself."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from retina_lightning.callbacks import BestWorstPanels, ReportWriter, format_report
from retina_lightning.metrics import UNMASKED_PROTOCOL, build_test_report
from retina_lightning.tasks import SegmentationTask
from tests.helpers import InputLogits, quiet_trainer, whole_image_items


def _trainer(tmp_path, **kwargs):
    return quiet_trainer(tmp_path, **kwargs)


def _loader(n=3, side=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(n, side, side, generator=g) < 0.25).long()
    # per-image noise levels: distinct F1s, so the best and the worst image are known
    noise = torch.tensor([0.5, 2.0, 1.0])[:n, None, None, None]
    image = 2.0 * label[:, None].float() - 1.0 + noise * torch.randn(n, 1, side, side, generator=g)
    fov = torch.ones(n, side, side, dtype=torch.bool)
    return torch.utils.data.DataLoader(whole_image_items(image, label, fov), batch_size=2)


def test_plain_trainer_test_writes_the_report_through_the_callback(tmp_path):
    task = SegmentationTask(InputLogits(1), threshold=0.5, connectivity=False)
    trainer = _trainer(tmp_path)
    trainer.test(task, dataloaders=_loader(), verbose=False)

    out = tmp_path / "test"  # no results_dir: <default_root_dir>/test
    report = json.loads((out / "metrics.json").read_text())
    assert report == json.loads(json.dumps(task.test_report))
    assert report["num_images"] == 3 and report["threshold_criterion"] == "fixed"
    with (out / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["im0", "im1", "im2"]
    f1 = {r["image"]: float(r["f1@opt"]) for r in rows}
    best, worst = max(f1, key=f1.get), min(f1, key=f1.get)
    assert (best, worst) == ("im0", "im1")
    for name in ("roc.png", "pr.png", "boxplot_jaccard.png"):
        assert (out / name).is_file(), name
    panels = sorted(p.name for p in out.glob("panel_*.png"))
    assert panels == [f"panel_best_{best}.png", f"panel_worst_{worst}.png"]
    assert sum(isinstance(c, ReportWriter) for c in trainer.callbacks) == 1

    # a second test on the same Trainer keeps one writer and follows results_dir
    task.results_dir = tmp_path / "again"
    task.figures = False
    trainer.test(task, dataloaders=_loader(), verbose=False)
    assert sum(isinstance(c, ReportWriter) for c in trainer.callbacks) == 1
    assert (tmp_path / "again" / "metrics.json").is_file()
    assert not list((tmp_path / "again").glob("*.png"))


def test_a_writer_given_to_the_trainer_is_the_one_used(tmp_path):
    mine = ReportWriter()
    trainer = _trainer(tmp_path, callbacks=[mine])
    task = SegmentationTask(InputLogits(1), threshold=0.5, connectivity=False)
    trainer.test(task, dataloaders=_loader(), verbose=False)
    assert [c for c in trainer.callbacks if isinstance(c, ReportWriter)] == [mine]
    assert set(mine.panels.items) == {"best", "worst"}
    assert (tmp_path / "test" / "metrics.json").is_file()


def test_build_test_report_on_a_hand_made_case():
    rows = [
        {"image": "a", "f1@opt": 0.8, "nofov_f1@0.5": 0.9, "connectivity": math.nan},
        {"image": "b", "f1@opt": 0.6, "nofov_f1@0.5": 0.7, "connectivity": math.nan},
    ]
    pooled = {"auroc": 0.95, "f1@opt": 0.7}
    report = build_test_report(
        model="Net",
        num_parameters=12,
        thresholds={"0.5": 0.5, "opt": 0.4},
        threshold_criterion="youden",
        metrics_in_fov=True,
        pooled=pooled,
        rows=rows,
        infer_seconds=0.5,
        unmasked_pooled={"auroc": 0.99},
        # TP 3, FP 1, TN 4, FN 2
        per_class={"artery": ({"auroc": np.float32(0.75), "auprc": 0.5}, (3, 1, 4, 2))},
        second_counts=(8, 2, 88, 2),
    )
    assert list(report)[:11] == [
        "model",
        "num_parameters",
        "thresholds",
        "threshold_criterion",
        "metrics_in_fov",
        "num_images",
        "images_per_s",
        "pooled",
        "per_image_mean",
        "per_image_std",
        "unmasked",
    ]
    assert report["num_images"] == 2 and report["images_per_s"] == 4.0
    assert report["pooled"] == pooled
    assert report["per_image_mean"]["f1@opt"] == pytest.approx(0.7)
    assert report["per_image_std"]["f1@opt"] == pytest.approx(math.sqrt(0.02))  # sample std
    assert math.isnan(report["per_image_mean"]["connectivity"])
    unmasked = report["unmasked"]
    assert unmasked["protocol"] == UNMASKED_PROTOCOL and unmasked["pooled"] == {"auroc": 0.99}
    assert unmasked["per_image_mean"] == {"f1@0.5": pytest.approx(0.8)}
    artery = report["per_class"]["artery"]
    assert type(artery["auroc"]) is float and artery["auroc"] == 0.75
    assert artery["se"] == 3 / 5 and artery["sp"] == 4 / 5 and artery["precision"] == 3 / 4
    assert artery["f1"] == 6 / 9 and artery["jaccard"] == 3 / 6 and artery["acc"] == 7 / 10
    so = report["second_observer"]
    assert so["se"] == 0.8 and so["sp"] == 88 / 90 and so["acc"] == 0.96
    assert "2nd observer (human)" in format_report(report)
    json.dumps(report)  # metrics.json takes it as it is

    bare = build_test_report(
        model="Net",
        num_parameters=12,
        thresholds={"0.5": 0.5, "opt": 0.5},
        threshold_criterion="fixed",
        metrics_in_fov=False,
        pooled=pooled,
        rows=[],
        second_counts=(0, 0, 0, 0),
    )
    assert bare["num_images"] == 0 and bare["images_per_s"] is None
    assert bare["per_image_mean"] == {} and bare["per_image_std"] == {}
    assert not {"unmasked", "per_class", "second_observer"} & set(bare)


def test_best_worst_panels_keep_two_images_and_skip_nan():
    panels = BestWorstPanels()
    arrays = (np.zeros((2, 2, 3)), np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2)))
    for name, f1 in (("a", 0.5), ("b", math.nan), ("c", 0.9), ("d", 0.2), ("e", 0.9)):
        panels.offer({"image": name, "f1@opt": f1}, *arrays)
    assert {k: v["name"] for k, v in panels.items.items()} == {"best": "c", "worst": "d"}
    assert panels.items["best"]["prob"].dtype == np.float32
    panels.reset()
    assert panels.items == {}
