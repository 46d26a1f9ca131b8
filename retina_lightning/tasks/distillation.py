"""Knowledge distillation for domain adaptation: SegRAVIR's teacher -> student (000, sec. IV-D).

000 adapts a RAVIR-pretrained SegRAVIR (infrared SLO images) to colour fundus images in two
steps: a *teacher* is the pretrained network with its last layer replaced by a fresh 1x1
convolution, fine-tuned on the colour images (:mod:`retina_lightning.transfer`); a *student*
of the same architecture is then trained on the same images under the teacher's
temperature-softened predictions and the ground truth (eqs. (6)-(7), Fig. 3), with
``tau = 3`` and ``lambda_D = 0.1`` (000 sec. V-A).

:class:`DistillationLoss` is the loss of eq. (7) as a plain module; :class:`DistillationTask`
is a :class:`~retina_lightning.tasks.SegmentationTask` whose training step runs the frozen
teacher on the student's augmented patches (validation, test and metrics are inherited, and
apply to the student); :class:`RetinaTrainer` adds the ``retina distill`` subcommand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning import Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from retina_lightning.losses import BCELoss, CrossEntropyLoss, compute_loss
from retina_lightning.tasks.segmentation import NonFiniteLossError, SegmentationTask
from retina_lightning.types import SegOutput, as_output

__all__ = [
    "DistillationLoss",
    "DistillationTask",
    "RetinaTrainer",
    "distillation_kl",
    "load_teacher",
    "two_class_logits",
]

KLDirection = Literal["student_teacher", "teacher_student"]


def two_class_logits(logits: Tensor) -> Tensor:
    """``(B, 1, H, W)`` sigmoid logits ``z`` -> ``(B, 2, H, W)`` softmax logits ``[0, z]``;
    ``K > 1`` logits pass through.

    ``softmax([0, z] / tau) = [1 - sigmoid(z / tau), sigmoid(z / tau)]``: a one-logit binary
    network is the two-class softmax network of 000 eq. (6) (``Z_T in R^{H x W x 2}``) with the
    background logit pinned at 0, so the same distillation applies at any temperature.
    """
    if logits.ndim != 4:
        raise ValueError(f"expected (B, K, H, W) logits, got shape {tuple(logits.shape)}")
    if logits.shape[1] != 1:
        return logits
    return torch.cat([torch.zeros_like(logits), logits], dim=1)


def distillation_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    tau: float,
    fov: Tensor | None = None,
    direction: KLDirection = "teacher_student",
) -> Tensor:
    r"""Mean over FOV pixels of the KL divergence between temperature-softened class
    distributions (000 eqs. (6)-(7)), without the ``tau^2`` factor.

    With ``Y = softmax(Z / tau)`` over the classes of each pixel ``v``:

    .. math::
        \text{teacher\_student (default): } \frac{1}{V}\sum_v \sum_k
        Y_{T,vk}\,(\log Y_{T,vk} - \log Y_{S,vk})
        \qquad
        \text{student\_teacher: } \frac{1}{V}\sum_v \sum_k Y_{S,vk}\,(\log Y_{S,vk} - \log Y_{T,vk})

    i.e. ``teacher_student`` is ``KL(Y_T || Y_S)``, what
    ``F.kl_div(log Y_S, Y_T, reduction="sum") / V`` gives (see :class:`DistillationLoss`).
    One-logit (sigmoid) maps are first made two-class by :func:`two_class_logits`. The teacher
    is detached: no gradient reaches it. Pixels outside ``fov`` are dropped before the softmax.
    """
    zs, zt = two_class_logits(student_logits), two_class_logits(teacher_logits.detach())
    if zs.shape != zt.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} do not describe the same classes at the same pixels; "
            "the teacher must predict the student's classes (1 sigmoid logit and 2 softmax "
            "logits both mean background / vessel)"
        )
    if direction not in ("student_teacher", "teacher_student"):
        raise ValueError(
            f"KL direction must be 'student_teacher' or 'teacher_student', got {direction!r}"
        )
    k = zs.shape[1]
    # (B, K, H, W) -> (N, K) pixels, FOV selected by indexing (nothing outside leaks in)
    # half-precision logits (autocast) are promoted; float64 stays float64
    dtype = torch.float64 if zs.dtype == torch.float64 else torch.float32
    zs = zs.to(dtype).permute(0, 2, 3, 1).reshape(-1, k)
    zt = zt.to(dtype).permute(0, 2, 3, 1).reshape(-1, k)
    if fov is not None:
        mask = fov.reshape(-1).bool()
        if mask.numel() != zs.shape[0]:
            raise ValueError(
                f"fov of shape {tuple(fov.shape)} does not match logits "
                f"{tuple(student_logits.shape)}"
            )
        zs, zt = zs[mask], zt[mask]
    if zs.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_s = F.log_softmax(zs / tau, dim=1)
    log_t = F.log_softmax(zt / tau, dim=1)
    if direction == "student_teacher":
        kl = (log_s.exp() * (log_s - log_t)).sum(1)
    else:
        kl = (log_t.exp() * (log_t - log_s)).sum(1)
    return kl.mean()


class DistillationLoss(nn.Module):
    r"""SegRAVIR's distillation loss (000 sec. IV-D, eqs. (6)-(7)).

    .. math::
        L_{Distill} = \lambda_D\,\tau^2\,L_{KL}(Y_S, Y_T) + (1 - \lambda_D)\,L_{CE}(Y_S, G),
        \qquad Y = \mathrm{softmax}(Z / \tau)

    ``Z_S`` / ``Z_T`` are the student / teacher logits, ``G`` the ground truth; 000 uses
    ``tau = 3``, ``lambda_D = 0.1`` (sec. V-A). ``L_KL`` is averaged over the FOV pixels
    (:func:`distillation_kl`); the ``tau^2`` keeps its gradients on the scale of the
    supervised term as the temperature grows (Hinton et al.'s distillation).

    Choices where eq. (7) leaves room:

    * **direction** of the KL divergence. Decision: the default is
      ``"teacher_student"``, :math:`D_{KL}(Y_T \| Y_S) = \sum Y_T \log(Y_T / Y_S)`, the
      teacher's soft labels as the target distribution. 000 writes
      :math:`L_{KL}(Y_S, Y_T)` (eq. (7)) and describes the student as supervised
      "according to the soft labels generated by the teacher network" (sec. IV-D) in
      standard knowledge distillation (refs. [50], [51]; temperature softening and the
      ``tau^2`` factor are Hinton et al.'s). Hinton's loss is the cross entropy of the
      student to the teacher's soft targets, :math:`-\sum Y_T \log Y_S = D_{KL}(Y_T \| Y_S)
      + H(Y_T)` (the entropy is constant for the student), and its ``tau^2`` factor, which
      eq. (7) keeps, is derived for exactly that direction: the gradient on the student's
      logits is :math:`(Y_S - Y_T) / \tau`. The argument order of eq. (7) is also the order
      of PyTorch's ``F.kl_div(input=log Y_S, target=Y_T)``, which computes
      :math:`D_{KL}(Y_T \| Y_S)`. The other direction, :math:`D_{KL}(Y_S \| Y_T)` (eq. (7)
      read with the usual :math:`D_{KL}(P \| Q)` argument order, or Keras'
      ``KLDivergence()(Y_S, Y_T)``; the default before), is ``direction="student_teacher"``.
      Both vanish exactly when the student matches the teacher; they weigh disagreements
      differently (``Y_T`` vs ``Y_S`` as the weights: the default penalises most a student that
      gives low probability where the teacher gives high).
    * **temperature of the supervised term**. Eq. (7) writes :math:`L_{CE}(Y_S, G)` with
      :math:`Y_S` the *softened* student (eq. (6) applied to ``Z_S``); the supervised term of
      Hinton et al. and of common implementations reads the student at temperature 1.
      Default: temperature 1 (``supervised_at_tau=False``); ``True`` divides the student's
      logits by ``tau`` before the supervised loss, the literal reading.
    * **binary outputs**: one sigmoid logit ``z`` is the two-class distribution
      ``softmax([0, z] / tau)`` (:func:`two_class_logits`); 000's teacher has two softmax
      channels (``Z_T in R^{H x W x 2}``), and either form distils into either.

    Args:
        tau: temperature ``tau`` (> 0).
        lambda_d: ``lambda_D`` in ``[0, 1]``: 0 is plain supervised training, 1 is pure
            distillation.
        supervised: the ground-truth loss ``L_CE``: a pixel loss or an output loss
            (:mod:`retina_lightning.losses`); ``None``: cross entropy, binary for one logit
            (:class:`~retina_lightning.losses.BCELoss`) or over classes
            (:class:`~retina_lightning.losses.CrossEntropyLoss`), as eq. (7).
        direction: ``"teacher_student"`` (default, ``KL(Y_T || Y_S)``, Hinton) or
            ``"student_teacher"`` (``KL(Y_S || Y_T)``).
        supervised_at_tau: evaluate the supervised loss on ``Z_S / tau``.

    ``forward(student, teacher_logits, target, fov=None, image=None)``: ``student`` is the
    student's output (logits or :class:`~retina_lightning.types.SegOutput`; the KL term reads
    its main output, the supervised loss sees all of it), ``teacher_logits`` the teacher's
    main logits. The detached terms of the last call are in ``components`` (``kl`` without
    weights, ``supervised``).
    """

    components: dict[str, Tensor]

    def __init__(
        self,
        tau: float = 3.0,
        lambda_d: float = 0.1,
        supervised: nn.Module | None = None,
        direction: KLDirection = "teacher_student",
        supervised_at_tau: bool = False,
    ) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"DistillationLoss: tau must be > 0, got {tau}")
        if not 0.0 <= lambda_d <= 1.0:
            raise ValueError(f"DistillationLoss: lambda_d must be in [0, 1], got {lambda_d}")
        if direction not in ("student_teacher", "teacher_student"):
            raise ValueError(
                f"DistillationLoss: direction must be 'student_teacher' or 'teacher_student', "
                f"got {direction!r}"
            )
        self.tau = float(tau)
        self.lambda_d = float(lambda_d)
        self.supervised = supervised
        self.direction = direction
        self.supervised_at_tau = supervised_at_tau
        self.components = {}

    def _supervised(self, output: SegOutput) -> nn.Module:
        if self.supervised is not None:
            return self.supervised
        return BCELoss() if output.main.shape[1] == 1 else CrossEntropyLoss()

    def forward(
        self,
        student: Tensor | SegOutput,
        teacher_logits: Tensor,
        target: Tensor,
        fov: Tensor | None = None,
        image: Tensor | None = None,
    ) -> Tensor:
        output = as_output(student)
        kl = distillation_kl(output.main, teacher_logits, self.tau, fov, self.direction)
        supervised_output = output
        if self.supervised_at_tau:
            supervised_output = SegOutput(
                main=output.main / self.tau,
                aux=[a / self.tau for a in output.aux],
                recon=output.recon,
            )
        sup = compute_loss(self._supervised(output), supervised_output, target, fov, image)
        self.components = {"kl": kl.detach(), "supervised": sup.detach()}
        return self.lambda_d * self.tau**2 * kl + (1.0 - self.lambda_d) * sup

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, lambda_d={self.lambda_d}, direction={self.direction!r}, "
            f"supervised_at_tau={self.supervised_at_tau}"
        )


def load_teacher(checkpoint: str | Path, runs_dir: str | Path = "runs") -> nn.Module:
    """The network of a task checkpoint written by ``retina fit`` (file or
    ``"<experiment>@best|last"``), rebuilt from the model config the CLI stores in it, in
    eval mode with gradients off."""
    from retina_lightning.transfer import _torch_load, resolve_checkpoint_ref

    path = resolve_checkpoint_ref(checkpoint, runs_dir)
    hparams = _torch_load(path).get("hyper_parameters") or {}
    if "model" not in hparams:
        raise ValueError(
            f"teacher checkpoint {str(path)!r} does not record its model config (it was not "
            "written by `retina fit`), so the teacher network cannot be rebuilt from it; train "
            "the teacher with `retina fit --config <teacher config>`, or build the network in "
            "Python and call DistillationTask.set_teacher(network)"
        )
    task = SegmentationTask.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    teacher = task.model
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


class DistillationTask(SegmentationTask):
    """Train a student network under a frozen teacher and the ground truth (000 sec. IV-D).

    Everything but the training step is :class:`SegmentationTask`'s, applied to the student
    (``model``): validation picks the student's checkpoint and threshold, ``retina test``
    evaluates the student and writes ``metrics.json``.

    The teacher is rebuilt from ``teacher_checkpoint`` when training starts (``setup("fit")``;
    testing a student never reads it), frozen (eval mode, no gradients, computed under
    ``no_grad``) and kept *outside* the module tree: it is not in ``parameters()`` (so not in
    any optimizer), not in ``state_dict()`` (so the student's checkpoint holds the student
    only, and its ``model.`` tensors load like any other run's), and is moved to the
    student's device and dtype on first use. Each training step runs the teacher on exactly
    the augmented patches the student sees.

    Args:
        model: the student network.
        teacher_checkpoint: checkpoint of a ``retina fit`` run (file or
            ``"<experiment>@best|last"``, looked up under ``runs_dir``).
        tau: temperature (000: 3).
        lambda_d: weight ``lambda_D`` of the distillation term (000: 0.1).
        loss: the supervised term ``L_CE`` (kept as ``self.loss``); default cross entropy for
            the output kind. The whole of eq. (7) is ``self.distillation``.
        kl_direction: ``"teacher_student"`` (default, ``KL(Y_T || Y_S)``, Hinton's
            distillation) or ``"student_teacher"`` (``KL(Y_S || Y_T)``); see
            :class:`DistillationLoss`.
        supervised_at_tau: supervised loss on the softened student (eq. (7) literally).
        runs_dir: where ``"<experiment>@best"`` references are looked up.
        **kwargs: the other :class:`SegmentationTask` arguments (inferer, threshold, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        teacher_checkpoint: str | None = None,
        tau: float = 3.0,
        lambda_d: float = 0.1,
        loss: nn.Module | None = None,
        kl_direction: KLDirection = "teacher_student",
        supervised_at_tau: bool = False,
        runs_dir: str = "runs",
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, loss=loss, **kwargs)
        self.teacher_checkpoint = teacher_checkpoint
        self.runs_dir = runs_dir
        # ``self.loss`` stays the supervised term (SegmentationTask's meaning of "loss");
        # eq. (7) as a whole is ``self.distillation``
        self.distillation = DistillationLoss(
            tau=tau,
            lambda_d=lambda_d,
            supervised=self.loss,
            direction=kl_direction,
            supervised_at_tau=supervised_at_tau,
        )
        # not a registered submodule: out of parameters(), state_dict() and the optimizer
        object.__setattr__(self, "_teacher", None)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def set_teacher(self, teacher: nn.Module) -> None:
        """Use ``teacher`` (frozen here: eval mode, ``requires_grad=False``)."""
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"the teacher must be an nn.Module, got {type(teacher).__name__}")
        teacher.eval()
        teacher.requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit" or self._teacher is not None:
            return
        if self.teacher_checkpoint is None:
            raise ValueError(
                "DistillationTask needs a teacher: set model.init_args.teacher_checkpoint to the "
                "teacher's checkpoint (a .ckpt file or '<experiment>@best'), or call "
                "set_teacher(network) from Python"
            )
        self.set_teacher(load_teacher(self.teacher_checkpoint, self.runs_dir))
        n = sum(p.numel() for p in self._teacher.parameters())
        rank_zero_info(
            f"[distill] teacher {type(self._teacher).__name__} ({n:,} parameters, frozen) from "
            f"{self.teacher_checkpoint}"
        )

    def teacher_logits(self, image: Tensor) -> Tensor:
        """The frozen teacher's main logits for ``image`` (no gradient)."""
        teacher = self._teacher
        if teacher is None:
            raise RuntimeError("no teacher: call set_teacher() or fit with teacher_checkpoint")
        reference = next(self.model.parameters())
        first = next(teacher.parameters(), None)
        if first is not None and (first.device != image.device or first.dtype != reference.dtype):
            teacher.to(device=image.device, dtype=reference.dtype)
        teacher.eval()  # whatever train() calls reached it: BN statistics and dropout frozen
        with torch.no_grad():
            return as_output(teacher(image)).main

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        image = batch["image"]
        teacher_logits = self.teacher_logits(image)
        output = as_output(self.model(image))
        loss = self.distillation(output, teacher_logits, batch["label"], batch["fov"], image)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"distillation loss is {loss.item()} at epoch {self.current_epoch}, global step "
                f"{self.global_step}: lower the learning rate or the temperature, check the "
                "inputs for NaNs, or use trainer.gradient_clip_val"
            )
        bs = image.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in self.distillation.components.items():
            self.log(f"train/loss_{name}", value, batch_size=bs)
        return loss


class RetinaTrainer(Trainer):
    """Lightning ``Trainer`` with a ``distill`` method, which LightningCLI turns into the
    ``retina distill`` subcommand."""

    def distill(
        self,
        model: Any,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        ckpt_path: str | None = None,
    ) -> None:
        """Train a student under a frozen teacher (SegRAVIR knowledge distillation, 000
        sec. IV-D): ``fit`` for a :class:`DistillationTask`."""
        if not isinstance(model, DistillationTask):
            raise TypeError(
                f"retina distill needs model.class_path: "
                f"retina_lightning.tasks.DistillationTask (with init_args.teacher_checkpoint), "
                f"got {type(model).__module__}.{type(model).__name__}; use `retina fit` for "
                "plain training, or see configs/distill/segravir_student_drive.yaml"
            )
        self.fit(
            model,
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            datamodule=datamodule,
            ckpt_path=ckpt_path,
        )
