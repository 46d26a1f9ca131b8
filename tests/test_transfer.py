"""Transfer learning: loading reports on hand-made cases, SegRAVIR head replacement (000 sec.
IV-D), freezing, per-group learning rates, the TransferLearning callback and the pretraining ->
teacher chain of the distill configs through the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import TINY_CLI
from lightning import Trainer
from torch import nn

from retina_lightning.models import SegRAVIR
from retina_lightning.tasks import SegmentationTask
from retina_lightning.transfer import (
    TransferError,
    TransferLearning,
    apply_transfer,
    freeze,
    load_weights,
    param_groups,
    read_state_dict,
    resolve_checkpoint_ref,
    split_head_group,
)

REPO = Path(__file__).resolve().parents[1]


class Tiny(nn.Module):
    def __init__(self, hidden: int = 4, out: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, hidden, 3), nn.BatchNorm2d(hidden))
        self.head = nn.Conv2d(hidden, out, 1)


def _lightning_ckpt(path: Path, net: nn.Module) -> Path:
    state = {f"model.{k}": v.clone() for k, v in net.state_dict().items()}
    state["threshold"] = torch.tensor(0.4)  # task buffer: not a network tensor
    torch.save({"state_dict": state, "epoch": 3}, path)
    return path


def test_report_lists_loaded_new_skipped_and_unexpected(tmp_path):
    source = Tiny(out=3)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    del state["body.1.running_var"]  # -> new
    state["extra.weight"] = torch.ones(2)  # -> unexpected
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    target = Tiny(out=2)
    fresh_head = target.head.weight.detach().clone()
    report = load_weights(target, path)
    assert report.new == ["body.1.running_var"]
    assert report.skipped_shape == [
        ("head.weight", (3, 4, 1, 1), (2, 4, 1, 1)),
        ("head.bias", (3,), (2,)),
    ]
    assert report.unexpected == ["extra.weight"]
    assert report.loaded == [
        "body.0.weight",
        "body.0.bias",
        "body.1.weight",
        "body.1.bias",
        "body.1.running_mean",
        "body.1.num_batches_tracked",
    ]
    assert torch.equal(target.body[0].weight, source.body[0].weight)
    assert torch.equal(target.head.weight, fresh_head)
    text = report.summary()
    assert "6 tensors loaded, 1 new, 2 skipped (shape), 1 unexpected" in text
    assert "head.weight checkpoint (3, 4, 1, 1) -> model (2, 4, 1, 1)" in text

    with pytest.raises(TransferError) as info:
        load_weights(Tiny(out=2), path, strict=True)
    message = str(info.value)
    for line in (
        "missing in checkpoint: body.1.running_var",
        "shape mismatch: head.weight checkpoint (3, 4, 1, 1) vs model (2, 4, 1, 1)",
        "not in model: extra.weight",
    ):
        assert line in message


def test_exclude_makes_an_intended_difference_strict_clean(tmp_path):
    path = _lightning_ckpt(tmp_path / "a.ckpt", Tiny(out=3))
    report = load_weights(Tiny(out=2), path, strict=True, exclude=["head.*"])
    assert report.excluded == ["head.weight", "head.bias"]
    assert report.problems == [] and len(report.loaded) == 7


def test_checkpoint_prefixes(tmp_path):
    net = Tiny()
    ckpt = _lightning_ckpt(tmp_path / "a.ckpt", net)
    state, _ = read_state_dict(ckpt)
    assert set(state) == set(net.state_dict())  # task buffers ("threshold") are left out
    with pytest.raises(TransferError, match="prefix"):
        read_state_dict(ckpt, prefix="student.")
    plain = {f"model.{k}": v for k, v in net.state_dict().items()}
    assert set(read_state_dict(plain)[0]) == set(net.state_dict())
    assert set(read_state_dict(net.state_dict())[0]) == set(net.state_dict())
    with pytest.raises(TransferError, match="no tensor matches"):
        load_weights(nn.Linear(2, 2), ckpt)


def test_segravir_three_class_checkpoint_into_binary_model(tmp_path):
    """000 sec. IV-D: the RAVIR network (3 classes, two streams) becomes a binary main-stream
    network: every encoder / decoder tensor bit-identical, a fresh last layer."""
    torch.manual_seed(0)
    pretrained = SegRAVIR(3, 3, base_channels=4, reconstruction=True)
    path = _lightning_ckpt(tmp_path / "ravir.ckpt", pretrained)
    torch.manual_seed(1)
    target = SegRAVIR(3, 1, base_channels=4, reconstruction=False)
    fresh = copy.deepcopy(target.head.state_dict())
    report = load_weights(target, path)
    assert [name for name, _, _ in report.skipped_shape] == ["head.weight", "head.bias"]
    assert report.new == []
    assert report.unexpected and all(n.startswith("recon_") for n in report.unexpected)
    source = pretrained.state_dict()
    for name, value in target.state_dict().items():
        if name.startswith("head."):
            assert torch.equal(value, fresh[name[5:]])
        else:
            assert torch.equal(value, source[name]), name
    assert len(report.loaded) == len(target.state_dict()) - 2

    # the same through replace_head on a model built like the checkpoint
    torch.manual_seed(2)
    same = SegRAVIR(3, 3, base_channels=4, reconstruction=False)
    report = apply_transfer(same, path, strict=True, exclude=["recon_*"], replace_head=1)
    assert report.problems == []
    assert same.head.weight.shape == (1, 4, 1, 1) and same.num_classes == 1
    assert not torch.equal(same.head.weight, pretrained.head.weight[:1])
    for name, value in same.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(value, source[name]), name
    with pytest.raises(TransferError, match="replace_head"):
        apply_transfer(Tiny(), replace_head=1)


def test_freeze_by_glob_and_regex():
    net = SegRAVIR(3, 2, base_channels=4, reconstruction=False)
    frozen = freeze(net, ["stem.*", "re:^enc_res\\.0\\."])
    assert frozen[:2] == ["stem.0.weight", "stem.0.bias"]
    assert all(n.startswith(("stem.", "enc_res.0.")) for n in frozen)
    expected = [n for n, _ in net.named_parameters() if n.startswith(("stem.", "enc_res.0."))]
    assert frozen == expected
    for name, p in net.named_parameters():
        assert p.requires_grad == (name not in frozen)
    with pytest.raises(TransferError, match="matches no parameter"):
        freeze(net, ["encoder.*"])

    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(2, 3, 16, 16)).main.mean().backward()
    optimizer.step()
    for name, p in net.named_parameters():
        assert torch.equal(p, before[name]) == (name in frozen), name


def test_param_groups_and_split_head_group():
    net = Tiny()
    freeze(net, ["body.1.*"])
    groups = param_groups(net, ["head.*"], head_lr=1e-2, backbone_lr=1e-3)
    assert [g["name"] for g in groups] == ["backbone", "head"]
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert [len(g["params"]) for g in groups] == [2, 2]  # frozen BatchNorm left out

    net = Tiny()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.2, patience=0)
    split_head_group(optimizer, list(net.head.parameters()), 10.0, [step, plateau])
    assert [len(g["params"]) for g in optimizer.param_groups] == [4, 2]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 1e-2])
    assert step.base_lrs == pytest.approx([1e-3, 1e-2])
    optimizer.step()
    step.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([5e-4, 5e-3])
    plateau.step(1.0)
    plateau.step(2.0)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-4, 1e-3])


def test_checkpoint_references(tmp_path):
    run = tmp_path / "runs" / "distill" / "pre" / "20260101-000000" / "checkpoints"
    run.mkdir(parents=True)
    torch.save({}, run / "last.ckpt")
    found = resolve_checkpoint_ref("distill/pre@last", tmp_path / "runs")
    assert found == run / "last.ckpt"
    assert resolve_checkpoint_ref(run / "last.ckpt") == run / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="@best"):
        resolve_checkpoint_ref("nowhere.ckpt", tmp_path / "runs")


def test_callback_loads_freezes_and_splits_learning_rates(tmp_path, tiny_datamodule):
    torch.manual_seed(0)
    pretrained = SegRAVIR(3, 3, base_channels=4, reconstruction=True)
    path = _lightning_ckpt(tmp_path / "pre.ckpt", pretrained)
    torch.manual_seed(1)
    net = SegRAVIR(3, 2, base_channels=4, reconstruction=False)
    task = SegmentationTask(net, connectivity=False, figures=False, lr=1e-3)
    callback = TransferLearning(
        checkpoint=str(path),
        strict=True,
        exclude=["head.*", "recon_*"],
        freeze=["stem.*", "enc_res.*", "down.*"],
        head=["head.*", "seg_convs.*"],
        head_lr_factor=10.0,
    )
    trainer = Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(task, datamodule=tiny_datamodule(patch_size=32, batch_size=2, steps_per_epoch=2))
    assert callback.report is not None and callback.report.problems == []
    source = pretrained.state_dict()
    after = net.state_dict()
    frozen_modules = ("stem.", "enc_res.", "down.")
    # frozen layers, BatchNorm running statistics included, are still the checkpoint's
    for name in after:
        if name.startswith(frozen_modules):
            assert torch.equal(after[name], source[name]), name
    assert not torch.equal(
        after["bottleneck.0.body.0.0.weight"], source["bottleneck.0.body.0.0.weight"]
    )
    groups = trainer.optimizers[0].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    head_ids = {id(p) for n, p in net.named_parameters() if n.startswith(("head.", "seg_convs."))}
    assert {id(p) for p in groups[1]["params"]} == head_ids
    # frozen parameters may stay in the optimizer: they get no gradient, so no update
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in net.parameters()}
    with pytest.raises(ValueError, match="head"):
        TransferLearning(head_lr_factor=2.0)


TINY = [*TINY_CLI, "--model.init_args.figures=false"]


@pytest.mark.slow
def test_pretraining_then_teacher_by_experiment_reference(tmp_path, monkeypatch):
    """configs/distill: the teacher config names the pretraining run as
    ``distill/segravir_pretrain_av_synthetic@best`` and loads it strictly but for the head and
    the reconstruction stream."""
    from retina_lightning.cli import main

    monkeypatch.chdir(tmp_path)  # runs/ of both calls, and of the callback's reference
    pre_cfg = str(REPO / "configs/distill/segravir_pretrain_av_synthetic.yaml")
    teacher_cfg = str(REPO / "configs/distill/segravir_teacher_synthetic.yaml")
    pre = main(["fit", "--config", pre_cfg, *TINY])
    pre_ckpt = Path(pre.trainer.checkpoint_callback.best_model_path)
    assert pre_ckpt.is_file() and pre.model.num_classes == 3

    teacher = main(["fit", "--config", teacher_cfg, *TINY])
    callback = next(c for c in teacher.trainer.callbacks if isinstance(c, TransferLearning))
    report = callback.report
    assert Path(report.source).resolve() == pre_ckpt.resolve()
    assert report.problems == []
    assert {n.split(".")[0] for n in report.excluded} == {"head", "recon_decoder", "recon_head"}
    assert len(report.loaded) == len(teacher.model.model.state_dict()) - 2
    assert teacher.model.num_classes == 1
