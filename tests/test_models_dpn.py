"""DPN (002 section 3): block parameter counts, side outputs, full-resolution blocks."""

from __future__ import annotations

import pytest
import torch
from alignment import assert_whole_drive_image_aligned

from retina_lightning.models.dpn import DPN, DPBlock, DPRBlock
from retina_lightning.types import SegOutput


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv3(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + c_out


def _dp_params(c_in: int, c0: int, c1: int, c2: int) -> int:
    branches = _conv3(c_in, c0) + _conv3(c_in, c1) + _conv3(c_in, c2)
    return branches + _conv3(c1 + c2, c1) + _conv3(c0 + c1, c0)


def test_block_parameter_counts_match_section_3_2() -> None:
    """002 section 3.2: 13,880 for the DP-Block on 32 channels, 11,592 per DPR-Block."""
    assert _n_params(DPBlock(32, 16, 8, 8)) == _dp_params(32, 16, 8, 8) == 13_880
    assert _n_params(DPRBlock(16, 8, 8)) == _dp_params(16, 16, 8, 8) + _conv3(16, 16) == 11_592


def test_default_parameter_count() -> None:
    model = DPN()
    front, heads = _conv3(3, 32), 4 * (16 + 1)
    assert _n_params(model) == front + 13_880 + 7 * 11_592 + heads == 95_988
    assert model.required_multiple == 4
    assert len(model.dpr_blocks) == 7 and len(model.side_heads) == 3


def test_parameter_count_other_config() -> None:
    model = DPN(1, 3, front_channels=8, c0=8, c1=4, c2=4, num_dpr_blocks=3, side_outputs=(2,))
    expected = _conv3(1, 8) + _dp_params(8, 8, 4, 4) + 3 * (_dp_params(8, 8, 4, 4) + _conv3(8, 8))
    assert _n_params(model) == expected + 2 * (8 * 3 + 3)


def test_forward_shapes_train_and_eval() -> None:
    torch.manual_seed(0)
    model = DPN(3, 2)
    x = torch.randn(1, 3, 64, 64)
    for train in (True, False):
        model.train(train)
        out = model(x)
        assert isinstance(out, SegOutput)
        assert out.main.shape == (1, 2, 64, 64)
        assert [a.shape for a in out.aux] == [(1, 2, 64, 64)] * 3
        assert out.recon is None


def test_blocks_keep_full_resolution() -> None:
    """No down-sampling between blocks (section 3.1): every block outputs H x W x C0."""
    model = DPN(c0=8, c1=4, c2=4)
    shapes: list[tuple[int, ...]] = []
    blocks = [model.dp_block, *model.dpr_blocks]
    for block in blocks:
        block.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    model(torch.randn(2, 3, 24, 36))
    assert shapes == [(2, 8, 24, 36)] * 8


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = DPN()
    out = model(torch.randn(1, 3, 32, 32))
    sum(p.square().mean() for p in out.all_predictions()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("k, last_block", [(0, 1), (1, 3), (2, 5)])
def test_side_output_k_depends_only_on_blocks_up_to_its_dpr_block(k: int, last_block: int) -> None:
    """aux[k] is the 1x1 side head after DPR-Block 1, 3, 5 (section 3.3): its gradient reaches
    its own head and the blocks before it, and nothing after."""
    torch.manual_seed(0)
    model = DPN()
    out = model(torch.randn(1, 3, 16, 16))
    out.aux[k].square().mean().backward()
    for i, head in enumerate(model.side_heads):
        assert (head.weight.grad is not None) == (i == k)
    assert model.head.weight.grad is None
    assert model.front[0].weight.grad.abs().sum() > 0
    for number, block in enumerate(model.dpr_blocks, start=1):
        grads = [p.grad for p in block.parameters()]
        if number <= last_block:
            assert all(g is not None for g in grads), number
        else:
            assert all(g is None for g in grads), number


def test_dpr_block_residual_sum() -> None:
    """DPR = conv(DP(x) + x): with the DP-Block output forced to zero it is conv(x)."""
    torch.manual_seed(0)
    block = DPRBlock(4, 2, 2)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        block.dp.fuse123[0].weight.zero_()
        block.dp.fuse123[0].bias.fill_(-1.0)  # ReLU(-1) = 0
        torch.testing.assert_close(block(x), block.conv(x))


def test_dp_block_pooled_branches_widen_the_receptive_field() -> None:
    """Branches 2 and 3 see beyond the 5x5 field of the two full-resolution 3x3 convs."""
    torch.manual_seed(0)
    block = DPBlock(2, 4, 2, 2)
    for m in block.modules():  # positive weights and biases: no ReLU kills the signal
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.uniform_(m.weight, 0.1, 0.2)
            torch.nn.init.constant_(m.bias, 0.1)
    x = torch.zeros(1, 2, 32, 32)
    x2 = x.clone()
    x2[..., 16, 16] = 1.0
    with torch.no_grad():
        diff = (block(x2) - block(x)).abs().amax(dim=1)[0]
    assert diff[16, 24] > 0 and diff[24, 16] > 0  # 8 pixels away
    assert diff[16, 0] == 0  # beyond the receptive field


def test_side_outputs_validated() -> None:
    with pytest.raises(ValueError, match="side_outputs"):
        DPN(side_outputs=(3, 1))
    with pytest.raises(ValueError, match="side_outputs"):
        DPN(side_outputs=(1, 7))
    assert DPN(side_outputs=()).side_heads.__len__() == 0


def test_rejects_size_not_multiple() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        DPN()(torch.randn(1, 3, 30, 32))


def test_whole_drive_image_padded() -> None:
    """The whole DRIVE image in one pass (section 4.3): 584x565 padded to 584x568
    (half widths to keep the test cheap; the layout is the default one)."""
    torch.manual_seed(0)
    model = DPN(front_channels=16, c0=8, c1=4, c2=4).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 584, 568))
    assert out.main.shape == (1, 1, 584, 568)
    assert [a.shape for a in out.aux] == [(1, 1, 584, 568)] * 3
    assert torch.isfinite(out.main).all()
    assert_whole_drive_image_aligned(model, 3, padded=(584, 568))
