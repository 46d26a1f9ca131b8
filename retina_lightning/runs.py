"""Run folders and checkpoints: the one place every command takes them from (issue 12).

* :func:`experiment_name`: ``configs/synthetic/unet.yaml`` -> ``synthetic/unet``.
* :func:`new_run_dir`: every ``fit`` writes to a new ``<runs_dir>/<experiment>/<timestamp>/``,
  so a run never overwrites an earlier one; :func:`remove_unused_run` takes it away again when
  the fit failed before writing anything but its config (issue 15, item 10).
* :func:`resolve_checkpoint`: ``best`` / ``last`` of the latest run of an experiment; ``best``
  is the checkpoint with the best monitored score, not the newest file (issue 15, item 3).
* :func:`load_checkpoint`, :func:`check_weights_fit`: one checkpoint loader whose errors name
  the file and the fix, and a check that the configured network has the checkpoint's shapes,
  naming the hyper-parameter that differs (issue 15, item 13).
* :func:`trim_metrics_csv`: a resumed run's ``metrics.csv`` loses the rows logged after the
  checkpoint it resumes from, which the resumed process logs again (issue 15, item 9).

This module imports nothing else of ``retina_lightning``, so that any module can use it
without an import cycle (``tests/test_imports.py``).
"""

from __future__ import annotations

import csv
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoints"
#: set by the process that creates a multi-process run's directory; inherited by the other ranks
RUN_DIR_ENV = "RETINA_RUN_DIR"
#: what a fit writes before its setup succeeded (LightningCLI's SaveConfigCallback)
_SETUP_FILES = frozenset({"config.yaml"})


class RunDirError(FileNotFoundError):
    """No run / checkpoint matches what the command line asked for, or the checkpoint does
    not fit the configured model."""


# ------------------------------------------------------------------------------ run folders
def experiment_name(config_paths: list[Any] | None) -> str:
    """``configs/synthetic/unet.yaml`` -> ``synthetic/unet``; other paths -> their stem."""
    if not config_paths:
        return "default"
    path = Path(str(config_paths[0]))
    parts = path.with_suffix("").parts
    if "configs" in parts:
        i = len(parts) - 1 - parts[::-1].index("configs")
        return "/".join(parts[i + 1 :])
    return path.stem


def new_run_dir(runs_dir: Path, experiment: str) -> Path:
    """A fresh ``runs_dir/experiment/<timestamp>[-k]`` that no earlier run uses."""
    base = runs_dir / experiment / time.strftime("%Y%m%d-%H%M%S")
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    candidate.mkdir(parents=True)
    return candidate


def unique_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... the first that does not exist."""
    candidate, k = path, 1
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


def run_dir_of(ckpt: Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``; a loose checkpoint -> its folder."""
    ckpt = ckpt.resolve()
    return ckpt.parent.parent if ckpt.parent.name == CHECKPOINT_DIR else ckpt.parent


def remove_unused_run(run_dir: Path, runs_dir: Path | None = None) -> bool:
    """Delete ``run_dir`` when it holds nothing but what a fit writes before its setup
    succeeded (its ``config.yaml``, empty folders), and then the experiment folders above it
    that became empty, up to ``runs_dir``. Returns whether it was deleted."""
    if not run_dir.is_dir():
        return False
    files = [p for p in run_dir.rglob("*") if not p.is_dir()]
    if any(p.parent != run_dir or p.name not in _SETUP_FILES for p in files):
        return False
    shutil.rmtree(run_dir)
    stop = runs_dir.resolve() if runs_dir is not None else None
    parent = run_dir.parent.resolve()
    while parent != stop and parent != parent.parent and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True


# ------------------------------------------------------------------------- best and last
def checkpoint_score(path: Path) -> tuple[float, str] | None:
    """``(score, mode)`` of the monitored metric a ``ModelCheckpoint`` saved ``path`` for, from
    the callback state inside the file (``current_score``; ``mode`` from the state key), else
    ``None``. Memory-mapped: the weights are not read."""
    import torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file has no score; resolve_checkpoint goes on
        return None
    states = raw.get("callbacks") if isinstance(raw, dict) else None
    for key, state in (states or {}).items():
        if not (isinstance(state, Mapping) and state.get("monitor")):
            continue
        score = state.get("current_score")
        if score is None:
            continue
        mode = re.search(r"'mode': '(min|max)'", str(key))
        return float(score), mode.group(1) if mode else "max"
    return None


def best_checkpoint(paths: list[Path]) -> Path:
    """The checkpoint of ``paths`` with the best monitored score (:func:`checkpoint_score`);
    checkpoints without a score rank below, ties and unscored files by modification time."""

    def rank(path: Path) -> tuple[int, float, float]:
        found = checkpoint_score(path)
        if found is None or found[0] != found[0]:  # no score, or NaN
            return (0, 0.0, path.stat().st_mtime)
        score, mode = found
        return (1, score if mode == "max" else -score, path.stat().st_mtime)

    return max(paths, key=rank)


def resolve_checkpoint(which: str, runs_dir: Path, experiment: str) -> Path:
    """The ``best`` or ``last`` checkpoint of the latest run of ``experiment`` that has one."""
    root = runs_dir / experiment
    runs = sorted((p for p in root.glob("*") if (p / CHECKPOINT_DIR).is_dir()), reverse=True)
    for run in runs:
        ckpts = run / CHECKPOINT_DIR
        if which == "last" and (ckpts / "last.ckpt").is_file():
            return ckpts / "last.ckpt"
        if which == "best":
            best = sorted(ckpts.glob("best*.ckpt"))
            if best:
                return best_checkpoint(best)
            if (ckpts / "last.ckpt").is_file():  # no validation monitor: last is best
                return ckpts / "last.ckpt"
    raise RunDirError(
        f"--ckpt_path {which}: no checkpoint found under {root}/*/{CHECKPOINT_DIR}/ "
        f"(experiment {experiment!r}, runs_dir {str(runs_dir)!r}); train first with "
        f"`retina fit --config <config>` or pass a checkpoint file"
    )


# ---------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, or a :class:`RunDirError` naming the file and the fix
    (no such file, a folder, not a PyTorch file, no ``state_dict``)."""
    import torch

    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))[:3]
        hint = f"; it holds {', '.join(map(str, found))}" if found else ""
        raise RunDirError(f"--ckpt_path {path}: a folder, not a .ckpt file{hint}")
    if not path.is_file():
        raise RunDirError(f"--ckpt_path {str(path)!r}: no such file (or use 'best' / 'last')")
    try:
        # weights_only=False: the CLI's checkpoints hold the parsed config (the user's own runs)
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise RunDirError(
            f"--ckpt_path {path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise RunDirError(
            f"--ckpt_path {path}: not a Lightning checkpoint (no 'state_dict'); pass a .ckpt "
            f"written by `retina fit` (runs/<experiment>/<timestamp>/{CHECKPOINT_DIR}/)"
        )
    return raw


def _plain(value: Any) -> Any:
    """jsonargparse Namespaces and nested mappings as plain dicts."""
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        value = as_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _init_args(node: Any) -> dict[str, Any]:
    node = _plain(node)
    if not isinstance(node, Mapping):
        return {}
    return dict(node.get("init_args") or {}) if "class_path" in node else dict(node)


def hparam_differences(stored: Any, configured: Any) -> list[str]:
    """``"base_channels 8 in the checkpoint, 32 in the config"`` for every constructor argument
    of the network (``{class_path, init_args}`` nodes) whose two values differ."""
    old, new = _init_args(stored), _init_args(configured)
    out = []
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            out.append(f"{key} {old[key]!r} in the checkpoint, {new[key]!r} in the config")
    return out


def check_weights_fit(
    ckpt: str | Path,
    stored_shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    stored_model: Any = None,
    configured_model: Any = None,
) -> None:
    """A :class:`RunDirError` when tensors the checkpoint and the configured model share have
    other shapes, naming the network hyper-parameters that differ (``stored_model`` /
    ``configured_model``: the ``{class_path, init_args}`` nodes) instead of one line per
    layer, as ``load_state_dict`` would."""
    wrong = [
        k for k in stored_shapes.keys() & model_shapes.keys() if stored_shapes[k] != model_shapes[k]
    ]
    if not wrong:
        return
    diffs = hparam_differences(stored_model, configured_model)
    if diffs:
        why = "; ".join(diffs)
    else:
        first = sorted(wrong)[0]
        why = (
            f"{len(wrong)} tensors, e.g. {first} {tuple(stored_shapes[first])} in the checkpoint, "
            f"{tuple(model_shapes[first])} in the model"
        )
    raise RunDirError(
        f"--ckpt_path {ckpt}: the checkpoint's network has other layer sizes than the "
        f"configured one: {why}; use the config of that run "
        f"({run_dir_of(Path(ckpt)) / 'config.yaml'}) or set these values"
    )


# ------------------------------------------------------------------------------- metrics.csv
def trim_metrics_csv(path: Path, global_step: int) -> int:
    """Drop the rows of ``metrics.csv`` logged at ``step >= global_step``: the steps after the
    checkpoint a fit resumes from, which the resumed fit logs again (kill -9 after a
    checkpoint). Rows without a step are kept. Returns how many rows were dropped."""
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "step" not in rows[0]:
        return 0
    col = rows[0].index("step")

    def after(row: list[str]) -> bool:
        try:
            return int(float(row[col])) >= global_step
        except (IndexError, ValueError):
            return False

    kept = [rows[0], *(r for r in rows[1:] if not after(r))]
    dropped = len(rows) - len(kept)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(kept)  # "\r\n", as the logger writes
        tmp.replace(path)
    return dropped


__all__ = [
    "CHECKPOINT_DIR",
    "RUN_DIR_ENV",
    "RunDirError",
    "best_checkpoint",
    "check_weights_fit",
    "checkpoint_score",
    "experiment_name",
    "hparam_differences",
    "load_checkpoint",
    "new_run_dir",
    "remove_unused_run",
    "resolve_checkpoint",
    "run_dir_of",
    "trim_metrics_csv",
    "unique_dir",
]
