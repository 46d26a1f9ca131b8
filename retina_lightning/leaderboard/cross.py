"""Train x test cross-dataset matrices (:func:`cross_dataset_matrix`): every checkpoint
tested on every dataset config (002 section 4.5.3 / Table 4)."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retina_lightning.leaderboard.results import LeaderboardError, _float


@dataclass
class CrossDatasetMatrix:
    """Train x test matrices (rows: the checkpoint's training data, columns: the test data);
    ``in_domain[i, j]`` marks a checkpoint tested on its own dataset (the diagonal when the
    names line up). ``reports[(row, col)]`` is the full test report."""

    train: list[str]
    test: list[str]
    auroc: np.ndarray
    f1: np.ndarray
    in_domain: np.ndarray
    f1_key: str = "f1@opt"
    reports: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: ``{(row index, column index): one-line reason}`` of the cells that could not be tested
    missing: dict[tuple[int, int], str] = field(default_factory=dict)

    def missing_lines(self) -> list[str]:
        """One line per missing cell: ``train x test: reason``."""
        return [
            f"{self.train[i]} x {self.test[j]}: {reason}"
            for (i, j), reason in sorted(self.missing.items())
        ]

    def _table(self, title: str, values: np.ndarray) -> list[str]:
        lines = [f"{title} (rows: trained on, columns: tested on; * = in-domain)", ""]
        lines.append("| train \\ test | " + " | ".join(self.test) + " |")
        lines.append("|---|" + "---|" * len(self.test))
        for i, name in enumerate(self.train):
            cells = [
                "missing"
                if (i, j) in self.missing
                else f"{values[i, j]:.4f}{'*' if self.in_domain[i, j] else ''}"
                for j in range(len(self.test))
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    def to_markdown(self) -> str:
        lines = self._table("AUROC", self.auroc) + [""] + self._table(self.f1_key, self.f1)
        if self.missing:
            lines += ["", "Missing cells:", *(f"- {line}" for line in self.missing_lines())]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["train", "test", "in_domain", "auroc", self.f1_key, "missing"])
        for i, tr in enumerate(self.train):
            for j, te in enumerate(self.test):
                w.writerow(
                    [
                        tr,
                        te,
                        bool(self.in_domain[i, j]),
                        repr(float(self.auroc[i, j])),
                        repr(float(self.f1[i, j])),
                        self.missing.get((i, j), ""),
                    ]
                )
        return buf.getvalue()


def datamodule_from_config(config: str | Path | Mapping[str, Any]) -> Any:
    """A :class:`~retina_lightning.data.RetinaDataModule` from an experiment config file
    (its ``data:`` section) or from a ``{class_path, init_args}`` mapping."""
    import yaml
    from jsonargparse import ArgumentParser

    from retina_lightning.data import RetinaDataModule

    if isinstance(config, (str, Path)):
        raw = yaml.safe_load(Path(config).read_text()) or {}
        where = str(config)
    else:
        raw, where = dict(config), "mapping"
    data = raw.get("data", raw)
    if not isinstance(data, Mapping) or "class_path" not in data:
        raise LeaderboardError(
            f"{where}: expected a `data:` section with class_path / init_args (as in "
            "configs/synthetic/unet.yaml)"
        )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(RetinaDataModule, "data", required=True)
    return parser.instantiate_classes(parser.parse_object({"data": dict(data)})).data


def _public_state(obj: Any) -> tuple[str, str]:
    state = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return type(obj).__name__, repr(sorted(state.items(), key=lambda kv: kv[0]))


def cross_dataset_matrix(
    checkpoints: Mapping[str, str | Path],
    datasets: Mapping[str, str | Path | Mapping[str, Any] | Any],
    f1_key: str = "f1@opt",
    accelerator: str = "cpu",
    results_dir: str | Path | None = None,
    connectivity: bool = False,
    fov_diameter: int | str | None = "ckpt",
) -> CrossDatasetMatrix:
    """Test every checkpoint on every dataset (DPN's cross-training experiment, 002 section
    4.5.3 / Table 4: a model trained on one dataset applied to another without retraining).

    Each checkpoint keeps its own preprocessing (from the datamodule config saved in the
    checkpoint) and its own validation-chosen threshold (the ``threshold`` buffer); only the
    images, labels, FOV masks and split come from the test dataset. With
    ``normalize: dataset`` the mean / std are those of the *test* dataset's training images.

    Args:
        checkpoints: ``{name: checkpoint path}`` (rows).
        datasets: ``{name: config file | data mapping | RetinaDataModule}`` (columns).
        f1_key: which F1 fills the second matrix (``f1@opt`` or ``f1@0.5``).
        accelerator: Lightning accelerator for the test passes.
        results_dir: also write each test's ``metrics.json`` / ``per_image.csv`` to
            ``<results_dir>/<row>__<col>/``.
        connectivity: compute IterNet's connectivity per image (slow).
        fov_diameter: the scale every test image is resampled to (issue 13): ``"ckpt"``
            (default) the checkpoint's own training setting, else the median FOV diameter of
            its training images that it records (followed beyond 5 %, issue 22);
            ``"native"`` / ``None`` native size, or a diameter in pixels.
    """
    import tempfile

    import torch
    from lightning import Trainer

    from retina_lightning.data import RetinaDataModule
    from retina_lightning.data.base import DatasetError
    from retina_lightning.tasks import SegmentationTask

    train, test = list(checkpoints), list(datasets)
    # a column whose data cannot be read is reported missing (issue 15, item 8): the other
    # cells are still tested and the matrix still printed
    targets: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for name, spec in datasets.items():
        try:
            dm = spec if isinstance(spec, RetinaDataModule) else datamodule_from_config(spec)
            dm.setup("test")
            targets[name] = dm
        except (DatasetError, LeaderboardError, OSError) as err:
            where = f"{spec}: " if isinstance(spec, (str, Path)) else ""
            broken[name] = where + " ".join(str(err).split())
    auroc = np.full((len(train), len(test)), np.nan)
    f1 = np.full_like(auroc, np.nan)
    in_domain = np.zeros(auroc.shape, dtype=bool)
    reports: dict[tuple[str, str], dict[str, Any]] = {}
    missing = {
        (i, test.index(col)): reason for i in range(len(train)) for col, reason in broken.items()
    }
    scratch = tempfile.TemporaryDirectory() if results_dir is None else None
    out_root = Path(results_dir) if results_dir is not None else Path(scratch.name)  # type: ignore[union-attr]
    try:
        for i, (row, ckpt) in enumerate(checkpoints.items()):
            ckpt = Path(ckpt)
            if not ckpt.is_file():
                raise LeaderboardError(f"checkpoint {ckpt}: no such file")
            raw = torch.load(ckpt, map_location="cpu", weights_only=False)
            source = None
            if raw.get("datamodule_hyper_parameters"):
                source = RetinaDataModule.load_from_checkpoint(ckpt)
            else:
                warnings.warn(
                    f"{ckpt} holds no datamodule config (trained outside `retina fit`?): "
                    "each test set's own preprocessing is used",
                    stacklevel=2,
                )
            # the scale the checkpoint was trained at (its explicit fov_diameter, else its
            # recorded training FOV diameter beyond 5 %, issue 22), unless the caller fixes one
            follow = fov_diameter == "ckpt" and source is not None
            scale = source.fov_diameter if follow else fov_diameter  # type: ignore[union-attr]
            recorded = source.model_fov_diameter if follow else None  # type: ignore[union-attr]
            for j, col in enumerate(test):
                if col in broken:
                    continue
                target = targets[col]
                task = SegmentationTask.load_from_checkpoint(ckpt, map_location="cpu")
                task.connectivity = connectivity
                if hasattr(task, "figures"):
                    task.figures = False
                task.results_dir = out_root / f"{row}__{col}".replace("/", "_")
                dm = target.with_conditioning(
                    source.preprocess if source is not None else target.preprocess,
                    scale if scale != "ckpt" else target.fov_diameter,
                    recorded,
                )
                trainer = Trainer(
                    accelerator=accelerator,
                    devices=1,
                    logger=False,
                    enable_checkpointing=False,
                    enable_progress_bar=False,
                    enable_model_summary=False,
                    default_root_dir=out_root,
                )
                trainer.test(task, datamodule=dm, verbose=False)
                report = task.test_report or {}
                reports[(row, col)] = report
                pooled = report.get("pooled", {})
                auroc[i, j] = _float(pooled.get("auroc"))
                f1[i, j] = _float(pooled.get(f1_key))
                if source is not None:
                    in_domain[i, j] = _public_state(source.dataset) == _public_state(target.dataset)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return CrossDatasetMatrix(train, test, auroc, f1, in_domain, f1_key, reports, missing)
