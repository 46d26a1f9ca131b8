"""Losses against hand computations on 2x2 images (math / numpy, not the torch function)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retina_lightning.losses import (
    BCEDiceLoss,
    BCELoss,
    ClassBalancedBCELoss,
    CrossEntropyLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    OutputLoss,
    SegRAVIRLoss,
    SoftDiceLoss,
    compute_loss,
)
from retina_lightning.types import SegOutput

# one image, one channel, 2x2 pixels, read row-major
X = [0.0, 2.0, -1.0, 3.0]
Y = [0, 1, 1, 0]


def _binary_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(X, dtype=torch.float64).reshape(1, 1, 2, 2)
    return logits, torch.tensor(Y).reshape(1, 2, 2)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(x: float, y: int, pos_weight: float = 1.0) -> float:
    p = _sig(x)
    return -(pos_weight * y * math.log(p) + (1 - y) * math.log(1 - p))


def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


# three classes on 2x2 pixels: LOGITS3[pixel][class]
LOGITS3 = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [-0.5, 0.2, 1.5], [1.0, 1.0, 0.0]]
Y3 = [0, 1, 2, 1]


def _multiclass_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(LOGITS3, dtype=torch.float64).T.reshape(1, 3, 2, 2)
    return logits, torch.tensor(Y3).reshape(1, 2, 2)


FOV = torch.tensor([True, True, False, True]).reshape(1, 2, 2)
FOV_IDX = [0, 1, 3]


# --- BCE ------------------------------------------------------------------------------------


def test_bce_matches_hand_computation() -> None:
    logits, target = _binary_inputs()
    expected = np.mean([_bce(x, y) for x, y in zip(X, Y)])
    assert BCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_bce_pos_weight_and_fov_hand() -> None:
    logits, target = _binary_inputs()
    expected = np.mean([_bce(X[i], Y[i], pos_weight=3.0) for i in FOV_IDX])
    got = BCELoss(pos_weight=3.0)(logits, target, FOV).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_bce_matches_torch_restricted_to_fov() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g)
    target = (torch.rand(2, 8, 8, generator=g) > 0.7).long()
    fov = torch.rand(2, 8, 8, generator=g) > 0.3
    expected = F.binary_cross_entropy_with_logits(logits[:, 0][fov], target[fov].float())
    torch.testing.assert_close(BCELoss()(logits, target, fov), expected)


def test_cross_entropy_binary_is_bce() -> None:
    logits, target = _binary_inputs()
    torch.testing.assert_close(CrossEntropyLoss()(logits, target), BCELoss()(logits, target))


# --- cross entropy --------------------------------------------------------------------------


def test_cross_entropy_multiclass_hand() -> None:
    logits, target = _multiclass_inputs()
    nll = [-math.log(_softmax(LOGITS3[i])[Y3[i]]) for i in range(4)]
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(np.mean(nll), rel=1e-6)
    got_fov = CrossEntropyLoss()(logits, target, FOV).item()
    assert got_fov == pytest.approx(np.mean([nll[i] for i in FOV_IDX]), rel=1e-6)


def test_cross_entropy_class_weights_hand() -> None:
    logits, target = _multiclass_inputs()
    w = [0.2, 1.0, 3.0]
    nll = [-math.log(_softmax(LOGITS3[i])[Y3[i]]) for i in range(4)]
    expected = sum(w[Y3[i]] * nll[i] for i in range(4)) / sum(w[y] for y in Y3)
    got = CrossEntropyLoss(weight=w)(logits.float(), target).item()
    assert got == pytest.approx(expected, rel=1e-5)


# --- soft Dice ------------------------------------------------------------------------------


def test_soft_dice_binary_hand() -> None:
    logits, target = _binary_inputs()
    p = [_sig(x) for x in X]
    dice = 2 * sum(pi * yi for pi, yi in zip(p, Y)) / (sum(Y) + sum(p))
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(1 - dice, rel=1e-6)
    s = 1.0
    dice_s = (2 * sum(pi * yi for pi, yi in zip(p, Y)) + s) / (sum(Y) + sum(p) + s)
    assert SoftDiceLoss(smooth=s)(logits, target).item() == pytest.approx(1 - dice_s, rel=1e-6)


def test_soft_dice_multiclass_eq3_hand() -> None:
    """SegRAVIR eq. (3): 1 - (2/K) sum_k sum_v G P / (sum_v G + sum_v P)."""
    logits, target = _multiclass_inputs()
    probs = [_softmax(row) for row in LOGITS3]

    def per_class(pixels: list[int]) -> list[float]:
        out = []
        for k in range(3):
            inter = sum(probs[v][k] for v in pixels if Y3[v] == k)
            denom = sum(1 for v in pixels if Y3[v] == k) + sum(probs[v][k] for v in pixels)
            out.append(inter / denom)
        return out

    ratios = per_class([0, 1, 2, 3])
    expected = 1 - 2 / 3 * sum(ratios)
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)
    no_bg = 1 - 2 / 2 * sum(ratios[1:])
    got = SoftDiceLoss(include_background=False)(logits, target).item()
    assert got == pytest.approx(no_bg, rel=1e-6)
    fov_ratios = per_class(FOV_IDX)  # class 2 is outside the FOV: it contributes 0
    got_fov = SoftDiceLoss()(logits, target, FOV).item()
    assert got_fov == pytest.approx(1 - 2 / 3 * sum(fov_ratios), rel=1e-6)


def test_soft_dice_multiclass_perfect_prediction_is_zero() -> None:
    target = torch.tensor([[0, 1, 2], [2, 1, 0], [1, 1, 2]]).reshape(1, 3, 3)
    logits = 30.0 * F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-9)
    assert DiceCELoss()(logits, target).item() == pytest.approx(0.0, abs=1e-9)


# --- patch2image BCE - Dice -----------------------------------------------------------------


def test_bce_dice_004_form_hand() -> None:
    logits, target = _binary_inputs()
    p = [_sig(x) for x in X]
    dice = 2 * sum(pi * yi for pi, yi in zip(p, Y)) / (sum(Y) + sum(p))
    bce = [_bce(x, y) for x, y in zip(X, Y)]
    assert BCEDiceLoss()(logits, target).item() == pytest.approx(np.mean(bce) - dice, rel=1e-6)
    got_sum = BCEDiceLoss(reduction="sum")(logits, target).item()
    assert got_sum == pytest.approx(np.sum(bce) - dice, rel=1e-6)
    # 004's form is minus the Dice coefficient: a perfect prediction tends to -1
    perfect = 40.0 * (2 * target[:, None].double() - 1)
    assert BCEDiceLoss()(perfect, target).item() == pytest.approx(-1.0, abs=1e-9)


# --- DPN class-balanced BCE -----------------------------------------------------------------


def test_class_balanced_bce_eq1_hand() -> None:
    logits, target = _binary_inputs()  # Y = 0 1 1 0: N+ = 2, N- = 2, beta = 0.5
    loss = ClassBalancedBCELoss()

    def expected(pixels: list[int], y: list[int]) -> tuple[float, float]:
        n_pos = sum(y[i] for i in pixels)
        beta = (len(pixels) - n_pos) / len(pixels)
        pos = sum(math.log(_sig(X[i])) for i in pixels if y[i] == 1)
        neg = sum(math.log(1 - _sig(X[i])) for i in pixels if y[i] == 0)
        return -(beta * pos + (1 - beta) * neg), beta

    value, beta = expected([0, 1, 2, 3], Y)
    assert loss(logits, target).item() == pytest.approx(value, rel=1e-6)
    assert loss.last_beta.item() == pytest.approx(beta) == 0.5
    # FOV drops pixel 2 (a positive): N+ = 1, N- = 2, beta = 2/3, sums over FOV only
    value, beta = expected(FOV_IDX, Y)
    assert loss(logits, target, FOV).item() == pytest.approx(value, rel=1e-6)
    assert loss.last_beta.item() == pytest.approx(2 / 3)
    mean = ClassBalancedBCELoss(reduction="mean")(logits, target, FOV).item()
    assert mean == pytest.approx(value / 3, rel=1e-6)


def test_class_balanced_beta_recomputed_per_batch() -> None:
    loss = ClassBalancedBCELoss()
    logits = torch.zeros(1, 1, 2, 2)
    betas = []
    for y in ([1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]):
        value = loss(logits, torch.tensor(y).reshape(1, 2, 2))
        betas.append(loss.last_beta.item())
        n_pos = sum(y)
        beta = (4 - n_pos) / 4
        # p = 0.5 everywhere: L = (beta * N+ + (1 - beta) * N-) * log 2
        assert value.item() == pytest.approx(
            (beta * n_pos + (1 - beta) * (4 - n_pos)) * math.log(2)
        )
    assert betas == pytest.approx([0.75, 0.25, 1.0])


# --- FOV: no contribution, no gradient, for every pixel loss ---------------------------------


PIXEL_LOSSES_BINARY = [BCELoss(), SoftDiceLoss(), BCEDiceLoss(), ClassBalancedBCELoss(),
                       DiceCELoss(), CrossEntropyLoss()]  # fmt: skip
PIXEL_LOSSES_MULTI = [CrossEntropyLoss(), SoftDiceLoss(), DiceCELoss()]


@pytest.mark.parametrize(
    ("loss", "k"),
    [(loss, 1) for loss in PIXEL_LOSSES_BINARY] + [(loss, 3) for loss in PIXEL_LOSSES_MULTI],
    ids=lambda v: type(v).__name__ if isinstance(v, torch.nn.Module) else f"K{v}",
)
def test_pixels_outside_fov_change_nothing_and_get_no_gradient(loss, k: int) -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, k, 6, 6, generator=g)
    target = torch.randint(0, max(k, 2), (2, 6, 6), generator=g)
    fov = torch.zeros(2, 6, 6, dtype=torch.bool)
    fov[:, 1:5, 1:5] = True
    values = []
    for fill in (0.0, 1e4, float("nan")):
        logits = base.clone()
        logits[~fov[:, None].expand_as(logits)] = fill
        logits.requires_grad_(True)
        value = loss(logits, target, fov)
        value.backward()
        values.append(value.item())
        grad_out = logits.grad[~fov[:, None].expand_as(logits)]
        assert torch.equal(grad_out, torch.zeros_like(grad_out))
        assert torch.isfinite(logits.grad).all()
        assert logits.grad[fov[:, None].expand_as(logits)].abs().sum() > 0
    assert values[0] == pytest.approx(values[1], rel=1e-6) == pytest.approx(values[2], rel=1e-6)


def test_binary_losses_reject_multichannel_logits() -> None:
    logits, target = _multiclass_inputs()
    for loss in (BCELoss(), BCEDiceLoss(), ClassBalancedBCELoss()):
        with pytest.raises(ValueError, match="K = 1"):
            loss(logits, target)


def test_shape_mismatch_is_readable() -> None:
    logits, _ = _binary_inputs()
    with pytest.raises(ValueError, match=r"target must be \(B, H, W\)"):
        BCELoss()(logits, torch.zeros(1, 3, 3, dtype=torch.long))


# --- DiceCE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("multiclass", [False, True])
def test_dice_ce_is_weighted_sum(multiclass: bool) -> None:
    logits, target = _multiclass_inputs() if multiclass else _binary_inputs()
    dice = SoftDiceLoss()(logits, target)
    ce = (CrossEntropyLoss() if multiclass else BCELoss())(logits, target)
    got = DiceCELoss(dice_weight=0.3, ce_weight=2.0)(logits, target)
    torch.testing.assert_close(got, 0.3 * dice + 2.0 * ce)


# --- output losses --------------------------------------------------------------------------


def _three_outputs() -> tuple[SegOutput, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    aux = [torch.randn(1, 1, 4, 4, generator=g, requires_grad=True) for _ in range(2)]
    main = torch.randn(1, 1, 4, 4, generator=g, requires_grad=True)
    return SegOutput(main=main, aux=aux), torch.randint(0, 2, (1, 4, 4), generator=g)


def test_deep_supervision_sums_terms_and_reaches_aux() -> None:
    output, target = _three_outputs()
    bce = BCELoss()
    terms = [bce(t, target).item() for t in output.all_predictions()]  # aux0, aux1, main
    loss = DeepSupervisionLoss(BCELoss())
    total = compute_loss(loss, output, target)
    assert total.item() == pytest.approx(sum(terms), rel=1e-6)
    assert sorted(loss.components) == ["aux0", "aux1", "main"]
    assert loss.components["aux1"].item() == pytest.approx(terms[1], rel=1e-6)
    assert not loss.components["main"].requires_grad
    total.backward()
    for t in output.all_predictions():
        assert t.grad is not None and t.grad.abs().sum() > 0

    weighted = DeepSupervisionLoss(BCELoss(), weights=[0.5, 0.25], main_weight=2.0)
    expected = 0.5 * terms[0] + 0.25 * terms[1] + 2.0 * terms[2]
    assert compute_loss(weighted, output, target).item() == pytest.approx(expected, rel=1e-6)


def test_deep_supervision_dpn_class_balanced() -> None:
    output, target = _three_outputs()
    cb = ClassBalancedBCELoss()
    expected = sum(cb(t, target).item() for t in output.all_predictions())
    got = compute_loss(DeepSupervisionLoss(ClassBalancedBCELoss()), output, target)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_deep_supervision_weight_count_mismatch() -> None:
    output, target = _three_outputs()
    with pytest.raises(ValueError, match="3 side-output weights but the model returned 2"):
        DeepSupervisionLoss(BCELoss(), weights=[1, 1, 1])(output, target)
    with pytest.raises(TypeError, match="pixel loss"):
        DeepSupervisionLoss(SegRAVIRLoss())


def _segravir_case() -> tuple[SegOutput, torch.Tensor, torch.Tensor]:
    logits, target = _multiclass_inputs()
    image = torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64).reshape(1, 1, 2, 2)
    recon = torch.tensor([0.2, 0.5, 0.6, 0.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    return SegOutput(main=logits, recon=recon), target, image


def test_segravir_loss_components_add_up() -> None:
    output, target, image = _segravir_case()
    loss = SegRAVIRLoss(dice_weight=1.0, ce_weight=1.0, recon_weight=0.001)
    total = compute_loss(loss, output, target, image=image)
    c = loss.components
    squared_norm = np.sum(np.square([0.1 - 0.2, 0.0, 0.9 - 0.6, 0.3]))  # eq. (5), one image
    assert c["recon"].item() == pytest.approx(squared_norm, rel=1e-6)
    assert c["dice"].item() == pytest.approx(SoftDiceLoss()(*_multiclass_inputs()).item())
    assert c["ce"].item() == pytest.approx(CrossEntropyLoss()(*_multiclass_inputs()).item())
    expected = c["dice"].item() + c["ce"].item() + 0.001 * c["recon"].item()
    assert total.item() == pytest.approx(expected, rel=1e-9)
    # the former default, a per-pixel mean, stays available by name
    mean = SegRAVIRLoss(recon_weight=1.0, recon_reduction="mean")
    compute_loss(mean, output, target, image=image)
    assert mean.components["recon"].item() == pytest.approx(squared_norm / 4, rel=1e-6)


def test_segravir_recon_default_is_squared_norm_per_image_batch_mean() -> None:
    """000 eq. (5): L_L2 = ||X_i - X_r||_2^2 per image (a sum over pixels and channels), and
    the batch is averaged; not the per-pixel mean."""
    image = torch.tensor(
        [
            [[[0.1, 0.5], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.4]]],
            [[[0.7, 0.7], [0.1, 0.0]], [[0.5, 0.6], [0.8, 0.2]]],
        ],
        dtype=torch.float64,
    )  # fmt: skip  (B, C, H, W) = (2, 2, 2, 2)
    recon = torch.tensor(
        [[[[0.2, 0.5], [0.6, 0.0]], [[0.1, 0.7], [0.2, 0.4]]],
         [[[0.0, 0.9], [0.1, 0.3]], [[0.5, 0.1], [0.4, 0.2]]]], dtype=torch.float64,
    )  # fmt: skip
    per_image = [
        sum((a - b) ** 2 for a, b in zip(image[i].flatten().tolist(), recon[i].flatten().tolist()))
        for i in range(2)
    ]
    logits, _ = _multiclass_inputs()
    output = SegOutput(main=logits.expand(2, -1, -1, -1), recon=recon)
    target = torch.tensor(Y3).reshape(1, 2, 2).expand(2, -1, -1)
    loss = SegRAVIRLoss()
    assert loss.recon_reduction == "sum"
    compute_loss(loss, output, target, image=image)
    assert loss.components["recon"].item() == pytest.approx(np.mean(per_image), rel=1e-6)
    mean = SegRAVIRLoss(recon_reduction="mean")
    compute_loss(mean, output, target, image=image)
    assert mean.components["recon"].item() == pytest.approx(sum(per_image) / 16, rel=1e-6)
    with pytest.raises(ValueError, match="recon_reduction"):
        SegRAVIRLoss(recon_reduction="none")


# --- SegRAVIR Dice classes: all K for artery / vein, the vessel class for binary ------------


def _eq3_ratios(probs: list[list[float]], labels: list[int], k: int) -> list[float]:
    """Per class ``sum_v G P / (sum_v G + sum_v P)`` of eq. (3), by hand."""
    out = []
    for c in range(k):
        inter = sum(probs[v][c] for v in range(len(labels)) if labels[v] == c)
        denom = sum(1 for y in labels if y == c) + sum(p[c] for p in probs)
        out.append(inter / denom)
    return out


def test_segravir_dice_av_averages_all_three_classes_eq3() -> None:
    """K = 3 (background / vein / artery): eq. (3), 1 - (2/K) sum_{k=1..K}, background in."""
    output, target, image = _segravir_case()
    ratios = _eq3_ratios([_softmax(row) for row in LOGITS3], Y3, 3)
    expected = 1 - 2 / 3 * sum(ratios)
    loss = SegRAVIRLoss()
    compute_loss(loss, output, target, image=image)
    assert loss.components["dice"].item() == pytest.approx(expected, rel=1e-9)
    assert DiceCELoss().terms(output.main, target)[0].item() == pytest.approx(expected, rel=1e-9)
    # explicitly all classes: the same for K = 3; without background: classes 1, 2 only
    explicit = SegRAVIRLoss(include_background=True)
    compute_loss(explicit, output, target, image=image)
    assert explicit.components["dice"].item() == pytest.approx(expected, rel=1e-9)
    dropped = DiceCELoss(include_background=False).terms(output.main, target)[0].item()
    assert dropped == pytest.approx(1 - 2 / 2 * sum(ratios[1:]), rel=1e-9)


# two classes (background / vessel) on 2x3 pixels, mostly background: LOGITS2[pixel][class]
LOGITS2 = [[2.0, -1.0], [1.5, 0.0], [0.2, 0.8], [-1.0, 1.0], [1.0, 0.5], [2.5, -0.5]]
Y2 = [0, 0, 1, 1, 0, 0]


def test_segravir_dice_binary_is_the_vessel_class_only() -> None:
    """Binary runs (DRIVE, the distillation teacher) with a two-channel softmax head: the Dice
    is the vessel (class 1) Dice, not the mean with the background Dice."""
    logits = torch.tensor(LOGITS2, dtype=torch.float64).T.reshape(1, 2, 2, 3)
    target = torch.tensor(Y2).reshape(1, 2, 3)
    probs = [_softmax(row) for row in LOGITS2]
    p1 = [p[1] for p in probs]
    vessel = 2 * sum(p * y for p, y in zip(p1, Y2)) / (sum(Y2) + sum(p1))
    background_and_vessel = 2 / 2 * sum(_eq3_ratios(probs, Y2, 2))
    assert abs(vessel - background_and_vessel) > 0.05  # the two readings really differ

    output = SegOutput(main=logits, recon=torch.zeros(1, 1, 2, 3, dtype=torch.float64))
    image = torch.zeros(1, 1, 2, 3, dtype=torch.float64)
    loss = SegRAVIRLoss()
    compute_loss(loss, output, target, image=image)
    assert loss.components["dice"].item() == pytest.approx(1 - vessel, rel=1e-9)
    assert DiceCELoss().terms(logits, target)[0].item() == pytest.approx(1 - vessel, rel=1e-9)
    # the former behaviour (mean over background and vessel) stays available by name
    both = SegRAVIRLoss(include_background=True)
    compute_loss(both, output, target, image=image)
    assert both.components["dice"].item() == pytest.approx(1 - background_and_vessel, rel=1e-9)


def test_segravir_dice_binary_one_logit_equals_two_channel_form() -> None:
    """One sigmoid logit z (K = 1) is the softmax [0, z]: both give the vessel Dice."""
    z = torch.tensor(X, dtype=torch.float64).reshape(1, 1, 2, 2)
    target = torch.tensor(Y).reshape(1, 2, 2)
    p = [_sig(x) for x in X]
    vessel = 2 * sum(pi * yi for pi, yi in zip(p, Y)) / (sum(Y) + sum(p))
    two = torch.cat([torch.zeros_like(z), z], dim=1)
    image = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    for logits in (z, two):
        loss = SegRAVIRLoss()
        compute_loss(loss, SegOutput(main=logits, recon=image.clone()), target, image=image)
        assert loss.components["dice"].item() == pytest.approx(1 - vessel, rel=1e-9)


def test_dice_ce_include_background_is_checked() -> None:
    with pytest.raises(ValueError, match="include_background"):
        DiceCELoss(include_background="yes")
    with pytest.raises(ValueError, match="include_background"):
        SegRAVIRLoss(include_background="background")


def test_segravir_loss_requires_recon_and_image() -> None:
    output, target, image = _segravir_case()
    with pytest.raises(ValueError, match="returned none"):
        compute_loss(SegRAVIRLoss(), SegOutput(main=output.main), target, image=image)
    with pytest.raises(ValueError, match="needs the input image"):
        compute_loss(SegRAVIRLoss(), output, target)


def test_compute_loss_gives_pixel_losses_main_only() -> None:
    output, target = _three_outputs()
    output.aux = [torch.full_like(output.main, float("nan")) for _ in range(2)]
    got = compute_loss(BCELoss(), output, target)
    torch.testing.assert_close(got, BCELoss()(output.main, target))
    assert issubclass(DeepSupervisionLoss, OutputLoss) and issubclass(SegRAVIRLoss, OutputLoss)
