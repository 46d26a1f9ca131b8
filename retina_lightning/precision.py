"""The default numerical precision of training: the fastest one that costs no accuracy.

bfloat16 autocast (Lightning ``"bf16-mixed"``) keeps float32's exponent range, so unlike
float16 it needs no loss scaling; where the hardware multiplies bf16 natively it trains the
suite's networks 1.3x to 2.6x faster than float32 (``benchmarks/results/training_throughput*``).
Native means: x86 CPUs with AVX512_BF16 or AMX (``/proc/cpuinfo`` flags ``avx512_bf16`` /
``amx_bf16``), and CUDA GPUs for which ``torch.cuda.is_bf16_supported()`` (Ampere and newer).
Elsewhere bf16 is emulated and slower, so the default stays ``"32-true"``.

Only training runs under autocast: validation, test and predict run the network in float32
(:func:`float32_inference`), so thresholds, AUROC and saved probability maps do not depend on
the precision a model was trained in.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = [
    "PRECISION_ENV",
    "cpu_native_bf16",
    "default_precision",
    "describe_precision",
    "float32_inference",
]

#: forces the default precision of every run that sets none (``RETINA_PRECISION=32-true make
#: test`` runs the suite as a CPU without native bf16 does; issue 25 item 6)
PRECISION_ENV = "RETINA_PRECISION"
FORCEABLE = ("32-true", "bf16-mixed", "16-mixed")

#: ``/proc/cpuinfo`` flags of CPUs that multiply bfloat16 in hardware.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512_BF16 or AMX on x86 Linux).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (read from the system when ``None``).
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if platform.system() != "Linux" or not path.is_file():
            return False
        try:
            cpuinfo = path.read_text(errors="ignore")
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def _uses_cuda(accelerator: str | None) -> bool:
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator in (None, "auto"):
        return torch.cuda.is_available()
    return False


def default_precision(accelerator: str | None = "auto") -> str:
    """Lightning ``precision`` for a run on ``accelerator`` when the config sets none:
    ``"bf16-mixed"`` on hardware with native bfloat16, else ``"32-true"``; ``$RETINA_PRECISION``
    (one of :data:`FORCEABLE`) overrides both."""
    forced = os.environ.get(PRECISION_ENV, "")
    if forced:
        if forced not in FORCEABLE:
            raise ValueError(
                f"{PRECISION_ENV}={forced!r}: expected one of {', '.join(FORCEABLE)} (or unset)"
            )
        return forced
    if _uses_cuda(accelerator):
        return (
            "bf16-mixed"
            if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            else ("32-true")
        )
    if accelerator in (None, "auto", "cpu"):
        return "bf16-mixed" if cpu_native_bf16() else "32-true"
    return "32-true"  # mps, tpu, ...: leave it to the user


def describe_precision(precision: str, accelerator: str | None = "auto") -> str:
    """One line for the start of a run: what was chosen and why, and how to override it."""
    where = "GPU" if _uses_cuda(accelerator) else "CPU"
    if os.environ.get(PRECISION_ENV):
        why = f"${PRECISION_ENV}"
    elif precision == "bf16-mixed":
        why = f"the {where} multiplies bfloat16 natively"
    else:
        why = f"the {where} has no native bfloat16"
    return (
        f"[retina] precision {precision} ({why}; training only, evaluation runs in float32); "
        "override with --trainer.precision=32-true or bf16-mixed"
    )


@contextlib.contextmanager
def float32_inference(device: torch.device) -> Iterator[None]:
    """Turn off any surrounding autocast on ``device``: evaluation in float32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield
