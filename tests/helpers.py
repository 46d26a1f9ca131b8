"""What several test files share: where the public datasets are, and the command-line
overrides that shrink any synthetic config to a run of seconds."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch


@functools.cache
def fixtures() -> ModuleType:
    """``tests/data/make_fixtures.py`` (a script, not a package): tiny folders in each
    dataset's published layout (``make_drive``, ``make_chase``, ...)."""
    path = Path(__file__).parent / "data" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("retina_make_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the folder holding DRIVE/, RAVIR/, RITE/ ... (CI: ../shared/data); absent for most users.
DATA_ROOT = Path(os.environ.get("RETINA_DATA_ROOT", "/nonexistent")).expanduser()


def needs(name: str) -> pytest.MarkDecorator:
    """Skip unless ``RETINA_DATA_ROOT`` holds the dataset folder ``name``."""
    return pytest.mark.skipif(
        not (DATA_ROOT / name).is_dir(),
        reason=f"set RETINA_DATA_ROOT to a folder holding {name}/ to run this test",
    )


def dataset_dir(name: str) -> Path:
    """``RETINA_DATA_ROOT/name``, or skip the calling test when it is missing."""
    folder = DATA_ROOT / name
    if not folder.is_dir():
        pytest.skip(f"set RETINA_DATA_ROOT to a folder holding {name}/ to run this test")
    return folder


#: one epoch of two steps on three 64 px synthetic images with a 4-channel network.
TINY_CLI = [
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.dataset.init_args.num_train=3",
    "--data.init_args.dataset.init_args.num_test=1",
    "--data.init_args.dataset.init_args.height=64",
    "--data.init_args.dataset.init_args.width=64",
    "--data.init_args.patch_size=32",
    "--data.init_args.batch_size=2",
    "--data.init_args.steps_per_epoch=2",
    "--model.init_args.model.init_args.base_channels=4",
]


def patch_stack(n: int = 3, h: int = 40, w: int = 50, vessel_share: float = 0.1):
    """``n`` random uint8 RGB images with random vessel labels and a disc FOV: the
    ``(images, labels, fovs)`` a :class:`~retina_lightning.data.sampler.PatchSampler` takes."""
    import torch

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    labels = (torch.rand(n, h, w, generator=g) < vessel_share).to(torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    fov = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.5) ** 2).expand(n, h, w)
    return images, labels, fov.clone()


#: with TINY_CLI: high-contrast, lesion-free synthetic images and 60 steps of 8, enough for a
#: U-Net to learn in CPU seconds (AUROC ~0.8-0.9, where a broken pipeline stays near 0.5)
LEARNABLE_CLI = [
    "--data.init_args.dataset.init_args.vessel_contrast=2.0",
    "--data.init_args.dataset.init_args.noise_std=0.01",
    "--data.init_args.dataset.init_args.lesions=0.0",
    "--data.init_args.steps_per_epoch=20",
    "--data.init_args.batch_size=8",
    "--trainer.max_epochs=3",
    "--model.init_args.model.init_args.base_channels=8",
]


class InputLogits(torch.nn.Module):
    """A fixed 'network' whose logits are the input's first ``num_classes`` channels, so a test
    knows the probabilities it scores."""

    required_multiple = 1

    def __init__(self, num_classes: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.unused = torch.nn.Parameter(torch.zeros(1))  # an optimizer needs one parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.num_classes] + 0.0 * self.unused


def whole_image_items(image: torch.Tensor, label: torch.Tensor, fov: torch.Tensor) -> list[dict]:
    """The items of ``RetinaDataModule``'s whole-image loaders for prepared ``(N, ...)``
    tensors (no second observer), to feed a task's test loop directly."""
    return [
        {
            "image": image[i],
            "raw": image[i],
            "label": label[i],
            "fov": fov[i],
            "second": torch.zeros_like(label[i]),
            "has_second": False,
            "index": i,
            "name": f"im{i}",
        }
        for i in range(len(label))
    ]


def quiet_trainer(root, **kwargs):
    """A CPU Trainer for tests: no logger, checkpoints, progress bar or model summary; results
    under ``root``; ``kwargs`` override."""
    from lightning import Trainer

    settings = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    settings.update(kwargs)
    return Trainer(**settings)
