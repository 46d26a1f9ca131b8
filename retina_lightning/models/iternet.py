"""IterNet (Li et al., WACV 2020; paper 003): a UNet base module followed by N-1 iterations
of one weight-shared mini-UNet that refines the vessel map.

Structure (003, section 3 and Fig. 2):

* base module: a UNet on the raw image; ``Out 1`` is its 1x1 output layer.
* refinery modules: one mini-UNet (fewer levels than the UNet) applied ``iterations``
  times; its input is the output of the *second last layer* of the preceding module (the
  ``base_channels``-channel feature map before the 1x1 output layer, "a 32-channel feature
  map"); each application gives an output ``Out 2 .. Out N``. All applications share the
  same weights and biases.
* three kinds of skip connection (section 3, last paragraphs):

  1. inside every module, encoder level -> decoder level, as in UNet;
  2. base -> every mini-UNet: the feature of the base UNet's first layer is concatenated
     with the feature of the first layer of every mini-UNet;
  3. dense connections among mini-UNets: the first-layer features of all earlier mini-UNets
     are concatenated too, and a 1x1 convolution per iteration reduces the concatenation back
     to ``base_channels``; this 1x1 convolution is "the only component in the mini-UNets that
     has private parameters".

* loss (eq. 1-2, not here): one sigmoid cross entropy per output, weights ``w_i = 1``; the
  last output is the prediction. :meth:`IterNet.forward` therefore returns every output.

Where the paper is silent this module follows the authors' public implementation
(github.com/conscienceli/IterNet, Keras):

* ``base_channels = 32`` filters at the first level, doubling per level; a 5-level base
  UNet (``unet_depth = 4`` poolings) and a 3-level mini-UNet (``mini_unet_depth = 2``
  poolings); 3x3 same-padded convolutions, 2x2 max pooling, 2x2 stride-2 transposed
  convolutions; ReLU; dropout 0.1 after every activation; no batch normalisation;
* the first-layer feature of a module is the output of its first double convolution; in a
  mini-UNet the 1x1-reduced concatenation replaces it both as the input of the next level
  and as the level's encoder->decoder skip.

One deliberate difference from that code: it gives every output its own 1x1 output layer,
whereas the paper states the dense-connection 1x1 convolution is the mini-UNets' only private
component; here the mini-UNet's output layer is part of the shared mini-UNet (the base UNet
has its own).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_lightning.models.unet import check_input_size
from retina_lightning.types import SegOutput


class ConvBlock(nn.Sequential):
    """Two ``3x3 conv (+ BN) + ReLU + dropout`` layers (dropout after every activation, as in
    the public IterNet code)."""

    def __init__(
        self, in_channels: int, out_channels: int, dropout: float = 0.0, batch_norm: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class IterNetModule(nn.Module):
    """One IterNet module: a UNet with ``depth`` poolings and a 1x1 output layer (section 3).

    Used both as the base module (``in_channels`` = image channels, ``depth = 4``) and as the
    shared mini-UNet (``in_channels = base_channels``, ``depth = 2``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int,
        depth: int,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList([ConvBlock(in_channels, widths[0], dropout, batch_norm)])
        self.encoder.extend(
            ConvBlock(widths[i], widths[i + 1], dropout, batch_norm) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(depth))
        )
        self.decoder = nn.ModuleList(
            ConvBlock(2 * widths[i], widths[i], dropout, batch_norm) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(
        self, x: Tensor, dense: list[Tensor] | None = None, reduce: nn.Module | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(first-layer feature, second-last-layer feature, output logits)``.

        For a mini-UNet, ``dense`` holds the first-layer features of the base UNet and of all
        earlier mini-UNets (skip connections 2 and 3); they are concatenated with this
        module's first-layer feature and reduced by the iteration's private 1x1 conv
        ``reduce`` before the rest of the module sees them.
        """
        first = self.encoder[0](x)
        feature = first
        if dense is not None:
            if reduce is None:
                raise ValueError("IterNetModule: dense features given without a 1x1 `reduce`")
            feature = reduce(torch.cat([*dense, first], dim=1))
        skips = [feature]
        for block in self.encoder[1:]:
            feature = block(self.pool(feature))
            skips.append(feature)
        feature = skips.pop()
        for up, block in zip(self.up, self.decoder):
            feature = block(torch.cat([up(feature), skips.pop()], dim=1))
        return first, feature, self.head(feature)


class IterNet(nn.Module):
    """IterNet (003, section 3, Fig. 2): UNet + ``iterations`` applications of one mini-UNet.

    Args:
        in_channels: image channels.
        num_classes: logit channels of every output.
        base_channels: filters of the first level of both modules; also the width of the
            feature map passed from module to module (32 in the paper, section 3).
        unet_depth: poolings of the base UNet (4, i.e. 5 levels, public code).
        mini_unet_depth: poolings of the mini-UNet (2, i.e. 3 levels, public code).
        iterations: applications of the mini-UNet, ``N - 1`` (3, i.e. ``N = 4``, section 5).
        dropout: dropout after every ReLU (0.1 in the public code; the paper is silent).
        batch_norm: BatchNorm after every 3x3 conv (none in the paper or the public code).

    ``forward`` returns ``SegOutput(main=Out N, aux=[Out 1, ..., Out N-1])`` in train and eval
    mode; every output is supervised (eq. 2, ``w_i = 1``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 32,
        unet_depth: int = 4,
        mini_unet_depth: int = 2,
        iterations: int = 3,
        dropout: float = 0.1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if unet_depth < 1 or mini_unet_depth < 1 or iterations < 0:
            raise ValueError(
                "IterNet needs unet_depth >= 1, mini_unet_depth >= 1 and iterations >= 0, got "
                f"unet_depth={unet_depth}, mini_unet_depth={mini_unet_depth}, "
                f"iterations={iterations}"
            )
        self.iterations = iterations
        self.required_multiple: int = 2 ** max(unet_depth, mini_unet_depth)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base = IterNetModule(
            in_channels, num_classes, base_channels, unet_depth, dropout, batch_norm
        )
        # N = 1 is a plain UNet: build no mini-UNet that would receive no gradient
        self.mini_unet = (
            IterNetModule(
                base_channels, num_classes, base_channels, mini_unet_depth, dropout, batch_norm
            )
            if iterations > 0
            else None
        )
        # iteration k (1-based) concatenates k + 1 first-layer features: base + k mini-UNets
        self.dense_reductions = nn.ModuleList(
            nn.Conv2d((k + 1) * base_channels, base_channels, 1) for k in range(1, iterations + 1)
        )

    def forward(self, x: Tensor) -> SegOutput:
        check_input_size(x, self.required_multiple)
        first, feature, out = self.base(x)
        outputs = [out]
        dense = [first]
        for reduce in self.dense_reductions:
            assert self.mini_unet is not None  # iterations > 0 here
            first, feature, out = self.mini_unet(feature, dense, reduce)
            dense.append(first)
            outputs.append(out)
        return SegOutput(main=outputs[-1], aux=outputs[:-1])
