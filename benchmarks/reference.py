"""The methods benchmarked, their DRIVE configs, and what their papers report.

Paper numbers are quoted with their source (paper file in the project's seed list, section /
table) so a table can print "ours vs paper" side by side. DRIVE: official split, first
observer as ground truth, pixels inside the FOV unless said otherwise.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@dataclass(frozen=True)
class Method:
    """One benchmarked method: its config and the model it falls back to without one."""

    key: str  # configs/drive/<key>.yaml
    label: str  # name in tables
    class_path: str
    default_args: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return CONFIGS / "drive" / f"{self.key}.yaml"

    @property
    def model_name(self) -> str:
        return self.class_path.rsplit(".", 1)[1]


#: every model of the suite with its paper / default arguments (the DRIVE configs' when they
#: exist; ``default_args`` mirror them for a checkout without configs).
METHODS: dict[str, Method] = {
    m.key: m
    for m in (
        Method("unet", "U-Net", "retina_lightning.models.UNet", {"in_channels": 3}),
        Method("smp_unet", "smp U-Net (ResNet-18)", "retina_lightning.models.SmpModel", {}),
        Method(
            "r2unet",
            "R2U-Net",
            "retina_lightning.models.R2UNet",
            {"in_channels": 1, "base_channels": 16, "depth": 3, "t": 2},
        ),
        Method("dpn", "DPN", "retina_lightning.models.DPN", {"in_channels": 3}),
        Method("iternet", "IterNet", "retina_lightning.models.IterNet", {"in_channels": 3}),
        Method("segravir", "SegRAVIR", "retina_lightning.models.SegRAVIR", {"in_channels": 3}),
        Method(
            "patch2image_light",
            "Light (patch2image)",
            "retina_lightning.models.LightNet",
            {"in_channels": 1},
        ),
        Method(
            "patch2image_miniunet",
            "Mini-Unet (patch2image)",
            "retina_lightning.models.MiniUNet",
            {"in_channels": 1},
        ),
        Method(
            "patch2image_dense",
            "Dense (patch2image)",
            "retina_lightning.models.DenseNetP2I",
            {"in_channels": 1},
        ),
    )
}


def load_config(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def model_spec(method: Method) -> tuple[str, dict[str, Any], str]:
    """(class_path, init_args, where they came from) of the method's network."""
    if method.config.is_file():
        spec = load_config(method.config)["model"]["init_args"]["model"]
        return (
            spec["class_path"],
            dict(spec.get("init_args") or {}),
            str(method.config.relative_to(REPO)),
        )
    return method.class_path, dict(method.default_args), "class defaults (no config found)"


def build_model(method: Method) -> tuple[nn.Module, int, str]:
    """The method's network with its config's arguments: (model, in_channels, source)."""
    class_path, init_args, source = model_spec(method)
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    model = cls(**init_args)
    in_channels = int(init_args.get("in_channels", 3))
    return model, in_channels, source


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def find_methods(names: str | None) -> list[Method]:
    """Methods by config key or model class name (comma-separated, case-insensitive)."""
    if not names:
        return list(METHODS.values())
    chosen = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        hits = [m for m in METHODS.values() if name in (m.key, m.model_name.lower())]
        if not hits:
            known = ", ".join(f"{m.key} ({m.model_name})" for m in METHODS.values())
            raise SystemExit(f"unknown method {raw!r}; choose from: {known}")
        chosen.extend(hits)
    return list({m.key: m for m in chosen}.values())


# ----------------------------------------------------------------------- paper: speed


#: seconds per DRIVE image the papers report, with the hardware.
PAPER_SPEED: dict[str, str] = {
    "dpn": "0.085 s (11.8 fps, disk to disk), RTX 2080 Ti (002 sec. 4.4, Table 1)",
    "unet": "3.1 s (0.32 fps, patch-based U-Net as reported in 002 Table 1)",
    "patch2image_light": "0.07 s GPU Tesla P100 / 0.25 s CPU i7-6700HQ (004 Table 5)",
    "patch2image_miniunet": "0.10 s GPU Tesla P100 / 0.84 s CPU i7-6700HQ (004 Table 5)",
    "patch2image_dense": "0.24 s GPU Tesla P100 / 4.69 s CPU i7-6700HQ (004 Table 5)",
}

#: parameters the papers give.
PAPER_PARAMS: dict[str, str] = {
    "dpn": "~96k (002; 0.1 M in Table 1)",
    "unet": "3.4 M (002 Table 1)",
    "patch2image_light": "8,889 (004)",
    "patch2image_miniunet": "316,657 (004)",
    "patch2image_dense": "1,032,588 (004)",
}

#: DPN's fps definition (002 sec. 4.4): "from reading the raw test image from the hard disk
#: to writing the segmentation map into the hard disk. Then, fps = 1.0 / t".
DPN_FPS = 11.8


# -------------------------------------------------------------------- paper: accuracy


@dataclass(frozen=True)
class PaperRow:
    source: str
    se: float | None = None
    sp: float | None = None
    acc: float | None = None
    auc: float | None = None
    f1: float | None = None
    conn: float | None = None
    note: str = ""


#: DRIVE test-set numbers as the papers report them.
PAPER_ACCURACY: dict[str, list[PaperRow]] = {
    "unet": [PaperRow("003 Table 1 (U-Net)", 0.7822, 0.9808, 0.9555, 0.9752, 0.8174, 0.7948)],
    "r2unet": [
        PaperRow(
            "003 Table 1 (R2U-Net as reported there)",
            0.7792,
            0.9813,
            0.9556,
            0.9784,
            0.8171,
            None,
            "001's own run collapsed (Dice 0.14): class imbalance unhandled",
        )
    ],
    "dpn": [PaperRow("002 Table 1", 0.8004, 0.9801, 0.9572, 0.9815, 0.8293)],
    "iternet": [
        PaperRow("003 Table 1, whole image", 0.7791, 0.9831, 0.9574, 0.9813, 0.8218, 0.9001),
        PaperRow("003 Table 1, patched (stride 3)", 0.7735, 0.9838, 0.9573, 0.9816, 0.8205, 0.9193),
    ],
    "segravir": [],  # 000 reports RAVIR artery / vein only, nothing on DRIVE
    "patch2image_light": [
        PaperRow(
            "004 Table 1, image fine-tuned",
            0.8187,
            0.9772,
            0.9632,
            0.9808,
            0.7949,
            None,
            "whole image, no FOV mask, t = 0.5",
        )
    ],
    "patch2image_miniunet": [
        PaperRow(
            "004 Table 1, image fine-tuned",
            0.8342,
            0.9822,
            0.9691,
            0.9866,
            0.8246,
            None,
            "whole image, no FOV mask, t = 0.5",
        )
    ],
    "patch2image_dense": [
        PaperRow(
            "004 Table 1, image fine-tuned",
            0.8277,
            0.9830,
            0.9693,
            0.9870,
            0.8242,
            None,
            "whole image, no FOV mask, t = 0.5",
        )
    ],
    "smp_unet": [],
}

#: the second human observer of DRIVE against the first, pooled over the 20 test images
#: (computed from DRIVE's test/2nd_manual).
SECOND_OBSERVER = PaperRow(
    "DRIVE 2nd_manual vs 1st_manual, 20 test images pooled", 0.7746, 0.9725, 0.9473, None, 0.7891
)
