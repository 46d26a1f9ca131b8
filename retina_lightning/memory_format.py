"""Channels-last (NHWC) memory format for training, as an opt-in callback (issue 14, part 2).

Measured with ``benchmarks/bench_training.py --channels-last`` on a 2-core AMD EPYC with
AVX512_BF16 (``benchmarks/results/training_throughput_quick.md``: training steps per second
against the default layout at the same precision, one run): in bf16-mixed (the default there)
U-Net 1.11x, R2U-Net 1.13x, DPN 1.43x, IterNet 1.18x, SegRAVIR 1.10x, Light 1.13x, Mini-Unet
1.09x; in fp32 1.05-1.45x; the smp U-Net (ResNet-18 encoder) gains little or loses (1.03x bf16,
0.93x fp32). It changes no number beyond float rounding, but it is not the default: the gain
depends on the network and the hardware, and results made without it stay bit-identical.
Use it from any config::

    retina fit --config configs/drive/dpn.yaml \\
        --trainer.callbacks+=retina_lightning.memory_format.ChannelsLast
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["ChannelsLast"]


class ChannelsLast(Callback):
    """Store the network's 4-D weights channels-last before any step runs.

    A convolution whose weight is channels-last returns a channels-last output whatever the
    layout of its input, so converting the weights once is enough: the whole network, forward
    and backward, then runs in NHWC (PyTorch's oneDNN / cuDNN kernels are fastest there for
    most convolutions). The optimizer is created after ``setup``, so its state follows.
    """

    def setup(self, trainer: Any, pl_module: torch.nn.Module, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)  # type: ignore[call-arg]
