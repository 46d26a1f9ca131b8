"""Training throughput of every DRIVE recipe: patches/s per model, device and precision.

For each model of ``configs/drive/<method>.yaml`` -- its network, loss and optimiser built from
the YAML (as :mod:`benchmarks.bench_inference` builds networks), its patch size and batch size
-- time whole training steps on synthetic tensors already on the device (forward, loss,
backward, optimiser step; no data pipeline: ``bench_data.py`` measures that) in the precisions
Lightning offers there:

* CPU: ``32-true`` (float32, no autocast) and ``bf16-mixed`` (``torch.autocast`` bfloat16);
* CUDA: ``32-true``, ``bf16-mixed`` and ``16-mixed`` (autocast float16 with a ``GradScaler``),

with the speed-up over ``32-true`` measured in the same run, and whether that precision is
the suite's default there (:func:`retina_lightning.precision.default_precision`, what
``retina fit`` uses when a config sets no ``trainer.precision``). ``--channels-last`` and
``--compile`` add rows of the same settings with the network (and input) in channels-last
memory format and / or wrapped in ``torch.compile``, so their effect reads as a ratio ("vs
eager") within one table.

CPU rows go to ``results/training_throughput[_<scale>].md/.csv``, CUDA rows to
``results/gpu_training_throughput[_<scale>].md/.csv`` (``--name`` changes the base name).

    python benchmarks/bench_training.py --quick                 # CPU (and GPU if any)
    python benchmarks/bench_training.py --device cuda --channels-last
    python benchmarks/bench_training.py --device cuda --models unet --compile
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor, nn

from benchmarks.common import (
    Table,
    add_common_arguments,
    command_line,
    log,
    machine_info,
    scale_of,
    table_name,
    time_fn,
    usable_cores,
    write_table,
)
from benchmarks.reference import Method, build_model, find_methods, load_config
from retina_lightning.losses import compute_loss
from retina_lightning.precision import default_precision

#: Lightning's names of the precisions measured, per device type.
PRECISIONS = {
    "cpu": ("32-true", "bf16-mixed"),
    "cuda": ("32-true", "bf16-mixed", "16-mixed"),
}
ALL_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")

COLUMNS = [
    "model",
    "config",
    "params",
    "device",
    "precision",
    "suite default",
    "variant",
    "patch",
    "batch",
    "recipe batch",
    "ms/step (min)",
    "ms/step (median)",
    "patches/s",
    "vs 32-true",
    "vs eager",
    "peak GPU MiB",
    "note",
]


@dataclass(frozen=True)
class Scale:
    batch_cap: int | None  # at most this many patches per step (None: the recipe's batch)
    patch_cap: int | None  # at most this patch size (None: the recipe's), rounded up to the
    #                        network's required multiple
    warmup: int  # untimed steps first (allocations, cudnn / compile warm-up)
    repeat: int  # timed repetitions
    steps: int  # steps per timed repetition


SCALES = {
    "full": Scale(None, None, 3, 5, 5),
    "quick": Scale(8, None, 1, 3, 1),
    "tiny": Scale(2, 32, 1, 2, 1),
}


# ---------------------------------------------------------------------------- machine


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once), from
    ``/proc/cpuinfo``'s (physical id, core id) pairs; the usable logical CPUs elsewhere."""
    usable = usable_cores()
    try:
        allowed = os.sched_getaffinity(0)
        cores: set[tuple[str, str]] = set()
        processor, physical, core = None, "0", None
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                physical = value
            elif key == "core id":
                core = value
            elif not line.strip() and processor is not None:
                if processor in allowed:
                    cores.add((physical, core if core is not None else str(processor)))
                processor, physical, core = None, "0", None
        return max(1, min(len(cores), usable)) if cores else usable
    except (OSError, AttributeError, ValueError):
        return usable


# ----------------------------------------------------------------------------- recipes


@dataclass
class Recipe:
    """What a training step needs from ``configs/drive/<method>.yaml``."""

    method: Method
    model: nn.Module
    in_channels: int
    num_classes: int
    loss: nn.Module
    optimizer: tuple[type[torch.optim.Optimizer], dict[str, Any]]
    patch: int
    batch: int
    source: str


def instantiate(spec: Any) -> Any:
    """Build ``{class_path, init_args}`` specs (nested ones too), as LightningCLI would."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: instantiate(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, list):
        return [instantiate(v) for v in spec]
    return spec


def load_recipe(method: Method) -> Recipe:
    """The network (config arguments), loss, optimiser, patch and batch of ``method``."""
    model, in_channels, source = build_model(method)
    loss: nn.Module | None = None
    optimizer: tuple[type[torch.optim.Optimizer], dict[str, Any]] = (torch.optim.Adam, {})
    patch, batch = 128, 32
    if method.config.is_file():
        cfg = load_config(method.config)
        task = cfg["model"]["init_args"]
        if task.get("loss"):
            loss = instantiate(task["loss"])
        if cfg.get("optimizer"):
            spec = cfg["optimizer"]
            module, _, name = spec["class_path"].rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            optimizer = (cls, dict(spec.get("init_args") or {}))
        data = cfg["data"]["init_args"]
        patch, batch = int(data.get("patch_size", patch)), int(data.get("batch_size", batch))
    num_classes = int(getattr(model, "num_classes", 1) or 1)
    if loss is None:  # the task's default: BCE for one output channel, CE for several
        from retina_lightning.losses import BCELoss, CrossEntropyLoss

        loss = BCELoss() if num_classes == 1 else CrossEntropyLoss()
    return Recipe(method, model, in_channels, num_classes, loss, optimizer, patch, batch, source)


def step_shape(recipe: Recipe, scale: Scale) -> tuple[int, int]:
    """(patch, batch) of one step at ``scale``: the recipe's, capped by the scale."""
    multiple = int(getattr(recipe.model, "required_multiple", 1) or 1)
    patch = recipe.patch if scale.patch_cap is None else min(recipe.patch, scale.patch_cap)
    patch = -(-patch // multiple) * multiple
    batch = recipe.batch if scale.batch_cap is None else min(recipe.batch, scale.batch_cap)
    return patch, batch


def synthetic_batch(
    recipe: Recipe, patch: int, batch: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised-looking images, ~12 % vessel labels and a full FOV, on ``device``."""
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(batch, recipe.in_channels, patch, patch, generator=gen)
    if recipe.num_classes == 1:
        label = (torch.rand(batch, patch, patch, generator=gen) < 0.12).long()
    else:
        label = torch.randint(recipe.num_classes, (batch, patch, patch), generator=gen)
    fov = torch.ones(batch, patch, patch, dtype=torch.bool)
    return image.to(device), label.to(device), fov.to(device)


# -------------------------------------------------------------------------- one setting


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Lightning's autocast for ``precision`` on ``device`` (nothing for ``32-true``)."""
    if precision == "32-true":
        return contextlib.nullcontext()
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def variants(channels_last: bool, compile_: bool) -> list[tuple[str, bool, bool]]:
    """(name, channels_last, compile) of every variant measured: eager first."""
    out = [("eager", False, False)]
    if channels_last:
        out.append(("channels_last", True, False))
    if compile_:
        out.append(("compile", False, True))
    if channels_last and compile_:
        out.append(("channels_last+compile", True, True))
    return out


def measure(
    recipe: Recipe,
    device: torch.device,
    precision: str,
    channels_last: bool,
    compile_: bool,
    patch: int,
    batch: int,
    scale: Scale,
) -> dict[str, Any]:
    """Time ``scale.steps`` training steps per repetition; ms/step, patches/s, peak memory."""
    torch.manual_seed(0)
    model = copy.deepcopy(recipe.model).to(device).train()
    loss_fn = copy.deepcopy(recipe.loss).to(device)
    image, label, fov = synthetic_batch(recipe, patch, batch, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    cls, kwargs = recipe.optimizer
    optimizer = cls(model.parameters(), **kwargs)
    if compile_:
        torch._dynamo.reset()  # a fresh cache per row: no recompile limits, no reuse
    network = torch.compile(model) if compile_ else model
    scaler = torch.amp.GradScaler("cuda") if precision == "16-mixed" else None
    losses: list[Tensor] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, precision):
            output = network(image)
            loss = compute_loss(loss_fn, output, label, fov, image)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(loss.detach())

    def block() -> None:
        for _ in range(scale.steps):
            step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(scale.warmup):
        step()
    timing = time_fn(block, warmup=0, repeat=scale.repeat, device=device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    median = timing.median / scale.steps
    return {
        "ms/step (min)": 1e3 * timing.min / scale.steps,
        "ms/step (median)": 1e3 * median,
        "patches/s": batch / median,
        "peak GPU MiB": peak,
        "note": None if finite else "non-finite loss during the timed steps",
    }


# -------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_training.py",
        description=(
            "Training steps per second of every configs/drive recipe (network, loss, "
            "optimiser, patch and batch size) on synthetic tensors: CPU 32-true / bf16-mixed, "
            "CUDA 32-true / bf16-mixed / 16-mixed, optional channels_last and torch.compile "
            "rows, with the speed-up over 32-true measured in the same run."
        ),
    )
    add_common_arguments(parser)
    # this script's default thread count is the physical cores, not torch's choice
    for action in parser._actions:
        if action.dest == "threads":
            action.help = (
                "torch intra-op CPU threads (default: the physical cores this process may use; "
                "the table says how many). On a machine shared with other busy processes use 1"
            )
        if action.dest == "device":
            action.help = "auto: CPU, plus the CUDA rows when a GPU is visible (default)"
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated methods (configs/drive/<method>.yaml keys; default: all)",
    )
    parser.add_argument(
        "--precisions",
        default=",".join(ALL_PRECISIONS),
        help="comma-separated Lightning precisions to measure where the device offers them "
        "(default: 32-true,bf16-mixed,16-mixed; 16-mixed is CUDA only)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="add rows with the network and input in channels_last memory format",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add rows with the network wrapped in torch.compile (compilation happens in the "
        "untimed warm-up steps; slow to start)",
    )
    parser.add_argument(
        "--name",
        default="training_throughput",
        help="base name of the tables: <name>[_<scale>] for the CPU rows, gpu_<name>[_<scale>] "
        "for the CUDA rows (default: training_throughput)",
    )
    return parser.parse_args(argv)


def devices_for(device: str) -> list[torch.device]:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU (torch.cuda.is_available() is False)")
    out = [] if device == "cuda" else [torch.device("cpu")]
    if device != "cpu" and torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    scale_name = scale_of(args)
    scale = SCALES[scale_name]
    threads = args.threads if args.threads else physical_cores()
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    methods = find_methods(args.models)
    wanted = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = set(wanted) - set(ALL_PRECISIONS)
    if unknown:
        raise SystemExit(f"--precisions: unknown {sorted(unknown)}; choose from {ALL_PRECISIONS}")
    devices = devices_for(args.device)
    info = machine_info()
    info["threads"] = (
        f"{threads} intra-op threads ("
        + ("--threads" if args.threads else f"default: the {threads} physical cores usable")
        + ")"
    )
    info["suite default precision"] = (
        f"cpu: {default_precision('cpu')}"
        + (f", cuda: {default_precision('gpu')}" if torch.cuda.is_available() else "")
        + " (retina_lightning.precision.default_precision)"
    )
    command = command_line(argv)
    names = {
        "cpu": table_name(args.name, scale_name),
        "cuda": table_name(f"gpu_{args.name}", scale_name),
    }
    batch_note = {
        "full": "the recipe's batch and patch size",
        "quick": f"the recipe's patch size, batch capped at {scale.batch_cap}",
        "tiny": f"patch capped at {scale.patch_cap}, batch at {scale.batch_cap} (toy sizes)",
    }[scale_name]
    tables = {
        d.type: Table(
            names[d.type],
            f"Training throughput on {'the CPU' if d.type == 'cpu' else gpu_label()}: every "
            f"configs/drive recipe (network, loss, optimiser), {batch_note}, synthetic tensors",
            COLUMNS,
        )
        for d in devices
    }
    log(
        f"[bench_training] {scale_name}: {len(methods)} models, devices "
        f"{[str(d) for d in devices]}, {threads} threads, precisions {wanted}"
    )
    for table in tables.values():
        table.notes += [
            f"One step = forward, loss, backward, optimiser step (the recipe's loss and "
            f"optimiser, e.g. Adam / AdaDelta) on one synthetic batch already on the device; "
            f"{scale.warmup} untimed warm-up step(s), then the median (and minimum) of "
            f"{scale.repeat} timed repetitions of {scale.steps} step(s); patches/s = batch / "
            "median seconds per step. No data pipeline (bench_data.py measures it), no "
            "validation, no logging.",
            "32-true: float32, no autocast (Lightning '32-true'; on CUDA torch's defaults "
            "apply: cuDNN convolutions may use TF32, float32 matmuls do not); bf16-mixed: "
            "torch.autocast bfloat16; 16-mixed: torch.autocast float16 with a GradScaler "
            "(CUDA only).",
            "'vs 32-true' = patches/s over the 32-true eager row of the same model and device; "
            "'vs eager' = over the eager row of the same precision (channels_last / compile "
            "rows): both measured in this run. 'suite default' marks the precision `retina "
            "fit` uses on this device when the config sets none "
            "(retina_lightning.precision.default_precision).",
            f"Batch: {batch_note}; 'recipe batch' is the config's. Patch size rounded up to the "
            "network's required multiple.",
        ]
        if args.compile:
            table.notes.append(
                "compile rows: torch.compile(network) (default mode); compilation runs in the "
                "warm-up steps and is not timed."
            )
    recipes = [load_recipe(m) for m in methods]
    for device in devices:
        table = tables[device.type]
        suite_default = default_precision("cpu" if device.type == "cpu" else "gpu")
        precisions = [p for p in PRECISIONS[device.type] if p in wanted]
        for recipe in recipes:
            patch, batch = step_shape(recipe, scale)
            params = sum(p.numel() for p in recipe.model.parameters())
            eager: dict[str, float] = {}
            for precision in precisions:
                for variant, cl, comp in variants(args.channels_last, args.compile):
                    log(
                        f"[bench_training] {recipe.method.label} {device} {precision} "
                        f"{variant}: batch {batch} x {patch}^2"
                    )
                    row = {
                        "model": recipe.method.label,
                        "config": recipe.source,
                        "params": params,
                        "device": str(device),
                        "precision": precision,
                        "suite default": precision == suite_default,
                        "variant": variant,
                        "patch": patch,
                        "batch": batch,
                        "recipe batch": recipe.batch,
                    }
                    try:
                        row.update(
                            measure(recipe, device, precision, cl, comp, patch, batch, scale)
                        )
                    except Exception as error:  # OOM, compile failure: a row, not the end
                        traceback.print_exc()
                        row["note"] = f"FAILED: {type(error).__name__}: {error}"[:200]
                        table.add(**row)
                        continue
                    finally:
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                    if variant == "eager":
                        eager[precision] = row["patches/s"]
                    base = eager.get("32-true")
                    row["vs 32-true"] = row["patches/s"] / base if base else None
                    same = eager.get(precision)
                    row["vs eager"] = row["patches/s"] / same if same else None
                    table.add(**row)
                    log(
                        f"    {row['ms/step (median)']:.1f} ms/step, {row['patches/s']:.1f} "
                        f"patches/s"
                        + (f", {row['vs 32-true']:.2f}x 32-true" if row["vs 32-true"] else "")
                    )
            # after every model: a run stopped early (time limit) still leaves its rows
            write_table(table, args.out_dir, command, info)
    paths: list[Path] = []
    for table in tables.values():
        paths += write_table(table, args.out_dir, command, info)
        log(table.markdown())
    log(f"[bench_training] wrote {', '.join(str(p) for p in paths)}")
    return paths


def gpu_label() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA"


if __name__ == "__main__":
    main()
