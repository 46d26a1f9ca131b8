"""``normalize: dataset`` (issue 16, item 8): one mean / std pooled over every FOV pixel of the
training images, against numpy; a real fit stores it in the checkpoint; `retina predict`'s
predictor and the test images use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CLI

from retina_lightning.data import OfficialSplit, RetinaDataModule, SyntheticFundus
from retina_lightning.data.base import RetinaDataset
from retina_lightning.data.transforms import Preprocess
from retina_lightning.types import Sample

REPO = Path(__file__).resolve().parents[1]


def _pooled_numpy(samples: list[Sample], pre: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of the conditioned images over all FOV pixels."""
    pixels = []
    for s in samples:
        x = torch.from_numpy(s.image).permute(2, 0, 1)[None]
        conditioned = pre.condition(x)[0].numpy().astype(np.float64) / 255.0
        pixels.append(conditioned[:, s.fov.astype(bool)])
    pooled = np.concatenate(pixels, axis=1)
    return pooled.mean(1), pooled.std(1)


class _TwoSizes(RetinaDataset):
    """Training images of two sizes with FOVs of very different area and brightness: the
    pooled statistics differ from an average of per-image ones, and zero padding to a common
    size must not count."""

    def subsets(self) -> tuple[str, ...]:
        return ("training", "test")

    def load(self, subset: str) -> list[Sample]:
        rng = np.random.default_rng(0 if subset == "training" else 1)
        out = []
        for i, (h, w, r, level) in enumerate([(40, 48, 0.45, 60), (64, 56, 0.2, 190)]):
            yy, xx = np.mgrid[:h, :w]
            fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (r * min(h, w) * 2) ** 2 / 4
            image = rng.integers(0, 60, (h, w, 3)) + np.array([level, level // 2, 10])
            image = (image * fov[..., None]).clip(0, 255).astype(np.uint8)
            label = (rng.random((h, w)) < 0.1).astype(np.uint8) * fov
            out.append(Sample(name=f"{subset}{i}", image=image, label=label, fov=fov))
        return out


@pytest.mark.parametrize("channels", ["rgb", "green"])
def test_dataset_statistics_are_pooled_over_training_fov_pixels(channels):
    pre = Preprocess(channels=channels, normalize="dataset")
    dm = RetinaDataModule(
        dataset=_TwoSizes(),
        split=OfficialSplit(val_fraction=0.0),
        preprocess=pre,
        patch_size=32,
        fov_diameter="native",  # two training sizes: test images stay at theirs
    )
    dm.setup("fit")
    mean, std = dm.dataset_stats(torch.device("cpu"))
    expected_mean, expected_std = _pooled_numpy(dm.samples.train, pre)
    np.testing.assert_allclose(mean.flatten().numpy(), expected_mean, atol=1e-5)
    np.testing.assert_allclose(std.flatten().numpy(), expected_std, atol=1e-5)
    # the test images are normalised with them, not with their own statistics
    batch = next(iter(dm.test_dataloader()))
    whole = dm.prepare_whole(batch)
    raw = pre.condition(batch["image"]).float() / 255.0
    expected = (raw - torch.from_numpy(expected_mean).float().view(1, -1, 1, 1)) / torch.from_numpy(
        expected_std
    ).float().view(1, -1, 1, 1)
    torch.testing.assert_close(whole["image"], expected, atol=1e-4, rtol=0)
    assert dm.state_dict()["dataset_mean"].flatten().tolist() == pytest.approx(
        expected_mean.tolist(), abs=1e-5
    )


@pytest.mark.slow
def test_a_fit_stores_the_statistics_and_predict_uses_them(tmp_path, monkeypatch):
    from retina_lightning.cli import main
    from retina_lightning.predict import load_predictor

    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/synthetic/unet.yaml")
    main(
        [
            "fit",
            "--config",
            config,
            *TINY_CLI,
            "--data.init_args.preprocess.normalize=dataset",
            "--model.init_args.connectivity=false",
        ]
    )
    (ckpt,) = tmp_path.glob("runs/synthetic/unet/*/checkpoints/last.ckpt")
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)["RetinaDataModule"]

    # the same training images as that fit: the config's dataset and split, TINY_CLI's sizes
    dm = RetinaDataModule(
        dataset=SyntheticFundus(num_train=3, num_test=1, height=64, width=64, seed=0),
        split=OfficialSplit(val_fraction=0.25),
        patch_size=32,
    )
    dm.setup("fit")
    mean, std = _pooled_numpy(dm.samples.train, Preprocess())
    np.testing.assert_allclose(stored["dataset_mean"].flatten().numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(stored["dataset_std"].flatten().numpy(), std, atol=1e-5)

    predictor = load_predictor(ckpt, device="cpu")
    sample = dm.samples.test[0]
    x = torch.from_numpy(sample.image).permute(2, 0, 1)[None].float() / 255.0
    m, s = (torch.from_numpy(a).float().view(1, 3, 1, 1) for a in (mean, std))
    with torch.no_grad():
        expected = predictor.inferer(predictor.model, (x - m) / s)[0].numpy()
    np.testing.assert_allclose(predictor(sample.image, sample.fov), expected, atol=1e-5)
    # per-image statistics would give another map: the check above can tell them apart
    own_m, own_s = Preprocess.fov_stats(
        x.mul(255).round().byte(), torch.from_numpy(sample.fov)[None]
    )
    with torch.no_grad():
        per_image = predictor.inferer(predictor.model, (x - own_m) / own_s)[0].numpy()
    assert np.abs(per_image - expected).max() > 1e-3
