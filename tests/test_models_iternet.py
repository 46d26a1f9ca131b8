"""IterNet (paper 003, section 3): outputs, weight sharing, the three skip connections."""

from __future__ import annotations

import pytest
import torch
from alignment import assert_whole_drive_image_aligned
from torch import Tensor, nn

from retina_lightning.models.iternet import IterNet
from retina_lightning.types import SegOutput


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _block(c_in: int, c_out: int) -> int:
    """Two biased 3x3 convs (no BN)."""
    return 9 * c_in * c_out + c_out + 9 * c_out * c_out + c_out


def _module_params(c_in: int, k: int, base: int, depth: int) -> int:
    widths = [base * 2**i for i in range(depth + 1)]
    total = _block(c_in, widths[0]) + sum(_block(widths[i], widths[i + 1]) for i in range(depth))
    for i in range(depth):  # 2x2 transposed conv + block on the concatenation
        total += 4 * widths[i + 1] * widths[i] + widths[i] + _block(2 * widths[i], widths[i])
    return total + widths[0] * k + k  # 1x1 output layer


def _iternet_params(c_in: int, k: int, base: int, depth: int, mini: int, iterations: int) -> int:
    total = _module_params(c_in, k, base, depth)
    if iterations:
        total += _module_params(base, k, base, mini)
    # private 1x1 reduction of iteration j: (j + 1) * base -> base channels, with bias
    return total + sum((j + 1) * base * base + base for j in range(1, iterations + 1))


def test_default_parameter_count() -> None:
    model = IterNet()
    assert _n_params(model.base) == _module_params(3, 1, 32, 4) == 7_760_097
    assert model.mini_unet is not None
    assert _n_params(model.mini_unet) == _module_params(32, 1, 32, 2) == 474_881
    assert _n_params(model.dense_reductions) == 2080 + 3104 + 4128
    assert _n_params(model) == _iternet_params(3, 1, 32, 4, 2, 3) == 8_244_290
    assert model.required_multiple == 16


def test_parameter_count_grows_only_by_the_private_1x1_convs() -> None:
    counts = [_n_params(IterNet(base_channels=8, iterations=n)) for n in range(1, 5)]
    for n, count in enumerate(counts, start=1):
        assert count == _iternet_params(3, 1, 8, 4, 2, n)
    # iteration j adds exactly one 1x1 conv ((j + 1) * 8 -> 8 channels, with bias)
    assert [b - a for a, b in zip(counts, counts[1:])] == [(j + 1) * 64 + 8 for j in (2, 3, 4)]
    # N = 1 is the base UNet alone
    assert _n_params(IterNet(base_channels=8, iterations=0)) == _module_params(3, 1, 8, 4)


@pytest.mark.parametrize(("iterations", "num_classes"), [(3, 1), (1, 3), (0, 1)])
def test_outputs_are_all_n_predictions(iterations: int, num_classes: int) -> None:
    torch.manual_seed(0)
    model = IterNet(num_classes=num_classes, base_channels=4, iterations=iterations)
    for train in (True, False):
        model.train(train)
        out = model(torch.randn(2, 3, 32, 48))
        assert isinstance(out, SegOutput)
        assert len(out.aux) == iterations
        assert out.recon is None
        for pred in out.all_predictions():
            assert pred.shape == (2, num_classes, 32, 48)


def test_default_model_forward_backward() -> None:
    torch.manual_seed(0)
    model = IterNet()
    out = model(torch.randn(1, 3, 16, 16))
    assert [p.shape for p in out.all_predictions()] == [(1, 1, 16, 16)] * 4
    sum(p.mean() for p in out.all_predictions()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mini_unet_is_one_parameter_set_run_every_iteration() -> None:
    """Section 3: "all refinery modules share the same weights and biases"."""
    torch.manual_seed(0)
    model = IterNet(base_channels=4, iterations=3)
    assert model.mini_unet is not None
    conv = model.mini_unet.encoder[0][0]
    seen: list[tuple[int, int]] = []
    conv.register_forward_hook(lambda m, i, o: seen.append((id(m.weight), m.weight.data_ptr())))
    model(torch.randn(1, 3, 16, 16))
    assert len(seen) == 3
    assert len(set(seen)) == 1
    # no parameter is registered twice and no mini-UNet copy exists anywhere else
    ptrs = [p.data_ptr() for p in model.parameters()]
    assert len(ptrs) == len(set(ptrs))
    top_level = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert top_level == {"base", "mini_unet", "dense_reductions"}


def _reached(model: IterNet, loss: Tensor) -> dict[str, bool]:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {
        n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()
    }


def test_gradients_reach_shared_weights_from_every_refinery_output() -> None:
    """Each output has its own loss (eq. 1-2): Out 1 trains the base module only; Out k
    (k >= 2) trains the whole shared mini-UNet and the base UNet (but not the base's 1x1 output
    layer), and only the private 1x1 convs of iterations 1..k-1 lie on its path."""
    torch.manual_seed(0)
    # width 8, not 4: at width 4 a whole layer of ReLUs can be dead at initialisation
    model = IterNet(base_channels=8, iterations=3, dropout=0.0)
    preds = model(torch.randn(2, 3, 32, 32)).all_predictions()

    reached = _reached(model, preds[0].square().mean())
    assert all(r == n.startswith("base.") for n, r in reached.items()), reached

    for k in range(1, 4):  # Out k + 1, from the k-th application of the mini-UNet
        for name, r in _reached(model, preds[k].square().mean()).items():
            if name.startswith("dense_reductions."):
                assert r == (int(name.split(".")[1]) < k), (k, name)
            else:
                assert r == (not name.startswith("base.head.")), (k, name)


def test_skip_connections_from_base_and_among_mini_unets() -> None:
    """Skip connections 2 and 3 (section 3): the 1x1 conv of iteration k sees the base
    UNet's first-layer feature followed by the first-layer features of mini-UNets 1..k."""
    torch.manual_seed(0)
    c = 4
    model = IterNet(base_channels=c, iterations=3, dropout=0.0)
    assert model.mini_unet is not None
    firsts: list[Tensor] = []
    reduced_inputs: list[Tensor] = []
    second_last: list[Tensor] = []
    model.base.encoder[0].register_forward_hook(lambda m, i, o: firsts.append(o.clone()))
    model.mini_unet.encoder[0].register_forward_hook(lambda m, i, o: firsts.append(o.clone()))
    model.mini_unet.encoder[0].register_forward_hook(
        lambda m, i, o: second_last.append(i[0].clone())
    )
    for reduce in model.dense_reductions:
        reduce.register_forward_hook(lambda m, i, o: reduced_inputs.append(i[0].clone()))
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    assert len(firsts) == 4 and len(reduced_inputs) == 3
    for k, inp in enumerate(reduced_inputs, start=1):
        assert inp.shape == (1, (k + 1) * c, 16, 16)
        torch.testing.assert_close(inp, torch.cat(firsts[: k + 1], dim=1))
    # each mini-UNet is fed a base_channels-wide feature map (second-last layer), not logits
    assert [t.shape[1] for t in second_last] == [c, c, c]


def test_main_is_the_last_output_and_deterministic_in_eval() -> None:
    torch.manual_seed(0)
    model = IterNet(base_channels=4).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a.main, b.main)
    assert not torch.equal(a.main, a.aux[-1])


def test_required_multiple_and_size_error() -> None:
    assert IterNet(base_channels=4, unet_depth=3, mini_unet_depth=5).required_multiple == 32
    model = IterNet(base_channels=4)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, 3, 24, 32))
    with pytest.raises(ValueError, match="iterations >= 0"):
        IterNet(iterations=-1)


def test_whole_drive_image_padded() -> None:
    """DRIVE 584x565 padded to multiples of 16 -> 592x576, one whole-image pass (section 4.2)."""
    torch.manual_seed(1)  # seed 0 draws a 2-channel net whose output ignores its input
    model = IterNet(base_channels=2).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 592, 576))
    assert [p.shape for p in out.all_predictions()] == [(1, 1, 592, 576)] * 4
    assert_whole_drive_image_aligned(model, 3, padded=(592, 576))
