"""R2U-Net (001 section 3.2): the RCL with separate (001's equation) or shared feed-forward /
recurrent weights, weight sharing over time steps, RRCNN residual, shapes."""

from __future__ import annotations

import pytest
import torch
from alignment import assert_whole_drive_image_aligned

from retina_lightning.models.r2unet import R2UNet, RecurrentConv, RRCNNBlock


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _rcl_params(c: int, bn: bool = True, shared: bool = True) -> int:
    """The feed-forward 3x3 conv w_f (no bias under BN) + BN weight and bias, and with separate
    weights the recurrent 3x3 conv w_r (never a bias: b is w_f's), whatever ``t >= 1``."""
    return 9 * c * c + (2 * c if bn else c) + (0 if shared else 9 * c * c)


def _rrcnn_params(c_in: int, c_out: int, bn: bool = True, shared: bool = True) -> int:
    return c_in * c_out + c_out + 2 * _rcl_params(c_out, bn, shared)


def _r2unet_params(
    c_in: int, k: int, base: int, depth: int, bn: bool = True, shared: bool = True
) -> int:
    widths = [base * 2**i for i in range(depth + 1)]
    total = _rrcnn_params(c_in, widths[0], bn, shared)
    total += sum(_rrcnn_params(widths[i], widths[i + 1], bn, shared) for i in range(depth))
    for i in range(depth):  # 2x2 transposed conv (with bias) + RRCNN on the concatenation
        total += 4 * widths[i + 1] * widths[i] + widths[i]
        total += _rrcnn_params(2 * widths[i], widths[i], bn, shared)
    return total + widths[0] * k + k


def test_default_parameter_count_and_multiple() -> None:
    model = R2UNet()
    assert _n_params(model) == _r2unet_params(3, 1, 16, 3) == 554_897
    assert model.required_multiple == 8
    # three encoder blocks + bottleneck, three decoder blocks (001 section 5.3)
    assert len(model.encoder) == 4 and len(model.decoder) == 3


def test_drive_recipe_parameter_counts_both_variants() -> None:
    """At the widths of configs/drive/r2unet.yaml (gray input, 16, depth 3, t 2): 1,043,313
    with 001's separate w_f / w_r (the recipe), 554,865 with one shared convolution."""
    separate = R2UNet(1, 1, base_channels=16, depth=3, t=2, shared_weights=False)
    shared = R2UNet(1, 1, base_channels=16, depth=3, t=2, shared_weights=True)
    assert _n_params(separate) == _r2unet_params(1, 1, 16, 3, shared=False) == 1_043_313
    assert _n_params(shared) == _r2unet_params(1, 1, 16, 3) == 554_865
    # the difference is one 3x3 C -> C convolution per RCL: 2 RCLs in each of the 7 blocks
    widths = [16, 32, 64, 128, 64, 32, 16]
    assert sum(2 * 9 * c * c for c in widths) == 1_043_313 - 554_865
    # the short variant's widths (configs/drive/r2unet_short.yaml, base 8)
    assert _n_params(R2UNet(1, 1, base_channels=8, shared_weights=False)) == 261_305
    assert _n_params(R2UNet(1, 1, base_channels=8, shared_weights=True)) == 139_193


def test_shared_weights_is_the_class_default() -> None:
    """The class default stays the shared convolution (checkpoints trained before the option
    existed load unchanged); the recipe asks for the separate weights explicitly."""
    assert _n_params(R2UNet()) == _n_params(R2UNet(shared_weights=True))
    assert all(m.recurrent is None for m in R2UNet().modules() if isinstance(m, RecurrentConv))


def test_parameter_count_other_configs() -> None:
    assert _n_params(R2UNet(1, 3, base_channels=8, depth=2)) == _r2unet_params(1, 3, 8, 2)
    assert _n_params(R2UNet(base_channels=4, depth=4, batch_norm=False)) == _r2unet_params(
        3, 1, 4, 4, bn=False
    )
    assert _n_params(
        R2UNet(1, 3, base_channels=8, depth=2, shared_weights=False)
    ) == _r2unet_params(1, 3, 8, 2, shared=False)
    assert _n_params(
        R2UNet(base_channels=4, depth=4, batch_norm=False, shared_weights=False)
    ) == _r2unet_params(3, 1, 4, 4, bn=False, shared=False)
    assert R2UNet(depth=2).required_multiple == 4


@pytest.mark.parametrize("t", [0, 1, 2, 5])
def test_parameter_count_independent_of_t(t: int) -> None:
    assert _n_params(R2UNet(base_channels=8, t=t)) == _r2unet_params(3, 1, 8, 3)
    assert _n_params(RecurrentConv(6, t=t)) == _rcl_params(6)
    # separate weights: w_r exists from t = 1 on (t = 0 is a plain convolution, as shared)
    separate = R2UNet(base_channels=8, t=t, shared_weights=False)
    assert _n_params(separate) == _r2unet_params(3, 1, 8, 3, shared=t == 0)
    assert _n_params(RecurrentConv(6, t=t, shared_weights=False)) == _rcl_params(6, shared=t == 0)


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


@pytest.mark.parametrize("bn", [True, False])
def test_rcl_separate_weights_unroll(bn: bool) -> None:
    """001's equation, t = 2: x0 = g(w_f x + b), x1 = g(w_f x + b + w_r x0),
    x2 = g(w_f x + b + w_r x1), with g = BN + ReLU (ReLU alone without BN)."""
    torch.manual_seed(0)
    rcl = RecurrentConv(4, t=2, batch_norm=bn, shared_weights=False).eval()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in rcl.modules()) == 2
    assert rcl.recurrent is not None and rcl.recurrent.bias is None
    if bn:  # make BN non-trivial so that the check sees where it is applied
        rcl.conv[1].running_mean.uniform_(-0.5, 0.5)
        rcl.conv[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 4, 8, 8)
    w_f, w_r = rcl.conv[0], rcl.recurrent
    g = (lambda z: torch.relu(rcl.conv[1](z))) if bn else torch.relu
    with torch.no_grad():
        x0 = g(w_f(x))
        x1 = g(w_f(x) + w_r(x0))
        x2 = g(w_f(x) + w_r(x1))
        torch.testing.assert_close(rcl(x), x2)


def test_rcl_separate_weights_call_counts() -> None:
    """w_f once (its input does not change over time), w_r once per recurrent step."""
    rcl = RecurrentConv(2, t=3, shared_weights=False)
    calls: dict[str, int] = {"f": 0, "r": 0}
    rcl.conv[0].register_forward_hook(lambda *_: calls.__setitem__("f", calls["f"] + 1))
    rcl.recurrent.register_forward_hook(lambda *_: calls.__setitem__("r", calls["r"] + 1))
    rcl(torch.randn(1, 2, 4, 4))
    assert calls == {"f": 1, "r": 3}


def _tie_recurrent_to_feed_forward(separate: torch.nn.Module, shared: torch.nn.Module) -> None:
    """Load the shared model's weights into the separate one and set every w_r := w_f."""
    missing, unexpected = separate.load_state_dict(shared.state_dict(), strict=False)
    assert not unexpected and missing and all(k.endswith("recurrent.weight") for k in missing)
    with torch.no_grad():
        for m in separate.modules():
            if isinstance(m, RecurrentConv) and m.recurrent is not None:
                m.recurrent.weight.copy_(m.conv[0].weight)


@pytest.mark.parametrize("bn", [True, False])
def test_separate_with_w_r_equal_w_f_is_the_shared_model(bn: bool) -> None:
    """The two variants differ only in w_r: with w_r := w_f the separate-weights R2U-Net
    gives the shared one's output (linearity: w (x + s) + b = w x + b + w s); with its own
    w_r it does not."""
    torch.manual_seed(0)
    shared = R2UNet(1, 1, base_channels=4, depth=2, batch_norm=bn, shared_weights=True)
    separate = R2UNet(1, 1, base_channels=4, depth=2, batch_norm=bn, shared_weights=False)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        separate.load_state_dict(shared.state_dict(), strict=False)
        shared.eval()
        separate.eval()
        own_w_r = separate(x)
        _tie_recurrent_to_feed_forward(separate, shared)
        torch.testing.assert_close(separate(x), shared(x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(own_w_r, shared(x), rtol=1e-3, atol=1e-4)


def test_variants_train_differently() -> None:
    """From the same tied start (w_r = w_f), one Adam step moves w_f and w_r apart in the
    separate model: its second forward pass no longer matches the shared model's."""
    torch.manual_seed(0)
    shared = R2UNet(1, 1, base_channels=4, depth=2, shared_weights=True)
    separate = R2UNet(1, 1, base_channels=4, depth=2, shared_weights=False)
    _tie_recurrent_to_feed_forward(separate, shared)
    x, y = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.8).float()
    for model in (shared, separate):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    rcl = next(m for m in separate.modules() if isinstance(m, RecurrentConv))
    assert not torch.allclose(rcl.recurrent.weight, rcl.conv[0].weight)
    shared.eval()
    separate.eval()
    with torch.no_grad():
        assert not torch.allclose(separate(x), shared(x), rtol=1e-3, atol=1e-4)


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


@pytest.mark.parametrize("shared", [True, False])
def test_forward_backward_reaches_every_parameter(shared: bool) -> None:
    torch.manual_seed(0)
    model = R2UNet(3, 2, base_channels=4, depth=3, shared_weights=shared)
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
    torch.manual_seed(0)
    model = R2UNet(base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 584, 568))
    assert out.shape == (1, 1, 584, 568)
    assert_whole_drive_image_aligned(model, 3, padded=(584, 568))
