"""Inference speed of every model on a DRIVE-sized image, next to what the papers report.

For each model of the suite, built with its DRIVE config's (paper) arguments:

* parameters;
* **whole image**: one forward pass over a 584 x 565 image padded by the
  :class:`~retina_lightning.inference.Inferer` to the model's ``required_multiple``
  (DPN 002 sec. 4.3; patch2image 004 sec. 5);
* **sliding window**, tiles 128 / stride 64, mean blend, 16 tiles per forward pass;
* **stride 3**, IterNet's patched inference (003 sec. 5): ~22,000 tiles per image. When the
  run would take longer than ``--measure-limit`` seconds, the time is *extrapolated* from a
  measured block of tiles (the same code path on a crop holding that many tiles) times the
  image's tile count; the table says which.

Then, for one model, **disk to disk** as DPN measures fps (002 sec. 4.4: "from reading the
raw test image from the hard disk to writing the segmentation map into the hard disk ...
fps = 1.0 / t"): read a PNG and its FOV mask, normalise, infer, write the probability PNG.
And the batched, tensor-indexed :func:`~retina_lightning.inference.sliding_window` against a
naive Python loop over tiles, one forward pass per tile, on the same model and image (their
outputs must agree to 1e-5).

    python benchmarks/bench_inference.py --quick    # part of `make bench`
    python benchmarks/bench_inference.py            # full settings
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from benchmarks.common import (
    Table,
    add_common_arguments,
    apply_threads,
    autocast,
    command_line,
    log,
    machine_info,
    run_settings,
    scale_of,
    synchronize,
    table_name,
    time_fn,
    write_table,
)
from benchmarks.reference import (
    DPN_FPS,
    METHODS,
    PAPER_PARAMS,
    PAPER_SPEED,
    build_model,
    find_methods,
    num_parameters,
)
from retina_lightning.data.io import read_image, read_mask
from retina_lightning.data.synthetic import generate_fundus
from retina_lightning.data.transforms import Preprocess
from retina_lightning.inference import Inferer, predict_probabilities


@dataclass(frozen=True)
class Scale:
    height: int
    width: int
    tile: int
    stride: int
    fine_stride: int  # IterNet's stride 3
    batch: int  # tiles per forward pass
    warmup: int
    repeat: int
    block_tiles: int  # tiles in the timed block a sliding-window time is extrapolated from
    block_warmup: int
    disk_images: int
    measure_limit_s: float  # measure the whole image when the block's estimate is below this
    naive_model: str


SCALES = {
    "full": Scale(584, 565, 128, 64, 3, 16, 1, 3, 64, 1, 10, 900.0, "unet"),
    "quick": Scale(584, 565, 128, 64, 3, 16, 1, 1, 16, 0, 2, 10.0, "patch2image_miniunet"),
    "tiny": Scale(64, 64, 32, 16, 3, 8, 0, 1, 8, 0, 2, 0.0, "patch2image_light"),
}


def fine_grid(height: int, width: int, tile: int, stride: int) -> tuple[int, int]:
    """Tiles per column / row of the sliding window (the image padded until they cover it)."""
    return (
        math.ceil(max(height - tile, 0) / stride) + 1,
        math.ceil(max(width - tile, 0) / stride) + 1,
    )


def naive_sliding_window(
    model: nn.Module, image: Tensor, tile: int, stride: int, tta: bool = False
) -> Tensor:
    """The textbook loop: one forward pass per tile, ``+=`` into an accumulator and a count,
    divided at the end (mean blend, reflect padding at the bottom / right, as the Inferer)."""
    b, _, h, w = image.shape
    ny, nx = fine_grid(h, w, tile, stride)
    hp, wp = tile + stride * (ny - 1), tile + stride * (nx - 1)
    if hp - h >= h or wp - w >= w:
        raise ValueError(f"image {h}x{w} too small for one reflect pad to {hp}x{wp}")
    x = F.pad(image, (0, wp - w, 0, hp - h), mode="reflect") if (hp, wp) != (h, w) else image
    acc: Tensor | None = None
    count = torch.zeros(1, 1, hp, wp, device=image.device)
    with torch.no_grad():
        for y0 in range(0, hp - tile + 1, stride):
            for x0 in range(0, wp - tile + 1, stride):
                window = np.s_[..., y0 : y0 + tile, x0 : x0 + tile]
                p = predict_probabilities(model, x[window], tta)
                if acc is None:
                    acc = torch.zeros(b, p.shape[1], hp, wp, device=image.device)
                acc[window] += p
                count[window] += 1
    assert acc is not None
    return (acc / count)[..., :h, :w]


def synthetic_input(seed: int, height: int, width: int, channels: int) -> tuple[Tensor, Tensor]:
    """A normalised synthetic fundus ``(1, C, H, W)`` and its FOV, as the datamodule makes."""
    sample = generate_fundus(seed, height, width)
    pre = Preprocess(channels="rgb" if channels == 3 else "gray")
    raw = torch.from_numpy(sample.image).permute(2, 0, 1)[None]
    fov = torch.from_numpy(sample.fov)[None]
    conditioned = pre.condition(raw)
    mean, std = pre.fov_stats(conditioned, fov)
    return pre.normalise(conditioned, mean, std), fov


# ---------------------------------------------------------------------------- measures


def time_inferer(
    model: nn.Module,
    image: Tensor,
    inferer: Inferer,
    device: torch.device,
    precision: str,
    warmup: int,
    repeat: int,
) -> float:
    """Median seconds of ``inferer(model, image)``."""

    def run() -> None:
        with autocast(device, precision):
            inferer(model, image)

    return time_fn(run, warmup=warmup, repeat=repeat, device=device).median


def tiled_seconds(
    model: nn.Module,
    image: Tensor,
    stride: int,
    scale: Scale,
    device: torch.device,
    precision: str,
) -> tuple[float, int, str]:
    """Seconds per image of the sliding window at ``stride``: (seconds, tiles per image,
    "measured" or "extrapolated from N tiles").

    A block of about ``scale.block_tiles`` tiles (a crop of the image, through the same
    Inferer) is timed first; if the whole image would take longer than
    ``scale.measure_limit_s`` the block's time per tile x the image's tile count is reported.
    """
    h, w = image.shape[-2:]
    ny, nx = fine_grid(h, w, scale.tile, stride)
    total = ny * nx
    inferer = Inferer("sliding", scale.tile, stride, batch_size=scale.batch)
    kx = min(nx, scale.block_tiles)
    ky = min(ny, max(1, scale.block_tiles // kx))
    crop = image[..., : scale.tile + stride * (ky - 1), : scale.tile + stride * (kx - 1)]
    cy, cx = fine_grid(crop.shape[-2], crop.shape[-1], scale.tile, stride)
    block = time_inferer(model, crop, inferer, device, precision, scale.block_warmup, 1)
    estimate = block / (cy * cx) * total
    if estimate <= scale.measure_limit_s or cy * cx == total:
        seconds = time_inferer(model, image, inferer, device, precision, 0, scale.repeat)
        return seconds, total, "measured"
    return estimate, total, f"extrapolated from {cy * cx} tiles"


def disk_to_disk(
    model: nn.Module,
    channels: int,
    folder: Path,
    names: list[str],
    device: torch.device,
    precision: str,
) -> float:
    """Seconds per image from reading the PNG (and its FOV mask) to writing the map."""
    pre = Preprocess(channels="rgb" if channels == 3 else "gray")
    inferer = Inferer("whole")
    out_dir = folder / f"out_{device.type}_{precision}"
    out_dir.mkdir(exist_ok=True)

    def one(name: str) -> None:
        raw = torch.from_numpy(read_image(folder / f"{name}.png").copy()).permute(2, 0, 1)[None]
        fov = torch.from_numpy(read_mask(folder / f"{name}_mask.png").astype(bool))[None]
        raw, fov = raw.to(device), fov.to(device)
        conditioned = pre.condition(raw)
        mean, std = pre.fov_stats(conditioned, fov)
        with autocast(device, precision):
            prob = inferer(model, pre.normalise(conditioned, mean, std))
        png = (prob[0, 0].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        Image.fromarray(png).save(out_dir / f"{name}_prob.png")

    one(names[0])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for name in names:
        one(name)
    synchronize(device)
    return (time.perf_counter() - start) / len(names)


# -------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_inference.py",
        description=(
            "Whole-image, sliding-window and stride-3 inference time of every model on a "
            "DRIVE-sized image, disk-to-disk images/s, and the batched sliding window against "
            "a per-tile Python loop."
        ),
    )
    add_common_arguments(parser)
    keys = ", ".join(METHODS)
    parser.add_argument(
        "--models", default=None, help=f"comma-separated methods (default: all of {keys})"
    )
    parser.add_argument(
        "--disk-model", default="dpn", help="method of the disk-to-disk row (default: dpn)"
    )
    parser.add_argument(
        "--naive-model",
        default=None,
        help="method of the batched vs per-tile comparison (default: unet; quick: "
        "patch2image_miniunet, to keep `make bench` short)",
    )
    parser.add_argument(
        "--measure-limit",
        type=float,
        default=None,
        help="measure a sliding window on the whole image when a timed block of tiles says it "
        "takes less than this many seconds, else extrapolate (default: 900 full, 10 quick)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    apply_threads(args)
    scale_name = scale_of(args)
    scale = SCALES[scale_name]
    if args.measure_limit is not None:
        scale = Scale(**{**scale.__dict__, "measure_limit_s": args.measure_limit})
    methods = find_methods(args.models)
    settings = run_settings(args.device)
    info = machine_info()
    command = command_line(argv)
    h, w = scale.height, scale.width
    images = {c: synthetic_input(0, h, w, c)[0] for c in (1, 3)}
    log(f"[bench_inference] {scale_name}: {len(methods)} models on a {h}x{w} image, {settings}")

    speed = Table(
        table_name("inference_speed", scale_name),
        f"Inference time per {h}x{w} image (DRIVE size): whole image, sliding window "
        f"({scale.tile} px tiles, stride {scale.stride}) and IterNet's stride "
        f"{scale.fine_stride}",
        [
            "model",
            "config",
            "params",
            "paper params",
            "device",
            "precision",
            "whole s/image",
            f"sliding {scale.stride} s/image",
            f"sliding {scale.stride} how",
            f"stride {scale.fine_stride} s/image",
            f"stride {scale.fine_stride} tiles",
            f"stride {scale.fine_stride} how",
            "paper s/image",
        ],
    )
    for method in methods:
        model, channels, source = build_model(method)
        model.eval()
        params = num_parameters(model)
        image = images[channels]
        for device, precision in settings:
            log(f"[bench_inference] {method.label} ({params:,} params) on {device} {precision}")
            model.to(device)
            x = image.to(device)
            whole = time_inferer(
                model, x, Inferer("whole"), device, precision, scale.warmup, scale.repeat
            )
            sliding, _, sliding_how = tiled_seconds(
                model, x, scale.stride, scale, device, precision
            )
            fine, tiles, how = tiled_seconds(model, x, scale.fine_stride, scale, device, precision)
            speed.add(
                model=method.label,
                config=source,
                params=params,
                **{
                    "paper params": PAPER_PARAMS.get(method.key),
                    "device": str(device),
                    "precision": precision,
                    "whole s/image": whole,
                    f"sliding {scale.stride} s/image": sliding,
                    f"sliding {scale.stride} how": sliding_how,
                    f"stride {scale.fine_stride} s/image": fine,
                    f"stride {scale.fine_stride} tiles": tiles,
                    f"stride {scale.fine_stride} how": how,
                    "paper s/image": PAPER_SPEED.get(method.key),
                },
            )
            log(f"    whole {whole:.3f} s, sliding {sliding:.3f} s, stride 3 {fine:.1f} s ({how})")
        model.cpu()
    speed.notes += [
        f"Median of {scale.repeat} timed run(s) after {scale.warmup} warm-up run(s); the input "
        "is a normalised synthetic fundus image already in memory (1 channel for the gray-input "
        "methods R2U-Net and patch2image, 3 otherwise), batch 1, torch.no_grad.",
        f"Sliding windows run {scale.batch} tiles per forward pass, mean blend, reflect padding.",
        "'extrapolated from N tiles' = seconds of a measured block of N tiles (a crop of the "
        "same image through the same Inferer) / N x the image's tile count (the gather / blend "
        "work scales the same way); used when measuring the whole image would take more than "
        f"{scale.measure_limit_s:g} s.",
        "Paper times are on other hardware (GPU named in the cell); compare orders of "
        "magnitude, or CPU rows with the CPU figures.",
    ]

    # ---- disk to disk, DPN's fps
    disk_method = find_methods(args.disk_model)[0]
    disk = Table(
        table_name("inference_disk", scale_name),
        f"Disk to disk, as DPN counts fps (002 sec. 4.4): read PNG + FOV mask, normalise, "
        f"infer the whole image, write the probability PNG ({h}x{w})",
        ["model", "device", "precision", "images", "s/image", "images/s", "paper images/s"],
    )
    model, channels, _ = build_model(disk_method)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = []
        for i in range(scale.disk_images):
            sample = generate_fundus(100 + i, h, w)
            names.append(f"{i:02d}")
            Image.fromarray(sample.image).save(folder / f"{i:02d}.png")
            Image.fromarray(sample.fov.astype(np.uint8) * 255).save(folder / f"{i:02d}_mask.png")
        for device, precision in settings:
            log(f"[bench_inference] disk to disk, {disk_method.label}, {device} {precision}")
            model.to(device)
            seconds = disk_to_disk(model, channels, folder, names, device, precision)
            disk.add(
                model=disk_method.label,
                device=str(device),
                precision=precision,
                images=len(names),
                **{
                    "s/image": seconds,
                    "images/s": 1.0 / seconds,
                    "paper images/s": f"{DPN_FPS} (DPN, RTX 2080 Ti)"
                    if disk_method.key == "dpn"
                    else None,
                },
            )
            log(f"    {1.0 / seconds:.2f} images/s")
    disk.notes.append(
        "Synthetic DRIVE-sized PNGs written to a temporary folder first (the OS file cache is "
        "warm, as it would be for DPN's test images after the first run); one warm-up image."
    )

    # ---- batched sliding window vs a naive loop
    naive_method = find_methods(args.naive_model or scale.naive_model)[0]
    naive = Table(
        table_name("inference_sliding_vs_naive", scale_name),
        f"Batched sliding window (retina_lightning.inference.sliding_window, {scale.batch} "
        f"tiles per pass) vs a per-tile Python loop, tiles {scale.tile} / stride {scale.stride}",
        [
            "model",
            "device",
            "precision",
            "image",
            "tiles",
            "naive loop s",
            "batched s",
            "speed-up",
            "max abs diff",
            "tolerance",
            "same output",
        ],
    )
    model, channels, _ = build_model(naive_method)
    model.eval()
    for device, precision in settings:
        log(f"[bench_inference] batched vs naive, {naive_method.label}, {device} {precision}")
        model.to(device)
        x = images[channels].to(device)
        inferer = Inferer("sliding", scale.tile, scale.stride, batch_size=scale.batch)
        with autocast(device, precision):
            batched_out = inferer(model, x)
            naive_out = naive_sliding_window(model, x, scale.tile, scale.stride)
        diff = float((batched_out.float() - naive_out.float()).abs().max())
        repeat = max(1, scale.repeat - 1)
        batched_s = time_inferer(model, x, inferer, device, precision, 0, repeat)

        def loop(d: torch.device = device, p: str = precision, xx: Tensor = x) -> None:
            with autocast(d, p):
                naive_sliding_window(model, xx, scale.tile, scale.stride)

        naive_s = time_fn(loop, warmup=0, repeat=repeat, device=device).median
        ny, nx = fine_grid(h, w, scale.tile, scale.stride)
        tol = 1e-5 if precision == "fp32" else 1e-2
        naive.add(
            model=naive_method.label,
            device=str(device),
            precision=precision,
            image=f"{h}x{w}",
            tiles=ny * nx,
            **{
                "naive loop s": naive_s,
                "batched s": batched_s,
                "speed-up": naive_s / batched_s,
                "max abs diff": diff,
                "tolerance": tol,
                "same output": diff <= tol,
            },
        )
        log(f"    naive {naive_s:.3f} s, batched {batched_s:.3f} s: {naive_s / batched_s:.2f}x")
        log(f"    max |batched - naive| = {diff:.2e}")
    naive.notes += [
        "Both blend probabilities with equal weights (IterNet's mean, 003 sec. 5) after the same "
        "reflect padding; 'max abs diff' is over all pixels of the probability map.",
        "AMP rows compare float16 outputs, whose rounding differs between batch sizes: the "
        "tolerance there is 1e-2.",
        "On a CPU the gain comes from fewer, larger convolutions and no per-tile Python "
        "overhead; on a GPU a batch of tiles also fills the device.",
    ]

    paths = []
    for table in (speed, disk, naive):
        paths += write_table(table, args.out_dir, command, info)
        log(table.markdown())
    log(f"[bench_inference] wrote {', '.join(str(p) for p in paths)}")
    return paths


if __name__ == "__main__":
    main()
