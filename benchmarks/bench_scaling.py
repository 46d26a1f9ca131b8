"""Time and peak memory of a training step and of inference as the image grows:
DRIVE (584 x 565) -> CHASE_DB1 (960 x 999) -> HRF (2336 x 3504).

Four ways to touch an image of that size with a U-Net:

* **infer, whole** -- one forward pass over the padded image (DPN 002 sec. 4.3,
  patch2image 004 sec. 5): activation memory grows with the pixel count.
* **infer, sliding** -- :class:`~retina_lightning.inference.Inferer` tiles (IterNet 003
  sec. 5, patch2image 004 Eq. 3), a batch of tiles at a time: the network's memory is that of
  one tile batch whatever the image; only the image and its probability map grow.
* **train, whole** -- forward + backward + Adam on the whole image (batch 1), as patch2image's
  image-level fine-tuning (004 sec. 5.2, phase 4): activations *and* their gradients grow.
* **train, patches** -- the suite's training step: the image kept as uint8 on the device,
  a batch of 128 px patches cut by :class:`~retina_lightning.data.sampler.PatchSampler`,
  forward + backward + Adam: bounded.

Every setting runs in a fresh Python process, so that its peak is its own: on the CPU the
peak resident set size (``resource.getrusage(...).ru_maxrss``; ``tracemalloc`` does not see
torch's allocator), on a GPU ``torch.cuda.max_memory_allocated``. The table reports the peak
above the process's baseline just before the first measured call (torch, the model and the
input already loaded). Images are random tensors of the right size (content does not change
time or memory).

    python benchmarks/bench_scaling.py --quick    # part of `make bench`
    python benchmarks/bench_scaling.py            # full settings (HRF whole-image training
                                                  # with a 32-channel U-Net needs ~30 GB)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import (
    Table,
    add_common_arguments,
    apply_threads,
    command_line,
    log,
    machine_info,
    run_settings,
    scale_of,
    table_name,
    write_table,
)

#: (name, height, width) of the three datasets' image sizes.
SIZES = {
    "DRIVE": (584, 565),
    "CHASE_DB1": (960, 999),
    "HRF": (2336, 3504),
}
OPS = ("infer whole", "infer sliding", "train whole", "train patches")
RESULT_TAG = "BENCH_SCALING_RESULT "


@dataclass(frozen=True)
class Scale:
    base_channels: int
    depth: int
    tile: int
    stride: int
    tile_batch: int
    patch: int
    patch_batch: int
    warmup: int
    repeat: int
    whole_sizes: tuple[str, ...]  # sizes measured with the whole-image ops
    sizes: tuple[str, ...]  # sizes measured with the sliding / patch ops


SCALES = {
    "full": Scale(32, 4, 128, 64, 16, 128, 32, 1, 3, tuple(SIZES), tuple(SIZES)),
    "quick": Scale(8, 4, 128, 128, 16, 128, 16, 1, 1, ("DRIVE", "CHASE_DB1"), tuple(SIZES)),
    "tiny": Scale(4, 2, 32, 32, 4, 32, 2, 0, 1, ("tiny",), ("tiny", "tiny2x")),
}
TINY_SIZES = {"tiny": (48, 40), "tiny2x": (96, 80)}


@dataclass(frozen=True)
class Setting:
    op: str
    size: str
    height: int
    width: int
    device: str
    precision: str
    threads: int | None
    scale: str


# ------------------------------------------------------------------------------ child


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _module_file(relative: str) -> Any:
    """Import one torch-only module of the package by its file: importing it the usual way
    runs ``retina_lightning.data`` / ``.models`` ``__init__`` (Lightning, smp, timm), which
    costs seconds and ~1 GB of RSS in every one of the fresh processes."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_child(setting: Setting) -> dict[str, Any]:
    """Measure one setting in this (fresh) process."""
    import torch.nn.functional as F

    from benchmarks.common import autocast, time_fn
    from retina_lightning.inference import Inferer, pad_to_multiple

    PatchSampler = _module_file("retina_lightning/data/sampler.py").PatchSampler
    UNet = _module_file("retina_lightning/models/unet.py").UNet

    if setting.threads:
        torch.set_num_threads(setting.threads)
    scale = SCALES[setting.scale]
    device = torch.device(setting.device)
    torch.manual_seed(0)
    model = UNet(3, 1, base_channels=scale.base_channels, depth=scale.depth).to(device)
    h, w = setting.height, setting.width
    fn: Any
    if setting.op.startswith("infer"):
        model.eval()
        image = torch.randn(1, 3, h, w, device=device)
        inferer = (
            Inferer("whole")
            if setting.op == "infer whole"
            else Inferer("sliding", scale.tile, scale.stride, batch_size=scale.tile_batch)
        )

        def fn() -> None:
            with autocast(device, setting.precision):
                inferer(model, image)

    else:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        if setting.op == "train whole":
            image, _ = pad_to_multiple(
                torch.randn(1, 3, h, w, device=device), model.required_multiple
            )
            label = (torch.rand(1, 1, *image.shape[-2:], device=device) < 0.12).float()

            def batch() -> tuple[torch.Tensor, torch.Tensor]:
                return image, label

        else:
            stack = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, device=device)
            labels = (torch.rand(1, h, w, device=device) < 0.12).to(torch.uint8)
            fovs = torch.ones(1, h, w, dtype=torch.bool, device=device)
            sampler = PatchSampler(stack, labels, fovs, scale.patch)
            counter = iter(range(10**9))

            def batch() -> tuple[torch.Tensor, torch.Tensor]:
                x, y, _, _ = sampler.sample(scale.patch_batch, next(counter))
                return x.float() / 255.0, y[:, None].float()

        scaler = torch.amp.GradScaler(
            "cuda", enabled=setting.precision == "amp" and device.type == "cuda"
        )

        def fn() -> None:
            x, y = batch()
            with autocast(device, setting.precision):
                logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _peak_mib(device) if device.type == "cpu" else torch.cuda.memory_allocated() / 2**20
    timing = time_fn(fn, warmup=scale.warmup, repeat=scale.repeat, device=device)
    peak = _peak_mib(device)
    return {
        "seconds_min": timing.min,
        "seconds_median": timing.median,
        "peak_mib": peak,
        "baseline_mib": baseline,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def spawn(setting: Setting, timeout: float) -> dict[str, Any]:
    """Run one setting in a fresh interpreter; errors come back as ``{"error": ...}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(setting))]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            result["process_s"] = time.perf_counter() - start
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    if proc.returncode < 0:
        return {"error": f"killed by signal {-proc.returncode} (out of memory?)"}
    if "allocate" in tail[0].lower() or "out of memory" in tail[0].lower():
        return {"error": "out of memory"}
    return {"error": f"exit {proc.returncode}: {tail[0][:160]}"}


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_scaling.py",
        description=(
            "Time and peak memory of a U-Net training step and of inference, whole image vs "
            "sliding window / patches, as the image grows from DRIVE to CHASE_DB1 to HRF size "
            "(one fresh process per setting)."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed per setting (default 900)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    if args.child:
        result = run_child(Setting(**json.loads(args.child)))
        print(RESULT_TAG + json.dumps(result), flush=True)
        return []
    apply_threads(args)
    scale_name = scale_of(args)
    scale = SCALES[scale_name]
    sizes = {**SIZES, **TINY_SIZES}
    info = machine_info()
    command = command_line(argv)
    settings = []
    for device, precision in run_settings(args.device):
        for op in OPS:
            names = scale.whole_sizes if op.endswith("whole") else scale.sizes
            for name in names:
                h, w = sizes[name]
                settings.append(
                    Setting(op, name, h, w, str(device), precision, args.threads, scale_name)
                )

    mode = (
        f"tiles {scale.tile} / stride {scale.stride}, {scale.tile_batch} per pass; patches "
        f"{scale.patch_batch} x {scale.patch}^2"
    )
    table = Table(
        table_name("scaling", scale_name),
        f"Time and peak memory vs image size: UNet base {scale.base_channels}, depth "
        f"{scale.depth} ({mode})",
        [
            "op",
            "image",
            "pixels",
            "device",
            "precision",
            "s (median)",
            "s (min)",
            "peak MiB above baseline",
            "baseline MiB",
            "status",
        ],
    )
    log(f"[bench_scaling] {scale_name}: {len(settings)} settings, one process each")
    for i, s in enumerate(settings, 1):
        log(
            f"[bench_scaling] {i}/{len(settings)} {s.op} {s.size} {s.height}x{s.width} "
            f"{s.device} {s.precision} ..."
        )
        r = spawn(s, args.timeout)
        ok = "error" not in r
        table.add(
            op=s.op,
            image=f"{s.size} {s.height}x{s.width}",
            pixels=s.height * s.width,
            device=s.device,
            precision=s.precision,
            **{
                "s (median)": r.get("seconds_median"),
                "s (min)": r.get("seconds_min"),
                "peak MiB above baseline": r["peak_mib"] - r["baseline_mib"] if ok else None,
                "baseline MiB": r.get("baseline_mib"),
                "status": "ok" if ok else r["error"],
            },
        )
        if ok:
            log(
                f"    {r['seconds_median']:.3f} s, peak +{r['peak_mib'] - r['baseline_mib']:.0f} "
                f"MiB"
            )
        else:
            log(f"    {r['error']}")
    skipped = [n for n in scale.sizes if n not in scale.whole_sizes]
    table.notes += [
        f"Median / min of {scale.repeat} timed call(s) after {scale.warmup} warm-up call(s); "
        "a training call is forward + backward + Adam step (BCE); inference runs under "
        "torch.no_grad through the Inferer.",
        "Memory on the CPU is the peak resident set size of the process (ru_maxrss) minus its "
        "value just before the first call; it includes allocator caching and the output maps. "
        "On a GPU it is torch.cuda.max_memory_allocated minus the memory allocated before.",
        "'infer sliding' and 'train patches' keep the network's working set at one tile / patch "
        "batch: what grows with the image is only the image itself and the probability map "
        "(sliding) or the uint8 image stack (patches).",
    ]
    if skipped:
        table.notes.append(
            f"Whole-image ops skip {', '.join(skipped)} in this scale (run without --quick for "
            "them; whole-image training at HRF size needs tens of GB with a 32-channel U-Net)."
        )
    paths = list(write_table(table, args.out_dir, command, info))
    log(table.markdown())
    log(f"[bench_scaling] wrote {', '.join(str(p) for p in paths)}")
    return paths


if __name__ == "__main__":
    main()
