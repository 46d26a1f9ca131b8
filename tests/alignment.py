"""The whole-DRIVE-image check the model tests share (issue 16, item 5): a 584 x 565 image,
which no model takes as it is, goes through the :class:`~retina_lightning.inference.Inferer`
(padded bottom / right to the model's multiple, cropped back), and the map must line up with
the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retina_lightning.inference import Inferer, probabilities
from retina_lightning.types import as_output

#: DRIVE's image size (002 section 4.1): a multiple of none of the models' strides
DRIVE_SIZE = (584, 565)


def assert_whole_drive_image_aligned(
    model: nn.Module, in_channels: int, padded: tuple[int, int], tolerance: int = 4
) -> None:
    """``Inferer`` on a DRIVE-sized image equals the model run by hand on the image reflected
    to ``padded`` (the size the model's docstring promises) and cut back to its top-left; a
    one-pixel change 5 px from the bottom-right corner changes the map most within
    ``tolerance`` px of that pixel (a crop from the wrong corner, or padding on the wrong
    side, moves it by the padding: 3 to 43 px)."""
    model = model.eval()
    h, w = DRIVE_SIZE
    x = torch.rand(1, in_channels, h, w, generator=torch.Generator().manual_seed(0))
    probs = Inferer()(model, x)
    assert probs.shape[-2:] == DRIVE_SIZE
    with torch.no_grad():
        by_hand = F.pad(x, (0, padded[1] - w, 0, padded[0] - h), mode="reflect")
        expected = probabilities(as_output(model(by_hand)).main)[..., :h, :w]
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-5)
    y0, x0 = h - 6, w - 6
    bumped = x.clone()
    bumped[..., y0, x0] += 5.0
    change = (Inferer()(model, bumped) - probs).abs().sum(1)[0]
    assert change.max() > 0, "the map does not depend on the input"
    y, x1 = divmod(int(change.argmax()), w)
    assert abs(y - y0) <= tolerance and abs(x1 - x0) <= tolerance, ((y, x1), (y0, x0))
