"""The methods benchmarked, their DRIVE configs, and the speed / size their papers report.

Speed and parameter figures are quoted with their source (paper id of the project's paper
collection, table) so a table can print "ours vs paper" side by side. Accuracy numbers live
in :mod:`retina_lightning.reference` (one source for the whole suite).
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
            {"in_channels": 1, "base_channels": 16, "depth": 3, "t": 2, "shared_weights": False},
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
        Method(
            "laptop",
            "Laptop U-Net (CPU recipe)",
            "retina_lightning.models.UNet",
            {"in_channels": 1, "base_channels": 16, "depth": 2},
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
        # a config key names one method; a model class may serve several (UNet: unet, laptop)
        hits = [m for m in METHODS.values() if name == m.key] or [
            m for m in METHODS.values() if name == m.model_name.lower()
        ]
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
