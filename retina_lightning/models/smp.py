"""Any architecture of ``segmentation_models_pytorch`` (smp) as a suite model.

Randomly initialised only: ``encoder_weights=None`` is always passed, so constructing a
model never downloads anything (the suite trains from scratch, as every paper in it does).
"""

from __future__ import annotations

import inspect

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import get_encoder_names
from torch import Tensor, nn

from retina_lightning.models.unet import check_input_size

#: smp's default U-Net decoder widths, deepest first, for ``encoder_depth = 5``.
_SMP_UNET_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class Unused(nn.Module):
    """Stand-in for a dropped submodule: returns its first input unchanged."""

    def forward(self, x: Tensor, *args: object, **kwargs: object) -> Tensor:
        return x


def _probe(model: nn.Module, example: Tensor) -> tuple[Tensor, set[str]]:
    """Eval-mode output for ``example`` and the names of the parameters it does not depend on
    (``autograd.grad(..., allow_unused=True)`` gives ``None`` for those)."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            params = dict(model.named_parameters())
            out = model(example)
            grads = torch.autograd.grad(out.sum(), list(params.values()), allow_unused=True)
    finally:
        model.train(was_training)
    return out.detach(), {name for name, grad in zip(params, grads) if grad is None}


def drop_unused_modules(model: nn.Module, example: Tensor) -> list[str]:
    """Replace by :class:`Unused` every submodule none of whose parameters the output depends
    on; returns the replaced names.

    smp builds every encoder stage whatever ``encoder_depth`` (ResNet ``layer4`` at depth 4)
    and some encoders even run the stages whose features they then discard. Unused parameters
    break DDP (``find_unused_parameters=False``) and inflate the parameter count. If the
    output of ``example`` changes after the replacement, the modules are put back and their
    parameters frozen (``requires_grad=False``) instead; if the probe forward fails nothing is
    changed (the real forward then reports the problem).
    """
    try:
        reference, unused = _probe(model, example)
    except (RuntimeError, ValueError):
        return []
    replaced: list[tuple[nn.Module, str, nn.Module]] = []
    for name, module in list(model.named_modules()):  # parents before children
        if not name or any(name.startswith(f"{done[1]}.") for done in replaced):
            continue
        own = [f"{name}.{p}" for p, _ in module.named_parameters()]
        if own and all(p in unused for p in own):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, Unused())
            replaced.append((parent, name, module))
    try:
        same = torch.equal(_probe(model, example)[0], reference)
    except (RuntimeError, ValueError, TypeError):
        same = False
    if not same:
        for parent, name, module in replaced:
            setattr(parent, name.rpartition(".")[2], module)
            module.requires_grad_(False)
        return []
    return [name for _, name, _ in replaced]


class SmpModel(nn.Module):
    """Wrapper around ``smp.create_model(arch, encoder_name, encoder_weights=None, ...)``.

    Args:
        in_channels: image channels.
        num_classes: output logit channels.
        arch: smp architecture name, case-insensitive (``Unet``, ``UnetPlusPlus``, ``FPN``,
            ``DeepLabV3Plus``, ...).
        encoder_name: smp encoder (``resnet18``, ``efficientnet-b0``, ...) or a timm encoder
            as ``tu-<timm name>``.
        encoder_depth: number of encoder stages (downsamplings); inputs must be multiples of
            ``2**encoder_depth``.
        decoder_channels: decoder widths (a list for ``Unet``/``UnetPlusPlus``/``MAnet``, one
            int for e.g. ``DeepLabV3``/``PAN``). ``None``: smp's default, except that for the
            U-Net family with ``encoder_depth != 5`` the last ``encoder_depth`` entries of
            smp's ``(256, 128, 64, 32, 16)`` are used (same width per resolution).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        arch: str = "Unet",
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        decoder_channels: list[int] | int | None = None,
    ) -> None:
        super().__init__()
        architectures = smp.MODEL_ARCHITECTURES_MAPPING
        arch_class = architectures.get(arch.lower())
        if arch_class is None:
            names = sorted(a.__name__ for a in architectures.values())
            raise ValueError(f"unknown smp arch {arch!r}; expected one of {names}")
        encoders = get_encoder_names()
        if encoder_name not in encoders and not encoder_name.startswith("tu-"):
            raise ValueError(
                f"unknown smp encoder_name {encoder_name!r}; expected one of {sorted(encoders)} "
                "or a timm encoder written 'tu-<timm model name>'"
            )
        accepted = inspect.signature(arch_class.__init__).parameters
        kwargs: dict[str, object] = {"encoder_depth": encoder_depth}
        if decoder_channels is not None:
            if "decoder_channels" not in accepted:
                raise ValueError(
                    f"smp arch {arch_class.__name__} takes no decoder_channels; leave it None"
                )
            kwargs["decoder_channels"] = (
                decoder_channels if isinstance(decoder_channels, int) else tuple(decoder_channels)
            )
        elif arch_class.__name__ in ("Unet", "UnetPlusPlus", "MAnet") and encoder_depth != 5:
            # smp insists on one decoder width per encoder stage
            kwargs["decoder_channels"] = _SMP_UNET_DECODER_CHANNELS[-encoder_depth:]
        try:
            self.model = smp.create_model(
                arch_class.__name__,
                encoder_name=encoder_name,
                encoder_weights=None,
                in_channels=in_channels,
                classes=num_classes,
                **kwargs,
            )
        except (KeyError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"smp could not build arch={arch_class.__name__} encoder_name={encoder_name} "
                f"encoder_depth={encoder_depth} decoder_channels={decoder_channels}: {error}"
            ) from error
        self.arch = arch_class.__name__
        self.encoder_name = encoder_name
        self.encoder_depth = encoder_depth
        output_stride = int(getattr(self.model.encoder, "output_stride", 1))
        self.required_multiple: int = max(2**encoder_depth, output_stride)
        self.in_channels, self.num_classes = in_channels, num_classes
        size = max(64, 2 * self.required_multiple)  # large enough for 5x5 kernels at stride 32
        #: encoder stages the output does not depend on (ResNet ``layer4`` at depth 4)
        self.dropped_modules: list[str] = drop_unused_modules(
            self.model, torch.zeros(1, in_channels, size, size)
        )

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.required_multiple)
        logits = self.model(x)
        if logits.shape[-2:] != x.shape[-2:]:
            # e.g. PSPNet, whose fixed ``upsampling=8`` only matches ``encoder_depth=3``
            raise ValueError(
                f"smp {self.arch} with encoder_depth={self.encoder_depth} returned logits of "
                f"size {tuple(logits.shape[-2:])} for an input of {tuple(x.shape[-2:])}; the "
                "suite needs the input size: choose the arch's own encoder_depth"
            )
        return logits
