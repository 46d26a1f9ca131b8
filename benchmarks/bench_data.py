"""Data pipeline benchmark: the suite's device-side patch sampler + kornia augmentation against
the conventional CPU pipeline (a ``Dataset`` + ``DataLoader`` with workers).

Both pipelines make the same batches: ``batch`` patches of ``patch`` x ``patch`` pixels, centred
uniformly inside the FOV of DRIVE-sized synthetic fundus images, with the same augmentations
(horizontal / vertical flips, rot90, a free rotation in +-180 degrees applied to a larger
context window that is then centre-cropped, brightness and contrast), normalised with each
image's FOV mean / std.

* **device** -- :meth:`RetinaDataModule.training_patches`: the images live on the device as
  one uint8 stack, a whole batch of windows is gathered by one indexing op and augmented by
  kornia as a batch (torchgeo's pattern of on-device augmentation).
* **DataLoader** -- the usual recipe: ``__getitem__`` draws a centre, crops the window from a
  numpy array and augments that one sample with torchvision ``v2.functional`` ops (flips,
  ``rot90``, ``rotate``, ``adjust_brightness`` / ``adjust_contrast``), in ``num_workers``
  worker processes, collated and (on a GPU) copied over from pinned memory.

Table 1 (``data_throughput``): patches/s of each pipeline alone, and the ratio.
Table 2 (``data_wait``): the share of a U-Net training step (batch 32 x 128^2, the DRIVE
config's U-Net with 32 base channels) spent waiting for data, for both pipelines, measured in
a real training loop (on the CPU the loader's workers compete with the network for the cores).

    python benchmarks/bench_data.py --quick     # part of `make bench`
    python benchmarks/bench_data.py             # full settings
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

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
from retina_lightning.data import Augment, OfficialSplit, RetinaDataModule, SyntheticFundus
from retina_lightning.models import UNet
from retina_lightning.types import Sample

#: the augmentations both pipelines apply (the DRIVE configs' flips, rotation and jitter).
AUGMENT = Augment(hflip=True, vflip=True, rot90=True, rotation=180.0, brightness=0.2, contrast=0.2)


@dataclass(frozen=True)
class Scale:
    num_images: int
    height: int
    width: int
    patch: int
    batch: int
    batches_per_rep: int  # batches produced per timed repetition
    repeat: int
    warmup: int
    train_steps: int  # timed steps of the training loop (after one warm-up step)
    unet_base: int


SCALES = {
    "full": Scale(20, 584, 565, 128, 32, 20, 5, 2, 10, 32),
    "quick": Scale(6, 584, 565, 128, 32, 4, 3, 1, 2, 16),
    "tiny": Scale(3, 64, 64, 32, 4, 2, 2, 1, 1, 4),
}


# ----------------------------------------------------------------------- the two pipelines


def device_pipeline(samples_seed: int, scale: Scale) -> RetinaDataModule:
    """The suite's pipeline on ``scale.num_images`` synthetic training images."""
    dataset = SyntheticFundus(
        num_train=scale.num_images,
        num_test=0,
        height=scale.height,
        width=scale.width,
        seed=samples_seed,
    )
    dm = RetinaDataModule(
        dataset=dataset,
        split=OfficialSplit(val_fraction=0.0),
        augment=AUGMENT,
        patch_size=scale.patch,
        batch_size=scale.batch,
        vessel_fraction=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no validation images": not needed here
        dm.setup("fit")
    return dm


class ConventionalPatches(Dataset):
    """The usual PyTorch recipe: each item is one patch, cut from a numpy image and augmented
    on the CPU by torchvision ``v2.functional`` ops, in a DataLoader worker.

    The work matches :meth:`RetinaDataModule.training_patches` with :data:`AUGMENT`: a
    centre uniform over the FOV pixels, a context window large enough for the rotation,
    flips, rot90, rotation (bilinear image, nearest-neighbour label / FOV), centre crop,
    brightness / contrast factors in ``[1 - a, 1 + a]``, per-image FOV normalisation.
    (kornia's ColorJiggle brightness is additive, torchvision's multiplicative: the same
    amount of work, not bit-identical patches.)
    """

    def __init__(
        self, samples: list[Sample], patch_size: int, augment: Augment, length: int, seed: int = 0
    ) -> None:
        self.patch = patch_size
        self.augment = augment
        self.context = augment.context(patch_size)
        self.length = length
        self.seed = seed
        m = self.context // 2 + 1
        self.margin = m
        self.images = [np.pad(s.image, ((m, m), (m, m), (0, 0))) for s in samples]
        self.labels = [np.pad(s.label, m) for s in samples]
        self.fovs = [np.pad(s.fov.astype(np.uint8), m) for s in samples]
        self.centres = [np.argwhere(s.fov) for s in samples]
        self.stats = []
        for s in samples:
            pixels = s.image[s.fov.astype(bool)].astype(np.float32) / 255.0  # (n, C)
            mean = torch.from_numpy(pixels.mean(0)).view(-1, 1, 1)
            std = torch.from_numpy(pixels.std(0)).clamp_min(1e-3).view(-1, 1, 1)
            self.stats.append((mean, std))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        rng = np.random.default_rng((self.seed, index))
        i = int(rng.integers(len(self.images)))
        y, x = self.centres[i][rng.integers(len(self.centres[i]))]
        y0, x0 = y + self.margin - self.context // 2, x + self.margin - self.context // 2
        win = np.s_[y0 : y0 + self.context, x0 : x0 + self.context]
        image = torch.from_numpy(np.ascontiguousarray(self.images[i][win])).permute(2, 0, 1)
        masks = torch.from_numpy(np.stack([self.labels[i][win], self.fovs[i][win]]))
        a = self.augment
        if a.hflip and rng.random() < 0.5:
            image, masks = TF.horizontal_flip(image), TF.horizontal_flip(masks)
        if a.vflip and rng.random() < 0.5:
            image, masks = TF.vertical_flip(image), TF.vertical_flip(masks)
        if a.rot90:
            k = int(rng.integers(4))
            image, masks = torch.rot90(image, k, (-2, -1)), torch.rot90(masks, k, (-2, -1))
        if a.rotation:
            angle = float(rng.uniform(-a.rotation, a.rotation))
            image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR)
            masks = TF.rotate(masks, angle, interpolation=InterpolationMode.NEAREST)
        o = (self.context - self.patch) // 2
        crop = np.s_[..., o : o + self.patch, o : o + self.patch]
        image, masks = image[crop], masks[crop]
        xf = image.float() / 255.0
        if a.brightness:
            xf = TF.adjust_brightness(xf, float(rng.uniform(1 - a.brightness, 1 + a.brightness)))
        if a.contrast:
            xf = TF.adjust_contrast(xf, float(rng.uniform(1 - a.contrast, 1 + a.contrast)))
        mean, std = self.stats[i]
        return (xf - mean) / std, masks[0].long(), masks[1].bool()


def conventional_loader(
    samples: list[Sample], scale: Scale, workers: int, pin_memory: bool, length: int
) -> DataLoader:
    dataset = ConventionalPatches(samples, scale.patch, AUGMENT, length)
    return DataLoader(
        dataset,
        batch_size=scale.batch,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=True,
    )


class LoaderStream:
    """Endless batches of a DataLoader moved to ``device`` (the epoch restarts as needed)."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device
        self._it = iter(loader)

    def __call__(self, step: int = 0) -> dict[str, Tensor]:
        try:
            image, label, fov = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            image, label, fov = next(self._it)
        nb = self.device.type == "cuda"
        return {
            "image": image.to(self.device, non_blocking=nb),
            "label": label.to(self.device, non_blocking=nb),
            "fov": fov.to(self.device, non_blocking=nb),
        }

    def close(self) -> None:
        # shut persistent workers down now instead of at interpreter exit
        self._it = None  # type: ignore[assignment]
        self.loader = None  # type: ignore[assignment]


# -------------------------------------------------------------------------- measurements


def patches_per_second(
    produce: Callable[[int], Any], scale: Scale, device: torch.device, warmup: int, repeat: int
) -> tuple[float, float, float]:
    """(ms / batch min, ms / batch median, patches / s at the median)."""
    counter = iter(range(10**9))

    def block() -> None:
        for _ in range(scale.batches_per_rep):
            produce(next(counter))

    t = time_fn(block, warmup=warmup, repeat=repeat, device=device)
    per_batch_min = t.min / scale.batches_per_rep
    per_batch_med = t.median / scale.batches_per_rep
    return 1e3 * per_batch_min, 1e3 * per_batch_med, scale.batch / per_batch_med


def training_wait(
    produce: Callable[[int], Any],
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    steps: int,
) -> tuple[float, float]:
    """Mean seconds per step spent in ``produce`` (data) and in the whole step, over
    ``steps`` steps after one warm-up step; forward + backward + Adam, BCE in the FOV."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "amp" and device.type == "cuda")
    data_s = total_s = 0.0
    for step in range(steps + 1):
        synchronize(device)
        t0 = time.perf_counter()
        batch = produce(step)
        synchronize(device)
        t1 = time.perf_counter()
        with autocast(device, precision):
            logits = model(batch["image"])[:, 0]
        fov = batch["fov"]
        loss = F.binary_cross_entropy_with_logits(logits.float()[fov], batch["label"].float()[fov])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)
        t2 = time.perf_counter()
        if step > 0:  # step 0 warms up (allocations, cudnn autotuning, worker start)
            data_s += t1 - t0
            total_s += t2 - t0
    return data_s / steps, total_s / steps


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_data.py",
        description=(
            "Patches/s of the device-side sampler + kornia against a DataLoader with workers "
            "and torchvision per-sample augmentation, and the share of a U-Net training step "
            "spent waiting for data."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--workers",
        default="0,2",
        help="comma-separated DataLoader worker counts to measure (default: 0,2)",
    )
    parser.add_argument(
        "--wait-workers",
        type=int,
        default=None,
        help="workers of the DataLoader in the training-step table (default: the largest of "
        "--workers)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    apply_threads(args)
    scale_name = scale_of(args)
    scale = SCALES[scale_name]
    workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    wait_workers = args.wait_workers if args.wait_workers is not None else max(workers)
    settings = run_settings(args.device)
    devices = list(dict.fromkeys(d for d, _ in settings))
    info = machine_info()
    command = command_line(argv)
    torch.manual_seed(0)

    log(
        f"[bench_data] {scale_name}: {scale.num_images} synthetic images of "
        f"{scale.height}x{scale.width}, batch {scale.batch} x {scale.patch}^2, "
        f"devices {[str(d) for d in devices]}"
    )
    dm = device_pipeline(0, scale)
    assert dm.samples is not None
    samples = dm.samples.train
    length = scale.batch * scale.batches_per_rep * (scale.repeat + scale.warmup + 2) * 4

    throughput = Table(
        table_name("data_throughput", scale_name),
        f"Training-patch throughput: device-side sampler + kornia vs DataLoader + torchvision "
        f"({scale.num_images} synthetic {scale.height}x{scale.width} images, batch "
        f"{scale.batch} x {scale.patch}^2, flips + rot90 + rotation +-180 deg + "
        f"brightness/contrast)",
        [
            "pipeline",
            "device",
            "workers",
            "ms/batch (min)",
            "ms/batch (median)",
            "patches/s",
            "vs best DataLoader",
        ],
    )
    for device in devices:
        rows = []
        log(f"[bench_data] device pipeline on {device} ...")
        t = patches_per_second(
            lambda step, d=device: dm.training_patches(step, d),
            scale,
            device,
            scale.warmup,
            scale.repeat,
        )
        rows.append(
            throughput.add(
                pipeline="device sampler + kornia (suite)",
                device=str(device),
                workers=0,
                **{"ms/batch (min)": t[0], "ms/batch (median)": t[1], "patches/s": t[2]},
            )
        )
        log(f"    {t[2]:.1f} patches/s")
        for w in workers:
            log(f"[bench_data] DataLoader, {w} workers, to {device} ...")
            stream = LoaderStream(
                conventional_loader(samples, scale, w, device.type == "cuda", length), device
            )
            t = patches_per_second(stream, scale, device, scale.warmup, scale.repeat)
            stream.close()
            rows.append(
                throughput.add(
                    pipeline="Dataset + DataLoader + torchvision (conventional)",
                    device=str(device),
                    workers=w,
                    **{"ms/batch (min)": t[0], "ms/batch (median)": t[1], "patches/s": t[2]},
                )
            )
            log(f"    {t[2]:.1f} patches/s")
        best = max(r["patches/s"] for r in rows[1:])
        for r in rows:
            r["vs best DataLoader"] = r["patches/s"] / best
        log(
            f"[bench_data] {device}: device pipeline / best DataLoader = "
            f"{rows[0]['patches/s'] / best:.2f}x"
        )
    throughput.notes += [
        "patches/s = batch / median seconds per batch; each repetition produces "
        f"{scale.batches_per_rep} batches after {scale.warmup} warm-up repetition(s) "
        "(worker start-up is not timed).",
        "'vs best DataLoader' is the ratio to the fastest DataLoader row on the same device "
        "(measured in the same run, so machine load affects both).",
        "On the CPU the device pipeline uses torch's intra-op threads; each DataLoader worker "
        "is a process with one thread. With more CPU cores the DataLoader scales with its "
        "workers; the device pipeline's advantage is on a GPU, where the CPU does no per-patch "
        "work at all.",
    ]

    wait = Table(
        table_name("data_wait", scale_name),
        f"Share of a U-Net training step spent waiting for data (UNet base "
        f"{scale.unet_base}, batch {scale.batch} x {scale.patch}^2, Adam, BCE)",
        [
            "pipeline",
            "device",
            "precision",
            "workers",
            "data ms/step",
            "step ms",
            "waiting for data",
        ],
    )
    for device, precision in settings:
        torch.manual_seed(0)
        model = UNet(3, 1, base_channels=scale.unet_base, depth=4).to(device).train()
        log(f"[bench_data] training steps, device pipeline, {device} {precision} ...")
        data_s, step_s = training_wait(
            lambda step, d=device: dm.training_patches(step, d),
            model,
            device,
            precision,
            scale.train_steps,
        )
        wait.add(
            pipeline="device sampler + kornia (suite)",
            device=str(device),
            precision=precision,
            workers=0,
            **{
                "data ms/step": 1e3 * data_s,
                "step ms": 1e3 * step_s,
                "waiting for data": data_s / step_s,
            },
        )
        log(f"    data {1e3 * data_s:.0f} ms of {1e3 * step_s:.0f} ms")
        log(f"[bench_data] training steps, DataLoader ({wait_workers} workers) ...")
        stream = LoaderStream(
            conventional_loader(samples, scale, wait_workers, device.type == "cuda", length),
            device,
        )
        data_s, step_s = training_wait(stream, model, device, precision, scale.train_steps)
        stream.close()
        wait.add(
            pipeline="Dataset + DataLoader + torchvision (conventional)",
            device=str(device),
            precision=precision,
            workers=wait_workers,
            **{
                "data ms/step": 1e3 * data_s,
                "step ms": 1e3 * step_s,
                "waiting for data": data_s / step_s,
            },
        )
        log(f"    data {1e3 * data_s:.0f} ms of {1e3 * step_s:.0f} ms")
    wait.notes += [
        f"Mean over {scale.train_steps} training steps after one warm-up step; 'data ms/step' "
        "is the time the training loop blocks on the next batch (the DataLoader's workers "
        "prefetch while the network runs, so only the part they cannot hide is counted).",
        "On a CPU the workers and the network share the same cores, so hidden data work still "
        "slows the network down: compare 'step ms' between the two pipelines as well.",
        "AMP rows: torch.autocast float16 for the forward pass with a GradScaler (cuda only).",
    ]
    paths = []
    for table in (throughput, wait):
        paths += write_table(table, args.out_dir, command, info)
        log(table.markdown())
    log(f"[bench_data] wrote {', '.join(str(p) for p in paths)}")
    return paths


if __name__ == "__main__":
    main()
