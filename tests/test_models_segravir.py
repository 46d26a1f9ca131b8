"""SegRAVIR (000 section IV-A): shapes, exact size, both streams, head replacement."""

from __future__ import annotations

import pytest
import torch

from retina_lightning.models.segravir import SegRAVIR
from retina_lightning.types import SegOutput


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _unit(c_in: int, c_out: int) -> int:
    """3x3 conv (or transposed conv) with bias + BatchNorm gamma/beta."""
    return 9 * c_in * c_out + c_out + 2 * c_out


def _segravir_params(c_in: int, k: int, base: int, reconstruction: bool = True) -> int:
    w = [base * 2**i for i in range(5)]
    res = lambda c: 2 * _unit(c, c)  # noqa: E731
    encoder = _unit(c_in, w[0]) + sum(res(w[i]) + _unit(w[i], w[i + 1]) for i in range(4))
    bottleneck = 3 * res(w[4])
    decoder = sum(_unit(w[i + 1], w[i]) + res(w[i]) for i in range(4))
    seg_head = 2 * _unit(w[0], w[0]) + w[0] * k + k
    recon = decoder + w[0] * c_in + c_in
    return encoder + bottleneck + decoder + seg_head + (recon if reconstruction else 0)


def test_segravir_parameter_counts() -> None:
    # default (3 channels, 1 logit) and the paper's RAVIR setting (infrared gray, 3 classes)
    assert _n_params(SegRAVIR()) == _segravir_params(3, 1, 16) == 5_906_084
    assert _n_params(SegRAVIR(1, 3)) == _segravir_params(1, 3, 16) == 5_905_796
    assert _n_params(SegRAVIR(1, 3, base_channels=4, reconstruction=False)) == _segravir_params(
        1, 3, 4, reconstruction=False
    )
    model = SegRAVIR()
    assert model.required_multiple == 16
    assert len(model.bottleneck) == 3  # "3 consecutive residual blocks" at the lowest resolution


def test_segravir_shapes_and_backward_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = SegRAVIR(3, 3, base_channels=4)
    x = torch.rand(2, 3, 64, 48)
    out = model(x)
    assert isinstance(out, SegOutput)
    assert out.main.shape == (2, 3, 64, 48)
    assert out.recon is not None and out.recon.shape == (2, 3, 64, 48)
    assert out.aux == []
    assert (out.recon >= 0).all()  # final ReLU of the reconstruction stream
    loss = torch.nn.functional.cross_entropy(out.main, torch.randint(0, 3, (2, 64, 48)))
    (loss + 1e-3 * (out.recon - x).square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_segravir_reconstruction_loss_trains_encoder_and_recon_decoder_only() -> None:
    """The L2 term (eq. 5) regularises the shared encoder through the auxiliary decoder and
    leaves the segmentation decoder untouched."""
    torch.manual_seed(0)
    model = SegRAVIR(1, 3, base_channels=4)
    x = torch.rand(1, 1, 32, 32)
    out = model(x)
    assert out.recon is not None
    (out.recon - x).square().sum().backward()
    for name, p in model.named_parameters():
        if name.startswith(("seg_decoder.", "seg_convs.", "head.")):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_segravir_without_reconstruction_stream() -> None:
    model = SegRAVIR(1, 3, base_channels=4, reconstruction=False).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 32, 32))
    assert out.recon is None and out.main.shape == (1, 3, 32, 32)


def test_segravir_eval_is_deterministic_and_train_has_dropout() -> None:
    torch.manual_seed(0)
    model = SegRAVIR(1, 3, base_channels=4, dropout=0.5)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x).main, model(x).main
        model.eval()
        c, d = model(x).main, model(x).main
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


def test_segravir_replace_head_keeps_every_other_weight() -> None:
    """3-class RAVIR model -> 1-logit vessel model (000 section IV-D)."""
    torch.manual_seed(0)
    model = SegRAVIR(1, 3, base_channels=4).double()
    model(torch.rand(2, 1, 32, 32, dtype=torch.float64))  # move BN running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.replace_head(1)
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        if key.startswith("head."):
            continue
        assert torch.equal(after[key], value), key
    assert after["head.weight"].shape == (1, 4, 1, 1)
    assert before["head.weight"].shape == (3, 4, 1, 1)
    assert model.head.weight.dtype == torch.float64
    assert model.num_classes == 1
    # the fresh head is a registered parameter, so an optimizer built now will train it
    assert any(p is model.head.weight for p in model.parameters())
    assert _n_params(model) == _segravir_params(1, 1, 4)
    out = model.eval()(torch.rand(1, 1, 32, 32, dtype=torch.float64))
    assert out.main.shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        model.replace_head(0)


def test_segravir_rejects_bad_inputs() -> None:
    model = SegRAVIR(1, 3, base_channels=4)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 1, 40, 32))
    with pytest.raises(ValueError, match="built for 1 input channels"):
        model(torch.rand(1, 3, 32, 32))


def test_segravir_whole_drive_image_padded() -> None:
    """DRIVE 584x565 padded to multiples of 16 -> 592x576."""
    model = SegRAVIR(3, 3, base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 592, 576))
    assert out.main.shape == (1, 3, 592, 576)
    assert out.recon is not None and out.recon.shape == (1, 3, 592, 576)
