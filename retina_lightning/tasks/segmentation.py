"""SegmentationTask: one LightningModule for every architecture and loss of the suite.

The task is glue: the model (any ``nn.Module``, by config), the loss (a pixel loss or an
output loss that sees deep-supervision / reconstruction outputs, :mod:`retina_lightning.losses`),
the inference mode (:class:`~retina_lightning.inference.Inferer`) and the FOV-masked metrics
(:mod:`retina_lightning.metrics`). Whatever a model returns is normalised once by
:func:`~retina_lightning.types.as_output`.

Thresholds follow the a-priori protocol: the operating point ("opt") is chosen on the
validation images at every validation epoch (``threshold_criterion``: Youden's ROC optimum, or
the maximal-F1 point of bob.ip.binseg) and kept in the ``threshold`` buffer, so it travels
inside the checkpoint and is applied unchanged to the test images.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning import LightningModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from retina_lightning.data.resolution import resize_probabilities
from retina_lightning.inference import Inferer
from retina_lightning.losses import BCELoss, CrossEntropyLoss, compute_loss
from retina_lightning.metrics import (
    CONFUSION_METRICS,
    THRESHOLD_CRITERIA,
    PooledBinaryMetrics,
    confusion_metrics,
    counts_at,
    image_metrics,
    select_fov,
    summarize_rows,
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
        threshold_criterion: how "opt" is chosen on the validation pixels: ``"youden"`` (the
            ROC point maximising Se + Sp - 1, DPN's "optimal operating point", 002 sec. IV-B)
            or ``"f1"`` (the threshold of maximal F1, bob.ip.binseg's a-priori threshold;
            higher F1 / Acc and lower Se than Youden's on vessel maps).
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
        threshold_criterion: Literal["youden", "f1"] = "youden",
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
        self._panels: dict[str, dict[str, Any]] = {}
        self._infer_seconds = 0.0
        self.results_dir: Path | None = None
        self.test_report: dict[str, Any] | None = None
        self._rows: list[dict[str, Any]] = []
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

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        prob, target, fov = self._binary(batch)
        self.val_metrics.update(prob, target, fov if self.metrics_in_fov else None)

    def on_validation_epoch_end(self) -> None:
        if self.fixed_threshold is None:
            self.threshold.fill_(self.val_metrics.optimal_threshold(self.threshold_criterion))
        report = self.val_metrics.report({"0.5": 0.5, "opt": float(self.threshold)})
        self.val_metrics.reset()
        for key in ("auroc", "auprc", "f1@0.5", "f1@opt", "acc@opt"):
            self.log(f"val/{key}", report[key], prog_bar=key in ("auroc", "f1@opt"))
        self.log("val/threshold", self.threshold)

    def on_test_epoch_start(self) -> None:
        self._rows = []
        self._second_counts[:] = 0
        self._class_counts[:] = 0
        self._panels = {}
        self._infer_seconds = 0.0

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
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
        if self.unmasked_metrics:
            self.unmasked_test_metrics.update(prob, target, None)
        if self.num_classes > 1:
            predicted = probs.argmax(1)
            for c in range(1, self.num_classes):
                self.class_metrics[str(c)].update(probs[:, c], (label == c).long(), fov)
                p, t = select_fov((predicted == c).float(), (label == c).long(), fov)
                self._class_counts[c] += np.array(counts_at(p, t, 0.5))
        thresholds = {"0.5": 0.5, "opt": float(self.threshold)}
        for i in range(prob.shape[0]):
            row: dict[str, Any] = {"image": batch["name"][i]}
            row.update(image_metrics(prob[i], target[i], fov[i], thresholds))
            if self.unmasked_metrics:
                whole = image_metrics(prob[i], target[i], None, {"0.5": 0.5})
                row.update({f"nofov_{k}": v for k, v in whole.items()})
            if self.connectivity:
                row["connectivity"] = self._connectivity(prob[i], target[i], fov[i])
            row["_index"] = int(batch["index"][i])
            self._rows.append(row)
            self._keep_panel(row, batch, prob, i)
            if bool(batch["has_second"][i]):
                p, t = select_fov(batch["second"][i].float(), target[i], fov[i])
                self._second_counts += np.array(counts_at(p, t, 0.5))

    def _keep_panel(self, row: dict[str, Any], batch: dict[str, Any], prob: Tensor, i: int) -> None:
        """Keep the best and the worst image (by F1 at the operating point) for the panels,
        two images in memory whatever the size of the test set."""
        score = row.get("f1@opt", math.nan)
        if math.isnan(score):
            return
        item = {
            "name": row["image"],
            "score": score,
            "image": batch["raw"][i].permute(1, 2, 0).cpu().numpy(),
            "label": batch["label"][i].cpu().numpy(),
            "prob": prob[i].float().cpu().numpy(),
            "fov": batch["fov"][i].cpu().numpy(),
        }
        best, worst = self._panels.get("best"), self._panels.get("worst")
        if best is None or score > best["score"]:
            self._panels["best"] = item
        if worst is None or score < worst["score"]:
            self._panels["worst"] = item

    @staticmethod
    def _connectivity(prob: Tensor, target: Tensor, fov: Tensor) -> float:
        from retina_lightning.measure import connectivity_curve

        _, _, area = connectivity_curve(
            prob.float().cpu().numpy(), target.cpu().numpy() > 0, fov.cpu().numpy()
        )
        return float(area)

    def _gather(self) -> None:
        """Under DDP: every rank's per-image rows and count arrays, on every rank."""
        if self.trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return
        gathered: list[Any] = [None] * self.trainer.world_size
        local = (self._rows, self._second_counts, self._class_counts, self._infer_seconds)
        torch.distributed.all_gather_object(gathered, local)
        self._rows = [row for g in gathered for row in g[0]]
        self._second_counts = sum(g[1] for g in gathered)
        self._class_counts = sum(g[2] for g in gathered)
        # ranks infer in parallel: the slowest rank's time is the wall-clock time
        self._infer_seconds = max(g[3] for g in gathered)

    def on_test_epoch_end(self) -> None:
        self._gather()
        self._rows.sort(key=lambda r: r["_index"])
        for row in self._rows:
            row.pop("_index", None)
        thresholds = {"0.5": 0.5, "opt": float(self.threshold)}
        pooled = self.test_metrics.report(thresholds)
        curves = self.test_metrics.curves()
        self.test_metrics.reset()
        per_image = summarize_rows(self._rows)
        report: dict[str, Any] = {
            "model": type(self.model).__name__,
            "num_parameters": self.num_parameters,
            "thresholds": thresholds,
            "threshold_criterion": (
                self.threshold_criterion if self.fixed_threshold is None else "fixed"
            ),
            "metrics_in_fov": self.metrics_in_fov,
            "num_images": len(self._rows),
            # model inference only (preprocessed image on the device -> probabilities)
            "images_per_s": len(self._rows) / self._infer_seconds if self._infer_seconds else None,
            "pooled": pooled,
            "per_image_mean": {k: v[0] for k, v in per_image.items()},
            "per_image_std": {k: v[1] for k, v in per_image.items()},
        }
        if self.unmasked_metrics:
            report["unmasked"] = {
                "protocol": "every image pixel (no FOV mask), threshold 0.5 (004)",
                "pooled": self.unmasked_test_metrics.report({"0.5": 0.5}),
                "per_image_mean": {
                    k[len("nofov_") :]: v[0] for k, v in per_image.items() if k.startswith("nofov_")
                },
                "per_image_std": {
                    k[len("nofov_") :]: v[1] for k, v in per_image.items() if k.startswith("nofov_")
                },
            }
            self.unmasked_test_metrics.reset()
            for key in ("auroc", "f1@0.5", "acc@0.5"):
                self.log(f"test/nofov_{key}", report["unmasked"]["pooled"][key])
        if self.num_classes > 1:
            report["per_class"] = {}
            for c in range(1, self.num_classes):
                metric = self.class_metrics[str(c)]
                entry = {k: float(v) for k, v in metric.report({}).items()}
                entry.update(confusion_metrics(*self._class_counts[c].tolist()))
                metric.reset()
                report["per_class"][self.class_names[c]] = entry
        if self._second_counts.sum():
            report["second_observer"] = confusion_metrics(*self._second_counts.tolist())
        self.test_report = report
        for key in ("auroc", "auprc", *(f"{m}@{t}" for t in thresholds for m in CONFUSION_METRICS)):
            self.log(f"test/{key}", pooled[key])
        if "connectivity" in report["per_image_mean"]:
            self.log("test/connectivity", report["per_image_mean"]["connectivity"])
        if report["images_per_s"]:
            self.log("test/images_per_s", report["images_per_s"])
        for name, entry in report.get("per_class", {}).items():
            for key in ("auroc", "se", "sp", "acc", "f1"):
                self.log(f"test/{name}_{key}", entry[key])
        if self.trainer.is_global_zero:
            out = self.results_dir or Path(self.trainer.default_root_dir) / "test"
            self._write_report(report, out)
            figures = self._write_figures(report, curves, out) if self.figures else []
            from retina_lightning.tracking import log_test_results

            log_test_results(self.loggers, report, self._rows, figures)
            rank_zero_info(format_report(report))

    def _write_report(self, report: dict[str, Any], out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=True))
        if self._rows:
            keys = list(self._rows[0])
            lines = [",".join(keys)]
            for row in self._rows:
                lines.append(",".join(_fmt_csv(row[k]) for k in keys))
            (out / "per_image.csv").write_text("\n".join(lines) + "\n")
        rank_zero_info(f"test results written to {out}")

    def _write_figures(
        self, report: dict[str, Any], curves: dict[str, Tensor], out: Path
    ) -> list[Path]:
        """ROC / PR curves (with the human observer as a point), a per-image Jaccard box plot
        (004's recommendation) and image / truth / probability / error panels of the best and
        worst test images."""
        from retina_lightning.reports import save_boxplot, save_curves, save_panel

        name = report["model"]
        so = report.get("second_observer")
        points = {"2nd observer": (1.0 - so["sp"], so["se"])} if so else None
        figures = list(
            save_curves(
                out,
                {name: (curves["fpr"].cpu().numpy(), curves["tpr"].cpu().numpy())},
                pr={name: (curves["recall"].cpu().numpy(), curves["precision"].cpu().numpy())},
                reference_points=points,
            )
        )
        values = [r["jaccard@opt"] for r in self._rows if not math.isnan(r["jaccard@opt"])]
        if values:
            path = out / "boxplot_jaccard.png"
            save_boxplot(path, {name: values}, "jaccard@opt")
            figures.append(path)
        for which, item in self._panels.items():
            path = out / f"panel_{which}_{item['name']}.png"
            t = report["thresholds"]["opt"]
            title = f"{which}: {item['name']} (F1 {item['score']:.4f} at t={t:.3f})"
            save_panel(
                path,
                item["image"],
                item["label"],
                item["prob"],
                item["fov"],
                report["thresholds"]["opt"],
                title,
            )
            figures.append(path)
        return figures

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        """Class probabilities ``prob`` ``(B, K, H, W)`` on the images' own grid (CPU); ``None``
        for a batch without an ``image`` (an input the datamodule could not read, which the
        prediction writer reports)."""
        if "image" not in batch:
            return None
        probs = self.batch_probs(batch)
        return {"name": batch["name"], "prob": probs.cpu(), "fov": batch["fov"].cpu()}


def _fmt_csv(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def _threshold_origin(report: dict[str, Any]) -> str:
    criterion = report.get("threshold_criterion", "youden")
    return "fixed in the config" if criterion == "fixed" else f"{criterion}, chosen on validation"


def format_report(report: dict[str, Any]) -> str:
    """The test summary as a fixed-width table (pooled over pixels, and mean +- std over
    images), with the second human observer as a row when the dataset has one."""
    cols = ("auroc", "auprc", *CONFUSION_METRICS)
    head = f"{'':28s}" + "".join(f"{c:>16s}" for c in cols)
    lines = [
        f"{report['model']} ({report['num_parameters']:,} parameters), "
        f"{report['num_images']} test images, thresholds 0.5 and opt="
        f"{report['thresholds']['opt']:.4f} ({_threshold_origin(report)})",
        head,
    ]

    def cell(v: float | None, s: float | None = None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return f"{'-':>16s}"
        return f"{v:>7.4f} +- {s:<5.3f}" if s is not None else f"{v:>16.4f}"

    pooled, mean, std = report["pooled"], report["per_image_mean"], report["per_image_std"]
    for t in ("0.5", "opt"):
        lines.append(
            f"{'pooled @' + t:28s}"
            + "".join(cell(pooled.get(c if c in ("auroc", "auprc") else f"{c}@{t}")) for c in cols)
        )
    for t in ("0.5", "opt"):
        keys = [c if c in ("auroc", "auprc") else f"{c}@{t}" for c in cols]
        lines.append(
            f"{'per image @' + t:28s}" + "".join(cell(mean.get(k), std.get(k)) for k in keys)
        )
    unmasked = report.get("unmasked")
    if unmasked:
        keys = [c if c in ("auroc", "auprc") else f"{c}@0.5" for c in cols]
        lines.append(
            f"{'no FOV mask, pooled @0.5':28s}"
            + "".join(cell(unmasked["pooled"].get(k)) for k in keys)
        )
        um, us = unmasked["per_image_mean"], unmasked["per_image_std"]
        lines.append(
            f"{'no FOV mask, per image @0.5':28s}"
            + "".join(cell(um.get(k), us.get(k)) for k in keys)
        )
    if "connectivity" in mean:
        lines.append(
            f"{'connectivity (per image)':28s}{cell(mean['connectivity'], std['connectivity'])}"
        )
    if "second_observer" in report:
        so = report["second_observer"]
        lines.append(f"{'2nd observer (human)':28s}" + "".join(cell(so.get(c)) for c in cols))
    return "\n".join(lines)
