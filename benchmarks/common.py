"""What every benchmark shares: the machine's description, a timer, and result tables.

Timings are only compared as ratios *within one run* (same machine, same load); the tables
say on which machine and with which command they were made. On a GPU the timer calls
``torch.cuda.synchronize`` around every repetition, so asynchronous kernels are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import io
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"

#: the three scales every script offers: full (the numbers to report), quick (``make bench``),
#: tiny (tests: seconds).
SCALES = ("full", "quick", "tiny")


# ------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict[str, str]:
    """CPU model, cores, torch version and threads, GPU (if any), load average, date."""
    info = {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} ({usable_cores()} usable by this process)",
        "torch": f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)",
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "gpu": gpu_name() or "none: the cuda fp32 / AMP rows of this table were not run",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if hasattr(os, "getloadavg"):
        one, five, _ = os.getloadavg()
        info["load average at start"] = (
            f"{one:.2f} (1 min) / {five:.2f} (5 min) on {usable_cores()} cores: "
            "above the core count means other processes shared the CPU while timing"
        )
    return info


def command_line(argv: list[str] | None = None) -> str:
    """The command that produced a table, as one would type it from the repository root."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(REPO)
    args = sys.argv[1:] if argv is None else argv
    return " ".join(shlex.quote(a) for a in ["python", str(script), *args])


# ------------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Seconds per repetition: the minimum (least disturbed) and the median (typical)."""

    min: float
    median: float
    repeat: int


def synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeat: int = 3,
    device: torch.device | str | None = None,
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` timed times (wall clock)."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat {repeat} warmup {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return Timing(min(times), statistics.median(times), repeat)


def run_settings(device: str = "auto") -> list[tuple[torch.device, str]]:
    """(device, precision) pairs to measure: CPU fp32 always (unless ``device == "cuda"``),
    then, where a GPU exists, cuda fp32 and cuda AMP (``torch.autocast`` float16)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no GPU (torch.cuda.is_available() is False)")
    settings = [] if device == "cuda" else [(torch.device("cpu"), "fp32")]
    if device != "cpu" and torch.cuda.is_available():
        settings += [(torch.device("cuda"), "fp32"), (torch.device("cuda"), "amp")]
    return settings


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """fp32: nothing; amp: ``torch.autocast`` in float16 on cuda, bfloat16 on the CPU."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "amp":
        raise ValueError(f"precision must be fp32 or amp, got {precision!r}")
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def difference(a: float | None, b: float | None) -> float | None:
    """``a - b``, or None when either is missing."""
    return None if a is None or b is None else a - b


def log(message: str) -> None:
    """One progress line (flushed, so it shows up under ``make`` and in CI logs)."""
    print(message, flush=True)


# ------------------------------------------------------------------------------- tables


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits, big integers with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


@dataclass
class Table:
    """A result table: ``rows`` are dicts keyed by ``columns`` (missing keys print as -)."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> dict[str, Any]:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"{self.name}: columns {sorted(unknown)} not in {self.columns}")
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        for row in self.rows:
            cells = (fmt(row.get(c)).replace("|", "/") for c in self.columns)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def write_table(
    table: Table,
    out_dir: str | Path = RESULTS_DIR,
    command: str | None = None,
    info: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.md`` and ``<name>.csv``, both headed by the machine and the
    command (in the CSV as ``# key: value`` lines: ``pandas.read_csv(path, comment="#")``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info() if info is None else info
    command = command or command_line()
    md = [f"# {table.title}", "", f"Command: `{command}`", ""]
    md += [f"- {key}: {value}" for key, value in info.items()]
    md += ["", table.markdown(), ""]
    if table.notes:
        md += ["Notes:", ""] + [f"- {note}" for note in table.notes] + [""]
    md_path = out / f"{table.name}.md"
    md_path.write_text("\n".join(md))

    buffer = io.StringIO()
    buffer.write(f"# {table.title}\n# command: {command}\n")
    for key, value in info.items():
        buffer.write(f"# {key}: {value}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in table.columns])
    csv_path = out / f"{table.name}.csv"
    csv_path.write_text(buffer.getvalue())
    return md_path, csv_path


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`write_table` (comment lines skipped)."""
    lines = [line for line in Path(path).read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


# ------------------------------------------------------------------------------ argparse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--quick",
        action="store_true",
        help="small scale (what `make bench` runs; minutes on 2 CPU cores)",
    )
    scale.add_argument(
        "--tiny",
        action="store_true",
        help="toy sizes that run in seconds (for the tests; the numbers mean nothing)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CPU, plus cuda fp32 and AMP rows when a GPU is visible (default)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op CPU threads (default: torch's choice). On a machine shared with "
        "other busy processes use 1: oversubscribed OpenMP threads make timings meaningless",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where the .md / .csv tables go (default: {RESULTS_DIR.relative_to(REPO)})",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's intra-op threads from ``--threads`` (before :func:`machine_info`)."""
    if getattr(args, "threads", None):
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def scale_of(args: argparse.Namespace) -> str:
    return "tiny" if args.tiny else "quick" if args.quick else "full"


def table_name(base: str, scale: str) -> str:
    """Full-scale tables keep the plain name; quick / tiny ones get a suffix, so a quick run
    never overwrites a full one."""
    return base if scale == "full" else f"{base}_{scale}"
