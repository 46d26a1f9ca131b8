"""patch2image networks (004 section 6.2): exact paper weight counts, patch -> image transfer."""

from __future__ import annotations

import pytest
import torch
from alignment import assert_whole_drive_image_aligned

from retina_lightning.models.patch2image import DenseNetP2I, LightNet, MiniUNet


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def _light_params(c_in: int, k: int) -> int:
    # 7 layers 8 -> 8 (incl. the first transposed conv), then 8 -> 32 (transposed), 32 -> 8
    return _conv(c_in, 8) + 7 * _conv(8, 8) + _conv(8, 32) + _conv(32, 8) + _conv(8, k)


def _mini_unet_params(c_in: int, k: int) -> int:
    enc = _conv(c_in, 16) + _conv(16, 16) + _conv(16, 32) + _conv(32, 32)  # level 0 + down
    enc += 2 * _conv(32, 32) + _conv(32, 64) + _conv(64, 64)  # level 1 + down
    bottom = 3 * _conv(64, 64)
    dec = _conv(64, 64) + _conv(128, 32) + 2 * _conv(32, 32)  # up, concat 64 + 64
    dec += _conv(32, 32) + _conv(64, 16) + 2 * _conv(16, 16)  # up, concat 32 + 32
    return enc + bottom + dec + _conv(16, k)


def _dense_params(c_in: int, k: int, omega: int = 8, growth: int = 2, layers=(6, 12)) -> int:
    """BatchNorm = 2 weights per channel; convolutions inside the network have no bias."""
    total = _conv(c_in, omega, 7, bias=False) + 2 * omega
    channels = omega
    for _ in range(2):  # down path, then up path with the same blocks
        for n in layers:
            for _ in range(n):
                delta = 4 * omega
                total += 2 * channels + _conv(channels, delta, 1, False)
                total += 2 * delta + _conv(delta, omega, 3, False)
                channels += omega
                omega += growth
            pi = omega // 2
            total += 2 * channels + _conv(channels, pi, 1, False)
            channels = omega = pi
    return total + 2 * channels + _conv(channels, k)


def test_paper_weight_counts_gray_input() -> None:
    """004 section 6.2: Light 8,889, Mini-Unet 316,657, Dense 1,032,588 (1 gray channel)."""
    assert _n_params(LightNet(1, 1)) == _light_params(1, 1) == 8_889
    assert _n_params(MiniUNet(1, 1)) == _mini_unet_params(1, 1) == 316_657
    assert _n_params(DenseNetP2I(1, 1)) == _dense_params(1, 1) == 1_032_588


def test_weight_counts_colour_input_defaults() -> None:
    assert _n_params(LightNet()) == _light_params(3, 1) == 9_033
    assert _n_params(MiniUNet()) == _mini_unet_params(3, 1) == 316_945
    assert _n_params(DenseNetP2I()) == _dense_params(3, 1) == 1_033_372
    other = DenseNetP2I(3, 2, omega=4, growth=1, block_layers=(2, 3, 1))
    assert _n_params(other) == _dense_params(3, 2, omega=4, growth=1, layers=(2, 3, 1))
    assert other.required_multiple == 8


@pytest.mark.parametrize(
    "factory",
    [
        lambda: LightNet(1, 1),
        lambda: MiniUNet(1, 1),
        lambda: DenseNetP2I(1, 1, omega=4, block_layers=(2, 3)),
    ],
    ids=["light", "mini_unet", "dense_small"],
)
def test_same_weights_run_on_patch_and_image_and_train(factory) -> None:
    torch.manual_seed(0)
    model = factory()
    assert model.required_multiple == 4
    patch = model(torch.rand(1, 1, 32, 32))
    assert isinstance(patch, torch.Tensor) and patch.shape == (1, 1, 32, 32)
    image = model(torch.rand(2, 1, 64, 92))
    assert image.shape == (2, 1, 64, 92)
    (patch.square().mean() + image.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("factory", "margin"),
    [(lambda: LightNet(1, 1), 16), (lambda: MiniUNet(1, 1, base_channels=4), 36)],
    ids=["light", "mini_unet"],
)
def test_patch_prediction_equals_image_prediction_inside(factory, margin: int) -> None:
    """Phase 3 of 004 section 5.2: the patch network applied to the whole image gives, away
    from the patch borders (farther than the receptive-field radius), exactly the patch's
    prediction (offset a multiple of the total stride 4)."""
    torch.manual_seed(0)
    model = factory().eval()
    image = torch.rand(1, 1, 160, 160)
    top = 32
    size = 2 * margin + 24
    with torch.no_grad():
        whole = model(image)
        patch = model(image[..., top : top + size, top : top + size])
    inner = slice(margin, size - margin)
    shifted = slice(top + margin, top + size - margin)
    torch.testing.assert_close(patch[..., inner, inner], whole[..., shifted, shifted])


def test_dense_structure_follows_omega_delta_pi() -> None:
    """Omega = 8, +2 after each concatenation; Delta = 4 Omega; Pi = Omega / 2."""
    model = DenseNetP2I(1, 1)
    first_block = model.stages[0]
    assert [layer.body[2].out_channels for layer in first_block] == [32, 40, 48, 56, 64, 72]
    assert [layer.body[5].out_channels for layer in first_block] == [8, 10, 12, 14, 16, 18]
    assert first_block.out_channels == 8 + sum(range(8, 20, 2)) == 86
    assert model.stages[1][2].out_channels == 20 // 2  # transition: Pi = int(0.5 * 20)


def test_rejects_size_not_multiple_of_four() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        LightNet(1, 1)(torch.rand(1, 1, 34, 32))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: LightNet(1, 1),
        lambda: MiniUNet(1, 1, base_channels=4),
        lambda: DenseNetP2I(1, 1, omega=2, block_layers=(1, 1)),
    ],
    ids=["light", "mini_unet_small", "dense_small"],
)
def test_whole_drive_image(factory) -> None:
    """DRIVE 584x565 padded to multiples of 4 -> 584x568 (the paper resizes to 584x568)."""
    torch.manual_seed(0)
    model = factory().eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 584, 568))
    assert out.shape == (1, 1, 584, 568)
    assert_whole_drive_image_aligned(model, 1, padded=(584, 568))
