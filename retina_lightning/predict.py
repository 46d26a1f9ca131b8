"""``retina predict``: segment a folder of fundus images with a trained checkpoint.

    retina predict --ckpt_path run.ckpt --input photos/ --output out/ [--width --pixel_size_um 12.5]

An output folder that already holds results (``predictions.csv``, ``<stem>_mask.png`` & co.)
is refused unless ``--overwrite`` deletes them first, so one folder never mixes two runs.
With ``--fov FOLDER`` the images without a mask there are listed (their FOV is derived).

The checkpoint rebuilds everything inference needs: the model (LightningCLI stores its config
in ``hyper_parameters``), the ROC-optimal threshold chosen on the validation images (the task's
``threshold`` buffer, DPN 002 section 4.4: "the optimal operating point of the ROC curve"),
the inference mode (whole image, DPN 002 section 4.3; or overlapping tiles, IterNet 003
section 5) and the input conditioning (``datamodule_hyper_parameters["preprocess"]``: channels,
gamma, CLAHE, normalisation), so a new image is seen exactly as the validation images were.

Per image it writes ``<stem>_prob.png`` (8-bit vessel probability), ``<stem>_mask.png``
(binary at the threshold), ``<stem>_overlay.png`` (vessels over the image), with ``--width``
``<stem>_width.png`` (vessel diameters along the medial axis, SegRAVIR 000 section IV-C,
colour-coded; measured, as in 000, on the segmentation at 0.5 or the argmax class, not at the
validation-chosen threshold of ``_mask.png``), and for artery/vein models ``<stem>_av.png``
(red artery, blue vein, as RITE's maps); all maps are zero outside the field of view (FOV).
``predictions.csv`` gives per image the size, the vessel density inside the FOV, the mean /
std vessel width (and ``width_rule``: ``>=0.5`` or ``argmax``) and the seconds it took.
Speed is reported as DPN does (002 section 4.4): the time from reading the image from disk to
writing its maps to disk, ``fps = images / seconds``.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import math
import sys
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi
from torch import Tensor, nn

from retina_lightning.data.base import DatasetError
from retina_lightning.data.fov import derive_fov
from retina_lightning.data.io import IMAGE_SUFFIXES, is_image_file, read_image, read_mask
from retina_lightning.data.io import split_suffix as _split_suffix
from retina_lightning.data.resolution import parse_fov_diameter, resize_probabilities
from retina_lightning.data.transforms import Preprocess, condition_whole
from retina_lightning.inference import Inferer
from retina_lightning.measure import WIDTH_THRESHOLD, av_widths, vessel_widths
from retina_lightning.types import ARTERY, VEIN, to_tensor_image

__all__ = [
    "OUTPUT_SUFFIXES",
    "PredictError",
    "Predictor",
    "find_images",
    "load_predictor",
    "match_fov",
    "predict_main",
    "width_colours",
    "width_segmentation",
]

#: What one image produces: ``<stem><suffix>.png``.
OUTPUT_SUFFIXES = ("_prob", "_mask", "_overlay", "_width", "_av")
#: Colour of predicted vessels in ``_overlay.png`` and its opacity.
OVERLAY_COLOUR = np.array([0, 255, 120], dtype=np.float32)
OVERLAY_ALPHA = 0.6
#: A/V colours: RITE's convention (red artery, blue vein).
AV_COLOURS = {ARTERY: (255, 0, 0), VEIN: (0, 80, 255)}
#: FOV file stems tried for an image stem ``s``, in order (DRIVE: ``01_test_mask.gif``).
FOV_STEM_PATTERNS = ("{}", "{}_mask", "{}_fov", "{}-mask", "{}_FOV", "{}_Mask")


class PredictError(RuntimeError):
    """A problem with the command line, the checkpoint or the inputs (printed, exit 2)."""


def _warn(message: str) -> None:
    print(f"retina predict: warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------ loading


def _resolve_device(device: str) -> torch.device:
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


def _read_checkpoint(path: Path) -> dict[str, Any]:
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


def _preprocess_from(ckpt: dict[str, Any]) -> tuple[Preprocess, str, tuple[Tensor, Tensor] | None]:
    """The training-time :class:`Preprocess`, the datamodule's target and stored dataset
    statistics (``None`` when absent) of a checkpoint."""
    hp = ckpt.get("datamodule_hyper_parameters")
    if not isinstance(hp, dict):
        _warn(
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
            _warn(f"ignoring unknown preprocess keys {unknown} stored in the checkpoint")
        kwargs = {k: v for k, v in raw.items() if k in known}
        if "clahe_grid" in kwargs:
            kwargs["clahe_grid"] = tuple(kwargs["clahe_grid"])
        pre = Preprocess(**kwargs)
    else:
        _warn(f"unreadable preprocess entry {raw!r} in the checkpoint: using the defaults")
        pre = Preprocess()
    stats = None
    state = ckpt.get("RetinaDataModule")
    if isinstance(state, dict) and "dataset_mean" in state and "dataset_std" in state:
        stats = (torch.as_tensor(state["dataset_mean"]), torch.as_tensor(state["dataset_std"]))
    return pre, target, stats


def _fov_diameter_from(ckpt: dict[str, Any]) -> int | None:
    """The training datamodule's ``fov_diameter`` (None: native resolution)."""
    hp = ckpt.get("datamodule_hyper_parameters")
    value = hp.get("fov_diameter") if isinstance(hp, dict) else None
    return None if value is None else int(value)


def _first_conv_channels(model: nn.Module) -> int | None:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first is None else int(first.in_channels)


@dataclass
class Predictor:
    """A loaded model with its preprocessing, inference mode and threshold.

    ``predictor(image, fov)`` -> ``(K, H, W)`` float32 numpy probabilities. Build one with
    :func:`load_predictor`.
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
    fov_diameter: int | None = None

    @property
    def is_av(self) -> bool:
        """Artery/vein output (0 background, 1 vein, 2 artery)."""
        return self.target == "av" or self.num_classes == 3

    def __call__(self, image: np.ndarray, fov: np.ndarray) -> np.ndarray:
        x = to_tensor_image(image)[None].to(self.device)
        m = torch.from_numpy(np.ascontiguousarray(fov, dtype=bool))[None].to(self.device)
        stats = self.dataset_stats if self.preprocess.normalize == "dataset" else None
        net_in = condition_whole(x, m, self.preprocess, stats, self.fov_diameter)
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.amp and self.device.type == "cuda"
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            probs = self.inferer(self.model, net_in)
        probs = resize_probabilities(probs, tuple(m.shape[-2:]))
        return probs[0].float().cpu().numpy()


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
        threshold: overrides the checkpoint's ROC-optimal (validation) threshold.
        tile_size, stride: switch to sliding-window inference (IterNet 003 section 5);
            ``stride`` defaults to half the tile. Otherwise the checkpoint's inferer is kept.
        tta: average predictions over flips.
        amp: float16 autocast on CUDA.
        fov_diameter: the FOV diameter (px) images are resampled to before the network;
            ``"ckpt"`` (default): the training datamodule's ``fov_diameter``; ``None``: native
            size (issue 13; :mod:`retina_lightning.data.resolution`).
    """
    from retina_lightning.tasks.segmentation import SegmentationTask

    path = Path(ckpt_path)
    ckpt = _read_checkpoint(path)
    dev = _resolve_device(device)
    if amp and dev.type != "cuda":
        _warn("--amp only applies on CUDA; running in float32 on the CPU")
    try:
        task = SegmentationTask.load_from_checkpoint(path, map_location=dev, weights_only=False)
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
    task.eval()
    pre, target, stats = _preprocess_from(ckpt)
    if pre.normalize == "dataset" and stats is None:
        _warn(
            "the model was trained with preprocess.normalize='dataset' but the checkpoint "
            "stores no dataset statistics: normalising each image inside its FOV instead "
            "(predictions may differ slightly from `retina test`)"
        )
    expected = _first_conv_channels(task.model)
    if expected is not None and expected != pre.out_channels:
        if not isinstance(ckpt.get("datamodule_hyper_parameters"), dict):
            pre.channels = "green" if expected == 1 else "rgb"
            _warn(f"the model takes {expected} input channel(s): using channels={pre.channels}")
        else:
            raise PredictError(
                f"the model takes {expected} input channels but the stored preprocessing "
                f"(channels={pre.channels!r}) gives {pre.out_channels}: the checkpoint is "
                "inconsistent"
            )
    inferer = task.inferer
    if tile_size is not None or tta:
        # the checkpoint's inferer with the command line's changes (every other setting kept)
        names = list(inspect.signature(Inferer.__init__).parameters)[1:]
        kwargs = {n: getattr(inferer, n) for n in names if hasattr(inferer, n)}
        kwargs["tta"] = tta or inferer.tta
        if tile_size is not None:
            kwargs.update(
                mode="sliding", tile_size=tile_size, stride=stride or max(tile_size // 2, 1)
            )
            kwargs["margin"] = 0
        inferer = Inferer(**kwargs)
    elif stride is not None:
        raise PredictError("--stride needs --tile_size (sliding-window inference)")
    thr = float(task.threshold) if threshold is None else float(threshold)
    return Predictor(
        model=task.model,
        preprocess=pre,
        inferer=inferer,
        threshold=thr,
        num_classes=task.num_classes,
        target=target,
        device=dev,
        amp=amp,
        dataset_stats=stats,
        fov_diameter=_fov_diameter_from(ckpt) if fov_diameter == "ckpt" else fov_diameter,
    )


# ------------------------------------------------------------------------- inputs


def find_images(path: str | Path) -> list[Path]:
    """The image files of ``--input``: the file itself, or the folder's image files
    (not recursive), sorted by name, without ``<stem>_prob.png`` & co. of an image
    ``<stem>`` of the same folder (outputs written next to their inputs)."""
    path = Path(path)
    looked_for = ", ".join(IMAGE_SUFFIXES) + " (each also .gz)"
    if not path.exists():
        raise PredictError(f"--input {str(path)!r}: no such file or folder")
    if path.is_file():
        if not is_image_file(path):
            raise PredictError(
                f"--input {str(path)!r} is not an image file; extensions read: {looked_for}"
            )
        return [path]
    images = sorted(p for p in path.iterdir() if is_image_file(p))
    # maps of an earlier run written into the input folder are not inputs
    stems = {_stem(p) for p in images}
    images = [
        p
        for p in images
        if not any(_stem(p).endswith(s) and _stem(p)[: -len(s)] in stems for s in OUTPUT_SUFFIXES)
    ]
    if not images:
        raise PredictError(
            f"--input {str(path)!r} holds no image file; extensions looked for: {looked_for}"
        )
    return images


def _stem(path: Path) -> str:
    return _split_suffix(path)[0]


def match_fov(image: Path, fov: Path | None) -> Path | None:
    """The FOV mask of ``image``: ``fov`` itself when it is a file; in a folder the file
    whose stem is the image's stem, or the stem followed by ``_mask`` / ``_fov`` (DRIVE's
    ``01_test_mask.gif`` for ``01_test.tif``); ``None`` when nothing matches."""
    if fov is None:
        return None
    if fov.is_file():
        return fov
    stems = {_stem(p): p for p in fov.iterdir() if is_image_file(p)}
    stem = _stem(image)
    for pattern in FOV_STEM_PATTERNS:
        if pattern.format(stem) in stems:
            return stems[pattern.format(stem)]
    return None


# ------------------------------------------------------------------------ outputs


def width_segmentation(probs: np.ndarray, fov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segmentation vessel widths are measured on (000 section IV-C): ``(classes,
    vessel)``, ``(H, W)`` uint8 class map and bool vessel mask, zero outside ``fov``. One
    output channel: ``p >= 0.5`` (:data:`~retina_lightning.measure.WIDTH_THRESHOLD`), whatever
    the validation-chosen threshold; several: the argmax class (0 = background)."""
    fov = np.asarray(fov, dtype=bool)
    if probs.shape[0] == 1:
        vessel = (probs[0] >= WIDTH_THRESHOLD) & fov
        return vessel.astype(np.uint8), vessel
    classes = np.where(fov, probs.argmax(0), 0).astype(np.uint8)
    return classes, classes != 0


def width_colours(
    width_map: np.ndarray, vessel: np.ndarray, vmax: float, skeleton: np.ndarray | None = None
) -> np.ndarray:
    """``(H, W, 3)`` uint8: every vessel pixel coloured (turbo colour map over ``[0, vmax]``)
    with the diameter of its nearest medial-axis pixel, background black. ``skeleton``: the
    medial-axis pixels (default ``width_map > 0``; pass ``WidthResult.skeleton``, as a
    one-pixel vessel has diameter 0 by the medial-axis definition)."""
    from matplotlib import colormaps

    skeleton = width_map > 0 if skeleton is None else np.asarray(skeleton, dtype=bool)
    out = np.zeros((*width_map.shape, 3), dtype=np.uint8)
    if not skeleton.any():
        return out
    _, (iy, ix) = ndi.distance_transform_edt(~skeleton, return_indices=True)
    spread = np.where(vessel | skeleton, width_map[iy, ix], 0.0)
    rgb = colormaps["turbo"](np.clip(spread / max(vmax, 1e-6), 0, 1))[..., :3]
    out[vessel | skeleton] = (rgb[vessel | skeleton] * 255).round().astype(np.uint8)
    return out


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    out = rgb.astype(np.float32)
    out[mask] = (1 - OVERLAY_ALPHA) * out[mask] + OVERLAY_ALPHA * OVERLAY_COLOUR
    return out.round().astype(np.uint8)


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _nan(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def predict_image(
    predictor: Predictor,
    image_path: Path,
    output: Path,
    fov_path: Path | None,
    width: bool = False,
    pixel_size_um: float | None = None,
) -> dict[str, Any]:
    """Segment one file and write its maps; returns its ``predictions.csv`` row."""
    from retina_lightning.tasks.segmentation import vessel_probability

    start = time.perf_counter()
    stem = _stem(image_path)
    image = read_image(image_path)
    h, w = image.shape[:2]
    if fov_path is not None:
        fov = read_mask(fov_path).astype(bool)
        if fov.shape != (h, w):
            raise DatasetError(
                f"FOV mask {str(fov_path)!r} is {fov.shape[1]}x{fov.shape[0]} (WxH) but the "
                f"image {str(image_path)!r} is {w}x{h}; pass the matching masks with --fov or "
                "leave --fov out to derive the FOV from the image"
            )
        fov_source = "file"
    else:
        fov = derive_fov(image)
        fov_source = "derived"
    if not fov.any():
        raise DatasetError(f"the FOV of {str(image_path)!r} is empty")
    probs = predictor(image, fov)
    prob = vessel_probability(torch.from_numpy(probs)[None])[0].numpy() * fov
    mask = (prob >= predictor.threshold) & fov
    _save((prob * 255).round().astype(np.uint8), output / f"{stem}_prob.png")
    _save(mask.astype(np.uint8) * 255, output / f"{stem}_mask.png")
    _save(_overlay(image, mask), output / f"{stem}_overlay.png")
    row: dict[str, Any] = {
        "name": stem,
        "file": image_path.name,
        "height": h,
        "width": w,
        "fov": fov_source,
        "threshold": float(predictor.threshold),
        "vessel_density": float(mask.sum() / fov.sum()),
    }
    if predictor.is_av:
        classes = np.where(mask, probs[1:].argmax(0) + 1, 0)
        av_rgb = np.zeros((h, w, 3), dtype=np.uint8)
        for cls, colour in AV_COLOURS.items():
            av_rgb[classes == cls] = colour
        _save(av_rgb, output / f"{stem}_av.png")
        row["artery_density"] = float((classes == ARTERY).sum() / fov.sum())
        row["vein_density"] = float((classes == VEIN).sum() / fov.sum())
    if width:
        # 000 section IV-C measures widths on the segmentation thresholded at 0.5 (argmax over
        # the classes of a multi-class output), not at the validation-chosen threshold
        width_classes, width_mask = width_segmentation(probs, fov)
        res = vessel_widths(width_mask)
        d = res.diameters
        vmax = float(np.percentile(d, 99)) if d.size else 1.0
        colours = width_colours(res.width_map, width_mask, vmax, res.skeleton)
        _save(colours, output / f"{stem}_width.png")
        row.update(width_rule="argmax" if probs.shape[0] > 1 else f">={WIDTH_THRESHOLD:g}")
        row.update(width_mean_px=res.mean, width_std_px=res.std, width_scale_max_px=vmax)
        if pixel_size_um is not None:
            row.update(width_mean_um=res.mean * pixel_size_um, width_std_um=res.std * pixel_size_um)
        if predictor.is_av:
            per_class = av_widths(width_classes.astype(np.uint8), pixel_size_um)
            unit = "um" if pixel_size_um is not None else "px"
            for name, r in per_class.items():
                row[f"{name}_width_mean_{unit}"] = r.mean
    row["seconds"] = time.perf_counter() - start
    return row


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    keys.remove("seconds")
    keys.append("seconds")
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(keys)
        for row in rows:
            writer.writerow(
                [_nan(row[k]) if isinstance(row.get(k), float) else row.get(k, "") for k in keys]
            )


# ---------------------------------------------------------------------------- main


def _threshold(text: str) -> float | None:
    if text in ("ckpt", "checkpoint", "opt"):
        return None
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected 'ckpt' (the validation-optimal threshold stored in the checkpoint) or "
            f"a number in (0, 1], got {text!r}"
        ) from e
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"the threshold must lie in (0, 1], got {value}")
    return value


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}") from e
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retina predict",
        description="Segment fundus images with a trained checkpoint (model, preprocessing and "
        "validation-optimal threshold are read from it).",
    )
    parser.add_argument("--ckpt_path", required=True, help="a .ckpt written by `retina fit`")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the maps and predictions.csv")
    parser.add_argument(
        "--fov",
        help="FOV mask file, or folder of masks matched by stem (<stem>, <stem>_mask, ...); "
        "default: derived from each image by thresholding its dark surround",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="'ckpt' (default: the threshold chosen on validation by the task's "
        "threshold_criterion) or a number",
    )
    parser.add_argument("--width", action="store_true", help="also write vessel width maps")
    parser.add_argument("--pixel_size_um", type=_positive(float), help="microns per pixel")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    parser.add_argument("--tile_size", type=_positive(int), help="sliding-window tile size")
    parser.add_argument("--stride", type=_positive(int), help="sliding-window stride")
    parser.add_argument("--tta", action="store_true", help="average over flipped inputs")
    parser.add_argument(
        "--fov_diameter",
        type=parse_fov_diameter,
        default="ckpt",
        help="resample each image so its FOV is this many pixels across before the network "
        "(maps are written at the image's own size): 'ckpt' (default, the training setting), "
        "'native', or a number such as 540 (DRIVE's scale)",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="--output may hold an earlier run's results: delete them (predictions.csv and "
        "<stem>_prob/_mask/_overlay/_width/_av.png) first; without it such a folder is refused",
    )
    return parser


def earlier_results(output: Path) -> list[Path]:
    """What an earlier ``retina predict`` left in ``output``: ``predictions.csv`` and the
    ``<stem>_prob.png`` & co. maps (issue 15 item 1: a second run into the same folder
    replaced some of them and left the others, mixing two runs)."""
    if not output.is_dir():
        return []
    names = tuple(s + ".png" for s in OUTPUT_SUFFIXES)
    return sorted(
        p
        for p in output.iterdir()
        if p.is_file() and (p.name == "predictions.csv" or p.name.endswith(names))
    )


def _claim_output(output: Path, overwrite: bool) -> list[Path]:
    """Refuse an output folder holding earlier results; with ``overwrite`` return them, to
    delete once the model has loaded (only those files: the inputs of a folder predicted into
    itself stay)."""
    found = earlier_results(output)
    if found and not overwrite:
        shown = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise PredictError(
            f"--output {str(output)!r} already holds the results of an earlier run "
            f"({len(found)} file(s): {shown}); writing into it would mix two runs. Choose a "
            "new folder, or pass --overwrite to delete those results first"
        )
    return found


def _derived_fov_images(images: list[Path], fov: Path | None) -> list[Path]:
    """The images a ``--fov`` folder has no mask for (their FOV is derived)."""
    if fov is None or not fov.is_dir():
        return []
    return [p for p in images if match_fov(p, fov) is None]


def _check_unique_stems(images: Iterable[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in images:
        stem = _stem(p)
        if stem in seen:
            raise PredictError(
                f"{seen[stem].name!r} and {p.name!r} have the same name stem {stem!r}; their "
                "outputs would overwrite each other. Rename one or predict them separately"
            )
        seen[stem] = p


def predict_main(argv: list[str]) -> int:
    """``retina predict ...``; returns the exit status (0 ok, 1 some image failed, 2 usage)."""
    from tqdm import tqdm

    args = build_parser().parse_args(argv)
    try:
        if args.pixel_size_um is not None and not args.width:
            _warn("--pixel_size_um is only used with --width")
        images = find_images(args.input)
        _check_unique_stems(images)
        fov = Path(args.fov) if args.fov else None
        if fov is not None and not fov.exists():
            raise PredictError(f"--fov {args.fov!r}: no such file or folder")
        output = Path(args.output)
        if output.exists() and not output.is_dir():
            raise PredictError(f"--output {args.output!r} is a file, not a folder")
        earlier = _claim_output(output, args.overwrite)
        predictor = load_predictor(
            args.ckpt_path,
            device=args.device,
            threshold=args.threshold,
            tile_size=args.tile_size,
            stride=args.stride,
            tta=args.tta,
            amp=args.amp,
            fov_diameter=args.fov_diameter,
        )
        output.mkdir(parents=True, exist_ok=True)
    except (PredictError, ValueError) as e:
        print(f"retina predict: error: {e}", file=sys.stderr)
        return 2
    for p in earlier:
        p.unlink()
    if earlier:
        _warn(f"--overwrite: deleted {len(earlier)} earlier result file(s) in {str(output)!r}")
    derived = _derived_fov_images(images, fov)
    if derived:
        shown = ", ".join(p.name for p in derived[:10]) + (", ..." if len(derived) > 10 else "")
        _warn(
            f"--fov {str(fov)!r} has no mask for {len(derived)} of {len(images)} image(s) "
            f"({shown}): their FOV is derived from the image (masks are matched by stem: "
            f"{', '.join(p.format('<stem>') for p in FOV_STEM_PATTERNS)})"
        )
    print(
        f"retina predict: {len(images)} image(s), {predictor.inferer!r}, threshold "
        f"{predictor.threshold:.4f}, device {predictor.device}, "
        + (
            "native resolution"
            if predictor.fov_diameter is None
            else f"images resampled to a {predictor.fov_diameter} px FOV and back"
        ),
        file=sys.stderr,
    )
    rows, failed = [], []
    for path in tqdm(images, desc="predict", unit="img", disable=args.no_progress or None):
        try:
            fov_path = match_fov(path, fov)
            rows.append(
                predict_image(predictor, path, output, fov_path, args.width, args.pixel_size_um)
            )
        except (DatasetError, OSError, ValueError, RuntimeError) as e:  # incl. out of memory
            failed.append((path, e))
            tqdm.write(f"retina predict: skipped {path.name}: {e}", file=sys.stderr)
    if rows:
        _write_csv(rows, output / "predictions.csv")
        seconds = sum(r["seconds"] for r in rows)
        print(
            f"retina predict: {len(rows)} image(s) in {seconds:.2f} s, "
            f"{len(rows) / seconds:.2f} images/s disk to disk (read, preprocess, inference, "
            f"write; DPN's fps) -> {output}",
            file=sys.stderr,
        )
    if failed:
        print(f"retina predict: {len(failed)} image(s) failed:", file=sys.stderr)
        for path, e in failed:
            print(f"  {path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(predict_main(sys.argv[1:]))
