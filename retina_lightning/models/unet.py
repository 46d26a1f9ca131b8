"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015), the suite's baseline.

Contracting path of double 3x3 convolutions and 2x2 max pooling, expanding path of 2x2
up-convolutions whose output is concatenated with the same-level encoder features, and a
1x1 convolution head. Unlike the original (unpadded 3x3 convolutions, output smaller than
the input) every convolution here is ``padding=1`` so the output has the input's size, as
in IterNet (003, section III-A) and every retinal-vessel U-Net since.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_input_size(x: Tensor, multiple: int) -> None:
    """Raise a readable error unless ``x`` is ``(B, C, H, W)``, H and W divisible by ``multiple``.

    Checked up front because a misaligned size otherwise fails deep inside ``torch.cat``.
    """
    if x.ndim != 4 or x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(
            f"expected input (B, C, H, W) with H and W multiples of {multiple}, got shape "
            f"{tuple(x.shape)}; pad the image to the next multiple (required_multiple) first"
        )


class DoubleConv(nn.Sequential):
    """Two ``3x3 conv (+ BatchNorm) + ReLU`` layers, optional dropout in between."""

    def __init__(
        self, in_channels: int, out_channels: int, batch_norm: bool = True, dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = []
        for i, c_in in enumerate((in_channels, out_channels)):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if i == 0 and dropout > 0:
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Expanding-path step: upsample x2, halve the channels, concatenate the skip, DoubleConv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        batch_norm: bool = True,
        dropout: float = 0.0,
        bilinear: bool = False,
    ) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, batch_norm, dropout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """Classic U-Net with ``depth`` poolings; channels ``base_channels * 2**level``.

    Args:
        in_channels: image channels.
        num_classes: output logit channels (1 for binary vessels).
        base_channels: filters of the first level (64 in the 2015 paper; 32 here, the
            retinal-vessel convention, e.g. IterNet 003 section III-A).
        depth: number of 2x2 max-pool steps; input H, W must be multiples of ``2**depth``.
        batch_norm: BatchNorm after every 3x3 convolution (absent in the 2015 paper).
        dropout: ``Dropout2d`` probability between the two convolutions of each block.
        bilinear: bilinear upsampling + 1x1 conv instead of 2x2 transposed convolution.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        batch_norm: bool = True,
        dropout: float = 0.0,
        bilinear: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet depth must be >= 1 (number of poolings), got {depth}")
        self.required_multiple: int = 2**depth
        self.in_channels, self.num_classes = in_channels, num_classes
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList([DoubleConv(in_channels, widths[0], batch_norm, dropout)])
        self.encoder.extend(
            DoubleConv(widths[i], widths[i + 1], batch_norm, dropout) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.decoder = nn.ModuleList(
            Up(widths[i + 1], widths[i], batch_norm, dropout, bilinear)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.required_multiple)
        skips: list[Tensor] = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.head(x)
