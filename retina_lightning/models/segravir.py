"""SegRAVIR (Hatamizadeh et al., "RAVIR: A dataset and methodology for the semantic
segmentation and quantitative analysis of retinal arteries and veins", paper 000, section IV-A).

Two streams share one residual encoder: the main stream decodes artery/vein logits, the
auxiliary stream decodes a reconstruction of the input that regularises the encoder through
the L2 term of eq. (2)/(5). Building blocks (section IV-A, eq. 1): every convolution is
``conv -> ReLU -> BatchNorm -> Dropout`` (BN *after* ReLU, as eq. 1 writes it); a residual
block is two such 3x3 convolutions plus an identity skip.

Choices where the paper is silent (Fig. 2 is not available as text):

* widths: ``base_channels * 2**level`` for the 4 encoder levels and the bottleneck, i.e.
  16/32/64/128 and 256 by default (about 5.9 M weights, the size of the suite's U-Net);
* a 3x3 stem convolution lifts ``in_channels`` to ``base_channels``, because the identity
  skip of the first residual block needs equal input and output channels;
* down-sampling: 3x3 convolution, stride 2, padding 1; up-sampling: 3x3 transposed
  convolution, stride 2, padding 1, output padding 1 (exactly x2, TensorFlow ``"same"``);
  "appropriate padding" in the paper implies kernels larger than the stride;
* dropout rate 0.1 (element-wise ``nn.Dropout``, as Keras ``Dropout``), after every
  convolution of the encoder, bottleneck, both decoders and the two 3x3 head convolutions;
* no activation after the residual addition (the paper adds the input to the convolutional
  outputs and says nothing more).

The paper reports no parameter count. Ours: 5,905,796 for the RAVIR setting
(``in_channels=1, num_classes=3``), 5,906,084 for the defaults (3 channels, 1 logit).
"""

from __future__ import annotations

from torch import Tensor, nn

from retina_lightning.models.unet import check_input_size
from retina_lightning.types import SegOutput


class ConvUnit(nn.Sequential):
    """``conv -> ReLU -> BN -> Dropout`` (000, eq. 1 and the dropout sentence after it).

    ``transposed=True`` gives the decoder's stride-2 3x3 transposed convolution (x2 size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dropout: float = 0.1,
        transposed: bool = False,
    ) -> None:
        conv: nn.Module
        if transposed:
            conv = nn.ConvTranspose2d(
                in_channels, out_channels, 3, stride=stride, padding=1, output_padding=stride - 1
            )
        else:
            conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        layers: list[nn.Module] = [conv, nn.ReLU(inplace=True), nn.BatchNorm2d(out_channels)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual block of 000 section IV-A: two 3x3 :class:`ConvUnit` plus identity skip."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvUnit(channels, channels, dropout=dropout),
            ConvUnit(channels, channels, dropout=dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SegRAVIRDecoder(nn.Module):
    """One decoder stream: per level ``TrConv (x2) -> ResBlock``, then ``+ encoder skip``.

    000 section IV-A: "the output of the residual blocks in the encoder is added to the
    output of the corresponding residual block in the decoder". Both streams use this class.
    """

    def __init__(self, widths: list[int], dropout: float = 0.1) -> None:
        super().__init__()
        levels = range(len(widths) - 1)
        self.up = nn.ModuleList(
            ConvUnit(widths[i + 1], widths[i], stride=2, dropout=dropout, transposed=True)
            for i in reversed(levels)
        )
        self.res = nn.ModuleList(ResBlock(widths[i], dropout) for i in reversed(levels))

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        for up, res, skip in zip(self.up, self.res, reversed(skips)):
            x = res(up(x)) + skip
        return x


class SegRAVIR(nn.Module):
    """SegRAVIR: shared residual encoder, segmentation decoder, reconstruction decoder.

    000 section IV-A, Fig. 2. Encoder: 4 levels of ``ResBlock -> stride-2 conv``, then 3
    residual blocks at the bottleneck. Main stream: 4 levels of ``TrConv -> ResBlock (+ skip)``,
    two 3x3 convolutions, a 1x1 convolution to ``num_classes`` logits (softmax/sigmoid is
    applied outside). Auxiliary stream: the same decoder, then a 1x1 convolution to
    ``in_channels`` and a ReLU ("the last three layers" replaced, section IV-A).

    Args:
        in_channels: image channels (RAVIR infrared images are grayscale: 1; colour: 3).
        num_classes: 3 for the paper's background/vein/artery output (``types.BACKGROUND,
            VEIN, ARTERY``); 1 (the suite-wide default) for binary vessels.
        base_channels: width of the first level; level ``i`` has ``base_channels * 2**i``
            (paper silent; see the module docstring).
        dropout: dropout probability after every convolution (paper gives no rate).
        reconstruction: build the auxiliary reconstruction stream. ``False`` keeps only the
            main stream, as the distillation teacher and student of section IV-D.
        recon_relu: end the reconstruction with ReLU as the paper does; set ``False`` when the
            reconstruction target can be negative (e.g. zero-mean normalised input).

    Returns from ``forward``: ``SegOutput(main=(B, num_classes, H, W) logits,
    recon=(B, in_channels, H, W) or None)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 16,
        dropout: float = 0.1,
        reconstruction: bool = True,
        recon_relu: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        levels = 4  # "SegRAVIR's encoder spans across 4 different resolutions"
        self.required_multiple: int = 2**levels
        widths = [base_channels * 2**i for i in range(levels + 1)]

        self.stem = ConvUnit(in_channels, widths[0], dropout=dropout)
        self.enc_res = nn.ModuleList(ResBlock(widths[i], dropout) for i in range(levels))
        self.down = nn.ModuleList(
            ConvUnit(widths[i], widths[i + 1], stride=2, dropout=dropout) for i in range(levels)
        )
        self.bottleneck = nn.Sequential(*(ResBlock(widths[-1], dropout) for _ in range(3)))

        self.seg_decoder = SegRAVIRDecoder(widths, dropout)
        self.seg_convs = nn.Sequential(
            ConvUnit(widths[0], widths[0], dropout=dropout),
            ConvUnit(widths[0], widths[0], dropout=dropout),
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

        self.recon_decoder: SegRAVIRDecoder | None = None
        self.recon_head: nn.Sequential | None = None
        if reconstruction:
            self.recon_decoder = SegRAVIRDecoder(widths, dropout)
            recon_layers: list[nn.Module] = [nn.Conv2d(widths[0], in_channels, 1)]
            if recon_relu:
                recon_layers.append(nn.ReLU())
            self.recon_head = nn.Sequential(*recon_layers)

    def forward(self, x: Tensor) -> SegOutput:
        check_input_size(x, self.required_multiple)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"SegRAVIR was built for {self.in_channels} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); set in_channels to match the images"
            )
        h = self.stem(x)
        skips: list[Tensor] = []
        for res, down in zip(self.enc_res, self.down):
            h = res(h)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)

        main = self.head(self.seg_convs(self.seg_decoder(h, skips)))
        recon = None
        if self.recon_decoder is not None and self.recon_head is not None:
            recon = self.recon_head(self.recon_decoder(h, skips))
        return SegOutput(main=main, recon=recon)

    def replace_head(self, num_classes: int) -> None:
        """Swap the final 1x1 segmentation convolution for a freshly initialised one.

        000 section IV-D: the RAVIR-pretrained network becomes a binary-vessel teacher by
        replacing "the last layer ... with a 1x1 convolutional layer whose weights are
        randomly initialized". Every other parameter and buffer is left untouched.
        """
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.head
        self.head = nn.Conv2d(old.in_channels, num_classes, 1).to(
            device=old.weight.device, dtype=old.weight.dtype
        )
        self.num_classes = num_classes
