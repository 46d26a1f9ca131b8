"""Tests of whole-image and sliding-window inference (retina_lightning.inference)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from retina_lightning.inference import (
    Inferer,
    crop_to,
    pad_to_multiple,
    predict_probabilities,
    sliding_window,
    tile_weights,
)
from retina_lightning.types import SegOutput


def conv_model(k_out: int = 1, seed: int = 0) -> nn.Module:
    """One 3x3 convolution (receptive-field radius 1), zero padding, random weights."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, k_out, 3, padding=1).eval()


class Multiple16(nn.Module):
    """A model that, like a 4-level U-Net, only accepts sizes divisible by 16."""

    required_multiple = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv_model()

    def forward(self, x: Tensor) -> SegOutput:
        assert x.shape[-2] % 16 == 0 and x.shape[-1] % 16 == 0, tuple(x.shape)
        main = self.conv(x)
        return SegOutput(main=main, aux=[main * 0.5])


class Constant(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.full_like(x[:, :1], 0.3)


def image(b: int = 2, h: int = 64, w: int = 80, seed: int = 1) -> Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------ padding


def test_pad_to_multiple_pads_bottom_right_and_crop_restores():
    x = image(1, 21, 30)
    padded, size = pad_to_multiple(x, 16, mode="reflect")
    assert padded.shape == (1, 3, 32, 32) and size == (21, 30)
    torch.testing.assert_close(crop_to(padded, size), x, rtol=0, atol=0)
    # reflection without repeating the edge: row 21 mirrors row 19, column 30 column 28
    torch.testing.assert_close(padded[..., 21, :30], x[..., 19, :])
    torch.testing.assert_close(padded[..., :21, 30], x[..., :, 28])
    zeros, _ = pad_to_multiple(x, 16, mode="constant")
    assert zeros[..., 21:, :].abs().sum() == 0 and zeros[..., :, 30:].abs().sum() == 0
    same, size = pad_to_multiple(image(1, 32, 48), 16)
    assert same.shape == (1, 3, 32, 48) and size == (32, 48)


def test_reflect_padding_larger_than_the_image_works():
    x = torch.arange(3.0).reshape(1, 1, 1, 3).expand(1, 1, 2, 3).contiguous()
    padded, _ = pad_to_multiple(x, 8)
    assert padded.shape == (1, 1, 8, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]


def test_padding_and_crop_errors_are_readable():
    with pytest.raises(ValueError, match="positive integer"):
        pad_to_multiple(image(), 0)
    with pytest.raises(ValueError, match="pad mode"):
        pad_to_multiple(image(1, 20, 20), 16, mode="wrap")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pad_to_multiple(torch.zeros(3, 8, 8), 4)
    with pytest.raises(ValueError, match="cannot crop"):
        crop_to(image(1, 8, 8), (9, 8))


# ------------------------------------------------------------------------ whole image


def test_whole_image_equals_the_model_output_on_a_valid_size():
    model, x = conv_model(), image()
    expected = torch.sigmoid(model(x))
    torch.testing.assert_close(Inferer("whole")(model, x), expected, rtol=0, atol=0)


def test_whole_image_pads_to_required_multiple_and_crops_back():
    model, x = Multiple16(), image(1, 50, 37)
    out = Inferer("whole", pad_mode="constant")(model, x)
    assert out.shape == (1, 1, 50, 37)
    # zero padding then cropping is exactly the conv's own zero padding
    torch.testing.assert_close(out, torch.sigmoid(model.conv(x)), rtol=0, atol=1e-6)
    reflect = Inferer("whole")(model, x)
    torch.testing.assert_close(reflect[..., :-1, :-1], out[..., :-1, :-1], rtol=0, atol=1e-6)


def test_multiclass_output_is_a_softmax():
    out = Inferer("whole")(conv_model(k_out=3), image())
    assert out.shape == (2, 3, 64, 80)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 64, 80))
    assert (out > 0).all()
    sliding = Inferer("sliding", tile_size=32, stride=16, margin=1)(conv_model(k_out=3), image())
    torch.testing.assert_close(sliding, out, rtol=0, atol=1e-5)


def test_main_output_of_list_models_is_used():
    class Listing(nn.Module):
        def forward(self, x: Tensor) -> list[Tensor]:
            return [torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])]

    out = Inferer("whole")(Listing(), image(1, 8, 8))
    torch.testing.assert_close(out, torch.full((1, 1, 8, 8), torch.sigmoid(torch.tensor(1.0))))


# ---------------------------------------------------------------------- sliding window


def test_sliding_mean_equals_whole_image_when_the_receptive_field_fits():
    """3x3 conv (radius 1), tile 32 / stride 16 on 64 x 80: every kept tile pixel saw its
    full context, so the blended map equals one pass over the whole image."""
    model, x = conv_model(), image()
    whole = Inferer("whole")(model, x)
    sliding = Inferer("sliding", tile_size=32, stride=16, blend="mean", margin=1)(model, x)
    torch.testing.assert_close(sliding, whole, rtol=0, atol=1e-5)
    gaussian = Inferer("sliding", tile_size=32, stride=16, blend="gaussian", margin=1)(model, x)
    torch.testing.assert_close(gaussian, whole, rtol=0, atol=1e-5)


def test_sliding_without_margin_averages_every_tile():
    """Without a margin, IterNet's plain average: pixels on an inner tile edge (row 31 is the
    last row of tile 0 and inside tile 1) mix a zero-padded and a full-context prediction."""
    model, x = conv_model(), image(1, 48, 32)
    out = Inferer("sliding", tile_size=32, stride=16)(model, x)
    full = torch.sigmoid(model(x))
    tile0 = torch.sigmoid(model(x[..., :32, :]))
    torch.testing.assert_close(out[..., 31, :], (tile0[..., 31, :] + full[..., 31, :]) / 2)
    torch.testing.assert_close(out[..., :15, :], full[..., :15, :])  # only tile 0


def test_non_multiple_sizes_are_padded_and_cropped_back():
    model, x = conv_model(), image(2, 45, 61)
    out = Inferer("sliding", tile_size=32, stride=16, margin=1, pad_mode="constant")(model, x)
    assert out.shape == (2, 1, 45, 61)
    torch.testing.assert_close(out, torch.sigmoid(model(x)), rtol=0, atol=1e-5)
    # an image smaller than one tile is padded up to the tile
    small = image(1, 20, 13)
    out = Inferer("sliding", tile_size=32, stride=16, pad_mode="constant")(model, small)
    torch.testing.assert_close(out, torch.sigmoid(model(small)), rtol=0, atol=1e-5)


def test_stride_3_works_and_matches_whole_image():
    model, x = conv_model(), image(1, 40, 37)
    out = Inferer("sliding", tile_size=16, stride=3, margin=1, pad_mode="constant", batch_size=7)(
        model, x
    )
    assert out.shape == (1, 1, 40, 37)
    torch.testing.assert_close(out, torch.sigmoid(model(x)), rtol=0, atol=1e-5)


def test_gaussian_weights_normalise_to_a_constant():
    out = Inferer("sliding", tile_size=16, stride=5, blend="gaussian")(Constant(), image(2, 37, 29))
    torch.testing.assert_close(out, torch.full((2, 1, 37, 29), torch.sigmoid(torch.tensor(0.3))))
    w = tile_weights(16, "gaussian")
    assert w.argmax() in (7, 8) and torch.allclose(w, w.flip(0))
    assert w.min() > 0 and w.max() / w.min() > 100
    assert torch.equal(tile_weights(16, "mean"), torch.ones(16))


def test_sliding_window_blends_what_predict_returns():
    """With the identity as `predict` the blend reconstructs the image (004 Eq. 3)."""
    x = image(2, 33, 50)
    for blend in ("mean", "gaussian"):
        out = sliding_window(lambda t: t, x, tile_size=(16, 24), stride=(5, 7), blend=blend)
        torch.testing.assert_close(out, x)


def test_tile_size_must_be_a_multiple_of_the_model_requirement():
    with pytest.raises(ValueError, match="required_multiple 16.*tile_size 96 or 112"):
        Inferer("sliding", tile_size=100, stride=50)(Multiple16(), image(1, 64, 64))
    out = Inferer("sliding", tile_size=32, stride=16, margin=1, pad_mode="constant")(
        Multiple16(), image(1, 50, 37)
    )
    torch.testing.assert_close(
        out, torch.sigmoid(Multiple16().conv(image(1, 50, 37))), rtol=0, atol=1e-5
    )


# ------------------------------------------------------------------------------ TTA


def test_tta_with_a_flip_equivariant_model_equals_no_tta():
    model = nn.Conv2d(3, 1, 3, padding=1)
    with torch.no_grad():  # a kernel symmetric under both flips
        k = torch.randn(1, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        model.weight.copy_(k + k.flip(-1) + k.flip(-2) + k.flip(-2, -1))
    x = image()
    torch.testing.assert_close(
        Inferer("whole", tta=True)(model, x), Inferer("whole")(model, x), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        Inferer("sliding", tile_size=32, stride=16, tta=True)(model, x),
        Inferer("sliding", tile_size=32, stride=16)(model, x),
        rtol=0,
        atol=1e-6,
    )


def test_tta_averages_the_flipped_back_predictions():
    model, x = conv_model(), image(1, 16, 16)
    p = [torch.sigmoid(model(x.flip(d)).flip(d)) if d else torch.sigmoid(model(x)) for d in
         ((), (-1,), (-2,), (-2, -1))]  # fmt: skip
    torch.testing.assert_close(predict_probabilities(model, x, tta=True), sum(p) / 4)
    assert not torch.allclose(predict_probabilities(model, x, tta=True), p[0])


# ----------------------------------------------------------------------- validation


def test_inferer_argument_errors_are_readable():
    with pytest.raises(ValueError, match="inference mode"):
        Inferer("patches")
    with pytest.raises(ValueError, match="must not exceed tile_size"):
        Inferer("sliding", tile_size=32, stride=33)
    with pytest.raises(ValueError, match="blend"):
        Inferer("sliding", blend="max")
    with pytest.raises(ValueError, match="batch_size"):
        Inferer("sliding", batch_size=0)
    with pytest.raises(ValueError, match="margin"):
        Inferer("sliding", tile_size=32, stride=16, margin=9)
    with pytest.raises(ValueError, match="stride"):
        sliding_window(lambda t: t, image(), tile_size=8, stride=9)
    with pytest.raises(ValueError, match="predict returned shape"):
        sliding_window(lambda t: t[..., :4, :4], image(), tile_size=8, stride=8)


def test_inference_keeps_model_mode_and_builds_no_graph():
    model = conv_model().train()
    out = Inferer("sliding", tile_size=32, stride=32)(model, image())
    assert model.training and not out.requires_grad


def test_resize_mode_returns_the_original_size_and_matches_on_valid_sizes():
    """patch2image's protocol: resize to a multiple, predict, resize back (004 section 5.1)."""
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    model.required_multiple = 4
    image = torch.randn(1, 3, 30, 41)
    out = Inferer(resize=True)(model, image)
    assert out.shape == (1, 1, 30, 41)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    exact = torch.randn(1, 3, 32, 40)  # already a multiple: resizing is the identity
    torch.testing.assert_close(
        Inferer(resize=True)(model, exact), Inferer()(model, exact), atol=1e-6, rtol=0
    )
