"""Experiment tracking: Weights & Biases runs that a leaderboard can compare, and local
CSV / TensorBoard loggers that live inside the run directory.

Every run of the suite is described by the same few fields (:class:`RunIdentity`): the
*method* (the experiment's last path component, ``drive/dpn`` -> ``dpn``), the *dataset*
(the dataset reader's registry name), the *protocol* (the split: ``official``,
``first10-10``, ``5fold``, ``loo``; the split decides the numbers on STARE / CHASE_DB1, see
002 section 4.1 and 003 section 4.1) and the seed / fold. On W&B a run is named after the
method and grouped by ``<dataset>/<protocol>``, so the project's runs table is a leaderboard
with one group per benchmark.

Test results reach a W&B run through :func:`log_test_results` with the same summary keys for
every method (``test/auroc``, ``test/f1@opt``, ``test/per_image/f1@opt``...; see
:func:`flatten_report`), the per-image rows as a ``wandb.Table`` and the figures as images.

Offline by default: :class:`RetinaWandbLogger` only goes online when an API key is configured
(``WANDB_API_KEY`` or a netrc entry for the W&B host) and ``WANDB_MODE`` does not say
otherwise; offline runs are written to ``<run_dir>/wandb/offline-run-*`` and can be uploaded
later with ``wandb sync``. :func:`read_offline_run` reads such a folder back without wandb's
servers (the leaderboard uses it).

The CLI wires this in with one call, before the Trainer is built::

    configure_loggers(trainer_cfg["logger"], run_dir, experiment, config, subcommand)
"""

from __future__ import annotations

import json
import math
import netrc
import os
import re
import secrets
import string
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

#: W&B project of the suite's runs.
DEFAULT_PROJECT = "retina-lightning"
#: W&B API host when ``WANDB_BASE_URL`` is not set.
DEFAULT_WANDB_HOST = "api.wandb.ai"
#: File (inside ``<run_dir>/wandb/``) that keeps a run's W&B id, so that ``fit --ckpt_path
#: last`` and ``test`` continue the same W&B run.
RUN_ID_FILE = "run_id"


# ------------------------------------------------------------------------------ credentials
def wandb_host() -> str:
    """The W&B API host (``WANDB_BASE_URL``'s host, default ``api.wandb.ai``)."""
    base = os.environ.get("WANDB_BASE_URL", "")
    host = urlparse(base).hostname if base else None
    return host or DEFAULT_WANDB_HOST


def wandb_api_key_configured() -> bool:
    """True when W&B could authenticate: ``WANDB_API_KEY`` is set, or the netrc file
    (``NETRC`` or ``~/.netrc``) has an entry with a password for the W&B host. Reads local
    files only; never contacts a server."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not path.is_file():
        return False
    try:
        entry = netrc.netrc(str(path)).authenticators(wandb_host())
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])


def wandb_online() -> bool:
    """Whether W&B may use the network: ``WANDB_MODE`` ``offline`` / ``dryrun`` /
    ``disabled`` says no, ``online`` says yes, otherwise only when an API key is configured."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return False
    if mode == "online":
        return True
    return wandb_api_key_configured()


# ------------------------------------------------------------------------------- identity
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


# -------------------------------------------------------------------------- result keys
#: keys of a test report (the task's ``metrics.json``) that measure speed, if present.
SPEED_KEYS = ("images_per_s", "fps", "seconds_per_image")


def flatten_report(report: Mapping[str, Any]) -> dict[str, float]:
    """The test report of :class:`~retina_lightning.tasks.SegmentationTask` as flat numbers
    with the same keys for every method (W&B logs them with a ``test/`` prefix):

    * pooled over the test pixels: ``auroc``, ``auprc``, ``<metric>@0.5``, ``<metric>@opt``;
    * mean / std over images: ``per_image/<key>``, ``per_image_std/<key>``;
      ``connectivity`` = the per-image mean (IterNet 003 section 3.3);
    * ``second_observer/<metric>`` (the human baseline, binary so one threshold);
    * ``<class>_<metric>`` for artery / vein reports; ``threshold`` (the validation-chosen
      operating point), ``num_images``, ``num_parameters`` and speed keys when present.
    """
    out: dict[str, float] = {}
    for key, value in (report.get("pooled") or {}).items():
        out[str(key)] = _num(value)
    means = report.get("per_image_mean") or {}
    for key, value in means.items():
        out[f"per_image/{key}"] = _num(value)
    for key, value in (report.get("per_image_std") or {}).items():
        out[f"per_image_std/{key}"] = _num(value)
    if "connectivity" in means:
        out["connectivity"] = _num(means["connectivity"])
    for key, value in (report.get("second_observer") or {}).items():
        out[f"second_observer/{key}"] = _num(value)
    for cls, entry in (report.get("per_class") or {}).items():
        for key, value in entry.items():
            out[f"{cls}_{key}"] = _num(value)
    thresholds = report.get("thresholds") or {}
    if "opt" in thresholds:
        out["threshold"] = _num(thresholds["opt"])
    for key in ("num_images", "num_parameters", *SPEED_KEYS):
        if key in report:
            out[key] = _num(report[key])
    return out


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ------------------------------------------------------------------------------- loggers
class RetinaWandbLogger(WandbLogger):
    """:class:`~lightning.pytorch.loggers.WandbLogger` with the suite's defaults.

    Args:
        name: run name; default: the method (set by :meth:`configure_for_run`).
        save_dir: parent of the ``wandb/`` folder; default: the run directory.
        offline: ``None``: offline unless an API key is configured (:func:`wandb_online`).
        project: W&B project (default ``retina-lightning``).
        group: W&B group; default ``<dataset>/<protocol>``.
        tags: extra tags (dataset, protocol, method and model are always added).
        log_model: upload checkpoints as W&B artifacts (online only).
        **kwargs: passed on to ``wandb.init`` (``entity``, ``notes``, ``mode``...).
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        version: str | None = None,
        offline: bool | None = None,
        project: str = DEFAULT_PROJECT,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        log_model: bool | str = False,
        **kwargs: Any,
    ) -> None:
        if offline is None:
            offline = not wandb_online()
        if offline and log_model:
            rank_zero_warn("RetinaWandbLogger: offline, so log_model is ignored")
            log_model = False
        super().__init__(
            name=name,
            save_dir=save_dir if save_dir is not None else ".",
            version=version,
            offline=offline,
            project=project,
            log_model=log_model,
            group=group,
            tags=list(tags) if tags else None,
            **kwargs,
        )
        self._save_dir_given = save_dir is not None
        self.identity: RunIdentity | None = None

    def configure_for_run(
        self,
        run_dir: str | Path,
        experiment: str,
        config: Any = None,
        subcommand: str | None = None,
    ) -> None:
        """Name, group, tag and place the W&B run of ``run_dir`` (call before the Trainer
        first touches :attr:`experiment`). The run id is kept in
        ``<run_dir>/wandb/run_id`` so that resuming (``fit --ckpt_path last``) and ``test``
        continue the same W&B run; the run's identity is stored under the ``retina`` config
        key for :mod:`retina_lightning.leaderboard`."""
        if self._experiment is not None:
            rank_zero_warn("RetinaWandbLogger.configure_for_run: the W&B run already exists")
            return
        # absolute: wandb's service process may have been started from another directory
        run_dir = Path(run_dir).resolve()
        ident = run_identity(experiment, config)
        self.identity = ident
        init = self._wandb_init
        if not self._save_dir_given:
            init["dir"] = self._save_dir = str(run_dir)
        init["name"] = self._name = init.get("name") or ident.method
        init["group"] = init.get("group") or ident.group
        init["tags"] = sorted({*(init.get("tags") or []), *ident.tags})
        if subcommand and not init.get("job_type"):
            init["job_type"] = subcommand
        config_init = dict(init.get("config") or {})
        config_init["retina"] = {**ident.as_dict(), "run_dir": str(run_dir)}
        init["config"] = config_init
        if not init.get("id"):
            init["id"] = self._id = self._persistent_id(Path(init["dir"]) / "wandb")

    @staticmethod
    def _persistent_id(folder: Path) -> str | None:
        path = folder / RUN_ID_FILE
        if path.is_file():
            return path.read_text().strip() or None
        if rank_zero_only.rank != 0:
            return None
        # W&B ids: 8 characters of [a-z0-9], as wandb generates them
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id


class _AppendingWriter(ExperimentWriter):
    """CSV writer that keeps an existing ``metrics.csv`` (Lightning's deletes it when the
    folder is not empty, which loses the first part of a resumed run)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = f.readline().strip()
            self.metrics_keys = [k for k in header.split(",") if k]


class _RunDirDefault(ABC):
    """``save_dir`` defaults to the run directory, which the CLI gives through
    :meth:`configure_for_run` before the logger writes anything."""

    _save_dir_given: bool
    _experiment: Any

    @abstractmethod
    def _use_run_dir(self, run_dir: str) -> None:
        """Point the logger's own root attributes at ``run_dir``."""

    def configure_for_run(
        self,
        run_dir: str | Path,
        experiment: str,
        config: Any = None,
        subcommand: str | None = None,
    ) -> None:
        if self._save_dir_given or self._experiment is not None:
            return
        self._use_run_dir(str(run_dir))
        self._fs = get_filesystem(str(run_dir))


class RunCSVLogger(_RunDirDefault, CSVLogger):
    """CSV logger writing ``metrics.csv`` / ``hparams.yaml`` straight into the run directory
    (``save_dir`` defaults to it, via :meth:`configure_for_run`) and *appending* to an
    existing ``metrics.csv``, so a resumed fit keeps its first epochs."""

    def __init__(
        self,
        save_dir: str | None = None,
        name: str = "",
        version: str = "",
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(
            save_dir=save_dir if save_dir is not None else ".",
            name=name,
            version=version,
            prefix=prefix,
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )
        self._save_dir_given = save_dir is not None

    def _use_run_dir(self, run_dir: str) -> None:
        self._root_dir = self._save_dir = run_dir

    @property
    def experiment(self) -> _ExperimentWriter:  # type: ignore[override]
        if self._experiment is not None:
            return self._experiment
        if rank_zero_only.rank != 0:  # as @rank_zero_experiment: no files on other ranks
            return super().experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class RunTensorBoardLogger(_RunDirDefault, TensorBoardLogger):
    """TensorBoard event files in ``<run_dir>/tensorboard`` (``save_dir`` defaults to the run
    directory, via :meth:`configure_for_run`); view with ``tensorboard --logdir runs``."""

    def __init__(
        self,
        save_dir: str | None = None,
        name: str = "tensorboard",
        version: str = "",
        log_graph: bool = False,
        default_hp_metric: bool = False,
        prefix: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            save_dir=save_dir if save_dir is not None else ".",
            name=name,
            version=version,
            log_graph=log_graph,
            default_hp_metric=default_hp_metric,
            prefix=prefix,
            **kwargs,
        )
        self._save_dir_given = save_dir is not None

    def _use_run_dir(self, run_dir: str) -> None:
        self._root_dir = run_dir


def _as_list(loggers: Any) -> list[Any]:
    if loggers is None or isinstance(loggers, bool):
        return []
    if isinstance(loggers, (list, tuple)):
        return list(loggers)
    return [loggers]


def configure_loggers(
    loggers: Logger | Iterable[Logger] | bool | None,
    run_dir: str | Path,
    experiment: str,
    config: Any = None,
    subcommand: str | None = None,
) -> None:
    """Point every logger that has a ``configure_for_run`` method (the suite's W&B, CSV and
    TensorBoard loggers) at ``run_dir`` and name it after ``experiment``; other loggers are
    left alone. Call before the Trainer is built."""
    for logger in _as_list(loggers):
        configure = getattr(logger, "configure_for_run", None)
        if callable(configure):
            configure(run_dir, experiment, config, subcommand)


# ---------------------------------------------------------------------------- test results
def _cell(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def log_test_results(
    loggers: Logger | Iterable[Logger] | None,
    report: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    figures: Sequence[str | Path] = (),
) -> None:
    """Send a test report to the loggers that can show more than scalars.

    For a :class:`~lightning.pytorch.loggers.WandbLogger`: the run summary gets
    ``test/<key>`` for every key of :func:`flatten_report` (identical keys for every method,
    so W&B's runs table compares them), the per-image rows become the ``test/per_image``
    ``wandb.Table`` and each PNG / JPEG figure a ``test/figures/<stem>`` image. Other loggers
    get nothing: the task already logs the pooled ``test/*`` scalars to every logger.
    Call on global rank zero only.
    """
    wandb_loggers = [lg for lg in _as_list(loggers) if isinstance(lg, WandbLogger)]
    if not wandb_loggers or rank_zero_only.rank != 0:
        return
    import wandb

    summary = {f"test/{k}": v for k, v in flatten_report(report).items()}
    columns = list(rows[0]) if rows else []
    images = [Path(p) for p in figures if Path(p).suffix.lower() in (".png", ".jpg", ".jpeg")]
    for logger in wandb_loggers:
        run = logger.experiment
        payload: dict[str, Any] = {}
        if rows:
            data = [[_cell(row.get(c)) for c in columns] for row in rows]
            payload["test/per_image"] = wandb.Table(columns=columns, data=data)
        for path in images:
            if path.is_file():
                payload[f"test/figures/{path.stem}"] = wandb.Image(str(path), caption=path.name)
        if payload:
            run.log(payload)
        run.summary.update(summary)


# ------------------------------------------------------------------- offline run folders
_LOG_BLOCK = 32768
_LOG_HEADER = struct.Struct("<IHB")  # crc32, length, record type (leveldb log format)
_FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version


def _transaction_records(path: Path) -> Iterator[bytes]:
    """The raw records of a ``run-<id>.wandb`` file (a leveldb-style log: 32 KiB blocks,
    records split into FULL / FIRST / MIDDLE / LAST chunks)."""
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size or data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log (no ':W&B' header)")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _LOG_HEADER.size <= len(data):
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < _LOG_HEADER.size:  # block trailer padding
            pos += left
            continue
        _, length, kind = _LOG_HEADER.unpack_from(data, pos)
        pos += _LOG_HEADER.size
        chunk = data[pos : pos + length]
        pos += length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def _apply(tree: dict[str, Any], items: Iterable[Any], remove: bool = False) -> None:
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = child if isinstance(child, dict) else {}
            node = child
        if remove:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = json.loads(item.value_json)


@dataclass
class OfflineRun:
    """What :func:`read_offline_run` finds in a ``wandb/offline-run-*`` folder."""

    folder: Path
    run_id: str
    name: str
    group: str
    project: str
    config: dict[str, Any]
    summary: dict[str, Any]

    def table(self, key: str) -> list[dict[str, Any]]:
        """The rows of a logged ``wandb.Table`` (e.g. ``test/per_image``), or ``[]``."""
        ref = self.summary.get(key)
        if not isinstance(ref, Mapping) or not ref.get("path"):
            return []
        path = self.folder / "files" / str(ref["path"])
        if not path.is_file():
            return []
        table = json.loads(path.read_text())
        return [dict(zip(table["columns"], row)) for row in table.get("data", [])]


def _unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """W&B's ``config.yaml`` stores ``{key: {value: v, desc: ...}}``; the log stores ``v``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        out[key] = value
    return out


def read_offline_run(folder: str | Path) -> OfflineRun:
    """Read a W&B run folder: ``files/wandb-summary.json`` and ``files/config.yaml`` when
    wandb wrote them (online runs, older clients), else the ``run-<id>.wandb`` transaction
    log, parsed with wandb's protobuf schema (recent clients write nothing else offline)."""
    folder = Path(folder)
    files = folder / "files"
    summary_file, config_file = files / "wandb-summary.json", files / "config.yaml"
    run_id = folder.name.rsplit("-", 1)[-1]
    name = group = project = ""
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    logs = sorted(folder.glob("run-*.wandb"))
    if logs:
        from wandb.proto import wandb_internal_pb2 as pb

        for raw in _transaction_records(logs[0]):
            record = pb.Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                run_id = run.run_id or run_id
                name, group, project = run.display_name, run.run_group, run.project
                _apply(config, run.config.update)
                _apply(summary, run.summary.update)
            elif kind == "config":
                _apply(config, record.config.update)
                _apply(config, record.config.remove, remove=True)
            elif kind == "summary":
                _apply(summary, record.summary.update)
                _apply(summary, record.summary.remove, remove=True)
    if summary_file.is_file():
        summary.update(json.loads(summary_file.read_text()))
    if config_file.is_file():
        import yaml

        config.update(yaml.safe_load(config_file.read_text()) or {})
    if not logs and not summary_file.is_file():
        raise FileNotFoundError(
            f"{folder}: no run-*.wandb log and no files/wandb-summary.json; is this a W&B run "
            "folder (wandb/offline-run-* or wandb/run-*)?"
        )
    return OfflineRun(folder, run_id, name, group, project, _unwrap_config(config), summary)
