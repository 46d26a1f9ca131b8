"""U-Net baseline (unet.py) and the segmentation_models_pytorch wrapper (smp.py)."""

from __future__ import annotations

import socket

import pytest
import segmentation_models_pytorch as smp
import segmentation_models_pytorch.encoders as smp_encoders
import torch
from alignment import assert_whole_drive_image_aligned
from torch import nn

from retina_lightning.models.smp import SmpModel, drop_unused_modules
from retina_lightning.models.unet import UNet


def _double_conv_params(c_in: int, c_out: int, batch_norm: bool = True) -> int:
    """Two 3x3 convs; with BN the convs have no bias and each BN has weight + bias."""
    per_layer_extra = 2 * c_out if batch_norm else c_out
    return 9 * c_in * c_out + 9 * c_out * c_out + 2 * per_layer_extra


def _unet_params(c_in: int, k: int, base: int, depth: int, bn: bool = True) -> int:
    widths = [base * 2**i for i in range(depth + 1)]
    total = _double_conv_params(c_in, widths[0], bn)
    total += sum(_double_conv_params(widths[i], widths[i + 1], bn) for i in range(depth))
    for i in range(depth):  # 2x2 transposed conv (with bias) + DoubleConv on the concatenation
        total += 4 * widths[i + 1] * widths[i] + widths[i]
        total += _double_conv_params(2 * widths[i], widths[i], bn)
    return total + widths[0] * k + k


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_unet_default_parameter_count() -> None:
    model = UNet()
    assert _n_params(model) == _unet_params(3, 1, 32, 4) == 7_763_041
    assert model.required_multiple == 16


def test_unet_parameter_count_other_configs() -> None:
    assert _n_params(UNet(1, 3, base_channels=8, depth=2)) == _unet_params(1, 3, 8, 2)
    assert _n_params(UNet(base_channels=8, depth=3, batch_norm=False)) == _unet_params(
        3, 1, 8, 3, bn=False
    )
    # bilinear: the 2x2 transposed conv (4*c_in*c_out + c_out) becomes a 1x1 conv (c_in*c_out
    # + c_out), i.e. 3 * c_in * c_out fewer weights per level
    widths = [8, 16, 32]
    saved = sum(3 * widths[i + 1] * widths[i] for i in range(2))
    assert (
        _n_params(UNet(base_channels=8, depth=2, bilinear=True)) == _unet_params(3, 1, 8, 2) - saved
    )


@pytest.mark.parametrize("bilinear", [False, True])
def test_unet_forward_backward_reaches_every_parameter(bilinear: bool) -> None:
    torch.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=3, dropout=0.1, bilinear=bilinear)
    x = torch.randn(2, 3, 32, 48)
    out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 2, 32, 48)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unet_rejects_size_not_multiple() -> None:
    model = UNet(base_channels=4, depth=3)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 3, 36, 40))


def test_unet_is_translation_equivariant_in_eval() -> None:
    """Same-padding convs: the centre of a shifted image gives the shifted centre prediction
    (shift by 2**depth so the pooling grid is aligned)."""
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        b = model(torch.roll(x, shifts=(4, 4), dims=(2, 3)))
    # the receptive field is well under 20 pixels, so the interior is unaffected by borders
    torch.testing.assert_close(b[..., 24:40, 24:40], a[..., 20:36, 20:36])


def test_unet_whole_drive_image_padded() -> None:
    """DRIVE 584x565 padded to multiples of 16 -> 592x576."""
    torch.manual_seed(0)
    model = UNet(base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 592, 576))
    assert out.shape == (1, 1, 592, 576)
    assert_whole_drive_image_aligned(model, 3, padded=(592, 576))


# --- SmpModel ----------------------------------------------------------------------------


def _smp_unet_decoder_params(skips: list[int], widths: list[int], head_in: int) -> int:
    """smp U-Net decoder: per block two bias-free 3x3 convs + BN on [upsampled, skip]."""
    total, c_in = 0, head_in
    for skip, c_out in zip(skips, widths):
        total += 9 * (c_in + skip) * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out
        c_in = c_out
    return total


def test_smp_default_parameter_count() -> None:
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    resnet18_without_fc = _n_params(reference) - _n_params(reference.fc)
    model = SmpModel()
    assert model.required_multiple == 32
    assert _n_params(model.model.encoder) == resnet18_without_fc == 11_176_512
    decoder = _smp_unet_decoder_params([256, 128, 64, 64, 0], [256, 128, 64, 32, 16], 512)
    head = 9 * 16 * 1 + 1  # smp segmentation head: 3x3 conv 16 -> 1 with bias
    assert _n_params(model) == resnet18_without_fc + decoder + head == 14_328_209


def test_smp_forward_backward_small_input() -> None:
    torch.manual_seed(0)
    model = SmpModel(in_channels=1, num_classes=3, encoder_depth=3)
    assert model.required_multiple == 8
    out = model(torch.randn(2, 1, 24, 40))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, 24, 40)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_smp_drops_encoder_stages_beyond_depth() -> None:
    """smp builds ResNet layer4 even at encoder_depth 4; it is replaced so that every
    parameter trains (DDP-safe) and the count is the real one."""
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    encoder = _n_params(reference) - _n_params(reference.fc) - _n_params(reference.layer4)
    model = SmpModel(encoder_depth=4)
    assert model.dropped_modules == ["encoder.layer4"]
    assert model.required_multiple == 16
    # decoder_channels None at depth 4: smp's widths for the last 4 stages
    decoder = _smp_unet_decoder_params([128, 64, 64, 0], [128, 64, 32, 16], 256)
    assert _n_params(model) == encoder + decoder + 9 * 16 + 1 == 3_574_161
    explicit = SmpModel(encoder_depth=4, decoder_channels=[128, 64, 32, 16])
    assert _n_params(explicit) == _n_params(model)


def test_drop_unused_modules_freezes_when_replacing_would_change_the_output() -> None:
    class Offset(nn.Module):  # used, but outside the autograd graph
        def __init__(self) -> None:
            super().__init__()
            self.value = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.value.detach()

    model = nn.Sequential(nn.Conv2d(1, 1, 1), Offset())
    assert drop_unused_modules(model, torch.ones(1, 1, 2, 2)) == []
    assert isinstance(model[1], Offset)
    assert not model[1].value.requires_grad
    assert model[0].weight.requires_grad


def _forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(smp_encoders, "hf_hub_download", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_smp_never_downloads_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_network(monkeypatch)
    # the guard does catch a download of pretrained weights ...
    with pytest.raises(AssertionError, match="network access"):
        smp.create_model("Unet", encoder_name="resnet18", encoder_weights="imagenet")
    # ... and SmpModel makes none
    model = SmpModel(arch="FPN", encoder_name="resnet18")
    assert _n_params(model) > 0


def test_smp_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown smp arch 'Unet3'.*'UnetPlusPlus'"):
        SmpModel(arch="Unet3")
    with pytest.raises(ValueError, match=r"unknown smp encoder_name 'resnet19'.*'resnet18'"):
        SmpModel(encoder_name="resnet19")
    with pytest.raises(ValueError, match="takes no decoder_channels"):
        SmpModel(arch="Linknet", decoder_channels=[16])


def test_smp_rejects_configuration_changing_the_output_size() -> None:
    model = SmpModel(arch="PSPNet", encoder_depth=5).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="encoder_depth"):
        model(torch.randn(1, 3, 64, 64))


def test_smp_whole_drive_image_padded() -> None:
    """A 608x576 pass, and DRIVE 584x565 through the Inferer (multiples of 8 at encoder
    depth 3 -> 584x568)."""
    torch.manual_seed(0)
    model = SmpModel(encoder_depth=3, decoder_channels=[16, 8, 4]).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 608, 576))
    assert out.shape == (1, 1, 608, 576)
    assert model.required_multiple == 8  # encoder depth 3: the Inferer pads to 584x568
    assert_whole_drive_image_aligned(model, 3, padded=(584, 568))
