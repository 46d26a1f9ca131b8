"""Rebuild what inference needs from a ``retina fit`` checkpoint: :func:`load_predictor`.

The task (model, inferer, validation-chosen ``threshold`` buffer) comes back through
``SegmentationTask.load_from_checkpoint`` (LightningCLI stores the model config in
``hyper_parameters``); the input conditioning through a :class:`RetinaDataModule` rebuilt from
the checkpoint's ``datamodule_hyper_parameters`` (channels, gamma, CLAHE, normalisation,
``fov_diameter``) and its saved state (the training set's statistics of ``normalize:
dataset``). Its ``prepare_whole`` is the method validation and test batches go through, so a
new image is seen exactly as the validation images were.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.data.transforms import Preprocess
from retina_lightning.inference import Inferer
from retina_lightning.tasks.segmentation import SegmentationTask
from retina_lightning.types import to_tensor_image


class PredictError(RuntimeError):
    """A problem with the command line, the checkpoint or the inputs (printed, exit 2)."""


def warn(message: str) -> None:
    print(f"retina predict: warning: {message}", file=sys.stderr)


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PredictError(
            f"--device {device}: CUDA is not available on this machine (torch "
            f"{torch.__version__}); use --device cpu or --device auto"
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise PredictError(f"--device {device!r}: {e}; use cpu, cuda, cuda:N or auto") from e


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict of ``path``, or a :class:`PredictError` saying what is wrong."""
    if not path.exists():
        hint = (
            " ('best' / 'last' name a run's checkpoint only together with --config)"
            if str(path) in ("best", "last")
            else ""
        )
        raise PredictError(
            f"--ckpt_path {str(path)!r}: no such file{hint}. Checkpoints of a run are in "
            "runs/<experiment>/<timestamp>/checkpoints/ (best-*.ckpt, last.ckpt)"
        )
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))
        hint = f"; it holds {', '.join(str(p) for p in found[:3])}" if found else ""
        raise PredictError(f"--ckpt_path {str(path)!r} is a folder, not a .ckpt file{hint}")
    try:
        # weights_only=False: Lightning checkpoints hold hyper-parameters (the user's own runs)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise PredictError(
            f"--ckpt_path {str(path)!r} is not a PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); pass a .ckpt written by `retina fit`"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise PredictError(
            f"--ckpt_path {str(path)!r} is not a Lightning checkpoint (no 'state_dict'; found "
            f"{keys}); pass a .ckpt written by `retina fit`"
        )
    return ckpt


def preprocess_from(ckpt: dict[str, Any]) -> tuple[Preprocess, str, tuple[Tensor, Tensor] | None]:
    """The training-time :class:`Preprocess`, the datamodule's target and stored dataset
    statistics (``None`` when absent) of a checkpoint."""
    hp = ckpt.get("datamodule_hyper_parameters")
    if not isinstance(hp, dict):
        warn(
            "the checkpoint stores no datamodule configuration (not trained with `retina fit`): "
            "using the default preprocessing (RGB, per-image normalisation inside the FOV)"
        )
        return Preprocess(), "label", None
    target = str(hp.get("target", "label"))
    raw = hp.get("preprocess")
    if isinstance(raw, Preprocess):
        pre = raw
    elif raw is None:
        pre = Preprocess()
    elif isinstance(raw, dict):
        raw = dict(raw.get("init_args", raw)) if "class_path" in raw else dict(raw)
        known = {f.name for f in fields(Preprocess)}
        unknown = sorted(set(raw) - known)
        if unknown:
            warn(f"ignoring unknown preprocess keys {unknown} stored in the checkpoint")
        kwargs = {k: v for k, v in raw.items() if k in known}
        if "clahe_grid" in kwargs:
            kwargs["clahe_grid"] = tuple(kwargs["clahe_grid"])
        pre = Preprocess(**kwargs)
    else:
        warn(f"unreadable preprocess entry {raw!r} in the checkpoint: using the defaults")
        pre = Preprocess()
    stats = None
    state = ckpt.get("RetinaDataModule")
    if isinstance(state, dict) and "dataset_mean" in state and "dataset_std" in state:
        stats = (torch.as_tensor(state["dataset_mean"]), torch.as_tensor(state["dataset_std"]))
    return pre, target, stats


def fov_diameter_from(ckpt: dict[str, Any]) -> int | str | None:
    """The training datamodule's ``fov_diameter``: a diameter in px, ``"native"``, or None
    (native training; evaluation follows :func:`train_fov_diameter_from`)."""
    hp = ckpt.get("datamodule_hyper_parameters")
    value = hp.get("fov_diameter") if isinstance(hp, dict) else None
    return value if value is None or value == "native" else int(value)


def train_fov_diameter_from(ckpt: dict[str, Any]) -> int | None:
    """The median FOV diameter (px) of the model's training images, as ``retina fit`` records
    it (issue 22); None for checkpoints written before it was recorded."""
    state = ckpt.get("RetinaDataModule")
    value = state.get("train_fov_diameter") if isinstance(state, dict) else None
    return None if value is None else int(value)


def conditioning(
    preprocess: Preprocess,
    target: str = "label",
    dataset_stats: tuple[Tensor, Tensor] | None = None,
    fov_diameter: int | str | None = None,
    model_fov_diameter: int | None = None,
) -> RetinaDataModule:
    """A :class:`RetinaDataModule` that conditions whole images as the training one did
    (:meth:`RetinaDataModule.prepare_whole`): same preprocessing, scale and statistics."""
    dm = RetinaDataModule(preprocess=preprocess, target=target, fov_diameter=fov_diameter)  # type: ignore[arg-type]
    state: dict[str, Any] = {"train_fov_diameter": model_fov_diameter}
    if dataset_stats is not None:
        state.update(dataset_mean=dataset_stats[0], dataset_std=dataset_stats[1])
    dm.load_state_dict(state)
    return dm


def _first_conv_channels(model: nn.Module) -> int | None:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first is None else int(first.in_channels)


@dataclass
class Predictor:
    """A loaded model with its conditioning, inference mode and threshold.

    ``predictor(image, fov)`` -> ``(K, H, W)`` float32 numpy probabilities through the same
    two calls as ``retina test`` and ``retina predict``'s Lightning loop: the conditioning
    datamodule's ``prepare_whole`` and the task's ``batch_probs``. Build one from a checkpoint
    with :func:`load_predictor`, or from a model in Python.
    """

    model: nn.Module
    preprocess: Preprocess
    inferer: Inferer
    threshold: float
    num_classes: int
    target: str = "label"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = False
    dataset_stats: tuple[Tensor, Tensor] | None = None
    fov_diameter: int | str | None = None
    model_fov_diameter: int | None = None
    task: SegmentationTask | None = None

    def __post_init__(self) -> None:
        if self.task is None:
            self.task = SegmentationTask(self.model, inferer=self.inferer, threshold=self.threshold)
        self.task.eval().to(self.device)
        self.task.half_inference = self.amp and self.device.type == "cuda"
        stats = self.dataset_stats if self.preprocess.normalize == "dataset" else None
        if self.preprocess.normalize == "dataset" and stats is None:
            # without the training set's statistics each image is normalised inside its FOV
            self.preprocess = replace(self.preprocess, normalize="image")
        self.data = conditioning(
            self.preprocess, self.target, stats, self.fov_diameter, self.model_fov_diameter
        )

    def describe_resolution(self) -> str:
        """At which scale images go through the network, in words (printed by predict)."""
        target, tolerance = self.data.working_scale()
        if target is None:
            return "native resolution"
        if tolerance == 0.0:
            return f"images resampled to a {target} px FOV and back"
        return (
            f"images whose FOV differs from the model's {target} px by more than "
            f"{tolerance:.0%} resampled to it and back (--fov_diameter native: never)"
        )

    @property
    def is_av(self) -> bool:
        """Artery/vein output (0 background, 1 vein, 2 artery)."""
        return self.target == "av" or self.num_classes == 3

    def __call__(self, image: np.ndarray, fov: np.ndarray) -> np.ndarray:
        batch = {
            "image": to_tensor_image(image)[None].to(self.device),
            "fov": torch.from_numpy(np.ascontiguousarray(fov, dtype=bool))[None].to(self.device),
        }
        assert self.task is not None
        with torch.inference_mode():
            probs = self.task.batch_probs(self.data.prepare_whole(batch))
        return probs[0].float().cpu().numpy()


def _load_task(path: Path, device: torch.device) -> SegmentationTask:
    try:
        task = SegmentationTask.load_from_checkpoint(path, map_location=device, weights_only=False)
    except TypeError as e:
        if "model" in str(e):
            raise PredictError(
                f"{str(path)!r} holds no model configuration: it was saved by a "
                "SegmentationTask built in Python, not by `retina fit`. Rebuild the network "
                "and call SegmentationTask.load_from_checkpoint(path, model=net) yourself"
            ) from e
        raise PredictError(f"cannot rebuild the model of {str(path)!r}: {e}") from e
    except (RuntimeError, KeyError, ValueError, ImportError, AttributeError, OSError) as e:
        raise PredictError(
            f"cannot rebuild the model of {str(path)!r}: {type(e).__name__}: {e}. Was it "
            "written by this version of retina-lightning?"
        ) from e
    return task.eval()


def _inferer_with(
    inferer: Inferer, tile_size: int | None, stride: int | None, tta: bool
) -> Inferer:
    """The checkpoint's inferer with the command line's changes (every other setting kept)."""
    if tile_size is None and not tta:
        if stride is not None:
            raise PredictError("--stride needs --tile_size (sliding-window inference)")
        return inferer
    names = list(inspect.signature(Inferer.__init__).parameters)[1:]
    kwargs = {n: getattr(inferer, n) for n in names if hasattr(inferer, n)}
    kwargs["tta"] = tta or inferer.tta
    if tile_size is not None:
        kwargs.update(mode="sliding", tile_size=tile_size, stride=stride or max(tile_size // 2, 1))
        kwargs["margin"] = 0
    return Inferer(**kwargs)


def load_predictor(
    ckpt_path: str | Path,
    device: str = "auto",
    threshold: float | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    tta: bool = False,
    amp: bool = False,
    fov_diameter: int | str | None = "ckpt",
) -> Predictor:
    """Rebuild a trained model and its inference settings from a ``retina fit`` checkpoint.

    Args:
        ckpt_path: a ``.ckpt`` file.
        device: ``cpu``, ``cuda[:N]`` or ``auto`` (CUDA when available).
        threshold: overrides the checkpoint's validation-chosen threshold (``threshold_criterion``).
        tile_size, stride: switch to sliding-window inference (IterNet 003 section 5);
            ``stride`` defaults to half the tile. Otherwise the checkpoint's inferer is kept.
        tta: average predictions over flips.
        amp: float16 autocast on CUDA.
        fov_diameter: the FOV diameter (px) images are resampled to before the network;
            ``"ckpt"`` (default): the training datamodule's ``fov_diameter``, else the median
            FOV diameter of the training images recorded in the checkpoint, followed when an
            image's FOV differs from it by more than 5 % (issue 22); ``"native"`` or ``None``:
            native size (:mod:`retina_lightning.data.resolution`).
    """
    path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    dev = resolve_device(device)
    if amp and dev.type != "cuda":
        warn("--amp only applies on CUDA; running in float32 on the CPU")
    task = _load_task(path, dev)
    pre, target, stats = preprocess_from(ckpt)
    if pre.normalize == "dataset" and stats is None:
        warn(
            "the model was trained with preprocess.normalize='dataset' but the checkpoint "
            "stores no dataset statistics: normalising each image inside its FOV instead "
            "(predictions may differ slightly from `retina test`)"
        )
        pre = replace(pre, normalize="image")
    expected = _first_conv_channels(task.model)
    if expected is not None and expected != pre.out_channels:
        if not isinstance(ckpt.get("datamodule_hyper_parameters"), dict):
            pre = replace(pre, channels="green" if expected == 1 else "rgb")
            warn(f"the model takes {expected} input channel(s): using channels={pre.channels}")
        else:
            raise PredictError(
                f"the model takes {expected} input channels but the stored preprocessing "
                f"(channels={pre.channels!r}) gives {pre.out_channels}: the checkpoint is "
                "inconsistent"
            )
    task.inferer = _inferer_with(task.inferer, tile_size, stride, tta)
    thr = float(task.threshold) if threshold is None else float(threshold)
    recorded = train_fov_diameter_from(ckpt)
    if fov_diameter == "ckpt":
        fov_diameter = fov_diameter_from(ckpt)
        if fov_diameter is None and recorded is None:
            warn(
                f"{str(path)!r} records no training FOV diameter (written before retina-lightning "
                "recorded it): images run at their native size; pass --fov_diameter N (e.g. 540 "
                "for a DRIVE model) to resample images from another camera"
            )
    elif fov_diameter is None:
        fov_diameter = "native"
    return Predictor(
        model=task.model,
        preprocess=pre,
        inferer=task.inferer,
        threshold=thr,
        num_classes=task.num_classes,
        target=target,
        device=dev,
        amp=amp,
        dataset_stats=stats,
        fov_diameter=fov_diameter,
        model_fov_diameter=recorded,
        task=task,
    )
