"""`make gpu-check`: everything the suite can only check on a GPU, in one run of < 9 minutes on
one NVIDIA GPU (an H200 here), from a clean checkout.

Steps, each in its own process with a time limit (a failed or timed-out step is reported and
the next one runs):

1. ``tests``: the CUDA tests (``tests/test_gpu.py``: device sampler vs CPU, ``retina fit`` /
   ``retina test`` in bf16-mixed and 16-mixed, inference on CUDA vs CPU, ...) and the tests
   that branch on CUDA; the outcome of each test is a table (``gpu_tests``);
2. ``training``: ``bench_training.py --device cuda --channels-last``, every DRIVE recipe in
   32-true / bf16-mixed / 16-mixed (``gpu_training_throughput``);
3. ``data``: ``bench_data.py --quick --device cuda``: device sampler vs DataLoader
   (``gpu_data_throughput_quick``, ``gpu_data_wait_quick``);
4. ``inference``: ``bench_inference.py --quick --device cuda``: per-model inference time,
   disk-to-disk images/s, batched vs per-tile sliding window (``gpu_inference_*_quick``);
5. ``drive``: DPN's recipe (``configs/drive/dpn.yaml``) on DRIVE for the time left (at most
   ``--drive-minutes``), then ``retina test`` (``bench_accuracy.py --methods dpn``), its test
   numbers beside the paper's (``gpu_accuracy_drive_*``); needs ``RETINA_DATA_ROOT`` holding
   ``DRIVE/`` and is skipped, saying so, without it;
6. ``compile``: if time is left, ``torch.compile`` vs eager training steps of a U-Net
   (``gpu_training_compile``).

Tables go to ``benchmarks/results/gpu_*.md/.csv`` (``--results-dir``); with ``$OUT`` set (the
device tool's output folder) a summary (``gpu_check_summary.md``: every table) and a tarball
of the tables (``gpu_check_results.tar.gz``) are copied there.

``--quick`` checks the script itself, on a CPU too: toy sizes, two models, a tiny synthetic
DPN fit instead of DRIVE, no compile step; the CUDA tests skip without a GPU; tables go to a
temporary folder unless ``--results-dir`` is given. Run through ``scripts/gpu_check.sh``,
which installs the carried wheels first where packages are missing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.common import RESULTS_DIR, Table, write_table  # noqa: E402

#: tests run by the ``tests`` step: the CUDA tests and those that branch on a visible GPU.
GPU_TESTS = [
    "tests/test_gpu.py",
    "tests/test_benchmarks.py::test_run_settings_cpu_always_first",
    "tests/test_benchmarks.py::test_machine_info_names_cpu_and_torch",
]
#: seconds of the DRIVE step that are not training: start-up, reading DRIVE, the last
#: validation, `retina test` of 20 images with connectivity and figures.
DRIVE_OVERHEAD_S = 90.0
#: the least training worth a DRIVE step, minutes.
DRIVE_MIN_MINUTES = 0.5
#: the environment variable set for the child processes (tests can tell they are nested).
NESTED_ENV = "RETINA_GPU_CHECK"


def log(message: str) -> None:
    print(f"[gpu-check] {message}", flush=True)


@dataclass
class Step:
    name: str
    what: str
    status: str = "not run"
    seconds: float = 0.0
    tables: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status.startswith(("FAILED", "TIMED OUT"))


class Check:
    """The steps, their shared deadline and where their tables go."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        self.start = time.monotonic()
        self.deadline = self.start + 60.0 * args.budget_minutes
        self.results = args.results_dir
        self.results.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="retina_gpu_check_"))
        self.steps: list[Step] = []

    # ------------------------------------------------------------------ helpers
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def cap(self, seconds: float) -> float:
        """A step's time limit: ``seconds`` on a GPU; --quick checks the script on any machine,
        however slow, so only the overall budget limits its steps."""
        return self.remaining() if self.quick else seconds

    def threads(self) -> list[str]:
        return ["--threads", str(self.args.threads)] if self.args.threads else []

    def run(self, step: Step, argv: list[str], limit: float) -> int | None:
        """Run ``python argv`` from the repository root; None when it ran past ``limit``."""
        command = [sys.executable, *argv]
        log(f"{step.name}: {shlex.join(['python', *argv])} (limit {limit:.0f} s)")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", NESTED_ENV: "1"}
        process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)
        try:
            return process.wait(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: DataLoader workers too
            process.wait()
            return None

    def collect(self, step: Step, folder: Path) -> None:
        """Copy the step's tables to the results folder as ``gpu_<name>``."""
        for path in sorted(folder.glob("*")):
            if path.suffix not in (".md", ".csv") or not path.is_file():
                continue
            name = path.name if path.name.startswith("gpu_") else f"gpu_{path.name}"
            shutil.copyfile(path, self.results / name)
            if path.suffix == ".md":
                step.tables.append(self.results / name)

    def bench(self, step: Step, script: str, options: list[str], cap: float, reserve: float = 0):
        """A benchmark script writing into a folder of its own, then its tables collected."""
        limit = min(self.cap(cap), self.remaining() - reserve)
        if limit < 20:
            step.status = f"skipped: {self.remaining():.0f} s of the budget left"
            return
        folder = self.work / step.name
        folder.mkdir(exist_ok=True)
        argv = [f"benchmarks/{script}", *options, *self.threads(), "--out-dir", str(folder)]
        started = time.monotonic()
        code = self.run(step, argv, limit)
        step.seconds += time.monotonic() - started
        self.collect(step, folder)
        if code is None:
            step.status = f"TIMED OUT after {limit:.0f} s"
        elif code != 0:
            step.status = f"FAILED (exit code {code})"
        else:
            step.status = "ok"

    def drive_reserve(self) -> float:
        """Seconds kept free for the DRIVE step while the earlier steps run."""
        if self.quick or self.drive_root() is None:
            return 0.0
        return DRIVE_OVERHEAD_S + 60.0 * DRIVE_MIN_MINUTES

    def drive_root(self) -> Path | None:
        from benchmarks.bench_accuracy import drive_root

        return drive_root(None)

    # -------------------------------------------------------------------- steps
    def tests(self) -> Step:
        step = Step("tests", "CUDA tests (tests/test_gpu.py and the tests that branch on CUDA)")
        limit = min(self.cap(180.0), self.remaining() - self.drive_reserve())
        xml = self.work / "tests.xml"
        argv = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(xml)]
        started = time.monotonic()
        code = self.run(step, [*argv, *GPU_TESTS], limit)
        step.seconds = time.monotonic() - started
        table = Table(
            "gpu_tests" if not self.quick else "gpu_tests_quick",
            f"CUDA tests ({'GPU: ' + torch.cuda.get_device_name(0) if self.cuda else 'no GPU'})",
            ["test", "outcome", "seconds", "message"],
        )
        counts: dict[str, int] = {}
        if xml.is_file():
            for case in ET.parse(xml).getroot().iter("testcase"):
                outcome, message = "passed", ""
                for child in case:
                    if child.tag in ("failure", "error"):
                        outcome = "failed" if child.tag == "failure" else "error"
                        message = child.get("message", "")
                    elif child.tag == "skipped":
                        kind = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                        outcome, message = kind, child.get("message", "")
                counts[outcome] = counts.get(outcome, 0) + 1
                name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
                table.add(
                    test=name,
                    outcome=outcome,
                    seconds=float(case.get("time", 0.0)),
                    message=" ".join(message.split())[:300],
                )
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no results"
        exit_code = "none (stopped at the time limit)" if code is None else code
        table.notes.append(f"{summary}; pytest exit code {exit_code}.")
        if not self.cuda:
            table.notes.append("No CUDA GPU: the CUDA tests were skipped.")
        command = shlex.join(["python", *argv[:-2], *GPU_TESTS])
        md, _ = write_table(table, self.results, command)
        step.tables.append(md)
        if code is None:
            step.status = f"TIMED OUT after {limit:.0f} s ({summary})"
        elif code != 0:
            step.status = f"FAILED ({summary})"
        else:
            step.status = f"ok ({summary})"
        return step

    def training(self) -> Step:
        step = Step("training", "training throughput per model and precision")
        if self.quick:
            options = ["--tiny", "--models", "patch2image_light,dpn", "--channels-last"]
        else:
            options = ["--channels-last"]
        self.bench(
            step,
            "bench_training.py",
            [*options, "--device", self.device],
            150.0,
            self.drive_reserve(),
        )
        return step

    def data(self) -> Step:
        step = Step("data", "device sampler vs DataLoader: patches/s, share of a step waiting")
        scale = ["--tiny", "--workers", "0"] if self.quick else ["--quick", "--workers", "0,4"]
        self.bench(
            step, "bench_data.py", [*scale, "--device", self.device], 100.0, self.drive_reserve()
        )
        return step

    def inference(self) -> Step:
        step = Step("inference", "inference per model, disk-to-disk images/s, batched window")
        if self.quick:
            options = [
                "--tiny",
                "--models",
                "patch2image_light",
                "--disk-model",
                "patch2image_light",
            ]
        else:
            options = ["--quick", "--measure-limit", "2"]
        self.bench(
            step,
            "bench_inference.py",
            [*options, "--device", self.device],
            120.0,
            self.drive_reserve(),
        )
        return step

    def drive(self) -> Step:
        step = Step("drive", "DPN recipe (configs/drive/dpn.yaml) on DRIVE, then retina test")
        runs = ["--runs-dir", str(self.work / "runs"), "--methods", "dpn"]
        if self.quick:
            log(
                "drive: --quick trains no recipe on DRIVE: a tiny synthetic DPN fit + test "
                "checks the step"
                + ("" if self.drive_root() else " (RETINA_DATA_ROOT holds no DRIVE/ either)")
            )
            step.what = "tiny synthetic DPN fit + test (what the DRIVE step runs, toy sizes)"
            self.bench(step, "bench_accuracy.py", ["--tiny", *runs, "--device", self.device], 120)
            return step
        root = self.drive_root()
        if root is None:
            step.status = (
                "skipped: RETINA_DATA_ROOT is unset or holds no DRIVE/ (carry the data: "
                "benchmarks/README.md, 'GPU check')"
            )
            log(f"drive: {step.status}")
            return step
        minutes = min(self.args.drive_minutes, (self.remaining() - DRIVE_OVERHEAD_S) / 60.0)
        minutes = float(f"{minutes:.1f}") if minutes >= 1 else float(f"{minutes:.2f}")
        if minutes < DRIVE_MIN_MINUTES:
            step.status = f"skipped: {self.remaining():.0f} s of the budget left"
            return step
        step.what += f" ({minutes:g} min of training, the suite's default precision)"
        options = [*runs, "--minutes", f"{minutes:g}", "--data-root", str(root)]
        self.bench(
            step,
            "bench_accuracy.py",
            [*options, "--device", "cuda"],
            self.remaining() - 5,
        )
        return step

    def compile(self) -> Step:
        step = Step("compile", "torch.compile vs eager training steps")
        if self.quick:
            step.status = "skipped in --quick (compiling takes minutes)"
            return step
        if self.remaining() < 60:
            step.status = f"skipped: {self.remaining():.0f} s of the budget left"
            return step
        from retina_lightning.precision import default_precision

        precision = default_precision("gpu")
        options = ["--models", self.args.compile_models, "--precisions", precision, "--compile"]
        self.bench(
            step,
            "bench_training.py",
            [*options, "--name", "training_compile", "--device", "cuda"],
            self.remaining() - 5,
        )
        return step

    # --------------------------------------------------------------------- main
    def summary(self) -> tuple[Path, Table]:
        table = Table(
            "gpu_check_summary",
            f"make gpu-check{' QUICK=1' if self.quick else ''}: steps",
            ["step", "what", "status", "seconds", "tables"],
        )
        for step in self.steps:
            table.add(
                step=step.name,
                what=step.what,
                status=step.status,
                seconds=round(step.seconds, 1),
                tables=", ".join(p.stem for p in step.tables) or None,
            )
        total = time.monotonic() - self.start
        table.notes.append(
            f"{total:.0f} s in all (budget {self.args.budget_minutes:g} min); tables in "
            f"{self.results}."
        )
        md, _ = write_table(table, self.results)
        parts = [md.read_text()]
        for step in self.steps:
            for path in step.tables:
                if path.is_file():
                    parts.append(path.read_text())
        md.write_text("\n\n".join(parts))
        return md, table

    def export(self, summary: Path) -> None:
        """Summary and a tarball of this run's tables into ``$OUT`` (the device tool brings
        back at most 8 files: one archive, not one file per table)."""
        out = os.environ.get("OUT")
        if not out:
            return
        shutil.copyfile(summary, Path(out) / summary.name)
        archive = Path(out) / "gpu_check_results.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for step in self.steps:
                for md in step.tables:
                    for path in (md, md.with_suffix(".csv")):
                        if path.is_file():
                            tar.add(path, arcname=path.name)
        log(f"copied {summary.name} and {archive.name} to $OUT")

    def main(self) -> int:
        log(
            f"{'--quick: toy sizes' if self.quick else 'full'} on "
            f"{torch.cuda.get_device_name(0) if self.cuda else 'the CPU (no CUDA GPU)'}; "
            f"budget {self.args.budget_minutes:g} min; tables -> {self.results}"
        )
        if not self.cuda:
            log("no CUDA: the CUDA tests skip and the benchmarks run their CPU rows only")
        order = [self.tests, self.training, self.data, self.inference, self.drive, self.compile]
        skip = {s.strip() for s in self.args.skip.split(",") if s.strip()}
        for run_step in order:
            if run_step.__name__ in skip:
                self.steps.append(Step(run_step.__name__, "", "skipped: --skip"))
                continue
            step = run_step()
            self.steps.append(step)
            log(f"{step.name}: {step.status} ({step.seconds:.0f} s, {self.remaining():.0f} s left)")
        summary, table = self.summary()
        self.export(summary)
        shutil.rmtree(self.work, ignore_errors=True)
        print(table.markdown(), flush=True)
        failed = [s.name for s in self.steps if s.failed]
        log(f"{'FAILED: ' + ', '.join(failed) if failed else 'all steps ok'}; summary {summary}")
        return 1 if failed else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_check.py",
        description="The GPU tests, training / data / inference benchmarks on CUDA and DPN on "
        "DRIVE, in under 9 minutes on one GPU (make gpu-check).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the script: toy sizes, runs on a CPU too (make gpu-check QUICK=1)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"where the tables go (default: {RESULTS_DIR.relative_to(REPO)}; --quick: a new "
        "temporary folder)",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="wall-clock budget of all steps; the DRIVE step trains for what is left "
        "(default 8.25, so that the whole check with its set-up stays under 9 minutes; "
        "--quick: 30)",
    )
    parser.add_argument(
        "--drive-minutes",
        type=float,
        default=3.0,
        help="at most this many minutes of DPN training on DRIVE (default 3)",
    )
    parser.add_argument(
        "--compile-models",
        default="unet",
        help="models of the torch.compile step (default: unet)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="--threads of every benchmark script"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated steps to leave out: tests, training, data, inference, drive, compile",
    )
    args = parser.parse_args(argv)
    if args.budget_minutes is None:
        args.budget_minutes = 30.0 if args.quick else 8.25
    if args.results_dir is None:
        args.results_dir = (
            Path(tempfile.mkdtemp(prefix="retina_gpu_check_quick_")) if args.quick else RESULTS_DIR
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.quick and not torch.cuda.is_available():
        log(
            "no CUDA GPU visible: `make gpu-check` measures a GPU. On a CPU, "
            "`make gpu-check QUICK=1` checks the script itself."
        )
        return 2
    return Check(args).main()


if __name__ == "__main__":
    sys.exit(main())
