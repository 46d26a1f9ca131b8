"""The YAML configs under ``configs/``: their content, their splits, and short real fits.

``tests/test_cli.py`` checks that every config parses; this file checks what the configs say:

* the method recipes on DRIVE carry the papers' values (``/work/shared/REFERENCE.md``,
  "Hyper-parameters the papers give", and the papers' sections cited in each YAML);
* every model built from a config takes the channels its preprocessing gives, outputs the
  classes its target needs, accepts its patch / tile sizes, and is trained by a loss that reads
  all of its outputs (every parameter gets a gradient: side outputs of DPN / IterNet need
  ``DeepSupervisionLoss``, SegRAVIR's reconstruction ``SegRAVIRLoss``);
* every protocol gives the published train / val / test sizes (datasets stubbed at their
  published image counts) and each "steps_per_epoch" follows the arithmetic in its comment;
* each protocol's dataset reader and split load the fixture folders of
  ``tests/data/make_fixtures.py`` through the datamodule;
* with ``RETINA_DATA_ROOT`` (DRIVE, RITE, RAVIR): the real splits, and a real two-step ``fit``
  of every ``configs/drive/*_short.yaml`` that writes checkpoints.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import DATA_ROOT, dataset_dir, fixtures, needs
from lightning.pytorch.cli import LightningArgumentParser
from torch import nn

from retina_lightning.data import RetinaDataModule
from retina_lightning.data.base import RetinaDataset
from retina_lightning.data.resolution import scale_for, scaled_size
from retina_lightning.data.transforms import Preprocess
from retina_lightning.losses import DeepSupervisionLoss, OutputLoss, SegRAVIRLoss, compute_loss
from retina_lightning.tasks import SegmentationTask
from retina_lightning.tracking import method_name
from retina_lightning.types import Sample, as_output

REPO = Path(__file__).resolve().parents[1]


make_fixtures = fixtures()

CONFIGS = sorted(
    str(p.relative_to(REPO / "configs"))
    for p in (REPO / "configs").rglob("*.yaml")
    # data/: fragments layered after a method; models/: overlays of the shipped models
    if p.parent.name not in ("trainer", "data", "models")
)
DRIVE_SHORT = [c for c in CONFIGS if c.startswith("drive/") and c.endswith("_short.yaml")]


def load(config: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "configs" / config).read_text())


@functools.cache
def _parser(key: str) -> LightningArgumentParser:
    parser = LightningArgumentParser(exit_on_error=False)
    cls = SegmentationTask if key == "model" else RetinaDataModule
    parser.add_lightning_class_args(cls, key, subclass_mode=True)
    return parser


def instantiate(key: str, section: dict[str, Any]) -> Any:
    """Build the config's ``model`` (SegmentationTask) or ``data`` (RetinaDataModule) section
    the way LightningCLI does (jsonargparse, subclass mode)."""
    parser = _parser(key)
    return getattr(parser.instantiate_classes(parser.parse_object({key: section})), key)


def init_args(section: dict[str, Any]) -> dict[str, Any]:
    return section.get("init_args") or {}


def class_name(section: dict[str, Any]) -> str:
    return section["class_path"].rsplit(".", 1)[-1]


def callbacks(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {class_name(c): init_args(c) for c in cfg["trainer"].get("callbacks") or []}


def is_short(config: str) -> bool:
    return config.endswith("_short.yaml")


# --------------------------------------------------------------------------------------------
# (a) content: the papers' recipes


def test_configs_exist():
    """One config per protocol and per method recipe (and a short variant of each recipe)."""
    expected = {
        "drive/unet.yaml",
        "stare/unet_first10.yaml",
        "stare/unet_loo.yaml",
        "stare/unet_5fold.yaml",
        "stare/unet_16_4.yaml",
        "chase_db1/unet_20_8.yaml",
        "chase_db1/unet_14_14.yaml",
        "chase_db1/unet_4fold.yaml",
        # the papers' own CHASE_DB1 protocols with their methods (issue 13)
        "chase_db1/dpn_20_8.yaml",
        "chase_db1/dpn_14_14.yaml",
        "chase_db1/iternet_20_8.yaml",
        "chase_db1/patch2image_miniunet_4fold.yaml",
        "chase_db1/patch2image_dense_4fold.yaml",
        "hrf/unet.yaml",
        "rite/unet_av.yaml",
        "ravir/unet_av.yaml",
        "ravir/segravir.yaml",
        "idrid/unet_od.yaml",
        "folder/unet.yaml",
        "synthetic/unet.yaml",
        "synthetic/unet_av.yaml",
        # DPN / IterNet with 4 of the 20 DRIVE training images held out (the papers hold none)
        "drive/dpn_16_4.yaml",
        "drive/iternet_16_4.yaml",
    }
    methods = [
        "unet",
        "smp_unet",
        "r2unet",
        "dpn",
        "iternet",
        "segravir",
        "patch2image_light",
        "patch2image_miniunet",
        "patch2image_dense",
    ]
    expected |= {f"drive/{m}.yaml" for m in methods} | {f"drive/{m}_short.yaml" for m in methods}
    assert expected <= set(CONFIGS), sorted(expected - set(CONFIGS))


def test_dpn_recipe():
    """002 sec. 3.1-3.3, 4.3: C0/C1/C2 16/8/8, front 32, 7 DPR-Blocks, side outputs after 1,
    3, 5; class-balanced BCE (eq. 1, a sum) on all four outputs; Adam 1e-3, weight decay 5e-4,
    batch 1, 512 crops, 100k iterations, whole-image test."""
    cfg = load("drive/dpn.yaml")
    task, data = init_args(cfg["model"]), init_args(cfg["data"])
    model = init_args(task["model"])
    assert class_name(task["model"]) == "DPN"
    assert (model["c0"], model["c1"], model["c2"], model["front_channels"]) == (16, 8, 8, 32)
    assert model["num_dpr_blocks"] == 7 and model["side_outputs"] == [1, 3, 5]
    loss = task["loss"]
    assert class_name(loss) == "DeepSupervisionLoss"
    inner = init_args(loss)["loss"]
    assert class_name(inner) == "ClassBalancedBCELoss"
    assert init_args(inner)["reduction"] == "sum"
    assert init_args(loss).get("weights") is None  # w_i = 1
    assert cfg["optimizer"]["class_path"] == "torch.optim.Adam"
    assert init_args(cfg["optimizer"]) == {"lr": 1e-3, "weight_decay": 5e-4}
    assert "lr_scheduler" not in cfg
    assert (data["batch_size"], data["patch_size"]) == (1, 512)
    assert cfg["trainer"]["max_epochs"] * data["steps_per_epoch"] * data["batch_size"] == 100_000
    assert init_args(task["inferer"])["mode"] == "whole"
    # 002 sec. 4.1: the 20 official training images, none held out
    assert class_name(data["split"]) == "OfficialSplit"
    assert init_args(data["split"])["val_fraction"] == 0.0


def test_iternet_recipe():
    """003 sec. 3, 4.2, 5 (+ public code): N = 4 (3 iterations), BCE on every output with
    weight 1, 128 px patches, batch 32, Adam 1e-3, 200 epochs of 100 * 20 // 32 steps."""
    cfg = load("drive/iternet.yaml")
    task, data = init_args(cfg["model"]), init_args(cfg["data"])
    model = init_args(task["model"])
    assert class_name(task["model"]) == "IterNet"
    assert model["iterations"] == 3 and model["base_channels"] == 32
    assert class_name(task["loss"]) == "DeepSupervisionLoss"
    assert class_name(init_args(task["loss"])["loss"]) == "BCELoss"
    assert (data["patch_size"], data["batch_size"], data["steps_per_epoch"]) == (128, 32, 62)
    assert init_args(cfg["optimizer"]) == {"lr": 1e-3}
    assert cfg["trainer"]["max_epochs"] == 200
    inferer = init_args(task["inferer"])
    assert inferer["tile_size"] == 128 and inferer["blend"] == "mean"
    # 003 sec. 5: "we use 20 images for training [...] We do not use any validation images"
    assert class_name(data["split"]) == "OfficialSplit"
    assert init_args(data["split"])["val_fraction"] == 0.0


#: the papers' DRIVE split (all 20 training images) and its 16 / 4 hold-out variant
PAPER_AND_16_4 = [
    ("drive/dpn.yaml", "drive/dpn_16_4.yaml"),
    ("drive/iternet.yaml", "drive/iternet_16_4.yaml"),
]


def _without_val_fraction(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    del cfg["data"]["init_args"]["split"]["init_args"]["val_fraction"]
    return cfg


def _header(config: str) -> str:
    lines = (REPO / "configs" / config).read_text().splitlines(keepends=True)
    return "".join(line for line in lines if line.startswith("#"))


def _header_ckpt_paths(config: str) -> list[str]:
    """``--ckpt_path X`` of the header's example command lines (the lines of the commands)."""
    return re.findall(r"^#\s+(?:retina test .*|)--ckpt_path (\w+)", _header(config), re.M)


@pytest.mark.parametrize(("paper", "variant"), PAPER_AND_16_4)
def test_paper_split_and_16_4_variant(paper, variant):
    """``dpn.yaml`` / ``iternet.yaml`` train on all 20 DRIVE training images (val_fraction 0:
    validation, hence the threshold, runs on the training images and the paper's rule is the
    last checkpoint); the ``_16_4`` variant holds 4 out and is otherwise the same file."""
    full, held = load(paper), load(variant)
    assert init_args(init_args(full["data"])["split"])["val_fraction"] == 0.0
    assert init_args(init_args(held["data"])["split"])["val_fraction"] == 0.2
    assert _without_val_fraction(full) == _without_val_fraction(held)
    samples = published_split(paper)
    assert (len(samples.train), len(samples.val), len(samples.test)) == (20, 0, 20)
    samples = published_split(variant)
    assert (len(samples.train), len(samples.val), len(samples.test)) == (16, 4, 20)
    # the header's test commands follow the rule: last without hold-out, best with it
    assert set(_header_ckpt_paths(paper)) == {"last"}
    assert set(_header_ckpt_paths(variant)) == {"best"}
    assert variant in _header(paper) and paper in _header(variant)


@pytest.mark.parametrize("config", ["drive/segravir.yaml", "ravir/segravir.yaml"])
def test_segravir_recipe(config):
    """000 sec. V-A: L = 1 Dice + 1 CE + 0.001 L2, 256 px patches, batch 6, Adam 1e-3 halved
    every 50 epochs, 600 epochs, sliding-window inference; the ReLU reconstruction (sec. IV-A)
    must be able to reach its target: unnormalised input, or no final ReLU."""
    cfg = load(config)
    task, data = init_args(cfg["model"]), init_args(cfg["data"])
    assert class_name(task["model"]) == "SegRAVIR"
    assert class_name(task["loss"]) == "SegRAVIRLoss"
    weights = init_args(task["loss"])
    assert (weights["dice_weight"], weights["ce_weight"], weights["recon_weight"]) == (
        1.0,
        1.0,
        0.001,
    )
    assert (data["patch_size"], data["batch_size"]) == (256, 6)
    assert cfg["optimizer"]["class_path"] == "torch.optim.Adam"
    assert init_args(cfg["optimizer"])["lr"] == 1e-3
    assert cfg["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"
    assert init_args(cfg["lr_scheduler"]) == {"step_size": 50, "gamma": 0.5}
    assert cfg["trainer"]["max_epochs"] == 600
    assert init_args(task["inferer"])["mode"] == "sliding"
    model = init_args(task["model"])
    assert model["recon_relu"] is False or data["preprocess"]["normalize"] == "none"


def test_segravir_on_ravir_is_three_class_av():
    cfg = load("ravir/segravir.yaml")
    task, data = init_args(cfg["model"]), init_args(cfg["data"])
    assert init_args(task["model"])["num_classes"] == 3 and data["target"] == "av"
    split = data["split"]
    assert class_name(split) == "KFoldSplit" and init_args(split)["subset"] == "train"


def test_r2unet_recipe():
    """001 sec. 5.1-5.3: gray input, 90/10 split, 3 encoder / decoder stages, BCE, Adam,
    at most 10 epochs, early stopping with patience 5."""
    cfg = load("drive/r2unet.yaml")
    task, data = init_args(cfg["model"]), init_args(cfg["data"])
    assert class_name(task["model"]) == "R2UNet" and init_args(task["model"])["depth"] == 3
    assert class_name(task["loss"]) == "BCELoss"
    assert cfg["optimizer"]["class_path"] == "torch.optim.Adam"
    assert data["preprocess"]["channels"] == "gray"
    assert init_args(data["split"])["val_fraction"] == 0.1
    assert cfg["trainer"]["max_epochs"] == 10
    assert callbacks(cfg)["EarlyStopping"] == {"monitor": "val/auroc", "mode": "max", "patience": 5}
    assert init_args(cfg["optimizer"]) == {"lr": 1e-3}  # 001 names no rate: Adam's default
    assert init_args(task["loss"]) == {}  # plain BCE: no pos_weight (001 does not weight)


@pytest.mark.parametrize(
    ("config", "shared", "count"),
    [
        ("drive/r2unet.yaml", False, 1_043_313),
        ("drive/r2unet_short.yaml", False, 261_305),
    ],
)
def test_r2unet_recurrent_weights(config, shared, count):
    """001 sec. 3.2, O(t) = w^f * x(t) + w^r * x(t-1) + b: separate feed-forward and
    recurrent weights (1,043,313 parameters at the recipe's widths); one shared convolution,
    the public implementations' RCL, gives 554,865 (139,193 for the short variant)."""
    section = load(config)["model"]
    assert init_args(init_args(section)["model"])["shared_weights"] is shared
    task = instantiate("model", section)
    assert sum(p.numel() for p in task.model.parameters()) == count
    section = copy.deepcopy(section)
    init_args(init_args(section)["model"])["shared_weights"] = True
    task = instantiate("model", section)
    shared_count = {"drive/r2unet.yaml": 554_865, "drive/r2unet_short.yaml": 139_193}[config]
    assert sum(p.numel() for p in task.model.parameters()) == shared_count


@pytest.mark.parametrize("net", ["light", "miniunet", "dense"])
def test_patch2image_recipe(net):
    """004 sec. 6.1.2 and 6.3 as the authors' code runs them: gray, CLAHE (scikit-image),
    gamma 1.7 (x ** 1.7), [0, 1] input; 32 px patches over the whole image; BCE - Dice,
    AdaDelta lr 1.0, plateau x0.2 after 5 epochs down to 1e-5, early stopping 30, batch 32,
    20 % validation; 004's unmasked metrics beside the FOV ones."""
    cfg = load(f"drive/patch2image_{net}.yaml")
    task, data = init_args(cfg["model"]), init_args(cfg["data"])
    pre = data["preprocess"]
    assert (pre["channels"], str(pre["luma"]), pre["gamma"], pre["clahe"]) == (
        "gray",
        "709",
        1.7,
        True,
    )
    assert (pre["order"], pre["clahe_backend"], pre["clahe_clip"]) == (
        "clahe-gamma",
        "skimage",
        0.01,
    )
    assert pre["rescale"] is True and pre["normalize"] == "none"
    assert data["patch_size"] == 32 and data["train_region"] == "image"
    assert task["unmasked_metrics"] is True
    assert init_args(task["model"])["in_channels"] == 1
    assert class_name(task["loss"]) == "BCEDiceLoss"
    assert cfg["optimizer"]["class_path"] == "torch.optim.Adadelta"
    assert init_args(cfg["optimizer"])["lr"] == 1.0
    assert cfg["lr_scheduler"]["class_path"] == "lightning.pytorch.cli.ReduceLROnPlateau"
    plateau = init_args(cfg["lr_scheduler"])
    assert (plateau["factor"], plateau["patience"], plateau["min_lr"]) == (0.2, 5, 1e-5)
    assert (plateau["monitor"], plateau["mode"]) == ("val/auroc", "max")
    assert callbacks(cfg)["EarlyStopping"] == {
        "monitor": "val/auroc",
        "mode": "max",
        "patience": 30,
    }
    assert data["batch_size"] == 32 and init_args(data["split"])["val_fraction"] == 0.2
    assert init_args(task["inferer"])["mode"] == "whole"


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.startswith("drive/") and is_short(c)])
def test_short_variant_keeps_the_recipe(config):
    """A ``_short`` file changes sizes and durations only: same model class, loss, optimiser,
    scheduler, preprocessing and split as its long recipe."""
    short, full = load(config), load(config.replace("_short", ""))
    st, ft = init_args(short["model"]), init_args(full["model"])
    assert st["model"]["class_path"] == ft["model"]["class_path"]
    assert st["loss"] == ft["loss"]
    assert short["optimizer"] == full["optimizer"]
    assert (short.get("lr_scheduler") or {}).get("class_path") == (
        full.get("lr_scheduler") or {}
    ).get("class_path")
    sd, fd = init_args(short["data"]), init_args(full["data"])
    assert sd["preprocess"] == fd["preprocess"] and sd["split"] == fd["split"]
    assert sd["dataset"] == fd["dataset"]
    assert short["trainer"]["max_epochs"] <= 2
    assert sd["steps_per_epoch"] * short["trainer"]["max_epochs"] <= 20
    assert sd["patch_size"] <= 64 and sd["batch_size"] <= 4
    assert set(callbacks(short)) == set(callbacks(full))


@pytest.mark.parametrize(
    ("config", "count"),
    [
        ("drive/dpn.yaml", 95_988),  # "about 96k" (002 sec. 3.1, 5)
        ("drive/patch2image_light.yaml", 8_889),  # 004 sec. 6.2
        ("drive/patch2image_miniunet.yaml", 316_657),
        ("drive/patch2image_dense.yaml", 1_032_588),
        ("drive/laptop.yaml", 117_073),  # the plain script's U-Net (benchmarks/plain_unet.py)
    ],
)
def test_paper_parameter_counts(config, count):
    """The recipes build the papers' networks at the papers' sizes (also in docs/configs.md)."""
    task = instantiate("model", load(config)["model"])
    assert sum(p.numel() for p in task.model.parameters()) == count
    assert f"{count:,}" in (REPO / "docs" / "configs.md").read_text()


def test_docs_name_existing_configs():
    """Every config that docs/configs.md names exists, and every recipe is in its tables; a
    split variant of a recipe (``drive/dpn_16_4.yaml``: ``<recipe>_<split>``, the suffixes that
    ``retina_lightning.tracking.method_name`` strips) is covered by its recipe's row."""
    text = (REPO / "docs" / "configs.md").read_text()
    named = set(re.findall(r"`([a-z0-9_]+/[a-z0-9_]+\.yaml)`", text))
    assert named and named <= set(CONFIGS), sorted(named - set(CONFIGS))
    recipes = {c for c in CONFIGS if c.startswith("drive/") and not is_short(c)}

    def covered(config: str) -> bool:
        folder, stem = config.removesuffix(".yaml").split("/")
        return config in named or f"{folder}/{method_name(stem)}.yaml" in named

    assert all(covered(c) for c in recipes), sorted(c for c in recipes if not covered(c))


# --------------------------------------------------------------------------------------------
# (a) content: model, preprocessing, target and loss agree, for every config


def _model_sections() -> dict[str, str]:
    """One config per distinct (model, loss, inferer, preprocess, target, patch) combination."""
    seen: dict[str, str] = {}
    for config in CONFIGS:
        cfg = load(config)
        data = init_args(cfg["data"])
        key = json.dumps(
            [cfg["model"], data.get("preprocess"), data.get("target"), data.get("patch_size")],
            sort_keys=True,
        )
        seen.setdefault(key, config)
    return seen


@pytest.mark.parametrize("config", sorted(_model_sections().values()))
def test_model_matches_data_and_loss(config):
    """Build the config's SegmentationTask; check channels, classes, patch / tile multiples,
    then one training step on a random 32x32 batch: the loss is finite and reaches every
    parameter (an unsupervised side output or reconstruction would get no gradient)."""
    torch.manual_seed(0)
    cfg = load(config)
    data = init_args(cfg["data"])
    preprocess = Preprocess(**(data.get("preprocess") or {}))
    task = instantiate("model", cfg["model"])
    model = task.model
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == preprocess.out_channels, (
        f"{config}: the model takes {first.in_channels} channels, preprocess gives "
        f"{preprocess.out_channels}"
    )
    expected_classes = 3 if data.get("target") == "av" else 1
    multiple = int(getattr(model, "required_multiple", 1))
    assert data.get("patch_size", 128) % multiple == 0
    if task.inferer.mode == "sliding":
        assert task.inferer.tile_size % multiple == 0

    normalized = preprocess.normalize != "none"
    x = torch.randn(2, preprocess.out_channels, 32, 32)
    x = x if normalized else x.sigmoid()  # [0, 1] input where the config does not normalise
    target = torch.randint(0, expected_classes + (expected_classes == 1), (2, 32, 32))
    fov = torch.ones(2, 32, 32, dtype=torch.bool)
    model.train()
    output = as_output(model(x))
    assert output.main.shape == (2, expected_classes, 32, 32)
    # the task reads the class count off the model: its metrics depend on it
    assert task.num_classes == expected_classes, (
        f"{config}: SegmentationTask infers {task.num_classes} classes for a model with "
        f"{expected_classes} output channels"
    )
    loss = compute_loss(task.loss, output, target, fov, x)
    assert torch.isfinite(loss)
    if output.aux:
        assert isinstance(task.loss, DeepSupervisionLoss)
    if output.recon is not None:
        assert isinstance(task.loss, SegRAVIRLoss)
    if not output.aux and output.recon is None:
        assert not isinstance(task.loss, OutputLoss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{config}: no gradient reaches {missing[:5]}"


# --------------------------------------------------------------------------------------------
# (a) content: the protocols give the published split sizes


class Published(RetinaDataset):
    """A stand-in with a dataset's published subsets and image counts (1x1 images)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        super().__init__(None)
        self.sizes = sizes

    def subsets(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def load(self, subset: str) -> list[Sample]:
        self._check_subset(subset)
        one = np.ones((1, 1), np.uint8)
        return [
            Sample(f"{subset}{i:02d}", np.zeros((1, 1, 3), np.uint8), one, one.astype(bool))
            for i in range(self.sizes[subset])
        ]


PUBLISHED = {
    "DRIVE": {"training": 20, "test": 20},
    "STARE": {"all": 20},
    "CHASEDB1": {"all": 28},
    "HRF": {"all": 45},
    "RITE": {"training": 20, "test": 20},
    "RAVIR": {"train": 23, "test": 19},
    "IDRiDOpticDisc": {"training": 54, "test": 27},
}

# (train, val, test) images, and the test images as indices into the name-ordered subset.
SPLIT_SIZES: dict[str, tuple[tuple[int, int, int], list[int] | None]] = {
    "drive/unet.yaml": ((16, 4, 20), list(range(20))),
    "stare/unet_first10.yaml": ((8, 2, 10), list(range(10, 20))),
    "stare/unet_loo.yaml": ((17, 2, 1), [0]),
    "stare/unet_5fold.yaml": ((13, 3, 4), [0, 1, 2, 3]),
    "stare/unet_16_4.yaml": ((16, 0, 4), [16, 17, 18, 19]),
    "chase_db1/unet_20_8.yaml": ((16, 4, 8), list(range(20, 28))),
    "chase_db1/unet_14_14.yaml": ((11, 3, 14), list(range(14, 28))),
    "chase_db1/unet_4fold.yaml": ((17, 4, 7), list(range(7))),
    # 002 / 003 hold no CHASE_DB1 image out either; 004 holds 20 % out of each fold
    "chase_db1/dpn_20_8.yaml": ((20, 0, 8), list(range(20, 28))),
    "chase_db1/dpn_14_14.yaml": ((14, 0, 14), list(range(14, 28))),
    "chase_db1/iternet_20_8.yaml": ((20, 0, 8), list(range(20, 28))),
    "chase_db1/patch2image_miniunet_4fold.yaml": ((17, 4, 7), list(range(7))),
    "chase_db1/patch2image_dense_4fold.yaml": ((17, 4, 7), list(range(7))),
    "hrf/unet.yaml": ((12, 3, 30), list(range(15, 45))),
    "rite/unet_av.yaml": ((16, 4, 20), None),
    "ravir/unet_av.yaml": ((14, 4, 5), list(range(5))),
    "ravir/segravir.yaml": ((14, 4, 5), list(range(5))),
    "idrid/unet_od.yaml": ((43, 11, 27), None),
    "drive/r2unet.yaml": ((18, 2, 20), None),
    # 002 / 003: all 20 DRIVE training images train, none held out (the datamodule then
    # validates on the training images); the _16_4 variants hold 4 out (default below)
    "drive/dpn.yaml": ((20, 0, 20), list(range(20))),
    "drive/dpn_short.yaml": ((20, 0, 20), None),
    "drive/iternet.yaml": ((20, 0, 20), list(range(20))),
    "drive/iternet_short.yaml": ((20, 0, 20), None),
    "drive/dpn_16_4.yaml": ((16, 4, 20), list(range(20))),
    "drive/iternet_16_4.yaml": ((16, 4, 20), list(range(20))),
    # the laptop recipe trains on all 20, as the plain script it is measured against
    "drive/laptop.yaml": ((20, 0, 20), list(range(20))),
}
for _c in CONFIGS:
    if _c.startswith("drive/") and not _c.startswith("drive/r2unet"):
        SPLIT_SIZES.setdefault(_c, ((16, 4, 20), None))
SPLIT_SIZES["drive/r2unet_short.yaml"] = ((18, 2, 20), None)


def published_split(config: str):
    cfg = load(config)
    data = init_args(cfg["data"])
    split = instantiate("data", cfg["data"]).split
    dataset = Published(PUBLISHED[class_name(data["dataset"])])
    return split(dataset)


def test_every_real_dataset_config_has_a_split_size():
    # workflow chains (distill/, patch2image/) reuse these protocols and are tested on their own
    real = [
        c
        for c in CONFIGS
        if class_name(load(c)["data"]["init_args"]["dataset"]) in PUBLISHED
        and not c.startswith(("distill/", "patch2image/"))
    ]
    assert sorted(real) == sorted(SPLIT_SIZES)


@pytest.mark.parametrize("config", sorted(SPLIT_SIZES))
def test_split_sizes_at_published_counts(config):
    (n_train, n_val, n_test), test_index = SPLIT_SIZES[config]
    samples = published_split(config)
    assert (len(samples.train), len(samples.val), len(samples.test)) == (n_train, n_val, n_test)
    train, val = {s.name for s in samples.train}, {s.name for s in samples.val}
    test = [s.name for s in samples.test]
    assert not (train & val) and not (train & set(test)) and not (val & set(test))
    if test_index is not None:
        subset = samples.test[0].name.rstrip("0123456789")
        assert test == [f"{subset}{i:02d}" for i in test_index]


# Patches per epoch as each config's comment computes them: (patches per image, which images).
EPOCHS: dict[str, tuple[int, str]] = {
    # IterNet's generator: 100 patches per training image of the protocol (no hold-out there)
    **{
        c: (100, "train+val")
        for c in (
            "drive/unet.yaml",
            "drive/smp_unet.yaml",
            "drive/iternet.yaml",
            "drive/iternet_16_4.yaml",
            "stare/unet_first10.yaml",
            "stare/unet_loo.yaml",
            "stare/unet_5fold.yaml",
            "stare/unet_16_4.yaml",
            "chase_db1/unet_20_8.yaml",
            "chase_db1/unet_14_14.yaml",
            "chase_db1/unet_4fold.yaml",
            "chase_db1/iternet_20_8.yaml",
            "hrf/unet.yaml",
            "rite/unet_av.yaml",
        )
    },
    "drive/r2unet.yaml": (11 * 11, "train"),  # 48 px grid of the 565x565 crop (001 sec. 5.1)
    "drive/segravir.yaml": (3 * 3, "train"),  # 256 px tiles covering 584x565 (000 sec. V-A)
    "ravir/unet_av.yaml": (3 * 3, "train"),  # 256 px tiles of 768x768
    "ravir/segravir.yaml": (3 * 3, "train"),
    # the authors' stride-16 grid over the whole 584x568 image (004 sec. 6.1.1; their
    # fixed_patch_ids_creation): ceil(584 / 16) x ceil(568 / 16) = 37 x 36 patch corners
    "drive/patch2image_light.yaml": (37 * 36, "train"),
    "drive/patch2image_miniunet.yaml": (37 * 36, "train"),
    "drive/patch2image_dense.yaml": (37 * 36, "train"),
    # the same grid on 004's 460x500 resized CHASE_DB1 images (sec. 6.1): 29 x 32
    "chase_db1/patch2image_miniunet_4fold.yaml": (29 * 32, "train"),
    "chase_db1/patch2image_dense_4fold.yaml": (29 * 32, "train"),
    # 002's offline augmentation: 10 crops per training image (sec. 4.2)
    "chase_db1/dpn_20_8.yaml": (10, "train"),
    "chase_db1/dpn_14_14.yaml": (10, "train"),
    "idrid/unet_od.yaml": (20, "train"),
}


@pytest.mark.parametrize("config", sorted(EPOCHS))
def test_steps_per_epoch_arithmetic(config):
    per_image, which = EPOCHS[config]
    (n_train, n_val, _), _ = SPLIT_SIZES[config]
    images = n_train + n_val if which == "train+val" else n_train
    data = init_args(load(config)["data"])
    assert data["steps_per_epoch"] == images * per_image // data["batch_size"]


@pytest.mark.parametrize("config", ["drive/dpn.yaml", "drive/dpn_16_4.yaml"])
def test_dpn_epoch_is_its_augmented_set(config):
    """002 sec. 4.2: 20 images augmented x10 offline, one 512 crop each at batch 1."""
    data = init_args(load(config)["data"])
    assert data["steps_per_epoch"] * data["batch_size"] == 20 * 10


# --------------------------------------------------------------------------------------------
# (c) fixture folders through the datamodule


# config -> (fixture maker, split overrides for the tiny fixtures, (train, val, test), test names)
FIXTURES: dict[str, tuple[str, dict[str, Any], tuple[int, int, int], list[str]]] = {
    "drive/unet.yaml": ("drive", {}, (2, 1, 3), ["01_test", "02_test", "03_test"]),
    "drive/patch2image_dense.yaml": ("drive", {}, (2, 1, 3), ["01_test", "02_test", "03_test"]),
    "drive/segravir.yaml": ("drive", {}, (2, 1, 3), ["01_test", "02_test", "03_test"]),
    "stare/unet_first10.yaml": (
        "stare",
        {"n_train": 2, "n_test": 2},
        (1, 1, 2),
        ["im0003", "im0044"],
    ),
    "stare/unet_loo.yaml": ("stare_flat", {}, (2, 1, 1), ["im0001"]),
    "stare/unet_5fold.yaml": ("stare", {"num_folds": 4}, (2, 1, 1), ["im0001"]),
    "stare/unet_16_4.yaml": ("stare", {"n_train": 3, "n_test": 1}, (3, 3, 1), ["im0044"]),
    "chase_db1/unet_20_8.yaml": (
        "chase_db1",
        {"n_train": 2, "n_test": 2},
        (1, 1, 2),
        ["Image_02L", "Image_02R"],
    ),
    "chase_db1/unet_4fold.yaml": ("chase_db1", {}, (2, 1, 1), ["Image_01L"]),
    # val_fraction 0: validation runs on the training images
    "chase_db1/dpn_20_8.yaml": (
        "chase_db1",
        {"n_train": 2, "n_test": 2},
        (2, 2, 2),
        ["Image_02L", "Image_02R"],
    ),
    "chase_db1/iternet_20_8.yaml": (
        "chase_db1",
        {"n_train": 2, "n_test": 2},
        (2, 2, 2),
        ["Image_02L", "Image_02R"],
    ),
    "chase_db1/patch2image_dense_4fold.yaml": ("chase_db1", {}, (2, 1, 1), ["Image_01L"]),
    "hrf/unet.yaml": ("hrf", {"n_train": 2, "n_test": 1}, (1, 1, 1), ["01_h"]),
    "rite/unet_av.yaml": ("rite", {}, (1, 1, 2), ["01_test", "02_test"]),
    "ravir/unet_av.yaml": ("ravir", {"num_folds": 3}, (1, 1, 1), ["IR_Case_011"]),
    "ravir/segravir.yaml": ("ravir", {"num_folds": 3}, (1, 1, 1), ["IR_Case_011"]),
    "idrid/unet_od.yaml": ("idrid", {}, (1, 1, 1), ["IDRiD_55"]),
    "folder/unet.yaml": ("folder_subsets", {}, (1, 1, 1), ["c"]),
}


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory) -> dict[str, Path]:
    return make_fixtures.make_all(tmp_path_factory.mktemp("fixtures"))


def tiny_data_section(config: str, root: Path | None, split: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(load(config)["data"])
    args = data["init_args"]
    if root is not None:
        args["dataset"]["init_args"]["root"] = str(root)
    args["split"]["init_args"].update(split)
    args.update(patch_size=16, batch_size=2, steps_per_epoch=1)
    return data


@pytest.mark.parametrize("config", sorted(FIXTURES))
def test_fixture_through_datamodule(config, fixture_roots):
    """The config's reader, split and preprocessing on the published-layout fixtures: split
    sizes and test names, one training batch and one whole validation image."""
    maker, split, sizes, test_names = FIXTURES[config]
    dm = instantiate("data", tiny_data_section(config, fixture_roots[maker], split))
    dm.setup("fit")
    samples = dm.samples
    assert (len(samples.train), len(samples.val), len(samples.test)) == sizes
    assert [s.name for s in samples.test] == test_names
    classes = 3 if dm.target == "av" else 2
    batch = dm.training_patches(0, torch.device("cpu"))
    assert batch["image"].shape == (2, dm.in_channels, 16, 16)
    assert torch.isfinite(batch["image"]).all()
    assert int(batch["label"].max()) < classes and int(batch["label"].min()) >= 0
    whole = dm.prepare_whole(next(iter(dm.val_dataloader())))
    h, w = samples.val[0].shape
    # the network's input is at the config's working scale (fov_diameter), the labels are not
    size = scaled_size((h, w), scale_for(samples.val[0].fov, dm.fov_diameter))
    assert whole["image"].shape == (1, dm.in_channels, *size)
    assert whole["label"].shape[-2:] == (h, w)
    if dm.preprocess.normalize == "none":
        assert float(whole["image"].min()) >= 0.0 and float(whole["image"].max()) <= 1.0
    if dm.target == "av":
        assert set(torch.unique(whole["label"]).tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    ("config", "sizes"),
    [
        ("drive/dpn.yaml", (3, 3, 3)),
        ("drive/iternet.yaml", (3, 3, 3)),
        ("drive/dpn_16_4.yaml", (2, 1, 3)),
        ("drive/iternet_16_4.yaml", (2, 1, 3)),
    ],
)
def test_paper_split_validates_on_training_images(config, sizes, fixture_roots):
    """val_fraction 0 (002 / 003): the datamodule validates (checkpoint monitor, ROC-optimal
    threshold) on the training images themselves; the _16_4 variants on held-out ones."""
    dm = instantiate("data", tiny_data_section(config, fixture_roots["drive"], {}))
    dm.setup("fit")
    samples = dm.samples
    assert (len(samples.train), len(samples.val), len(samples.test)) == sizes
    train, val = [s.name for s in samples.train], [s.name for s in samples.val]
    if init_args(init_args(load(config)["data"])["split"])["val_fraction"] == 0.0:
        assert val == train
    else:
        assert not set(val) & set(train)


def test_synthetic_av_through_datamodule():
    data = tiny_data_section("synthetic/unet_av.yaml", None, {})
    data["init_args"]["dataset"]["init_args"].update(num_train=4, num_test=2, height=64, width=64)
    dm = instantiate("data", data)
    dm.setup("fit")
    assert (len(dm.samples.train), len(dm.samples.val), len(dm.samples.test)) == (3, 1, 2)
    batch = dm.training_patches(0, torch.device("cpu"))
    assert batch["image"].shape == (2, 3, 16, 16) and int(batch["label"].max()) <= 2


# --------------------------------------------------------------------------------------------
# (b) real data (RETINA_DATA_ROOT)


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("config", "folder", "sizes"),
    [
        ("drive/unet.yaml", "DRIVE", (16, 4, 20)),
        # 002 / 003: all 20 train; validation runs on the same 20 training images
        ("drive/dpn.yaml", "DRIVE", (20, 20, 20)),
        ("drive/iternet.yaml", "DRIVE", (20, 20, 20)),
        ("drive/dpn_16_4.yaml", "DRIVE", (16, 4, 20)),
        ("rite/unet_av.yaml", "RITE", (16, 4, 20)),
        ("ravir/segravir.yaml", "RAVIR", (14, 4, 5)),
    ],
)
def test_real_split(config, folder, sizes):
    root = dataset_dir(folder)
    data = copy.deepcopy(load(config)["data"])
    data["init_args"]["dataset"]["init_args"]["root"] = str(root)
    dm = instantiate("data", data)
    dm.setup("fit")
    assert (len(dm.samples.train), len(dm.samples.val), len(dm.samples.test)) == sizes


@pytest.mark.slow
@pytest.mark.real_data
@needs("DRIVE")
@pytest.mark.parametrize("config", DRIVE_SHORT)
def test_short_recipe_fits_on_drive(config, tmp_path):
    from retina_lightning.cli import main

    main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / config),
            f"--data.init_args.dataset.init_args.root={DATA_ROOT / 'DRIVE'}",
            "--runs_dir",
            str(tmp_path),
            "--trainer.max_epochs=1",
            "--data.init_args.steps_per_epoch=2",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
            "--data.init_args.split.init_args.val_fraction=0.1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    )
    experiment = config.removesuffix(".yaml")
    (run,) = (tmp_path / experiment).iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-epoch000-auroc*.ckpt"))) == 1
    assert (run / "config.yaml").is_file()
