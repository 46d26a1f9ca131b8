"""DPN: detail-preserving network (Guo, 002), a full-resolution vessel segmenter of ~96k weights.

Section 3.1 / Fig. 1(a): a front 3x3 convolution to 32 channels, one DP-Block and seven
DPR-Blocks with no down-sampling between blocks, a 1x1 side output after DPR-Blocks 1, 3 and 5
(auxiliary losses, section 3.3) and the main 1x1 output after DPR-Block 7.

DP-Block (section 3.2, Fig. 1(b)): the input feeds three branches,

* branch 1: 3x3 conv to ``C0`` at full resolution (detail),
* branch 2: pooling with stride 2, 3x3 conv to ``C1``,
* branch 3: pooling with stride 4, 3x3 conv to ``C2`` (field of view x4),

fused in cascade: branch 3 is up-sampled x2 and concatenated with branch 2, a 3x3 conv maps the
concatenation to ``C1``; that is up-sampled x2, concatenated with branch 1, and a 3x3 conv maps
it to ``C0``. DPR-Block (Fig. 1(c)): a DP-Block whose output is summed with the block input and
passed through one more 3x3 conv (``C0 -> C0``), so input and output are ``H x W x C0``.

Parameter count. The two fusion convolutions are not spelled out in the text, but with them
(3x3, ``C1 + C2 -> C1`` and ``C0 + C1 -> C0``, biases everywhere) the blocks have exactly the
counts of section 3.2: 13,880 for the DP-Block on the 32-channel front features and 11,592 per
DPR-Block. With the front conv (3 -> 32: 896) and four 1x1 heads (17 each) the default model
has 896 + 13,880 + 7 x 11,592 + 4 x 17 = 95,988 parameters, the paper's "about 96k" (sections
3.1, 5); the 12-weight gap is the rounding, and the up-sampling carries no weights. Activations
are ReLU after every 3x3 conv, no normalisation; weights are Xavier-initialised (section 4.3).

Choices the paper leaves open: max pooling with window = stride (2x2 and 4x4) and bilinear
x2 up-sampling (``align_corners=False``, whose grid matches those windows). The authors'
released Caffe files use overlapping 3x3/5x5 max windows, fixed bilinear deconvolutions, and
concatenation (not a sum) before the DPR-Block's last conv; the last would give 13,896 weights
per DPR-Block instead of the stated 11,592, so the text (sum) is followed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retina_lightning.models.unet import check_input_size
from retina_lightning.types import SegOutput


def _conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))


def _up_to(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinear x2 up-sampling (to ``reference``'s exact size)."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class DPBlock(nn.Module):
    """Detail-preserving block, 002 section 3.2 and Fig. 1(b).

    ``(B, C_in, H, W) -> (B, C0, H, W)``; H and W multiples of 4.
    """

    def __init__(self, in_channels: int, c0: int = 16, c1: int = 8, c2: int = 8) -> None:
        super().__init__()
        self.branch1 = _conv_relu(in_channels, c0)
        self.pool2 = nn.MaxPool2d(2)
        self.branch2 = _conv_relu(in_channels, c1)
        self.pool4 = nn.MaxPool2d(4)
        self.branch3 = _conv_relu(in_channels, c2)
        self.fuse23 = _conv_relu(c1 + c2, c1)
        self.fuse123 = _conv_relu(c0 + c1, c0)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1(x)
        b2 = self.branch2(self.pool2(x))
        b3 = self.branch3(self.pool4(x))
        b23 = self.fuse23(torch.cat([b2, _up_to(b3, b2)], dim=1))
        return self.fuse123(torch.cat([b1, _up_to(b23, b1)], dim=1))


class DPRBlock(nn.Module):
    """DP-Block with residual connection, 002 section 3.2 and Fig. 1(c):
    ``conv3x3(DP(x) + x)`` with ReLU, shape ``(B, C0, H, W)`` in and out."""

    def __init__(self, c0: int = 16, c1: int = 8, c2: int = 8) -> None:
        super().__init__()
        self.dp = DPBlock(c0, c0, c1, c2)
        self.conv = _conv_relu(c0, c0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.dp(x) + x)


class DPN(nn.Module):
    """Detail-preserving network, 002 section 3.1 and Fig. 1(a).

    Returns ``SegOutput(main, aux)``: ``aux`` are the side outputs after the DPR-Blocks listed
    in ``side_outputs`` (1-based, first to last), ``main`` the output after the last DPR-Block;
    all are ``(B, num_classes, H, W)`` logits. Every test image is segmented in one pass at full
    size (section 4.3); H and W must be multiples of 4 (the stride of branch 3).

    Args:
        in_channels: image channels.
        num_classes: output logit channels (1 for binary vessels).
        front_channels: width of the front convolution (32).
        c0, c1, c2: filters of branches 1, 2, 3 of every block (16, 8, 8).
        num_dpr_blocks: DPR-Blocks after the DP-Block (7).
        side_outputs: DPR-Blocks followed by a side output (1, 3, 5).
    """

    required_multiple: int = 4

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        front_channels: int = 32,
        c0: int = 16,
        c1: int = 8,
        c2: int = 8,
        num_dpr_blocks: int = 7,
        side_outputs: Sequence[int] = (1, 3, 5),
    ) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        side = tuple(int(i) for i in side_outputs)
        if num_dpr_blocks < 1:
            raise ValueError(f"DPN needs num_dpr_blocks >= 1, got {num_dpr_blocks}")
        if list(side) != sorted(set(side)) or any(not 1 <= i < num_dpr_blocks for i in side):
            raise ValueError(
                f"side_outputs must be increasing DPR-Block numbers in 1..{num_dpr_blocks - 1} "
                f"(the main output follows DPR-Block {num_dpr_blocks}), got {list(side_outputs)}"
            )
        self.side_outputs = side
        self.front = _conv_relu(in_channels, front_channels)
        self.dp_block = DPBlock(front_channels, c0, c1, c2)
        self.dpr_blocks = nn.ModuleList(DPRBlock(c0, c1, c2) for _ in range(num_dpr_blocks))
        self.side_heads = nn.ModuleList(nn.Conv2d(c0, num_classes, 1) for _ in side)
        self.head = nn.Conv2d(c0, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> SegOutput:
        check_input_size(x, self.required_multiple)
        x = self.dp_block(self.front(x))
        aux: list[Tensor] = []
        heads = iter(self.side_heads)
        for number, block in enumerate(self.dpr_blocks, start=1):
            x = block(x)
            if number in self.side_outputs:
                aux.append(next(heads)(x))
        return SegOutput(main=self.head(x), aux=aux)
