"""What ``retina predict`` writes for each image, and the Lightning callback that writes it.

Per image (:func:`write_maps`): ``<stem>_prob.png`` (8-bit vessel probability),
``<stem>_mask.png`` (binary at the threshold), ``<stem>_overlay.png`` (vessels over the
image), with ``width`` ``<stem>_width.png`` (vessel diameters along the medial axis, SegRAVIR
000 section IV-C, colour-coded), for artery/vein models ``<stem>_av.png`` (red artery, blue
vein, as RITE's maps), and with ``save_probs``
``<stem>_probs.npy`` (the float32 ``(K, H, W)`` probabilities, which ``retina data widths
--pred`` reads). All maps are zero outside the field of view (FOV). :class:`MapWriter` is the
``BasePredictionWriter`` of ``Trainer.predict``; it also writes ``predictions.csv``.

One threshold makes every map (issue 22): a pixel is vessel when its vessel probability (the
sigmoid output, or one minus the background probability of an A/V model) is at least
``threshold``, the model's operating point (chosen on its validation images, by default the
F1-maximising one) unless ``--threshold`` gives another; an A/V model's vessel pixels take the
likelier of artery and vein. ``_mask.png``, ``_overlay.png``, ``_av.png``, ``_width.png`` and the
width columns all show that one segmentation, so ``retina data widths --pred`` (which reads
``_av.png`` or ``_mask.png``) measures what the width maps show; ``--threshold 0.5`` is
SegRAVIR's rule (000 section IV-C).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from scipy import ndimage as ndi
from tqdm import tqdm

from retina_lightning.measure import WIDTH_THRESHOLD, av_widths, vessel_widths
from retina_lightning.types import ARTERY, VEIN

#: Colour of predicted vessels in ``_overlay.png`` and its opacity.
OVERLAY_COLOUR = np.array([0, 255, 120], dtype=np.float32)
OVERLAY_ALPHA = 0.6
#: A/V colours: RITE's convention (red artery, blue vein).
AV_COLOURS = {ARTERY: (255, 0, 0), VEIN: (0, 80, 255)}


def width_segmentation(
    probs: np.ndarray, fov: np.ndarray, threshold: float = WIDTH_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """The segmentation every map of ``retina predict`` shows: ``(classes, vessel)``, ``(H, W)``
    uint8 class map and bool vessel mask, zero outside ``fov``. A pixel is vessel when its
    vessel probability is ``>= threshold``; one output channel: class 1; several (0
    background, 1 vein, 2 artery): the likelier foreground class."""
    fov = np.asarray(fov, dtype=bool)
    return _segment(probs, _vessel_probability(probs), fov, threshold)


def _vessel_probability(probs: np.ndarray) -> np.ndarray:
    from retina_lightning.tasks.segmentation import vessel_probability

    return vessel_probability(torch.from_numpy(np.ascontiguousarray(probs))[None])[0].numpy()


def _segment(
    probs: np.ndarray, prob: np.ndarray, fov: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`width_segmentation` given the vessel probability ``prob`` of ``probs``."""
    vessel = (prob >= threshold) & fov
    if probs.shape[0] == 1:
        return vessel.astype(np.uint8), vessel
    classes = np.where(vessel, probs[1:].argmax(0) + 1, 0).astype(np.uint8)
    return classes, vessel


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


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, 1|3)`` with ``mask`` painted in :data:`OVERLAY_COLOUR`."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    out = rgb.astype(np.float32)
    out[mask] = (1 - OVERLAY_ALPHA) * out[mask] + OVERLAY_ALPHA * OVERLAY_COLOUR
    return out.round().astype(np.uint8)


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


@dataclass(frozen=True)
class MapOptions:
    """What :func:`write_maps` writes.

    Args:
        threshold: the operating point of ``_mask.png`` (the checkpoint's by default).
        is_av: an artery/vein model: also ``_av.png`` and per-class densities / widths.
        width: also ``_width.png`` and the width columns.
        pixel_size_um: microns per pixel (widths in microns too).
        save_probs: also ``<stem>_probs.npy``.
    """

    threshold: float
    is_av: bool = False
    width: bool = False
    pixel_size_um: float | None = None
    save_probs: bool = False


def write_maps(
    probs: np.ndarray,
    image: np.ndarray,
    fov: np.ndarray,
    name: str,
    output: Path,
    options: MapOptions,
) -> dict[str, Any]:
    """Write the maps of one image; returns its ``predictions.csv`` row (without ``file``,
    ``fov`` source and ``seconds``, which the caller knows).

    Args:
        probs: ``(K, H, W)`` probabilities of the model (``K = 1``: vessel; ``K = 3``:
            background, vein, artery).
        image: the ``(H, W, C)`` uint8 input, for the overlay.
        fov: ``(H, W)`` bool field of view.
        name: the image's stem: files are ``<name>_prob.png`` & co.
        output: the folder.
        options: which maps, at which threshold.
    """
    h, w = fov.shape
    prob = _vessel_probability(probs) * fov
    classes, mask = _segment(probs, prob, fov, options.threshold)
    _save((prob * 255).round().astype(np.uint8), output / f"{name}_prob.png")
    _save(mask.astype(np.uint8) * 255, output / f"{name}_mask.png")
    _save(overlay(image, mask), output / f"{name}_overlay.png")
    if options.save_probs:
        np.save(output / f"{name}_probs.npy", np.where(fov, probs, 0).astype(np.float32))
    row: dict[str, Any] = {
        "name": name,
        "height": h,
        "width": w,
        "threshold": float(options.threshold),
        "vessel_density": float(mask.sum() / fov.sum()),
    }
    if options.is_av:
        av_rgb = np.zeros((h, w, 3), dtype=np.uint8)
        for cls, colour in AV_COLOURS.items():
            av_rgb[classes == cls] = colour
        _save(av_rgb, output / f"{name}_av.png")
        row["artery_density"] = float((classes == ARTERY).sum() / fov.sum())
        row["vein_density"] = float((classes == VEIN).sum() / fov.sum())
    if options.width:
        # the segmentation of _mask.png / _av.png (one threshold for every map, issue 22)
        res = vessel_widths(mask)
        d = res.diameters
        vmax = float(np.percentile(d, 99)) if d.size else 1.0
        colours = width_colours(res.width_map, mask, vmax, res.skeleton)
        _save(colours, output / f"{name}_width.png")
        row.update(width_rule=f">={options.threshold:.4g}")
        row.update(width_mean_px=res.mean, width_std_px=res.std, width_scale_max_px=vmax)
        if options.pixel_size_um is not None:
            row.update(
                width_mean_um=res.mean * options.pixel_size_um,
                width_std_um=res.std * options.pixel_size_um,
            )
        if options.is_av:
            per_class = av_widths(classes, options.pixel_size_um)
            unit = "um" if options.pixel_size_um is not None else "px"
            for cls_name, r in per_class.items():
                row[f"{cls_name}_width_mean_{unit}"] = r.mean
    return row


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``predictions.csv``: one row per image, the union of the rows' keys, ``seconds`` last."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    if "seconds" in keys:
        keys.remove("seconds")
        keys.append("seconds")
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(keys)
        for row in rows:
            writer.writerow([_cell(row.get(k, "")) for k in keys])


class MapWriter(BasePredictionWriter):
    """Write each predicted image's maps as its batch ends (:func:`write_maps`), and
    ``predictions.csv`` when the loop ends.

    ``rows`` holds the written images' rows (with ``seconds``: from reading the image off the
    disk to its last map written, DPN's speed measure, 002 section 4.4); ``failed`` the
    ``(file, message)`` of the images that could not be read.
    """

    def __init__(self, output: Path, options: MapOptions) -> None:
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.options = options
        self.rows: list[dict[str, Any]] = []
        self.failed: list[tuple[str, str]] = []

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if prediction is None:  # the image could not be read (ImageFolder's error item)
            for file, error in zip(batch["file"], batch["error"], strict=True):
                self.failed.append((file, error))
                tqdm.write(f"retina predict: skipped {file}: {error}", file=sys.stderr)
            return
        probs = prediction["prob"].float().numpy()
        for i, name in enumerate(batch["name"]):
            fov = batch["fov"][i].cpu().numpy().astype(bool)
            image = batch["raw"][i].permute(1, 2, 0).cpu().numpy()
            row = {"name": name, "file": batch["file"][i], "fov": batch["fov_source"][i]}
            if "scale" in batch:  # the resampling factor the network saw the image at (issue 22)
                row["scale"] = float(batch["scale"][i])
            row.update(write_maps(probs[i], image, fov, name, self.output, self.options))
            row["seconds"] = time.perf_counter() - float(batch["start"][i])
            self.rows.append(row)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.rows:
            write_csv(self.rows, self.output / "predictions.csv")
