"""The readers by name (:data:`DATASETS`) and the dataset that ``retina data check|widths``
builds from a registered name or from the dataset node of a config file."""

from __future__ import annotations

from pathlib import Path

from retina_lightning.data.base import DatasetError, RetinaDataset
from retina_lightning.data.datasets.artery_vein import RAVIR, RITE
from retina_lightning.data.datasets.folder import FolderDataset
from retina_lightning.data.datasets.idrid import IDRiDOpticDisc
from retina_lightning.data.datasets.photographs import CHASEDB1, DRIVE, HRF, STARE


def _import_class(path: str) -> type:
    """``retina_lightning.data.STARE`` (or a bare class name of :data:`DATASETS`) -> class."""
    import importlib

    by_name = {cls.__name__: cls for cls in DATASETS.values()}
    if "." not in path:
        if path in by_name:
            return by_name[path]
        raise DatasetError(f"unknown dataset class {path!r}; known: {sorted(by_name)}")
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise DatasetError(f"cannot import the dataset class {path!r}: {e}") from e


def dataset_node(config: str | Path) -> tuple[type, dict]:
    """The dataset (class, init_args) of a config file: ``data.init_args.dataset`` of a
    ``retina`` config, ``init_args.dataset`` of a data config, or a ``class_path`` /
    ``init_args`` dataset node on its own."""
    import yaml

    path = Path(config)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"--config {str(path)!r}: cannot read it: {e}") from e
    node = cfg if isinstance(cfg, dict) else {}
    if isinstance(node.get("data"), dict):
        node = node["data"]
    if isinstance(node.get("init_args"), dict) and isinstance(
        node["init_args"].get("dataset"), dict
    ):
        node = node["init_args"]["dataset"]
    elif isinstance(node.get("dataset"), dict):
        node = node["dataset"]
    if not isinstance(node.get("class_path"), str):
        raise DatasetError(
            f"--config {str(path)!r} holds no dataset: expected data.init_args.dataset (a "
            "retina config) or a class_path / init_args node, e.g. class_path: "
            "retina_lightning.data.STARE, init_args: {root: data/STARE, labels: vk}"
        )
    return _import_class(node["class_path"]), dict(node.get("init_args") or {})


def build_dataset(
    name: str | None = None,
    root: str | Path | None = None,
    config: str | Path | None = None,
    options: dict | None = None,
) -> RetinaDataset:
    """The dataset of ``retina data check|widths``: a registered ``name`` or the dataset node
    of a ``config`` file, with ``options`` (init_args, e.g. STARE's ``labels: vk``; issue 15
    item 16) and ``root`` on top."""
    import inspect

    if config is not None:
        cls, kwargs = dataset_node(config)
    elif name is not None:
        cls, kwargs = DATASETS[name], {}
    else:
        raise DatasetError("name a dataset (--dataset) or a config file (--config)")
    kwargs.update(options or {})
    if root is not None:
        kwargs["root"] = root
    signature = inspect.signature(cls.__init__).parameters
    params = [name for name in signature if name != "self"]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not open_ended:
        raise DatasetError(
            f"{cls.__name__} has no option {unknown[0]!r}; its options: {', '.join(params)}"
        )
    try:
        return cls(**kwargs)
    except DatasetError:
        raise
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{cls.__name__}({kwargs}): {e}") from e


#: Dataset readers by the lower-case name used in configs and ``retina data check``.
DATASETS: dict[str, type[RetinaDataset]] = {
    "drive": DRIVE,
    "stare": STARE,
    "chase_db1": CHASEDB1,
    "hrf": HRF,
    "rite": RITE,
    "ravir": RAVIR,
    "idrid": IDRiDOpticDisc,
    "folder": FolderDataset,
}
