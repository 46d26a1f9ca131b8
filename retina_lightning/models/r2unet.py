"""R2U-Net: recurrent residual U-Net (Alom, Hasan, Yakopcic, Taha and Asari, 2018).

The retinal-vessel baseline of 001 (section 3.2 describes the blocks, section 4 the data flow,
section 5.3 the size: three encoder blocks, one bottleneck block, three decoder blocks).

* Recurrent convolutional layer (RCL, 001 section 3.2): "The output at time step t is computed
  as ``O(t) = (w^f)^T * x^f(t) + (w^r)^T * x^r(t-1) + b``, where w^f and w^r are weights for the
  current and recurrent inputs", followed by ReLU. 001 thus gives the feed-forward and the
  recurrent input *separate* weights; this is the default of the DRIVE recipe
  (``shared_weights=False``, configs/drive/r2unet.yaml): a feed-forward convolution ``w_f``
  (with the bias ``b``) of the layer input ``x`` and a recurrent convolution ``w_r`` (no bias)
  of the previous state, ``x(0) = g(w_f * x + b)``, ``x(k+1) = g(w_f * x + b + w_r * x(k))``
  for ``k = 0 .. t-1`` (``g`` = BatchNorm + ReLU).
* ``shared_weights=True`` (the class default, kept for the checkpoints trained before the
  option existed) is the widespread public R2U-Net implementation, which uses one
  convolution ``f`` for both (``w_f = w_r``): ``x(0) = f(x)``, ``x(k+1) = f(x + x(k))``. By
  linearity it is the separate-weights layer with ``w_r := w_f``; it has half the RCL weights
  (554,865 instead of 1,043,313 parameters at the widths of configs/drive/r2unet.yaml).
* In both variants ``t = 2`` means one feed-forward step followed by two recurrent ones, all
  with the same weights across time steps, so the parameter count does not depend on ``t``
  (except ``t = 0``, a plain convolution without recurrent weights).
* RRCNN block (001 section 3.2, ``x_{l+1} = x_l + F(x_l, w_l)``): a 1x1 convolution brings the
  input to the block width (``x_l``), two RCLs compute ``F``, and the residual path adds ``x_l``.
* Encoder: RRCNN blocks separated by 2x2 max pooling; bottleneck: one more RRCNN block at the
  lowest resolution; decoder: 2x2 transposed convolution, concatenation with the skip features
  of the same level, RRCNN block (001 sections 4.2-4.4); a 1x1 convolution gives the logits.

001 fixes the number of stages (section 5.3, ``depth = 3``) but not the widths; the default
``base_channels = 16`` (16-32-64 encoder, 128 bottleneck) is the small configuration Alom et al.
used for the retina images (their section IV; that paper is not among the seed texts). The
BatchNorm inside the RCL (one per layer, shared across time steps) follows the common R2U-Net
implementations; 001's equations omit it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_lightning.models.unet import check_input_size


class RecurrentConv(nn.Module):
    """Recurrent convolutional layer (RCL), 001 section 3.2, unrolled over ``t`` time steps.

    ``shared_weights=False`` (001's equation, separate ``w_f`` and ``w_r``): the feed-forward
    3x3 convolution ``w_f`` (``self.conv[0]``, carrying the bias ``b``) is applied once to the
    layer input, the recurrent 3x3 convolution ``w_r`` (``self.recurrent``, no bias) to the
    previous state at each of the ``t`` recurrent steps:
    ``x(0) = g(w_f * x + b)``, ``x(k+1) = g(w_f * x + b + w_r * x(k))``.

    ``shared_weights=True`` (the public implementations, ``w_r = w_f``): one
    ``3x3 conv (+ BatchNorm) + ReLU`` unit ``f`` is applied ``t + 1`` times:
    ``x(0) = f(x)`` and ``x(k+1) = f(x + x(k))``.

    ``g`` is BatchNorm (if ``batch_norm``) + ReLU, one module for all time steps. Weights are
    shared across time steps, so the parameter count does not depend on ``t``; ``t = 0`` is a
    plain feed-forward convolution and has no recurrent weights in either variant.
    """

    def __init__(
        self, channels: int, t: int = 2, batch_norm: bool = True, shared_weights: bool = True
    ) -> None:
        super().__init__()
        if t < 0:
            raise ValueError(f"RCL time steps t must be >= 0 (0 = plain convolution), got {t}")
        self.t = t
        self.shared_weights = shared_weights
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        # not in place when separate: without BatchNorm the ReLU would overwrite w_f * x + b,
        # which every later time step reuses
        layers.append(nn.ReLU(inplace=shared_weights))
        self.conv = nn.Sequential(*layers)
        # w_r of 001's equation; the bias b is the feed-forward convolution's (or BatchNorm's)
        self.recurrent: nn.Conv2d | None = (
            nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            if not shared_weights and t > 0
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.recurrent is None:
            state = self.conv(x)
            for _ in range(self.t):
                state = self.conv(x + state)
            return state
        feed_forward = self.conv[0](x)  # w_f * x(t) + b: the input is the same at every step
        post = self.conv[1:]
        state = post(feed_forward)
        for _ in range(self.t):
            state = post(feed_forward + self.recurrent(state))
        return state


class RRCNNBlock(nn.Module):
    """Recurrent residual convolutional block, 001 section 3.2: ``x_l + RCL(RCL(x_l))`` with
    ``x_l`` = 1x1 convolution of the input to ``out_channels``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        t: int = 2,
        batch_norm: bool = True,
        shared_weights: bool = True,
    ) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.rcl = nn.Sequential(
            *(RecurrentConv(out_channels, t, batch_norm, shared_weights) for _ in range(2))
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1x1(x)
        return x + self.rcl(x)


class R2UNet(nn.Module):
    """R2U-Net with ``depth`` poolings; widths ``base_channels * 2**level``.

    Args:
        in_channels: image channels (001 feeds grayscale, section 5.1; 3 for RGB).
        num_classes: output logit channels (1 for binary vessels).
        base_channels: width of the first encoder block; the bottleneck has
            ``base_channels * 2**depth`` channels.
        depth: number of 2x2 max-pool steps = number of encoder blocks before the bottleneck
            = number of decoder blocks (3 in 001, section 5.3). H and W must be multiples of
            ``2**depth``.
        t: recurrent time steps of every RCL (Alom et al. use ``t = 2``).
        batch_norm: BatchNorm after each recurrent convolution.
        shared_weights: ``False``: separate feed-forward and recurrent weights ``w_f``, ``w_r``
            in every RCL, 001's equation (section 3.2), as configs/drive/r2unet.yaml uses;
            ``True`` (default, for the earlier checkpoints): one convolution for both, as the
            public R2U-Net implementations do. ``False`` adds ``9 C^2`` weights per RCL of
            width ``C`` (t >= 1): 1,043,313 instead of 554,865 parameters at
            ``in_channels=1, base_channels=16, depth=3``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 16,
        depth: int = 3,
        t: int = 2,
        batch_norm: bool = True,
        shared_weights: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"R2UNet depth must be >= 1 (number of poolings), got {depth}")
        self.required_multiple: int = 2**depth
        self.in_channels, self.num_classes = in_channels, num_classes
        widths = [base_channels * 2**level for level in range(depth + 1)]
        # encoder[0 .. depth-1] are the encoder blocks, encoder[depth] is the bottleneck
        rcl = {"t": t, "batch_norm": batch_norm, "shared_weights": shared_weights}
        self.encoder = nn.ModuleList([RRCNNBlock(in_channels, widths[0], **rcl)])
        self.encoder.extend(RRCNNBlock(widths[i], widths[i + 1], **rcl) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(depth))
        )
        self.decoder = nn.ModuleList(
            RRCNNBlock(2 * widths[i], widths[i], **rcl) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.required_multiple)
        skips: list[Tensor] = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)
