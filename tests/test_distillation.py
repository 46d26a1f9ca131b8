"""Knowledge distillation (000 sec. IV-D): the loss against hand computation, the frozen teacher,
the `distill` trainer method, and a teacher -> student run through the CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import LEARNABLE_CLI, TINY_CLI
from lightning.pytorch.cli import LightningCLI

from retina_lightning.losses import DiceCELoss
from retina_lightning.models import SegRAVIR
from retina_lightning.tasks import SegmentationTask
from retina_lightning.tasks.distillation import (
    DistillationLoss,
    DistillationTask,
    RetinaTrainer,
    distillation_kl,
    load_teacher,
    two_class_logits,
)

REPO = Path(__file__).resolve().parents[1]


def _softmax(z: np.ndarray, tau: float) -> np.ndarray:
    e = np.exp(z / tau - (z / tau).max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kl_by_hand(zs: np.ndarray, zt: np.ndarray, tau: float, fov: np.ndarray, direction: str):
    """Mean over FOV pixels of sum_k p log(p / q), with (N, K) logits per pixel."""
    ps, pt = _softmax(zs, tau), _softmax(zt, tau)
    p, q = (ps, pt) if direction == "student_teacher" else (pt, ps)
    per_pixel = (p * np.log(p / q)).sum(axis=1)
    return per_pixel[fov].mean()


@pytest.mark.parametrize("direction", ["student_teacher", "teacher_student"])
def test_kl_equals_hand_computation(direction):
    g = torch.Generator().manual_seed(1)
    zs = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64) * 2
    zt = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64) * 2
    fov = torch.rand(2, 2, 3, generator=g) > 0.3
    got = distillation_kl(zs, zt, tau=3.0, fov=fov, direction=direction)
    pix = lambda z: z.permute(0, 2, 3, 1).reshape(-1, 3).numpy()  # noqa: E731
    want = _kl_by_hand(pix(zs), pix(zt), 3.0, fov.reshape(-1).numpy(), direction)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_kl_directions_differ_and_the_default_is_teacher_to_student():
    zs = torch.tensor([[[[2.0]], [[-1.0]], [[0.5]]]])
    zt = torch.tensor([[[[-1.0]], [[3.0]], [[0.0]]]])
    st = distillation_kl(zs, zt, tau=1.0, direction="student_teacher")
    ts = distillation_kl(zs, zt, tau=1.0, direction="teacher_student")
    ps, pt = _softmax(zs[0, :, 0, 0].numpy(), 1.0), _softmax(zt[0, :, 0, 0].numpy(), 1.0)
    assert st.item() == pytest.approx(float((ps * np.log(ps / pt)).sum()), rel=1e-5)
    assert ts.item() == pytest.approx(float((pt * np.log(pt / ps)).sum()), rel=1e-5)
    assert abs(st.item() - ts.item()) > 0.1
    # Hinton's KL(Y_T || Y_S) everywhere by default; KL(Y_S || Y_T) stays by name
    assert distillation_kl(zs, zt, tau=1.0).item() == ts.item()
    assert DistillationLoss().direction == "teacher_student"
    assert DistillationTask(_tiny_segravir(0)).distillation.direction == "teacher_student"
    assert DistillationLoss(direction="student_teacher").direction == "student_teacher"


def test_default_distillation_is_kl_teacher_to_student_by_hand():
    """000 eq. (7) with the default direction, on 2 pixels x 2 classes at tau = 3:
    L = lambda_D tau^2 (1/V) sum_v sum_k Y_T log(Y_T / Y_S) + (1 - lambda_D) CE, which is
    ``F.kl_div(log Y_S, Y_T)`` (PyTorch's argument order is eq. (7)'s), and its gradient on
    the student's logits is lambda_D tau^2 (Y_S - Y_T) / (tau V) (Hinton's tau^2 rationale)."""
    tau, lam = 3.0, 0.1
    # (B, K, H, W) = (1, 2, 1, 2): pixel 0 logits (1, -1), pixel 1 (0, 2); teacher (-2, 1), (3, 0)
    zs = torch.tensor([[[[1.0, 0.0]], [[-1.0, 2.0]]]], dtype=torch.float64, requires_grad=True)
    zt = torch.tensor([[[[-2.0, 3.0]], [[1.0, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[1, 0]]])

    def soft(a: float, b: float) -> tuple[float, float]:
        ea, eb = math.exp(a / tau), math.exp(b / tau)
        return ea / (ea + eb), eb / (ea + eb)

    ys = [soft(1.0, -1.0), soft(0.0, 2.0)]
    yt = [soft(-2.0, 1.0), soft(3.0, 0.0)]
    kl = sum(t * math.log(t / s) for v in range(2) for t, s in zip(yt[v], ys[v])) / 2
    assert distillation_kl(zs, zt, tau).item() == pytest.approx(kl, rel=1e-12)
    log_s = F.log_softmax(zs.detach().permute(0, 2, 3, 1).reshape(2, 2) / tau, dim=1)
    y_t = F.softmax(zt.permute(0, 2, 3, 1).reshape(2, 2) / tau, dim=1)
    assert F.kl_div(log_s, y_t, reduction="batchmean").item() == pytest.approx(kl, rel=1e-12)

    ce = (-math.log(math.exp(-1.0) / (math.exp(1.0) + math.exp(-1.0)))
          - math.log(math.exp(0.0) / (math.exp(0.0) + math.exp(2.0)))) / 2  # fmt: skip
    loss = DistillationLoss(tau=tau, lambda_d=lam)(zs, zt, target)
    assert loss.item() == pytest.approx(lam * tau**2 * kl + (1 - lam) * ce, rel=1e-12)

    zs.grad = None
    (lam * tau**2 * distillation_kl(zs, zt, tau)).backward()
    expected = [
        [lam * tau**2 * (ys[v][k] - yt[v][k]) / (tau * 2) for v in range(2)] for k in range(2)
    ]
    torch.testing.assert_close(zs.grad[0, :, 0], torch.tensor(expected, dtype=torch.float64))


def test_binary_logit_is_the_two_class_distribution():
    z = torch.tensor([[[[1.5, -2.0]]]])  # (1, 1, 1, 2)
    two = two_class_logits(z)
    assert two.shape == (1, 2, 1, 2)
    p = torch.softmax(two / 3.0, dim=1)[:, 1]
    torch.testing.assert_close(p, torch.sigmoid(z / 3.0)[:, 0])
    # a one-logit student against a two-channel softmax teacher with background logit 0
    zt = torch.tensor([[[[0.3, 0.4]]]])
    teacher2 = torch.cat([torch.zeros_like(zt), zt], dim=1)
    a = distillation_kl(z, zt, tau=2.0)
    b = distillation_kl(z, teacher2, tau=2.0)
    ps, pt = torch.sigmoid(z / 2.0), torch.sigmoid(zt / 2.0)
    by_hand = (pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))).mean()
    torch.testing.assert_close(a, by_hand)
    torch.testing.assert_close(b, by_hand)


def test_kl_vanishes_with_zero_gradient_when_student_equals_teacher():
    z = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    student = z.clone().requires_grad_(True)
    kl = distillation_kl(student, z, tau=3.0)
    kl.backward()
    assert kl.item() == pytest.approx(0.0, abs=1e-12)
    assert student.grad.abs().max().item() < 1e-12


def test_kl_ignores_pixels_outside_the_fov():
    zs = torch.randn(1, 2, 3, 3)
    zt = torch.randn(1, 2, 3, 3)
    fov = torch.ones(1, 3, 3, dtype=torch.bool)
    fov[0, 0, 0] = False
    poisoned = zs.clone()
    poisoned[0, :, 0, 0] = float("nan")
    poisoned.requires_grad_(True)
    clean = distillation_kl(zs, zt, 3.0, fov)
    dirty = distillation_kl(poisoned, zt, 3.0, fov)
    dirty.backward()
    torch.testing.assert_close(dirty, clean)
    assert torch.isfinite(poisoned.grad).all() and poisoned.grad[0, :, 0, 0].abs().sum() == 0


def test_distillation_loss_combines_eq7_terms():
    g = torch.Generator().manual_seed(0)
    zs = torch.randn(2, 2, 4, 4, generator=g)
    zt = torch.randn(2, 2, 4, 4, generator=g)
    target = (torch.rand(2, 4, 4, generator=g) > 0.7).long()
    fov = torch.rand(2, 4, 4, generator=g) > 0.2
    tau, lam = 3.0, 0.1
    loss = DistillationLoss(tau=tau, lambda_d=lam)
    value = loss(zs, zt, target, fov)
    ce = F.cross_entropy(zs.permute(0, 2, 3, 1)[fov], target[fov])
    kl = distillation_kl(zs, zt, tau, fov)
    torch.testing.assert_close(value, lam * tau**2 * kl + (1 - lam) * ce)
    torch.testing.assert_close(loss.components["supervised"], ce)
    torch.testing.assert_close(loss.components["kl"], kl)
    # lambda_D = 0 is plain supervised training; the supervised term can be any loss
    torch.testing.assert_close(DistillationLoss(tau, 0.0)(zs, zt, target, fov), ce)
    dice_ce = DiceCELoss()
    custom = DistillationLoss(tau, 0.0, supervised=dice_ce)(zs, zt, target, fov)
    torch.testing.assert_close(custom, dice_ce(zs, target, fov))
    # literal eq. (7): the supervised term on the softened student
    soft = DistillationLoss(tau, 0.0, supervised_at_tau=True)(zs, zt, target, fov)
    torch.testing.assert_close(
        soft, F.cross_entropy((zs / tau).permute(0, 2, 3, 1)[fov], target[fov])
    )


def test_distillation_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="tau"):
        DistillationLoss(tau=0.0)
    with pytest.raises(ValueError, match="lambda_d"):
        DistillationLoss(lambda_d=1.5)
    with pytest.raises(ValueError, match="direction"):
        DistillationLoss(direction="sideways")
    with pytest.raises(ValueError, match="same classes"):
        distillation_kl(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, 2), 1.0)


def _tiny_segravir(seed: int) -> SegRAVIR:
    torch.manual_seed(seed)
    return SegRAVIR(3, 2, base_channels=4, reconstruction=False)


def test_teacher_is_frozen_and_outside_the_student(tiny_datamodule):
    teacher = _tiny_segravir(1)
    student = _tiny_segravir(2)
    task = DistillationTask(student, figures=False, connectivity=False)
    task.set_teacher(teacher)
    # not a submodule: out of parameters(), state_dict() and so out of optimizer and checkpoint
    assert len(list(task.parameters())) == len(list(student.parameters()))
    keys = task.state_dict()
    assert {k for k in keys if k.startswith("model.")} == {
        f"model.{k}" for k in student.state_dict()
    }
    assert not any("teacher" in k for k in keys)
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training

    teacher_before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(student.state_dict())
    datamodule = tiny_datamodule(patch_size=32, batch_size=2, steps_per_epoch=3)
    trainer = RetinaTrainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.distill(task, datamodule=datamodule)
    # the teacher (parameters and BatchNorm statistics) is bit-identical after training
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    assert all(p.grad is None for p in teacher.parameters())
    changed = [n for n, v in student.state_dict().items() if not torch.equal(v, student_before[n])]
    assert any(n.startswith("head.") for n in changed)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert "train/loss_kl" in trainer.callback_metrics


def test_teacher_gets_no_gradient_from_the_loss():
    teacher = _tiny_segravir(1)
    student = _tiny_segravir(2)
    task = DistillationTask(student)
    task.set_teacher(teacher)
    task.train()
    image = torch.randn(2, 3, 32, 32)
    loss = task.distillation(
        task.model(image),
        task.teacher_logits(image),
        torch.randint(0, 2, (2, 32, 32)),
        torch.ones(2, 32, 32, dtype=torch.bool),
    )
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


def test_distill_rejects_a_plain_task_with_a_readable_error(tiny_datamodule):
    trainer = RetinaTrainer(max_epochs=1, logger=False, enable_progress_bar=False)
    task = SegmentationTask(_tiny_segravir(0))
    with pytest.raises(TypeError, match="DistillationTask"):
        trainer.distill(task, datamodule=tiny_datamodule())


def test_missing_teacher_is_explained(tmp_path):
    task = DistillationTask(_tiny_segravir(0))
    with pytest.raises(ValueError, match="teacher_checkpoint"):
        task.setup("fit")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}}, plain)
    with pytest.raises(ValueError, match="retina fit"):
        load_teacher(plain)
    with pytest.raises(FileNotFoundError, match="@best"):
        load_teacher(tmp_path / "nothing.ckpt")


# --------------------------------------------------------------------------------------------
# end to end through the CLI
# --------------------------------------------------------------------------------------------

TINY = [*TINY_CLI, "--model.init_args.figures=false"]
#: 40 steps per epoch, not 20: with 60 steps the seed-0 teacher stayed at chance in float32
#: (AUROC 0.45; 0.76 in bf16); with 120 it learns in both (0.90-0.96 over seeds 0-2, issue 25)
LEARNABLE = [*LEARNABLE_CLI, "--data.init_args.steps_per_epoch=40"]


def _retina(args: list[str]):
    """``retina ...`` in-process; before the lead wires ``distill`` into ``retina_lightning.cli``
    the same CLI class gets it here, exactly as proposed for cli.py."""
    from retina_lightning import cli as retina_cli
    from retina_lightning.data import RetinaDataModule

    if "distill" in retina_cli.RetinaCLI.subcommands():
        return retina_cli.main(args)

    class DistillCLI(retina_cli.RetinaCLI):
        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            return {
                **LightningCLI.subcommands(),
                "distill": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            }

    return DistillCLI(
        SegmentationTask,
        RetinaDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_class=RetinaTrainer,
        args=args,
        seed_everything_default=0,
        parser_kwargs={"default_env": False},
    )


def _checkpoint(cli) -> Path:
    callback = cli.trainer.checkpoint_callback
    path = Path(callback.best_model_path or callback.last_model_path)
    assert path.is_file()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_teacher_then_student_through_the_cli(tmp_path, precision):
    runs = ["--runs_dir", str(tmp_path / "runs"), f"--trainer.precision={precision}"]
    teacher_cfg = str(REPO / "configs/distill/segravir_random_synthetic.yaml")
    student_cfg = str(REPO / "configs/distill/segravir_student_synthetic.yaml")

    teacher = _retina(["fit", "--config", teacher_cfg, *TINY, *LEARNABLE, *runs])
    teacher_ckpt = _checkpoint(teacher)
    tested = _retina(
        [
            "test",
            "--config",
            teacher_cfg,
            *TINY,
            *LEARNABLE,
            *runs,
            "--ckpt_path",
            str(teacher_ckpt),
        ]
    )
    report = json.loads((tested.model.results_dir / "metrics.json").read_text())
    assert report["model"] == "SegRAVIR"
    # learned: 0.81 here; the 2-step TINY teacher scores 0.44 (chance), as would a pipeline
    # that misaligns labels or tests another network than it trained (issue 16 item 5)
    assert report["pooled"]["auroc"] > 0.7, report["pooled"]["auroc"]

    student_args = [
        "--config",
        student_cfg,
        *TINY,
        *runs,
        f"--model.init_args.teacher_checkpoint={teacher_ckpt}",
        "--trainer.callbacks=[]",  # no pretraining run here: a randomly initialised student
    ]
    student = _retina(["distill", *student_args])
    assert isinstance(student.model, DistillationTask)
    assert student.model.teacher is not None
    for p in student.model.teacher.parameters():
        assert not p.requires_grad
    # the teacher in the student is exactly the teacher checkpoint's network
    saved = torch.load(teacher_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in student.model.teacher.state_dict().items():
        assert torch.equal(value.cpu(), saved[f"model.{name}"]), name
    student_ckpt = _checkpoint(student)
    stored = torch.load(student_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not any("teacher" in k for k in stored)

    # testing the student needs no teacher: point the teacher at nothing
    tested = _retina(
        [
            "test",
            *student_args[:-2],
            "--model.init_args.teacher_checkpoint=/nonexistent.ckpt",
            "--trainer.callbacks=[]",
            "--ckpt_path",
            str(student_ckpt),
        ]
    )
    report = json.loads((tested.model.results_dir / "metrics.json").read_text())
    assert report["model"] == "SegRAVIR" and report["num_images"] == 1
