"""Segmentation losses of the source papers, as plain ``nn.Module`` s.

Two kinds:

* **Pixel losses** read one logit map: ``forward(logits, target, fov=None) -> scalar`` with
  ``logits`` ``(B, K, H, W)``, ``target`` ``(B, H, W)`` integer and ``fov`` ``(B, H, W)`` bool.
  ``K = 1`` is a binary target (``p = sigmoid(logits[:, 0])``, target 0/1); ``K > 1`` are
  classes (``P = softmax(logits)``, target class indices). Pixels outside ``fov`` contribute
  nothing and get no gradient: means run over FOV pixels only, sums (Dice) too.
* **Output losses** (:class:`OutputLoss`) read the whole :class:`SegOutput` (side outputs,
  reconstruction): ``forward(output, target, fov=None, image=None) -> scalar``; they keep the
  detached terms of their last call in ``components`` for logging.

:func:`compute_loss` calls either kind the right way. Every sum over "the pixels" below runs
over the FOV pixels of the whole batch (batch-level Dice, one beta per batch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retina_lightning.types import SegOutput, as_output

__all__ = [
    "BCEDiceLoss",
    "BCELoss",
    "ClassBalancedBCELoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "OutputLoss",
    "SegRAVIRLoss",
    "SoftDiceLoss",
    "compute_loss",
]


# --------------------------------------------------------------------------------------------
# shape handling shared by the pixel losses
# --------------------------------------------------------------------------------------------


def _prepare(
    logits: Tensor, target: Tensor, fov: Tensor | None, name: str
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Check shapes; return float32/64 logits, long target ``(B, H, W)``, flat bool FOV or None."""
    if logits.ndim != 4:
        raise ValueError(
            f"{name}: expected logits of shape (B, K, H, W), got {tuple(logits.shape)}; "
            "add the channel axis (K = 1 for a binary target)"
        )
    if target.ndim == 4 and target.shape[1] == 1:
        target = target[:, 0]
    b, _, h, w = logits.shape
    if tuple(target.shape) != (b, h, w):
        raise ValueError(
            f"{name}: target must be (B, H, W) = {(b, h, w)} class indices to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    flat_fov = None
    if fov is not None:
        if fov.ndim == 4 and fov.shape[1] == 1:
            fov = fov[:, 0]
        if tuple(fov.shape) != (b, h, w):
            raise ValueError(
                f"{name}: fov must be a (B, H, W) = {(b, h, w)} bool mask, got {tuple(fov.shape)}"
            )
        flat_fov = fov.reshape(-1).bool()
    # half-precision logits (autocast) are promoted: sums over 1e5+ pixels overflow fp16
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return logits, target.long(), flat_fov


def _require_binary(logits: Tensor, name: str) -> None:
    if logits.shape[1] != 1:
        raise ValueError(
            f"{name} is a binary loss and needs logits with K = 1 channel, got K = "
            f"{logits.shape[1]}; use CrossEntropyLoss / SoftDiceLoss / DiceCELoss for classes"
        )


def _pixels(x: Tensor, flat_fov: Tensor | None) -> Tensor:
    """``(B, H, W)`` -> ``(N,)`` FOV pixels, or ``(B, C, H, W)`` -> ``(C, N)``.

    Boolean indexing (not multiplication by the mask) so that non-finite values outside the
    FOV can neither leak into the loss nor into the gradient.
    """
    if x.ndim == 3:
        flat = x.reshape(-1)
        return flat if flat_fov is None else flat[flat_fov]
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat if flat_fov is None else flat[:, flat_fov]


def _mean(values: Tensor, anchor: Tensor) -> Tensor:
    """Mean that is an (attached) zero when a batch has no FOV pixel at all."""
    return values.mean() if values.numel() else anchor.sum() * 0.0


def _binary_ce(
    logits: Tensor, target: Tensor, fov: Tensor | None, pos_weight: float | None
) -> Tensor:
    """Per-FOV-pixel binary cross entropy with logits, ``(N,)``."""
    x = _pixels(logits[:, 0], fov)
    y = _pixels(target, fov).float()
    pw = None if pos_weight is None else x.new_tensor(pos_weight)
    return F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")


def _soft_dice_per_class(
    logits: Tensor, target: Tensor, fov: Tensor | None, smooth: float, eps: float
) -> Tensor:
    """Soft Dice coefficient per class, ``(C,)``: ``(2 sum G P + s) / (sum G + sum P + s)``.

    ``K = 1``: one foreground class (``P = sigmoid``). ``K > 1``: every class (``P = softmax``,
    ``G`` one-hot). Sums over the FOV pixels of the whole batch.
    """
    k = logits.shape[1]
    x = _pixels(logits, fov)  # (K, N), selected before the nonlinearity: see _pixels
    labels = _pixels(target, fov)
    if k == 1:
        p, g = torch.sigmoid(x), labels.float()[None]
    else:
        p, g = torch.softmax(x, dim=0), F.one_hot(labels, k).T.float()
    intersection = (g * p).sum(dim=1)
    denominator = g.sum(dim=1) + p.sum(dim=1)
    return (2.0 * intersection + smooth) / (denominator + smooth).clamp_min(eps)


# --------------------------------------------------------------------------------------------
# pixel losses
# --------------------------------------------------------------------------------------------


class BCELoss(nn.Module):
    r"""Binary cross entropy with logits, averaged over the FOV pixels.

    .. math::
        L = -\frac{1}{N}\sum_{j \in FOV} \big[w_+ y_j \log p_j + (1 - y_j)\log(1 - p_j)\big],
        \quad p = \sigma(x)

    the training loss of R2U-Net (001) and of every IterNet output (003, section 3.2).

    Args:
        pos_weight: ``w_+``, weight of the positive (vessel) term; ``None`` = 1.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        logits, target, fov = _prepare(logits, target, fov, type(self).__name__)
        _require_binary(logits, type(self).__name__)
        return _mean(_binary_ce(logits, target, fov, self.pos_weight), logits)


class CrossEntropyLoss(nn.Module):
    r"""Cross entropy over the FOV pixels; SegRAVIR's :math:`L_{CE}` (000, eq. (4)).

    .. math::
        L_{CE} = -\frac{1}{V}\sum_{v=1}^{V}\sum_{k=1}^{K} G_{v,k}\log P_{v,k}

    with ``P = softmax(logits)`` and ``G`` the one-hot target. With class ``weight`` the mean
    is weighted, ``sum_v w_{y_v} l_v / sum_v w_{y_v}`` (torch's convention). ``K = 1`` is the
    two-class case written with a sigmoid: binary cross entropy (identical to :class:`BCELoss`).

    Args:
        weight: optional per-class weights, length K (K > 1 only).
    """

    def __init__(self, weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )

    def forward(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        logits, target, fov = _prepare(logits, target, fov, type(self).__name__)
        k = logits.shape[1]
        if k == 1:
            if self.weight is not None:
                raise ValueError("CrossEntropyLoss: class weights need K > 1 logit channels")
            return _mean(_binary_ce(logits, target, fov, None), logits)
        if self.weight is not None and self.weight.numel() != k:
            raise ValueError(
                f"CrossEntropyLoss: {self.weight.numel()} class weights for K = {k} classes"
            )
        x = _pixels(logits, fov).T  # (N, K)
        y = _pixels(target, fov)
        if y.numel() == 0:
            return logits.sum() * 0.0
        return F.cross_entropy(x, y, weight=self.weight)


class SoftDiceLoss(nn.Module):
    r"""Soft Dice loss; multi-class form of SegRAVIR (000, section IV-B, eq. (3)).

    .. math::
        L_{Dice} = 1 - \frac{1}{|\mathcal{K}|}\sum_{k \in \mathcal{K}}
        \frac{2\sum_v G_{v,k} P_{v,k} + s}{\sum_v G_{v,k} + \sum_v P_{v,k} + s}

    i.e. eq. (3), ``1 - (2/K) sum_k (sum_v G P) / (sum_v G + sum_v P)``, when ``s = 0`` and all
    ``K`` classes are kept. ``v`` runs over the FOV pixels of the whole batch. ``K > 1``:
    ``P = softmax``, ``G`` one-hot; ``K = 1``: the foreground Dice of ``P = sigmoid``.

    Args:
        smooth: ``s``, added to numerator and denominator; eq. (3) has none (0). With ``s = 0``
            a class absent from the batch contributes Dice 0 (a constant, no gradient);
            ``s = 1`` makes it contribute ~1 instead.
        include_background: keep class 0 in the average (eq. (3) does). ``K > 1`` only.
        eps: floor of the denominator (only matters when ``s = 0`` and a class is empty).
    """

    def __init__(
        self, smooth: float = 0.0, include_background: bool = True, eps: float = 1e-7
    ) -> None:
        super().__init__()
        self.smooth = smooth
        self.include_background = include_background
        self.eps = eps

    def forward(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        logits, target, fov = _prepare(logits, target, fov, type(self).__name__)
        dice = _soft_dice_per_class(logits, target, fov, self.smooth, self.eps)
        if logits.shape[1] > 1 and not self.include_background:
            dice = dice[1:]
        return 1.0 - dice.mean()


class BCEDiceLoss(nn.Module):
    r"""patch2image's combined loss (004, section 6.3): cross entropy *minus* soft Dice.

    004 writes, for ``y in {0,1}^n`` and ``p in [0,1]^n``,

    .. math::
        \ell(y, p) = -\langle y, \log p\rangle - \langle 1 - y, \log(1 - p)\rangle
        - \frac{2\langle y, p\rangle}{\langle y, 1\rangle + \langle p, 1\rangle}

    i.e. BCE minus the soft Dice *coefficient* (not plus ``1 - Dice``; same gradient, but the
    loss is negative, in ``[-1, inf)``), without a smoothing term. The Dice runs over the FOV
    pixels of the whole batch. The dot-product notation is a sum over the ``n`` pixels; taken
    literally the Dice term would be ``1/n`` (~1e-5) of the loss, so by default the cross
    entropy is averaged over the pixels (``reduction="mean"``), the per-pixel BCE that the
    "binary cross-entropy" of the text denotes; ``reduction="sum"`` is the literal form.
    Binary (``K = 1``) only.
    """

    def __init__(self, reduction: Literal["mean", "sum"] = "mean", eps: float = 1e-7) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"BCEDiceLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self.eps = eps

    def forward(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        logits, target, fov = _prepare(logits, target, fov, type(self).__name__)
        _require_binary(logits, type(self).__name__)
        ce = _binary_ce(logits, target, fov, None)
        ce = _mean(ce, logits) if self.reduction == "mean" else ce.sum()
        dice = _soft_dice_per_class(logits, target, fov, 0.0, self.eps)[0]
        return ce - dice


class ClassBalancedBCELoss(nn.Module):
    r"""Class-balanced cross entropy of DPN (002, section 3.3, eqs. (1)-(2); from HED).

    .. math::
        L = -\beta \sum_{y_j = 1} \log p_j - (1 - \beta)\sum_{y_j = 0}\log(1 - p_j),
        \qquad \beta = \frac{N_-}{N_+ + N_-}

    ``N_+`` / ``N_-`` count vessel / background pixels of the current batch inside the FOV,
    recomputed at every call (002: "calculated at each iteration"; DPN trains with batch 1, so
    per batch = per image). The last ``beta`` is kept in ``self.last_beta`` for logging. A
    batch without vessel pixels has ``beta = 1`` and the loss is 0 (what eq. (2) gives).

    Args:
        reduction: ``"sum"`` (default) is eq. (1) as printed: a sum over pixels, no
            normalisation, so the loss grows with the crop size (512x512 in 002), which sets
            the balance against DPN's weight decay (eq. (3)). ``"mean"`` divides by
            ``N_+ + N_-``.
    """

    last_beta: Tensor | None

    def __init__(self, reduction: Literal["sum", "mean"] = "sum") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(
                f"ClassBalancedBCELoss: reduction must be 'sum' or 'mean', got {reduction!r}"
            )
        self.reduction = reduction
        self.last_beta = None

    def forward(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        logits, target, fov = _prepare(logits, target, fov, type(self).__name__)
        _require_binary(logits, type(self).__name__)
        x = _pixels(logits[:, 0], fov)
        y = _pixels(target, fov).float()
        n = y.numel()
        if n == 0:
            return logits.sum() * 0.0
        n_pos = y.sum()
        beta = (n - n_pos) / n
        self.last_beta = beta.detach()
        # log p = logsigmoid(x), log(1 - p) = logsigmoid(-x): stable for large |x|
        loss = -(
            beta * (y * F.logsigmoid(x)).sum() + (1 - beta) * ((1 - y) * F.logsigmoid(-x)).sum()
        )
        return loss / n if self.reduction == "mean" else loss


class DiceCELoss(nn.Module):
    r"""``dice_weight * L_Dice + ce_weight * L_CE``: SegRAVIR's main-stream loss (000, eq. (2)
    without the L2 term) and the loss of its baselines (000, section V-A).

    ``L_CE`` is :class:`CrossEntropyLoss` (eq. (4); binary cross entropy for ``K = 1``).
    ``L_Dice`` is the soft Dice of :class:`SoftDiceLoss` over the classes chosen by
    ``include_background``:

    * ``"auto"`` (default): the classes the task is about. ``K >= 3`` (artery / vein, 000's
      background / vein / artery output): all ``K`` classes, background included, i.e. eq. (3)
      as printed, ``1 - (2/K) sum_{k=1..K} ...``. ``K = 2`` (binary vessels written as a
      two-channel softmax, 000's distillation teacher, eq. (6)): the vessel class (class 1)
      only. ``K = 1`` (one sigmoid logit): the vessel (foreground) Dice, as always. So a binary
      run's Dice is the vessel Dice whichever head it uses, and the two-channel logits
      ``[0, z]`` give exactly the Dice of the one logit ``z``.
    * ``True``: all ``K`` classes for every ``K > 1``; for ``K = 2`` this is the mean of the
      background and vessel Dice (the behaviour before ``"auto"`` was the default). The
      background Dice of a fundus image stays near 1 (about 90 % of its pixels are
      background), so this mostly halves the weight of the vessel Dice.
    * ``False``: classes ``1..K-1`` (background dropped) for every ``K > 1``.

    ``include_background`` has no effect with ``K = 1``.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        smooth: float = 0.0,
        include_background: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        if include_background not in (True, False, "auto"):
            raise ValueError(
                f"{type(self).__name__}: include_background must be 'auto', true or false, "
                f"got {include_background!r}"
            )
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.include_background = include_background
        # all classes (K >= 3 under "auto", any K > 1 under True) or classes 1..K-1
        self.dice = SoftDiceLoss(smooth=smooth, include_background=include_background is not False)
        self.vessel_dice = SoftDiceLoss(smooth=smooth, include_background=False)
        self.ce = CrossEntropyLoss()

    def dice_loss(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        """``L_Dice`` over the classes ``include_background`` selects for ``K`` (see above)."""
        if self.include_background == "auto" and logits.ndim == 4 and logits.shape[1] == 2:
            return self.vessel_dice(logits, target, fov)
        return self.dice(logits, target, fov)

    def terms(
        self, logits: Tensor, target: Tensor, fov: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Unweighted ``(L_Dice, L_CE)``."""
        return self.dice_loss(logits, target, fov), self.ce(logits, target, fov)

    def forward(self, logits: Tensor, target: Tensor, fov: Tensor | None = None) -> Tensor:
        dice, ce = self.terms(logits, target, fov)
        return self.dice_weight * dice + self.ce_weight * ce


# --------------------------------------------------------------------------------------------
# output losses
# --------------------------------------------------------------------------------------------


class OutputLoss(nn.Module, ABC):
    """Base of the losses that read a whole :class:`SegOutput` (side outputs, reconstruction).

    Subclasses implement ``forward(output, target, fov=None, image=None)`` and set
    ``self.components`` to the detached, unweighted terms of the call, so that
    ``total = sum_i weight_i * components[i]``.
    """

    components: dict[str, Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.components = {}

    @abstractmethod
    def forward(
        self,
        output: SegOutput,
        target: Tensor,
        fov: Tensor | None = None,
        image: Tensor | None = None,
    ) -> Tensor:
        """The loss of every output of the model (see the subclasses)."""


class DeepSupervisionLoss(OutputLoss):
    r"""One pixel loss on the main output and on every side output, summed.

    .. math::
        L = w_{main}\,\ell(\hat y_{main}, y) + \sum_i w_i\,\ell(\hat y_{aux,i}, y)

    DPN (002, eq. (3)): ``ClassBalancedBCELoss`` on the main output and the three side outputs
    after DPR-Blocks 1, 3, 5, all weights 1 (the weight decay term is the optimiser's).
    IterNet (003, section 3.2): ``BCELoss`` on each of the N outputs, weight 1.

    ``components`` holds ``"main"`` and ``"aux0"``, ``"aux1"``, ... (unweighted).

    Args:
        loss: a pixel loss, applied to each output separately.
        weights: ``w_i`` per side output, in ``SegOutput.aux`` order; ``None`` = all 1.
        main_weight: ``w_main``.
    """

    def __init__(
        self, loss: nn.Module, weights: list[float] | None = None, main_weight: float = 1.0
    ) -> None:
        super().__init__()
        if isinstance(loss, OutputLoss):
            raise TypeError(
                f"DeepSupervisionLoss needs a pixel loss (logits, target, fov), got the output "
                f"loss {type(loss).__name__}"
            )
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]
        self.main_weight = main_weight

    def forward(
        self,
        output: SegOutput,
        target: Tensor,
        fov: Tensor | None = None,
        image: Tensor | None = None,
    ) -> Tensor:
        output = as_output(output)
        weights = self.weights if self.weights is not None else [1.0] * len(output.aux)
        if len(weights) != len(output.aux):
            raise ValueError(
                f"DeepSupervisionLoss has {len(weights)} side-output weights but the model "
                f"returned {len(output.aux)} aux outputs; pass weights of that length or None"
            )
        main = self.loss(output.main, target, fov)
        total = self.main_weight * main
        components = {"main": main.detach()}
        for i, (w, aux) in enumerate(zip(weights, output.aux)):
            term = self.loss(aux, target, fov)
            components[f"aux{i}"] = term.detach()
            total = total + w * term
        self.components = components
        return total


class SegRAVIRLoss(OutputLoss):
    r"""SegRAVIR's hybrid loss (000, section IV-B, eqs. (2)-(5)).

    .. math::
        L = \lambda_1 L_{Dice} + \lambda_2 L_{CE} + \lambda_3 L_{L2}, \qquad
        L_{L2} = \frac{1}{B}\sum_{b=1}^{B}\lVert X_{i,b} - X_{r,b}\rVert_2^2

    with the paper's weights ``lambda_1 = lambda_2 = 1``, ``lambda_3 = 0.001`` (000, section
    V-A). ``L_Dice`` (eq. (3)) and ``L_CE`` (eq. (4)) supervise ``output.main`` inside the FOV
    (:class:`DiceCELoss`); ``L_L2`` (eq. (5)) compares the input ``image`` with the auxiliary
    stream's ``output.recon`` over the whole image (the reconstruction target is the input
    itself, so no FOV).

    **Reduction of L_L2** (``recon_reduction``). Eq. (5) is a squared L2 norm of the image
    difference, ``L_L2 = ||X_i - X_r||_2^2``: a *sum* over the pixels and channels of an image,
    not a mean. Decision: the default ``"sum"`` takes that squared norm per image and averages
    it over the batch (the batch size is a training choice, the per-image loss is the paper's).
    ``"mean"`` divides by ``B*C*H*W`` instead (per-pixel mean squared error, a Keras ``mse``);
    it was the default before, but with ``lambda_3 = 0.001`` it leaves the second stream
    without effect. Measured with the suite's SegRAVIR at initialisation (share of the L2 term
    in the gradient norm on the shared encoder's parameters, ``||g_L2|| / (||g_L2|| +
    ||g_Dice+CE||)``, synthetic fundus patches): ``"mean"`` 0.1-2 % (7 % at most);
    ``"sum"`` 89-99 % on 64 px patches and over 99 % on the paper's 256 px patches, where the
    weighted L2 term is also 15-95 times ``L_Dice + L_CE`` in value. So with the paper's
    reduction the reconstruction drives the encoder at the start of training; the term grows
    with the patch area (``tests/test_models_segravir.py`` checks the shares).

    **Dice classes** (``include_background``, see :class:`DiceCELoss`). Eq. (3) averages over
    all ``K`` classes, background included: that is the default (``"auto"``) for the artery /
    vein task (``K = 3``). A binary run (DRIVE, the distillation teacher; one sigmoid logit or
    a two-channel softmax) uses the vessel class only. ``True`` keeps the background for
    ``K = 2`` too (the former behaviour), ``False`` drops it for every ``K``.

    ``components``: ``"dice"``, ``"ce"``, ``"recon"`` (unweighted; ``"recon"`` in the chosen
    reduction).
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        recon_weight: float = 0.001,
        smooth: float = 0.0,
        include_background: bool | Literal["auto"] = "auto",
        recon_reduction: Literal["sum", "mean"] = "sum",
    ) -> None:
        super().__init__()
        if recon_reduction not in ("mean", "sum"):
            raise ValueError(
                f"SegRAVIRLoss: recon_reduction must be 'sum' or 'mean', got {recon_reduction!r}"
            )
        self.dice_ce = DiceCELoss(dice_weight, ce_weight, smooth, include_background)
        self.recon_weight = recon_weight
        self.recon_reduction = recon_reduction

    def forward(
        self,
        output: SegOutput,
        target: Tensor,
        fov: Tensor | None = None,
        image: Tensor | None = None,
    ) -> Tensor:
        output = as_output(output)
        if output.recon is None:
            raise ValueError(
                "SegRAVIRLoss needs the model's input reconstruction (SegOutput.recon), but the "
                "model returned none; use a SegRAVIR model with its auxiliary stream, or "
                "DiceCELoss for a segmentation-only model"
            )
        if image is None:
            raise ValueError(
                "SegRAVIRLoss needs the input image for its L2 reconstruction term; pass "
                "image=<the (B, C, H, W) float tensor the model received> to compute_loss"
            )
        if not image.is_floating_point():
            raise TypeError(
                f"SegRAVIRLoss: image must be the float tensor fed to the model, got dtype "
                f"{image.dtype}; pass the normalised input, not the raw uint8 image"
            )
        if output.recon.shape != image.shape:
            raise ValueError(
                f"SegRAVIRLoss: reconstruction {tuple(output.recon.shape)} and input image "
                f"{tuple(image.shape)} differ in shape; the auxiliary stream must output one "
                "channel per input channel at the input resolution"
            )
        dice, ce = self.dice_ce.terms(output.main, target, fov)
        sq = (output.recon.float() - image.float()).square()
        recon = sq.mean() if self.recon_reduction == "mean" else sq.flatten(1).sum(1).mean()
        self.components = {"dice": dice.detach(), "ce": ce.detach(), "recon": recon.detach()}
        return (
            self.dice_ce.dice_weight * dice
            + self.dice_ce.ce_weight * ce
            + self.recon_weight * recon
        )


def compute_loss(
    loss: nn.Module,
    output: SegOutput,
    target: Tensor,
    fov: Tensor | None = None,
    image: Tensor | None = None,
) -> Tensor:
    """Apply ``loss`` to a model output: an :class:`OutputLoss` sees the whole ``output``
    (and ``image``); a pixel loss sees ``output.main`` only."""
    output = as_output(output)
    if isinstance(loss, OutputLoss):
        return loss(output, target, fov=fov, image=image)
    return loss(output.main, target, fov)
