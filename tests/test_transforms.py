"""Input conditioning (``Preprocess``) against scikit-image, step by step and as 004's code
chains them, and the training region of 004's unmasked patch database."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color, exposure

from retina_lightning.data.transforms import LUMA, Augment, Preprocess, rescale_intensity


def _fundus(seed: int = 0, h: int = 64, w: int = 72) -> np.ndarray:
    """A fundus-like RGB uint8 image: a bright disc on black with dark curvy lines."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (0.45 * min(h, w)) ** 2
    base = np.stack([0.8, 0.45, 0.2]) * (0.6 + 0.4 * rng.random((h, w, 1)))
    vessels = np.abs(np.sin(xx / 5.0 + 3 * np.sin(yy / 11.0))) < 0.15
    img = base * disc[..., None] * np.where(vessels, 0.55, 1.0)[..., None]
    return (img * 255).round().astype(np.uint8)


def _condition(pre: Preprocess, rgb: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    return pre.condition(x)[0].permute(1, 2, 0).numpy().squeeze(-1) / 255.0


def _authors_process(rgb: np.ndarray, gamma: float = 1.7) -> np.ndarray:
    """Taib/patch2image routines._process_img with gray, clahe and gamma (re-typed from the
    description of 004's code, scikit-image calls only)."""
    img = exposure.rescale_intensity(rgb.astype(float), out_range=(0, 1))
    img = color.rgb2gray(img)
    img = exposure.rescale_intensity(img, out_range=(0, 1))
    img = exposure.equalize_adapthist(img)
    img = exposure.adjust_gamma(img, gamma)
    return exposure.rescale_intensity(img, out_range=(0, 1))


P2I = dict(
    channels="gray",
    luma="709",
    rescale=True,
    clahe=True,
    clahe_backend="skimage",
    clahe_clip=0.01,
    clahe_grid=(8, 8),
    gamma=1.7,
    order="clahe-gamma",
    normalize="none",
)


def test_004_recipe_matches_the_authors_scikit_image_chain():
    rgb = _fundus()
    ours = _condition(Preprocess(**P2I), rgb)
    theirs = _authors_process(rgb)
    # uint8 storage of the gray image before CLAHE and of the result: a few grey levels
    assert np.abs(ours - theirs).mean() < 2.5e-3
    assert np.abs(ours - theirs).max() < 0.03
    # the old order (gamma 1/1.7 before CLAHE) is a different image, not a rounding away
    old = _condition(Preprocess(**{**P2I, "gamma": 1 / 1.7, "order": "gamma-clahe"}), rgb)
    assert np.abs(old - theirs).mean() > 10 * np.abs(ours - theirs).mean()


def test_gamma_is_an_exponent_and_rescale_stretches():
    rgb = _fundus(1)
    plain = Preprocess(channels="gray", luma="709", normalize="none")
    gray = _condition(plain, rgb)
    expected_gray = color.rgb2gray(rgb.astype(float) / 255.0)
    assert np.abs(gray - expected_gray).max() <= 0.5 / 255 + 1e-6
    gam = _condition(Preprocess(channels="gray", luma="709", gamma=1.7, normalize="none"), rgb)
    # x ** 1.7 darkens: every mid-tone pixel goes down, as skimage.adjust_gamma(x, 1.7)
    reference = exposure.adjust_gamma(expected_gray, 1.7)
    assert np.abs(gam - reference).max() < 2.5 / 255
    assert gam[gray > 0.2].mean() < gray[gray > 0.2].mean()
    stretched = _condition(Preprocess(channels="gray", rescale=True, normalize="none"), rgb)
    assert stretched.min() == 0.0 and stretched.max() == 1.0


def test_rescale_intensity_per_image_and_constant_images():
    x = torch.stack([torch.linspace(0.2, 0.6, 16).view(1, 4, 4), torch.full((1, 4, 4), 0.3)])
    out = rescale_intensity(x)
    assert out[0].min() == 0 and out[0].max() == 1
    torch.testing.assert_close(out[1], x[1])  # constant: unchanged, no division by zero


def test_luma_weights_and_bad_values_name_the_key():
    assert LUMA["709"] == (0.2125, 0.7154, 0.0721)
    with pytest.raises(ValueError, match="preprocess.order"):
        Preprocess(order="gamma-first")
    with pytest.raises(ValueError, match="preprocess.clahe_backend"):
        Preprocess(clahe_backend="opencv")
    with pytest.raises(ValueError, match="preprocess.gamma"):
        Preprocess(gamma=0.0)
    with pytest.raises(ValueError, match="preprocess.luma"):
        Preprocess(luma="2020")


def test_skimage_clahe_equals_equalize_adapthist_on_each_channel():
    rgb = _fundus(2)
    pre = Preprocess(channels="rgb", clahe=True, clahe_backend="skimage", clahe_clip=0.02)
    out = pre.condition(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].numpy() / 255.0
    for c in range(3):
        ref = exposure.equalize_adapthist(
            rgb[..., c] / 255.0, kernel_size=(64 // 8, 72 // 8), clip_limit=0.02
        )
        assert np.abs(out[c] - ref).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("region", ["fov", "image"])
def test_train_region_sets_patch_centres_and_loss_pixels(tiny_datamodule, region):
    still = Augment(hflip=False, vflip=False, rot90=False, brightness=0.0, contrast=0.0)
    dm = tiny_datamodule(
        train_region=region, augment=still, patch_size=16, batch_size=256, steps_per_epoch=1
    )
    dm.setup("fit")
    batch = dm.training_patches(0, torch.device("cpu"))
    centre_counted = batch["fov"][:, 8, 8].all().item()
    sampler = dm._sampler
    idx, y, x = sampler.centres(4000, torch.Generator().manual_seed(0))
    real_fov = torch.stack(
        [torch.from_numpy(s.fov.astype(bool)) for s in dm.samples.train]
    )  # all synthetic images have one size
    inside = real_fov[idx, y, x].float().mean().item()
    if region == "fov":
        assert inside == 1.0  # every centre inside the FOV
    else:
        assert inside < 0.95  # centres fall on the dark surround too
    assert centre_counted  # fov: centres in the FOV; image: the loss counts the surround


def test_train_region_image_keeps_fov_statistics(tiny_datamodule):
    """Normalisation statistics come from the real FOV whatever the training region."""
    fov = tiny_datamodule(train_region="fov")
    img = tiny_datamodule(train_region="image")
    fov._stack_train(torch.device("cpu"))
    img._stack_train(torch.device("cpu"))
    torch.testing.assert_close(fov._dataset_stats[0], img._dataset_stats[0])
    torch.testing.assert_close(fov._dataset_stats[1], img._dataset_stats[1])


def test_train_region_rejects_unknown_values(tiny_datamodule):
    with pytest.raises(ValueError, match="train_region"):
        tiny_datamodule(train_region="disc")


def test_gray_601_green_and_gamma_before_clahe_against_scikit_image():
    """The other channel choices and the gamma-clahe order, value by value (issue 16, item 7)."""
    rgb = _fundus(3)
    x = rgb.astype(float) / 255.0
    gray601 = _condition(Preprocess(channels="gray", luma="601", normalize="none"), rgb)
    assert np.abs(gray601 - x @ np.array([0.299, 0.587, 0.114])).max() <= 0.5 / 255 + 1e-6
    green = _condition(Preprocess(channels="green", normalize="none"), rgb)
    assert np.array_equal(green, rgb[..., 1] / 255.0)
    pre = Preprocess(
        channels="green",
        gamma=0.6,
        clahe=True,
        clahe_backend="skimage",
        clahe_clip=0.02,
        order="gamma-clahe",
        normalize="none",
    )
    ours = _condition(pre, rgb)
    h, w = rgb.shape[:2]
    theirs = exposure.equalize_adapthist(
        exposure.adjust_gamma(x[..., 1], 0.6), kernel_size=(h // 8, w // 8), clip_limit=0.02
    )
    assert np.abs(ours - theirs).max() <= 1.5 / 255
    # the other order is another image: the order is applied, not ignored
    swapped = exposure.adjust_gamma(
        exposure.equalize_adapthist(x[..., 1], kernel_size=(h // 8, w // 8), clip_limit=0.02), 0.6
    )
    assert np.abs(ours - swapped).max() > 10 / 255
