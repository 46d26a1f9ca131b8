"""SegRAVIR (000 section IV-A): shapes, exact size, both streams, head replacement."""

from __future__ import annotations

import pytest
import torch
from alignment import assert_whole_drive_image_aligned

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
    torch.manual_seed(0)
    model = SegRAVIR(3, 3, base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 592, 576))
    assert out.main.shape == (1, 3, 592, 576)
    assert out.recon is not None and out.recon.shape == (1, 3, 592, 576)
    assert_whole_drive_image_aligned(model, 3, padded=(592, 576))


# --------------------------------------------------------------------------------------------
# the reconstruction stream's weight in the loss (000 eq. 5, lambda_3 = 0.001)

#: the parameters both streams share: stem, encoder levels, down-sampling, bottleneck
SHARED_ENCODER = ("stem.", "enc_res.", "down.", "bottleneck.")


def _fundus_batch(in_channels: int, num_classes: int, size: int = 64, n: int = 2):
    """``n`` synthetic fundus images in ``[0, 1]`` (the configs' ``normalize: none``) with
    artery / vein labels (``num_classes = 3``) or vessel labels (``num_classes = 1``)."""
    import numpy as np

    from retina_lightning.data.synthetic import generate_fundus

    images, labels = [], []
    for seed in range(n):
        sample = generate_fundus(seed, size, size)
        image = torch.from_numpy(sample.image).float().permute(2, 0, 1) / 255.0
        images.append(image.mean(0, keepdim=True) if in_channels == 1 else image)
        label = sample.av if num_classes == 3 else sample.label
        labels.append(torch.from_numpy(label.astype(np.int64)))
    return torch.stack(images), torch.stack(labels)


def _recon_gradient_share(in_channels: int, num_classes: int, reduction: str | None) -> float:
    """``||g_L2|| / (||g_L2|| + ||g_Dice+CE||)`` at initialisation: ``g`` is the gradient of
    the weighted term of SegRAVIRLoss on the shared encoder's parameters (one forward pass in
    train mode; ``reduction=None`` is the loss's default)."""
    from retina_lightning.losses import SegRAVIRLoss

    x, y = _fundus_batch(in_channels, num_classes)
    torch.manual_seed(0)
    model = SegRAVIR(in_channels, num_classes, base_channels=4).train()
    shared = [p for n, p in model.named_parameters() if n.startswith(SHARED_ENCODER)]
    out = model(x)
    loss = SegRAVIRLoss() if reduction is None else SegRAVIRLoss(recon_reduction=reduction)
    total = loss(out, y, image=x)
    # the two terms again, with their graphs; they add up to the loss's total
    seg = loss.dice_ce(out.main, y)
    sq = (out.recon - x).square()
    recon = sq.mean() if loss.recon_reduction == "mean" else sq.flatten(1).sum(1).mean()
    weighted = loss.recon_weight * recon
    torch.testing.assert_close((seg + weighted).detach(), total.detach())
    g_seg = torch.autograd.grad(seg, shared, retain_graph=True)
    g_rec = torch.autograd.grad(weighted, shared)
    n_seg = torch.sqrt(sum(g.square().sum() for g in g_seg))
    n_rec = torch.sqrt(sum(g.square().sum() for g in g_rec))
    assert n_seg > 0 and n_rec > 0
    return (n_rec / (n_rec + n_seg)).item()


@pytest.mark.parametrize(
    ("in_channels", "num_classes"), [(1, 3), (3, 1)], ids=["ravir_av", "drive_binary"]
)
def test_reconstruction_term_has_a_substantial_gradient_share_on_the_shared_encoder(
    in_channels: int, num_classes: int
) -> None:
    """000 eq. (5) is a squared L2 norm (a sum per image); with lambda_3 = 0.001 the default
    reduction must let the auxiliary stream act on the shared encoder. The per-pixel mean
    (the former default) gives it a negligible share. Measured (64 px synthetic fundus, batch
    2, base_channels 4, seed 0): sum 0.90 (RAVIR-like) / 0.96 (DRIVE-like), mean 0.0023 /
    0.0021; on 256 px patches (000 sec. V-A) with base_channels 16, "sum" > 0.99, "mean" < 0.02."""
    default = _recon_gradient_share(in_channels, num_classes, None)
    mean = _recon_gradient_share(in_channels, num_classes, "mean")
    print(f"L2 share of the shared-encoder gradient: default (sum) {default:.4f}, mean {mean:.5f}")
    assert default > 0.5  # the L2 gradient at least matches the segmentation gradient
    assert mean < 0.02
