"""R2U-Net (001 section 3.2): RCL weight sharing over time steps, RRCNN residual, shapes."""

from __future__ import annotations

import pytest
import torch

from retina_lightning.models.r2unet import R2UNet, RecurrentConv, RRCNNBlock


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _rcl_params(c: int, bn: bool = True) -> int:
    """One shared 3x3 conv (no bias under BN) + BN weight and bias, whatever ``t``."""
    return 9 * c * c + (2 * c if bn else c)


def _rrcnn_params(c_in: int, c_out: int, bn: bool = True) -> int:
    return c_in * c_out + c_out + 2 * _rcl_params(c_out, bn)


def _r2unet_params(c_in: int, k: int, base: int, depth: int, bn: bool = True) -> int:
    widths = [base * 2**i for i in range(depth + 1)]
    total = _rrcnn_params(c_in, widths[0], bn)
    total += sum(_rrcnn_params(widths[i], widths[i + 1], bn) for i in range(depth))
    for i in range(depth):  # 2x2 transposed conv (with bias) + RRCNN on the concatenation
        total += 4 * widths[i + 1] * widths[i] + widths[i]
        total += _rrcnn_params(2 * widths[i], widths[i], bn)
    return total + widths[0] * k + k


def test_default_parameter_count_and_multiple() -> None:
    model = R2UNet()
    assert _n_params(model) == _r2unet_params(3, 1, 16, 3) == 554_897
    assert model.required_multiple == 8
    # three encoder blocks + bottleneck, three decoder blocks (001 section 5.3)
    assert len(model.encoder) == 4 and len(model.decoder) == 3


def test_parameter_count_other_configs() -> None:
    assert _n_params(R2UNet(1, 3, base_channels=8, depth=2)) == _r2unet_params(1, 3, 8, 2)
    assert _n_params(R2UNet(base_channels=4, depth=4, batch_norm=False)) == _r2unet_params(
        3, 1, 4, 4, bn=False
    )
    assert R2UNet(depth=2).required_multiple == 4


@pytest.mark.parametrize("t", [0, 1, 2, 5])
def test_parameter_count_independent_of_t(t: int) -> None:
    assert _n_params(R2UNet(base_channels=8, t=t)) == _r2unet_params(3, 1, 8, 3)
    assert _n_params(RecurrentConv(6, t=t)) == _rcl_params(6)


def test_rcl_unrolls_one_conv() -> None:
    """t = 2: x0 = f(x), x1 = f(x + x0), x2 = f(x + x1), with the single conv unit f."""
    torch.manual_seed(0)
    rcl = RecurrentConv(4, t=2).eval()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in rcl.modules()) == 1
    x = torch.randn(1, 4, 8, 8)
    f = rcl.conv
    with torch.no_grad():
        expected = f(x + f(x + f(x)))
        torch.testing.assert_close(rcl(x), expected)
        # t = 0 is the plain feed-forward conv
        rcl.t = 0
        torch.testing.assert_close(rcl(x), f(x))


def test_rcl_conv_called_t_plus_one_times() -> None:
    rcl = RecurrentConv(2, t=3)
    calls: list[int] = []
    rcl.conv.register_forward_hook(lambda *_: calls.append(1))
    rcl(torch.randn(1, 2, 4, 4))
    assert len(calls) == 4


def test_rrcnn_residual_path() -> None:
    """x_{l+1} = x_l + F(x_l): with the RCL output forced to zero the block is its 1x1 conv."""
    torch.manual_seed(0)
    block = RRCNNBlock(3, 5, t=2, batch_norm=False).eval()
    x = torch.randn(2, 3, 6, 6)
    last_conv = block.rcl[1].conv[0]
    with torch.no_grad():
        last_conv.weight.zero_()
        last_conv.bias.fill_(-1.0)  # ReLU(-1) = 0 -> F(x_l) = 0
        torch.testing.assert_close(block(x), block.conv1x1(x))


def test_output_changes_with_t_for_the_same_weights() -> None:
    torch.manual_seed(0)
    models = [R2UNet(base_channels=4, t=t).eval() for t in (1, 2, 3)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())  # same keys: t adds no parameters
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        outs = [m(x) for m in models]
    assert not torch.allclose(outs[0], outs[1])
    assert not torch.allclose(outs[1], outs[2])


def test_forward_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = R2UNet(3, 2, base_channels=4, depth=3)
    x = torch.randn(2, 3, 32, 48)
    out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 2, 32, 48)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forward_1x3x64x64() -> None:
    model = R2UNet(base_channels=4)
    out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1, 64, 64)


def test_rejects_size_not_multiple_and_bad_args() -> None:
    model = R2UNet(base_channels=4, depth=3)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 3, 36, 40))
    with pytest.raises(ValueError, match="depth must be >= 1"):
        R2UNet(depth=0)
    with pytest.raises(ValueError, match="t must be >= 0"):
        R2UNet(t=-1)


def test_whole_drive_image_padded() -> None:
    """DRIVE 584x565 padded to multiples of 8 -> 584x568."""
    model = R2UNet(base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 584, 568))
    assert out.shape == (1, 1, 584, 568)
