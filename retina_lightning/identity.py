"""What a run is, for grouping and comparing runs (issue 12): its *method* (the experiment's
last path component, ``drive/dpn`` -> ``dpn``), *dataset* (the dataset reader's registry name),
*protocol* (the split: ``official``, ``first10-10``, ``5fold``, ``loo``; the split decides the
numbers on STARE / CHASE_DB1, see 002 section 4.1 and 003 section 4.1), model, seed and fold
(:class:`RunIdentity`, :func:`run_identity`), read from the experiment name and the run's
resolved config.

W&B groups runs by it (:class:`~retina_lightning.tracking.RetinaWandbLogger`) and the
leaderboard makes one row of it (:mod:`retina_lightning.leaderboard`). Split from
:mod:`retina_lightning.tracking`, which re-exports it, so that it needs neither Lightning nor
wandb; ``retina_lightning.data`` is imported only inside :func:`canonical_dataset`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RunIdentity:
    """What a run is, for grouping and comparing: one row of a leaderboard is a
    ``(dataset, protocol, method)``; its runs differ by ``seed`` (and ``fold``)."""

    experiment: str
    method: str
    dataset: str
    protocol: str
    model: str = ""
    seed: int | None = None
    fold: int | None = None

    @property
    def group(self) -> str:
        """``<dataset>/<protocol>``: the W&B group, one per benchmark."""
        return f"{self.dataset}/{self.protocol}"

    @property
    def tags(self) -> list[str]:
        return [t for t in (self.dataset, self.protocol, self.method, self.model) if t]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plain(config: Any) -> dict[str, Any]:
    """A jsonargparse Namespace / mapping / None as a plain nested dict."""
    if config is None:
        return {}
    if hasattr(config, "as_dict"):
        return config.as_dict()
    if isinstance(config, Mapping):
        return {k: _plain(v) if hasattr(v, "as_dict") else v for k, v in config.items()}
    return {}


def _class_name(node: Any) -> str:
    if isinstance(node, Mapping):
        path = node.get("class_path") or node.get("_class_path") or ""
        return str(path).rsplit(".", 1)[-1]
    if node is not None and not isinstance(node, (str, int, float, bool)):
        return type(node).__name__
    return ""


def _init_args(node: Any) -> dict[str, Any]:
    if isinstance(node, Mapping):
        args = node.get("init_args")
        return dict(args) if isinstance(args, Mapping) else {}
    return dict(vars(node)) if node is not None and hasattr(node, "__dict__") else {}


def canonical_dataset(name: str) -> str:
    """``"DRIVE"`` / ``"CHASEDB1"`` / ``"chase"`` / ``"SyntheticFundus"`` -> the registry
    names ``drive`` / ``chase_db1`` / ``synthetic`` (unknown names: lower case)."""
    key = name.strip().lower().replace("-", "_")
    aliases = {
        "chasedb1": "chase_db1",
        "chase": "chase_db1",
        "syntheticfundus": "synthetic",
        "idridopticdisc": "idrid",
        "folderdataset": "folder",
    }
    if key in aliases:
        return aliases[key]
    try:
        from retina_lightning.data import DATASETS

        by_class = {cls.__name__.lower(): k for k, cls in DATASETS.items()}
        return by_class.get(key, key)
    except ImportError:  # pragma: no cover - the package always has its data module
        return key


def protocol_name(split: Any) -> tuple[str, int | None]:
    """``(protocol, fold)`` of a split config or object: ``official``, ``first10-10``,
    ``5fold`` (with its fold), ``loo`` (with the left-out index). Folds are not part of the
    protocol: the result of a k-fold protocol is the mean over its folds (004 section 5.1)."""
    cls, args = _class_name(split), _init_args(split)
    if not cls or cls == "OfficialSplit":
        return "official", None
    if cls == "FirstNSplit":
        n_test = args.get("n_test")
        return f"first{args.get('n_train')}-{'rest' if n_test is None else n_test}", None
    if cls == "KFoldSplit":
        return f"{args.get('num_folds')}fold", args.get("fold")
    if cls == "LeaveOneOutSplit":
        return "loo", args.get("index")
    return cls.lower(), None


#: experiment-name suffixes that name the split (``stare/unet_16_4``, ``chase_db1/unet_4fold``,
#: ``stare/unet_first10``, ``stare/unet_loo``): the protocol is read from the split itself.
_PROTOCOL_SUFFIX = re.compile(r"_(\d+_\d+|\d+fold|first\d+|loo)$")


def method_name(name: str) -> str:
    """The method of an experiment's last path component: ``unet_16_4`` -> ``unet``,
    ``unet_5fold`` -> ``unet``; recipe variants stay distinct (``unet_short``)."""
    return _PROTOCOL_SUFFIX.sub("", name) or name


def run_identity(experiment: str | None, config: Any = None) -> RunIdentity:
    """Method, dataset, protocol, model, seed and fold of a run, from its experiment name
    (``drive/dpn``) and its resolved config (``config.yaml`` of the run directory, or the
    CLI's parsed config). The dataset comes from the config's dataset class when there is
    one, else from the experiment's first path component."""
    cfg = _plain(config)
    experiment = experiment or cfg.get("experiment") or ""
    parts = [p for p in str(experiment).split("/") if p]
    data = cfg.get("data") or {}
    data_args = _init_args(data) if "init_args" in data else data
    dataset_node = data_args.get("dataset")
    dataset = canonical_dataset(_class_name(dataset_node)) if dataset_node else ""
    if not dataset:
        dataset = canonical_dataset(parts[0]) if len(parts) > 1 else "synthetic"
    protocol, fold = protocol_name(data_args.get("split"))
    model_cfg = _init_args(cfg.get("model") or {}).get("model") or {}
    model = _class_name(model_cfg)
    method = parts[-1] if parts and parts[-1] != "default" else (model.lower() or "unknown")
    method = method_name(method)
    seed = cfg.get("seed_everything")
    seed = int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None
    return RunIdentity(
        experiment=str(experiment) or method,
        method=method,
        dataset=dataset,
        protocol=protocol,
        model=model,
        seed=seed,
        fold=int(fold) if isinstance(fold, int) else None,
    )
