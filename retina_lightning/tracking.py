"""Experiment tracking: Weights & Biases runs that a leaderboard can compare, and local
CSV / TensorBoard loggers that live inside the run directory.

On W&B a run is named after its method and grouped by ``<dataset>/<protocol>``, so the
project's runs table is a leaderboard with one group per benchmark; the fields come from
:func:`~retina_lightning.identity.run_identity` (re-exported here with the rest of
:mod:`retina_lightning.identity`).

Test results reach a W&B run through :func:`log_test_results` with the same summary keys for
every method (``test/auroc``, ``test/f1@opt``, ``test/per_image/f1@opt``...; see
:func:`flatten_report`), the per-image rows as a ``wandb.Table`` and the figures as images.
The suite's own record of a test is ``<run_dir>/test*/metrics.json``, which
``retina leaderboard`` reads; W&B is a view of it, and W&B's offline run files (a private,
versioned format) are not read back (issue 12).

Offline by default: :class:`RetinaWandbLogger` only goes online when an API key is configured
(``WANDB_API_KEY`` or a netrc entry for the W&B host) and ``WANDB_MODE`` does not say
otherwise; offline runs are written to ``<run_dir>/wandb/offline-run-*`` and can be uploaded
later with ``wandb sync``.

The CLI wires this in with one call, before the Trainer is built::

    configure_loggers(trainer_cfg["logger"], run_dir, experiment, config, subcommand)
"""

from __future__ import annotations

import math
import netrc
import os
import secrets
import string
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from retina_lightning.identity import (
    RunIdentity,
    canonical_dataset,
    method_name,
    protocol_name,
    run_identity,
)

__all__ = [
    "DEFAULT_PROJECT",
    "RUN_ID_FILE",
    "SPEED_KEYS",
    "RetinaWandbLogger",
    "RunCSVLogger",
    "RunIdentity",
    "RunTensorBoardLogger",
    "canonical_dataset",
    "configure_loggers",
    "flatten_report",
    "log_test_results",
    "method_name",
    "protocol_name",
    "run_identity",
    "wandb_api_key_configured",
    "wandb_host",
    "wandb_online",
]

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
