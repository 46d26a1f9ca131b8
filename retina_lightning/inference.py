"""Whole-image and sliding-window inference, on the input's device, with tensor ops only.

Two of the published test-time protocols:

* **whole image** -- one forward pass over the (padded) image, as DPN (002, section 4.3:
  "the entire fundus image is fed into the network without cropping") and patch2image's
  image-based networks (004, section 5: patch-trained weights transferred to whole images).
* **overlapping tiles** -- IterNet's patched prediction (003, section 5: "overlapping image
  patches are extracted with the stride of 3 ... and we used the average of all overlapping
  image patches as the prediction"); the reconstruction ``X = sum_k nu_k(epsilon_k(X))`` of
  patch2image (004, section 5.1, Eq. 3) with ``epsilon_k`` the tile extraction and ``nu_k``
  the weighted put-back that "handles the possible overlap".

Probabilities (sigmoid for one output channel, softmax for several) are blended, never logits,
as IterNet averages its outputs. Tiles are gathered and scattered by tensor indexing, a batch
of tiles at a time, so memory stays bounded on HRF-sized (3504 x 2336) images whatever the
stride.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retina_lightning.types import as_output

PAD_MODES = ("reflect", "constant", "replicate")
BLEND_MODES = ("mean", "gaussian")
INFERENCE_MODES = ("whole", "sliding")
#: flips averaged by test-time augmentation: none, horizontal, vertical, both.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


# --------------------------------------------------------------------------- padding


def _check_bchw(x: Tensor, what: str = "image") -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected the {what} as a (B, C, H, W) tensor, got {shape}")


def _pad_bottom_right(x: Tensor, pad_h: int, pad_w: int, mode: str) -> Tensor:
    """Pad ``pad_h`` rows below and ``pad_w`` columns right of ``x`` (B, C, H, W)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=0.0)
    if mode == "replicate":
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    # reflection needs pad < size: pad in rounds on images smaller than the padding
    while pad_h > 0 or pad_w > 0:
        step_h, step_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
        if (pad_h > 0 and step_h == 0) or (pad_w > 0 and step_w == 0):  # 1-pixel-thin input
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


def pad_to_multiple(
    x: Tensor, multiple: int, mode: str = "reflect"
) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``x`` (B, C, H, W) at the bottom and right so H and W are multiples of ``multiple``.

    Args:
        x: input batch.
        multiple: required divisor of H and W (a U-Net with 4 poolings: 16).
        mode: ``"reflect"`` (mirror without repeating the edge pixel), ``"constant"`` (zeros)
            or ``"replicate"``.

    Returns:
        ``(padded, (H, W))``; :func:`crop_to` with the original ``(H, W)`` undoes the padding.
    """
    _check_bchw(x)
    if int(multiple) != multiple or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pad_h, pad_w = -h % multiple, -w % multiple
    return _pad_bottom_right(x, pad_h, pad_w, mode), (h, w)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """The top-left ``size = (H, W)`` of ``x`` (..., H', W'): undoes :func:`pad_to_multiple`."""
    h, w = int(size[0]), int(size[1])
    if x.ndim < 2 or h > x.shape[-2] or w > x.shape[-1] or h < 1 or w < 1:
        raise ValueError(
            f"cannot crop a tensor of shape {tuple(x.shape)} to (H, W) = {(h, w)}: the crop "
            "must be positive and no larger than the tensor"
        )
    return x[..., :h, :w]


# ------------------------------------------------------------------------ prediction


def probabilities(logits: Tensor) -> Tensor:
    """Sigmoid of a one-channel logit map, softmax over channels of a K-channel one (float32)."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def predict_probabilities(model: nn.Module, x: Tensor, tta: bool = False) -> Tensor:
    """Probabilities of ``model``'s main output on ``x`` (B, C, H, W) -> (B, K, H, W).

    With ``tta`` the predictions on the horizontally, vertically and doubly flipped input are
    flipped back and averaged with the plain one (:data:`TTA_FLIPS`).
    """
    total: Tensor | None = None
    for dims in TTA_FLIPS if tta else ((),):
        xi = x.flip(dims) if dims else x
        main = as_output(model(xi)).main
        if main.ndim != 4 or main.shape[0] != x.shape[0] or main.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"the model's main output has shape {tuple(main.shape)} for an input of shape "
                f"{tuple(x.shape)}; inference needs (B, K, H, W) logits of the input's size"
            )
        p = probabilities(main)
        p = p.flip(dims) if dims else p
        total = p if total is None else total + p
    assert total is not None
    return total / (len(TTA_FLIPS) if tta else 1)


# ---------------------------------------------------------------------- sliding window


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    if int(a) != a or int(b) != b or a < 1 or b < 1:
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {v!r}")
    return int(a), int(b)


def _covering_size(size: int, tile: int, stride: int) -> int:
    """Smallest ``S >= max(size, tile)`` with ``(S - tile) % stride == 0``: tiles reach the end."""
    return tile + stride * -(-max(size - tile, 0) // stride)


def tile_weights(tile: int, blend: str, device: torch.device | None = None) -> Tensor:
    """1-D blending weight along one tile axis; the 2-D weight is the outer product.

    ``"mean"``: ones (IterNet's plain average, 003 section 5). ``"gaussian"``:
    ``exp(-(i - c)^2 / (2 sigma^2))`` with ``c`` the tile centre and ``sigma = tile / 8``,
    which down-weights predictions near tile edges, where convolutions saw zero padding.
    """
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if blend == "mean":
        return torch.ones(tile, device=device)
    i = torch.arange(tile, dtype=torch.float32, device=device)
    sigma = tile / 8.0
    return torch.exp(-((i - (tile - 1) / 2.0) ** 2) / (2.0 * sigma**2))


def _inner_edge_mask(r: Tensor, index: Tensor, count: int, margin: int) -> Tensor:
    """(n, tile) mask along one axis: False within ``margin`` of a tile edge, except the
    first tile's leading edge and the last tile's trailing edge (the padded image border)."""
    lead = (r >= margin) | (index[:, None] == 0)
    trail = (r < r.numel() - margin) | (index[:, None] == count - 1)
    return lead & trail


def sliding_window(
    predict: Callable[[Tensor], Tensor],
    image: Tensor,
    tile_size: int | tuple[int, int] = 128,
    stride: int | tuple[int, int] = 64,
    blend: str = "mean",
    batch_size: int = 16,
    margin: int = 0,
    pad_mode: str = "reflect",
) -> Tensor:
    """Blend ``predict`` over overlapping tiles of ``image`` (B, C, H, W) -> (B, K, H, W).

    The image is padded at the bottom / right until the tile grid (``tile_size`` apart by
    ``stride``, any stride from 1 to the tile size) covers every pixel; tiles are gathered by
    indexing, run through ``predict`` ``batch_size`` at a time, weighted (:func:`tile_weights`)
    and scatter-added with ``index_add_``; the sum is divided by the summed weights and
    cropped back to (H, W).

    Args:
        predict: maps tiles (N, C, th, tw) to per-pixel values (N, K, th, tw), normally
            probabilities (see :class:`Inferer`).
        image: input batch, on the device that ``predict`` runs on.
        tile_size, stride: tile size and step (ints or (h, w) pairs); IterNet: 128 and 3.
        blend: ``"mean"`` or ``"gaussian"`` weighting of overlapping predictions.
        batch_size: tiles per ``predict`` call (bounds memory).
        margin: pixels within ``margin`` of a tile edge that lies *inside* the padded image get
            no weight (U-Net's overlap-tile idea): with ``margin`` >= the receptive-field
            radius of the model, every kept prediction saw its full context, and the result
            equals whole-image inference away from the image border. Needs
            ``stride <= tile_size - 2 * margin`` so that every pixel keeps a prediction.
        pad_mode: padding of the image where the grid overhangs it (:func:`pad_to_multiple`).
    """
    _check_bchw(image)
    th, tw = _pair(tile_size, "tile_size")
    sh, sw = _pair(stride, "stride")
    if sh > th or sw > tw:
        raise ValueError(
            f"stride {(sh, sw)} is larger than tile_size {(th, tw)}: pixels between tiles would "
            "get no prediction; use stride <= tile_size"
        )
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if int(margin) != margin or margin < 0 or sh > th - 2 * margin or sw > tw - 2 * margin:
        raise ValueError(
            f"margin must be an integer >= 0 with stride <= tile_size - 2 * margin so every "
            f"pixel keeps a prediction; got margin {margin!r}, tile_size {(th, tw)}, "
            f"stride {(sh, sw)}"
        )
    b, _, h, w = image.shape
    hp, wp = _covering_size(h, th, sh), _covering_size(w, tw, sw)
    x = _pad_bottom_right(image, hp - h, wp - w, pad_mode)
    x_hwc = x.permute(0, 2, 3, 1)  # (B, Hp, Wp, C) view: one tile = one index expression
    device = image.device

    ny, nx = (hp - th) // sh + 1, (wp - tw) // sw + 1
    wy0, wx0 = tile_weights(th, blend, device), tile_weights(tw, blend, device)
    ry, rx = torch.arange(th, device=device), torch.arange(tw, device=device)

    acc: Tensor | None = None  # (B * Hp * Wp, K) weighted sum of predictions
    wsum = torch.zeros(b * hp * wp, device=device)
    n_tiles = b * ny * nx
    for start in range(0, n_tiles, batch_size):
        k = torch.arange(start, min(start + batch_size, n_tiles), device=device)
        bi, iy, ix = k // (ny * nx), (k // nx) % ny, k % nx
        y0, x0 = iy * sh, ix * sw
        rows, cols = y0[:, None] + ry, x0[:, None] + rx  # (n, th), (n, tw)
        tiles = x_hwc[bi[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, th, tw, C)
        pred = predict(tiles.permute(0, 3, 1, 2).contiguous())
        if pred.ndim != 4 or pred.shape[0] != k.numel() or pred.shape[-2:] != (th, tw):
            raise ValueError(
                f"predict returned shape {tuple(pred.shape)} for {k.numel()} tiles of "
                f"{th} x {tw}; expected (N, K, {th}, {tw})"
            )
        # weights: the blend profile, zeroed within `margin` of edges inside the image
        wy = wy0 * _inner_edge_mask(ry, iy, ny, margin)
        wx = wx0 * _inner_edge_mask(rx, ix, nx, margin)
        weight = wy[:, :, None] * wx[:, None, :]  # (n, th, tw)
        flat = (bi[:, None, None] * hp + rows[:, :, None]) * wp + cols[:, None, :]
        flat = flat.reshape(-1)
        values = pred.float().permute(0, 2, 3, 1) * weight[..., None]
        if acc is None:
            acc = torch.zeros(b * hp * wp, pred.shape[1], device=device)
        acc.index_add_(0, flat, values.reshape(-1, pred.shape[1]))
        wsum.index_add_(0, flat, weight.reshape(-1))
    assert acc is not None
    out = (acc / wsum[:, None]).reshape(b, hp, wp, -1).permute(0, 3, 1, 2)
    return crop_to(out, (h, w)).contiguous()


# --------------------------------------------------------------------------- Inferer


class Inferer:
    """Turn a model and an image batch into per-pixel probabilities of the model's main output.

    Args:
        mode: ``"whole"`` -- one pass over the image padded to the model's
            ``required_multiple`` (DPN 002 section 4.3; patch2image 004 section 5);
            ``"sliding"`` -- overlapping tiles blended by :func:`sliding_window` (IterNet 003
            section 5: tile 128, stride 3, mean).
        tile_size, stride: tile size and step of the sliding mode (``stride <= tile_size``;
            ``tile_size`` must be a multiple of the model's ``required_multiple``).
        blend: ``"mean"`` or ``"gaussian"`` blending of overlapping tiles.
        batch_size: tiles per forward pass in the sliding mode.
        tta: also predict on flipped copies (h, v, hv) and average the flipped-back results.
        margin: tile-edge pixels ignored when blending (see :func:`sliding_window`).
        pad_mode: how images are padded (``"reflect"``, ``"constant"``, ``"replicate"``).
        resize: in whole mode, resize the image (bilinear) to the nearest multiple of the
            model's ``required_multiple`` instead of padding it, and resize the probabilities
            back to the original size before any metric (patch2image, 004 section 5.1).

    Calling the inferer runs under ``torch.no_grad()`` and does not change the model's
    train / eval mode (the caller puts the model in eval mode).
    """

    def __init__(
        self,
        mode: str = "whole",
        tile_size: int = 128,
        stride: int = 64,
        blend: str = "mean",
        batch_size: int = 16,
        tta: bool = False,
        margin: int = 0,
        pad_mode: str = "reflect",
        resize: bool = False,
    ) -> None:
        if mode not in INFERENCE_MODES:
            raise ValueError(f"inference mode must be one of {INFERENCE_MODES}, got {mode!r}")
        if blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        for name, value in (("tile_size", tile_size), ("stride", stride)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if stride > tile_size:
            raise ValueError(
                f"stride ({stride}) must not exceed tile_size ({tile_size}): pixels between "
                "tiles would get no prediction"
            )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(margin) != margin or margin < 0 or stride > tile_size - 2 * margin:
            raise ValueError(
                f"margin must be an integer >= 0 with stride <= tile_size - 2 * margin; got "
                f"margin {margin!r}, tile_size {tile_size}, stride {stride}"
            )
        self.mode, self.tile_size, self.stride, self.blend = mode, tile_size, stride, blend
        self.batch_size, self.tta, self.margin, self.pad_mode = batch_size, tta, margin, pad_mode
        self.resize = resize

    def __repr__(self) -> str:
        if self.mode == "whole":
            return (
                f"Inferer(mode='whole', tta={self.tta}, pad_mode={self.pad_mode!r}, "
                f"resize={self.resize})"
            )
        return (
            f"Inferer(mode='sliding', tile_size={self.tile_size}, stride={self.stride}, "
            f"blend={self.blend!r}, batch_size={self.batch_size}, tta={self.tta}, "
            f"margin={self.margin}, pad_mode={self.pad_mode!r})"
        )

    def __call__(self, model: nn.Module, image: Tensor) -> Tensor:
        """Probabilities (B, K, H, W) of ``model``'s main output for ``image`` (B, C, H, W)."""
        _check_bchw(image)
        multiple = int(getattr(model, "required_multiple", 1) or 1)
        with torch.no_grad():
            if self.mode == "whole" and self.resize:
                size = image.shape[-2:]
                target = [max(multiple, round(n / multiple) * multiple) for n in size]
                x = F.interpolate(image, size=target, mode="bilinear", align_corners=False)
                probs = predict_probabilities(model, x, self.tta)
                return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
            if self.mode == "whole":
                x, size = pad_to_multiple(image, multiple, self.pad_mode)
                return crop_to(predict_probabilities(model, x, self.tta), size)
            if self.tile_size % multiple:
                lower = max(multiple, self.tile_size - self.tile_size % multiple)
                raise ValueError(
                    f"tile_size {self.tile_size} is not a multiple of the model's "
                    f"required_multiple {multiple} ({type(model).__name__}); use tile_size "
                    f"{lower} or {lower + multiple}"
                )
            return sliding_window(
                lambda tiles: predict_probabilities(model, tiles, self.tta),
                image,
                tile_size=self.tile_size,
                stride=self.stride,
                blend=self.blend,
                batch_size=self.batch_size,
                margin=self.margin,
                pad_mode=self.pad_mode,
            )
