"""SegmentationTask: one LightningModule for every architecture and loss of the suite.

The task is glue: the model (any ``nn.Module``, by config), the loss (a pixel loss or an
output loss that sees deep-supervision / reconstruction outputs, :mod:`retina_lightning.losses`),
the inference mode (:class:`~retina_lightning.inference.Inferer`) and the FOV-masked metrics
(:mod:`retina_lightning.metrics`). Whatever a model returns is normalised once by
:func:`~retina_lightning.types.as_output`.

Thresholds follow the a-priori protocol: the operating point ("opt") is chosen on the
validation images at every validation epoch (``threshold_criterion``: the maximal-F1 point,
bob.ip.binseg's a-priori threshold, by default; or Youden's ROC optimum) and kept in the
``threshold`` buffer, so it travels inside the checkpoint and is applied unchanged to the test
images.

A test assembles ``test_report`` (:func:`~retina_lightning.metrics.build_test_report`); its
files, figures and logger tables are written by :class:`~retina_lightning.callbacks.ReportWriter`,
which the task attaches itself (``configure_callbacks``), so a plain ``Trainer.test`` writes
them too (issue 12).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning import LightningModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor, nn

from retina_lightning.callbacks import ReportWriter
from retina_lightning.data.resolution import resize_probabilities
from retina_lightning.inference import Inferer
from retina_lightning.losses import BCELoss, CrossEntropyLoss, compute_loss
from retina_lightning.metrics import (
    CONFUSION_METRICS,
    THRESHOLD_CRITERIA,
    PooledBinaryMetrics,
    build_test_report,
    counts_at,
    image_row,
    select_fov,
)
from retina_lightning.precision import float32_inference
from retina_lightning.types import AV_CLASS_NAMES, as_output


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def vessel_probability(probs: Tensor) -> Tensor:
    """``(B, K, H, W)`` probabilities -> ``(B, H, W)`` probability of "vessel": the sigmoid
    output for ``K = 1``, one minus the background probability for ``K > 1``."""
    return probs[:, 0] if probs.shape[1] == 1 else 1.0 - probs[:, 0]


def rng_states() -> dict[str, Any]:
    """torch's global random states, CPU and (when initialised) CUDA: what dropout draws from
    (patches and augmentations have per-step seeds,
    :func:`~retina_lightning.data.sampler.step_seed`). Tensors only, so a checkpoint holding
    them still loads with ``weights_only=True``."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore :func:`rng_states`; CUDA states only onto as many devices as were saved."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class SegmentationTask(LightningModule):
    """Train and evaluate any segmentation model with any loss.

    Args:
        model: the network (``retina_lightning.models.*`` or any ``nn.Module`` returning
            logits or a :class:`~retina_lightning.types.SegOutput`).
        loss: pixel or output loss; default BCE for one output channel, CE for several.
        inferer: how validation / test / predict images go through the model (whole image
            by default; sliding window and flips are options).
        threshold: fix the "opt" operating point instead of choosing it on validation.
        threshold_criterion: how "opt" is chosen on the validation pixels: ``"f1"`` (default:
            the threshold of maximal F1, bob.ip.binseg's a-priori threshold; the masks
            ``retina predict`` writes are drawn at it) or ``"youden"`` (the ROC point
            maximising Se + Sp - 1, DPN's "optimal operating point", 002 sec. IV-B; with ~12 %
            vessel pixels it sits far lower, trading precision for Se: laptop recipe on DRIVE
            F1 0.760 at Youden's 0.05 against 0.824 at 0.5, issue 22).
        auroc_bins: ``None`` for exact AUROC/AUPRC over every FOV pixel; an integer to bin
            probabilities (bounded memory for large test sets such as HRF).
        connectivity: compute IterNet's connectivity per test image (scikit-image, CPU).
        metrics_in_fov: count only FOV pixels (the usual protocol); ``False`` counts the whole
            image, as 004 and IterNet's "without masks" rows do.
        unmasked_metrics: with ``metrics_in_fov``, also score every pixel of each test image
            (no FOV mask) and report it beside the FOV metrics (``metrics.json`` key
            ``unmasked``; per-image columns ``nofov_*``): 004's protocol (Table 1, threshold
            0.5, the authors' code averages the per-image metrics), so both can be read
            against the paper from one test run.
        figures: save ROC/PR curves, a box plot and best/worst panels with the test results.
        lr: Adam learning rate used when the config gives no ``optimizer``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        inferer: Inferer | None = None,
        threshold: float | None = None,
        threshold_criterion: Literal["youden", "f1"] = "f1",
        auroc_bins: int | None = None,
        connectivity: bool = True,
        metrics_in_fov: bool = True,
        unmasked_metrics: bool = False,
        figures: bool = True,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        # Under LightningCLI the parsed config is saved (so load_from_checkpoint rebuilds the
        # model); used directly from Python, module arguments are not hyper-parameters.
        given = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if given else ["model", "loss", "inferer"])
        self.model = model
        self.num_classes = self._infer_num_classes(model)
        self.loss = (
            loss
            if loss is not None
            else (BCELoss() if self.num_classes == 1 else CrossEntropyLoss())
        )
        self.inferer = inferer if inferer is not None else Inferer()
        if threshold_criterion not in THRESHOLD_CRITERIA:
            raise ValueError(
                f"threshold_criterion must be one of {THRESHOLD_CRITERIA}, got "
                f"{threshold_criterion!r}: set --model.init_args.threshold_criterion=youden or f1"
            )
        self.fixed_threshold = threshold
        self.threshold_criterion = threshold_criterion
        self.auroc_bins = auroc_bins
        self.connectivity = connectivity
        self.metrics_in_fov = metrics_in_fov
        self.unmasked_metrics = unmasked_metrics and metrics_in_fov
        self.figures = figures
        self.lr = lr
        self.register_buffer("threshold", torch.tensor(0.5 if threshold is None else threshold))
        self.val_metrics = PooledBinaryMetrics(bins=auroc_bins)
        self.test_metrics = PooledBinaryMetrics(bins=auroc_bins)
        #: pooled metrics of each dataset of a multi-dataset datamodule (``datasets``, issue 22)
        self.dataset_metrics = nn.ModuleDict()
        self.unmasked_test_metrics = PooledBinaryMetrics(bins=auroc_bins)
        # one-vs-rest metrics of each foreground class (artery / vein, as SegRAVIR reports)
        self.class_names = (
            AV_CLASS_NAMES
            if self.num_classes == 3
            else tuple(f"class{c}" for c in range(self.num_classes))
        )
        self.class_metrics = nn.ModuleDict(
            {str(c): PooledBinaryMetrics(bins=auroc_bins) for c in range(1, self.num_classes)}
        )
        self._class_counts = np.zeros((max(self.num_classes, 1), 4), dtype=np.int64)
        self._infer_seconds = 0.0
        #: where the test's files go (:class:`~retina_lightning.callbacks.ReportWriter`);
        #: ``None``: ``<default_root_dir>/test``
        self.results_dir: Path | None = None
        #: the last test's report (``metrics.json``), per-image rows and pooled ROC / PR curves
        self.test_report: dict[str, Any] | None = None
        self.test_rows: list[dict[str, Any]] = []
        self.test_curves: dict[str, Tensor] = {}
        self._second_counts = np.zeros(4, dtype=np.int64)
        #: float16 autocast for inference on CUDA (``retina predict --amp``); not saved
        self.half_inference = False

    @staticmethod
    def _infer_num_classes(model: nn.Module) -> int:
        """Output channels of ``model``: its ``num_classes`` attribute (every suite model has
        one), else measured with one tiny forward pass (any user ``nn.Module``)."""
        n = getattr(model, "num_classes", None)
        if isinstance(n, int):
            return n
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        side = 2 * int(getattr(model, "required_multiple", 16) or 16)
        x = torch.zeros(1, first.in_channels if first is not None else 3, side, side)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            n = as_output(model(x)).main.shape[1]
        model.train(was_training)
        return int(n)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def forward(self, x: Tensor) -> Any:
        return self.model(x)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        output = as_output(self.model(batch["image"]))
        loss = compute_loss(self.loss, output, batch["label"], batch["fov"], batch["image"])
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, global step "
                f"{self.global_step}: lower the learning rate, check the inputs for NaNs, or use "
                "trainer.gradient_clip_val"
            )
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in getattr(self.loss, "components", {}).items():
            self.log(f"train/loss_{name}", value, batch_size=bs)
        return loss

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        expected = getattr(datamodule, "in_channels", None)
        first = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        if expected is not None and first is not None and first.in_channels != expected:
            raise ValueError(
                f"the model's first convolution takes {first.in_channels} input channels but the "
                f"data gives {expected} (preprocess.channels={datamodule.preprocess.channels!r}); "
                f"set model.init_args.model.init_args.in_channels: {expected}, or change "
                "data.init_args.preprocess.channels"
            )

    def on_fit_start(self) -> None:
        self.log_params()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning keeps no random state: without it a fit resumed from this checkpoint draws
        # other dropout masks than an uninterrupted one (issue 16, item 10).
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def log_params(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams({"num_parameters": self.num_parameters})

    # -------------------------------------------------------------- evaluation
    def predict_probs(self, image: Tensor) -> Tensor:
        """``(B, K, H, W)`` probabilities of the model's main output for whole images, in
        float32 whatever precision training ran in (:mod:`retina_lightning.precision`), or
        under float16 autocast on CUDA when ``half_inference`` is set (``retina predict
        --amp``)."""
        if self.half_inference and image.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                return self.inferer(self.model, image.float()).float()
        with float32_inference(image.device):
            return self.inferer(self.model, image.float())

    def batch_probs(self, batch: dict[str, Any]) -> Tensor:
        """Probabilities of a whole-image batch on its images' own grid (the network input may
        have a working size: ``data.init_args.fov_diameter``, issue 13)."""
        probs = self.predict_probs(batch["image"])
        return resize_probabilities(probs, tuple(batch["fov"].shape[-2:]))

    def _binary(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        probs = self.batch_probs(batch)
        target = batch["label"] if self.num_classes == 1 else (batch["label"] > 0).long()
        return vessel_probability(probs), target, batch["fov"]

    def _start_dataset_metrics(self) -> None:
        """One pooled metric per dataset of the trainer's multi-dataset datamodule (none for a
        single dataset); created at each epoch start so that every DDP rank has the same."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = list(getattr(dm, "source_names", None) or [])
        if list(self.dataset_metrics.keys()) != names:
            self.dataset_metrics = nn.ModuleDict(
                {n: PooledBinaryMetrics(bins=self.auroc_bins) for n in names}
            ).to(self.device)
        for metric in self.dataset_metrics.values():
            metric.reset()

    def _update_dataset_metrics(
        self, batch: dict[str, Any], prob: Tensor, target: Tensor, fov: Tensor | None
    ) -> None:
        if not len(self.dataset_metrics) or "dataset" not in batch:
            return
        for name in dict.fromkeys(batch["dataset"]):
            sel = [i for i, d in enumerate(batch["dataset"]) if d == name]
            self.dataset_metrics[name].update(
                prob[sel], target[sel], None if fov is None else fov[sel]
            )

    def on_validation_epoch_start(self) -> None:
        self._start_dataset_metrics()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        prob, target, fov = self._binary(batch)
        mask = fov if self.metrics_in_fov else None
        self.val_metrics.update(prob, target, mask)
        self._update_dataset_metrics(batch, prob, target, mask)

    def on_validation_epoch_end(self) -> None:
        if self.fixed_threshold is None:
            self.threshold.fill_(self.val_metrics.optimal_threshold(self.threshold_criterion))
        thresholds = {"0.5": 0.5, "opt": float(self.threshold)}
        report = self.val_metrics.report(thresholds)
        self.val_metrics.reset()
        for key in ("auroc", "auprc", "f1@0.5", "f1@opt", "acc@opt"):
            self.log(f"val/{key}", report[key], prog_bar=key in ("auroc", "f1@opt"))
        self.log("val/threshold", self.threshold)
        for name, metric in self.dataset_metrics.items():
            if metric.update_count == 0:  # the sanity check sees the first images only
                continue
            part = metric.report(thresholds)
            metric.reset()
            for key in ("auroc", "f1@0.5", "f1@opt"):
                self.log(f"val/{name}/{key}", part[key])

    def configure_callbacks(self) -> list[Callback]:
        # the test report's files, figures and tables (issue 12); a ReportWriter the caller
        # gave the Trainer (or one attached by an earlier fit / test) is kept
        if self._trainer is not None and any(
            isinstance(c, ReportWriter) for c in self.trainer.callbacks
        ):
            return []
        return [ReportWriter()]

    def on_test_epoch_start(self) -> None:
        self._start_dataset_metrics()
        self.test_rows = []
        self._second_counts[:] = 0
        self._class_counts[:] = 0
        self._infer_seconds = 0.0

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Update the pooled metrics and score each image; returns the batch's per-image rows
        and vessel probabilities ``(B, H, W)`` for the callbacks (best / worst panels)."""
        start = time.perf_counter()
        probs = self.batch_probs(batch)
        if probs.device.type == "cuda":
            torch.cuda.synchronize(probs.device)
        self._infer_seconds += time.perf_counter() - start
        prob = vessel_probability(probs)
        label = batch["label"]
        target = label if self.num_classes == 1 else (label > 0).long()
        fov = batch["fov"] if self.metrics_in_fov else torch.ones_like(batch["fov"])
        self.test_metrics.update(prob, target, fov)
        self._update_dataset_metrics(batch, prob, target, fov)
        if self.unmasked_metrics:
            self.unmasked_test_metrics.update(prob, target, None)
        if self.num_classes > 1:
            predicted = probs.argmax(1)
            for c in range(1, self.num_classes):
                self.class_metrics[str(c)].update(probs[:, c], (label == c).long(), fov)
                p, t = select_fov((predicted == c).float(), (label == c).long(), fov)
                self._class_counts[c] += np.array(counts_at(p, t, 0.5))
        thresholds = {"0.5": 0.5, "opt": float(self.threshold)}
        rows = []
        for i in range(prob.shape[0]):
            row = image_row(
                batch["name"][i],
                prob[i],
                target[i],
                fov[i],
                thresholds,
                unmasked=self.unmasked_metrics,
                connectivity=self.connectivity,
            )
            row["_index"] = int(batch["index"][i])
            if "dataset" in batch:
                row["dataset"] = batch["dataset"][i]
            rows.append(row)
            if bool(batch["has_second"][i]):
                p, t = select_fov(batch["second"][i].float(), target[i], fov[i])
                self._second_counts += np.array(counts_at(p, t, 0.5))
        self.test_rows.extend(rows)
        return {"rows": rows, "prob": prob}

    def _gather(self) -> None:
        """Under DDP: every rank's per-image rows and count arrays, on every rank."""
        if self.trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return
        gathered: list[Any] = [None] * self.trainer.world_size
        local = (self.test_rows, self._second_counts, self._class_counts, self._infer_seconds)
        torch.distributed.all_gather_object(gathered, local)
        self.test_rows = [row for g in gathered for row in g[0]]
        self._second_counts = sum(g[1] for g in gathered)
        self._class_counts = sum(g[2] for g in gathered)
        # ranks infer in parallel: the slowest rank's time is the wall-clock time
        self._infer_seconds = max(g[3] for g in gathered)

    def on_test_epoch_end(self) -> None:
        """Assemble ``test_report`` (written by :class:`~retina_lightning.callbacks.ReportWriter`
        in ``on_test_end``) and log its scalars."""
        self._gather()
        self.test_rows.sort(key=lambda r: r["_index"])
        for row in self.test_rows:
            row.pop("_index", None)
        thresholds = {"0.5": 0.5, "opt": float(self.threshold)}
        self.test_curves = self.test_metrics.curves()
        per_class = {
            self.class_names[c]: (
                self.class_metrics[str(c)].report({}),
                self._class_counts[c].tolist(),
            )
            for c in range(1, self.num_classes)
        }
        report = build_test_report(
            model=type(self.model).__name__,
            num_parameters=self.num_parameters,
            thresholds=thresholds,
            threshold_criterion=(
                self.threshold_criterion if self.fixed_threshold is None else "fixed"
            ),
            metrics_in_fov=self.metrics_in_fov,
            pooled=self.test_metrics.report(thresholds),
            rows=self.test_rows,
            infer_seconds=self._infer_seconds,
            unmasked_pooled=(
                self.unmasked_test_metrics.report({"0.5": 0.5}) if self.unmasked_metrics else None
            ),
            per_class=per_class,
            second_counts=self._second_counts.tolist(),
            per_dataset={
                n: m.report(thresholds)
                for n, m in self.dataset_metrics.items()
                if m.update_count > 0
            },
        )
        for metric in (
            self.test_metrics,
            self.unmasked_test_metrics,
            *self.class_metrics.values(),
            *self.dataset_metrics.values(),
        ):
            metric.reset()
        self.test_report = report
        self._log_test_report(report)

    def _log_test_report(self, report: dict[str, Any]) -> None:
        if "unmasked" in report:
            for key in ("auroc", "f1@0.5", "acc@0.5"):
                self.log(f"test/nofov_{key}", report["unmasked"]["pooled"][key])
        for key in (
            "auroc",
            "auprc",
            *(f"{m}@{t}" for t in ("0.5", "opt") for m in CONFUSION_METRICS),
        ):
            self.log(f"test/{key}", report["pooled"][key])
        if "connectivity" in report["per_image_mean"]:
            self.log("test/connectivity", report["per_image_mean"]["connectivity"])
        if report["images_per_s"]:
            self.log("test/images_per_s", report["images_per_s"])
        for name, entry in report.get("per_class", {}).items():
            for key in ("auroc", "se", "sp", "acc", "f1"):
                self.log(f"test/{name}_{key}", entry[key])
        for name, entry in report.get("per_dataset", {}).items():
            for key in ("auroc", "f1@0.5", "f1@opt", "se@opt", "sp@opt"):
                self.log(f"test/{name}/{key}", entry["pooled"][key])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        """Class probabilities ``prob`` ``(B, K, H, W)`` on the images' own grid (CPU); ``None``
        for a batch without an ``image`` (an input the datamodule could not read, which the
        prediction writer reports)."""
        if "image" not in batch:
            return None
        probs = self.batch_probs(batch)
        return {"name": batch["name"], "prob": probs.cpu(), "fov": batch["fov"].cpu()}
