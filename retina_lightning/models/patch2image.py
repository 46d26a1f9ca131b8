"""The three networks of patch2image (Birgui Sekou et al., "From patch to image
segmentation using fully convolutional networks - application to retinal images", paper 004).

Section 6.2 / Fig. 5: a lightweight FCNN (Light, 8,889 weights), a reduced U-Net
(Mini-Unet, 316,657) and a densely connected network (Dense, 1,032,588). All three are
fully convolutional with two down-samplings ("the input size should be a multiple of 4",
section 6.1), so the weights trained on patches (phase 2) run unchanged on whole images
(phase 3) and are fine-tuned there (phase 4, section 5.2).

The paper works on one gray channel (gray + gamma + CLAHE, section 6.1.2), so its counts are
for ``in_channels=1, num_classes=1``; the patch2image configs pass ``in_channels=1``. Every
convolution is ``padding="same"``; the final sigmoid of the paper is applied outside (logits
out). Fig. 5 is not available as text: layer lists below follow the layer counts and filter
numbers that reproduce the paper's weight counts exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_lightning.models.unet import check_input_size


def _conv_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 "same" convolution (with bias) + ReLU, the only layer type of Light / Mini-Unet."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True)
    )


def _up_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 stride-2 transposed convolution (exactly x2, Keras ``"same"``) + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
    )


def glorot_init(module: nn.Module) -> None:
    """Keras' default initialisation (Glorot-uniform weights, zero biases), which the authors'
    TensorFlow implementation of 004 used; with PyTorch's default init the 8,889-weight Light
    network stays at chance level on gamma + CLAHE input."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class LightNet(nn.Module):
    """Light network (004 section 6.2): plain FCNN, 8 filters per layer, no skip connections.

    Layers: 2 convs, stride-2 conv, conv, stride-2 conv, conv (bottom), transposed conv,
    conv, transposed conv to ``wide_up_filters`` channels, conv, 3x3 output conv.

    Weights (``in_channels=1, num_classes=1``): paper 8,889 vs ours 8,889 (difference 0).
    The paper's "8 filters on each layer" holds for every layer but the last transposed
    convolution: the 8,889 count requires it to have 32 filters (with 8 it would be 5,409),
    hence ``wide_up_filters=32``.

    Args:
        in_channels: image channels (paper: 1, gray).
        num_classes: output logit channels.
        filters: filters of every layer (paper: 8).
        wide_up_filters: filters of the second (last) transposed convolution (paper count: 32).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        filters: int = 8,
        wide_up_filters: int = 32,
    ) -> None:
        super().__init__()
        self.required_multiple: int = 4
        self.in_channels, self.num_classes = in_channels, num_classes
        f = filters
        self.encoder = nn.Sequential(
            _conv_relu(in_channels, f),
            _conv_relu(f, f),
            _conv_relu(f, f, stride=2),
            _conv_relu(f, f),
            _conv_relu(f, f, stride=2),
            _conv_relu(f, f),
        )
        self.decoder = nn.Sequential(
            _up_relu(f, f),
            _conv_relu(f, f),
            _up_relu(f, wide_up_filters),
            _conv_relu(wide_up_filters, f),
        )
        self.head = nn.Conv2d(f, num_classes, 3, padding=1)
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.required_multiple)
        return self.head(self.decoder(self.encoder(x)))


class MiniUNet(nn.Module):
    """Mini-Unet (004 section 6.2): a reduced U-Net with two resolutions below the input.

    Encoder level ``i`` (``b = base_channels * 2**i``): conv to ``b``, conv, conv to ``2b``
    (the skip), stride-2 conv. Bottom: three convs at ``4 * base_channels``. Decoder level
    ``i``: transposed conv (same channels), concatenation with the skip, conv to ``b``, two
    convs. Output: 3x3 conv. Default widths 16 / 32 / 64.

    Weights (``in_channels=1, num_classes=1``): paper 316,657 vs ours 316,657 (difference 0).

    Args:
        in_channels: image channels (paper: 1, gray).
        num_classes: output logit channels.
        base_channels: filters of the first layers (paper count: 16).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 16) -> None:
        super().__init__()
        self.required_multiple: int = 4
        self.in_channels, self.num_classes = in_channels, num_classes
        b0, b1 = base_channels, 2 * base_channels
        self.enc0 = nn.Sequential(
            _conv_relu(in_channels, b0), _conv_relu(b0, b0), _conv_relu(b0, 2 * b0)
        )
        self.down0 = _conv_relu(2 * b0, 2 * b0, stride=2)
        self.enc1 = nn.Sequential(
            _conv_relu(2 * b0, b1), _conv_relu(b1, b1), _conv_relu(b1, 2 * b1)
        )
        self.down1 = _conv_relu(2 * b1, 2 * b1, stride=2)
        self.bottom = nn.Sequential(*(_conv_relu(2 * b1, 2 * b1) for _ in range(3)))
        self.up1 = _up_relu(2 * b1, 2 * b1)
        self.dec1 = nn.Sequential(_conv_relu(4 * b1, b1), _conv_relu(b1, b1), _conv_relu(b1, b1))
        self.up0 = _up_relu(b1, b1)
        self.dec0 = nn.Sequential(
            _conv_relu(b1 + 2 * b0, b0), _conv_relu(b0, b0), _conv_relu(b0, b0)
        )
        self.head = nn.Conv2d(b0, num_classes, 3, padding=1)
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.required_multiple)
        skip0 = self.enc0(x)
        skip1 = self.enc1(self.down0(skip0))
        h = self.bottom(self.down1(skip1))
        h = self.dec1(torch.cat([self.up1(h), skip1], dim=1))
        h = self.dec0(torch.cat([self.up0(h), skip0], dim=1))
        return self.head(h)


class DenseLayer(nn.Module):
    """Dense-block layer: ``BN-ReLU-1x1 conv (Delta = 4 Omega) - BN-ReLU-3x3 conv (Omega)``.

    004 section 6.2 (after Huang et al. 2017, DenseNet-BC); its output is stacked on its input.
    Convolutions without bias, as in DenseNet (a BatchNorm follows each).
    """

    def __init__(
        self, in_channels: int, omega: int, bottleneck_factor: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        delta = bottleneck_factor * omega
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, delta, 1, bias=False),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.BatchNorm2d(delta),
            nn.ReLU(inplace=True),
            nn.Conv2d(delta, omega, 3, padding=1, bias=False),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseBlock(nn.Sequential):
    """``num_layers`` :class:`DenseLayer`; Omega grows by ``growth`` after each concatenation.

    Attributes ``out_channels`` and ``omega`` give the stacked channels and Omega after the block.
    """

    def __init__(
        self,
        in_channels: int,
        omega: int,
        num_layers: int,
        growth: int = 2,
        bottleneck_factor: int = 4,
        dropout: float = 0.0,
    ) -> None:
        layers = []
        channels = in_channels
        for _ in range(num_layers):
            layers.append(DenseLayer(channels, omega, bottleneck_factor, dropout))
            channels += omega
            omega += growth
        super().__init__(*layers)
        self.out_channels = channels
        self.omega = omega


class Transition(nn.Sequential):
    """``BN-ReLU-1x1 conv to Pi = int(compression * Omega)``, then 2x2 average pooling (down)
    or 2x nearest up-sampling (up, the "duplication" layer of 004 section 3, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, up: bool, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Upsample(scale_factor=2, mode="nearest") if up else nn.AvgPool2d(2))
        super().__init__(*layers)


class DenseNetP2I(nn.Module):
    """Dense network of patch2image (004 section 6.2, Fig. 5), DenseNet-style FCNN.

    Stem ``7x7 conv (Omega) - BN - ReLU``; down path: per entry of ``block_layers`` a dense
    block then a transition with 2x2 average pooling; up path: the same ``block_layers``
    again, each dense block followed by a transition with 2x up-sampling; output
    ``BN - ReLU - 3x3 conv``. "Omega is initially set to 8 and increased by 2 after each
    concatenation while Delta = Omega * 4 and Pi = Omega * 0.5" (section 6.2): Omega is
    the width of each dense layer's 3x3 conv, Delta that of its 1x1 bottleneck, Pi that of
    a transition, after which Omega restarts from Pi.

    Weights (``in_channels=1, num_classes=1``): paper 1,032,588 vs ours 1,032,588
    (difference 0; BatchNorm gamma/beta counted, running statistics are buffers, as the
    paper counts trainable parameters). The number of layers per block, (6, 12), is not in
    the text (Fig. 5); it is the DenseNet-121 prefix, which reproduces the count exactly.

    Args:
        in_channels: image channels (paper: 1, gray).
        num_classes: output logit channels.
        omega: initial Omega (paper: 8).
        growth: increase of Omega after each concatenation (paper: 2).
        bottleneck_factor: Delta / Omega (paper: 4).
        compression: Pi / Omega (paper: 0.5).
        block_layers: dense layers of each down block; the up path repeats them in order.
        dropout: dropout after each convolution of the blocks (paper: none).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        omega: int = 8,
        growth: int = 2,
        bottleneck_factor: int = 4,
        compression: float = 0.5,
        block_layers: tuple[int, ...] = (6, 12),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not block_layers:
            raise ValueError("DenseNetP2I needs at least one dense block (block_layers is empty)")
        self.required_multiple: int = 2 ** len(block_layers)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, omega, 7, padding=3, bias=False),
            nn.BatchNorm2d(omega),
            nn.ReLU(inplace=True),
        )
        channels = omega
        stages: list[nn.Module] = []
        for up in (False, True):
            for num_layers in block_layers:
                block = DenseBlock(channels, omega, num_layers, growth, bottleneck_factor, dropout)
                omega = int(block.omega * compression)
                stages += [block, Transition(block.out_channels, omega, up, dropout)]
                channels = omega
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, 3, padding=1),
        )
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.required_multiple)
        return self.head(self.stages(self.stem(x)))
