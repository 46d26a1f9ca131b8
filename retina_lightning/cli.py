"""The ``retina`` command.

``retina fit|validate|test|predict --config configs/<dataset>/<method>.yaml`` is a
LightningCLI (jsonargparse) with the model and the datamodule in subclass mode, so any config
can swap the architecture, the loss or the dataset, and every value can be overridden on the
command line (``--model.init_args.model.init_args.base_channels=16``). Small commands that are
not a Trainer call live beside it: ``retina data check``.

Run directories: every ``fit`` writes to a new ``<runs_dir>/<experiment>/<timestamp>/``
(``experiment`` defaults to the config's path below ``configs/``, e.g. ``synthetic/unet``), so
a run never overwrites an earlier one. ``--ckpt_path best`` / ``last`` in a new process means
the best / last checkpoint of the latest run of that experiment; ``fit --ckpt_path last``
resumes that run in place. Evaluation results go to ``<run>/test/`` (``test-2/``... when
repeated).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.tasks.distillation import RetinaTrainer
from retina_lightning.tasks.segmentation import SegmentationTask

CHECKPOINT_DIR = "checkpoints"
#: set by the process that creates a multi-process run's directory; inherited by the other ranks
RUN_DIR_ENV = "RETINA_RUN_DIR"


class RunDirError(FileNotFoundError):
    """No run / checkpoint matches what the command line asked for."""


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
    candidate, k = path, 1
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


def resolve_checkpoint(which: str, runs_dir: Path, experiment: str) -> Path:
    """The ``best`` or ``last`` checkpoint of the latest run of ``experiment`` that has one."""
    root = runs_dir / experiment
    runs = sorted((p for p in root.glob("*") if (p / CHECKPOINT_DIR).is_dir()), reverse=True)
    for run in runs:
        ckpts = run / CHECKPOINT_DIR
        if which == "last" and (ckpts / "last.ckpt").is_file():
            return ckpts / "last.ckpt"
        if which == "best":
            best = sorted(ckpts.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
            if best:
                return best[-1]
            if (ckpts / "last.ckpt").is_file():  # no validation monitor: last is best
                return ckpts / "last.ckpt"
    raise RunDirError(
        f"--ckpt_path {which}: no checkpoint found under {root}/*/{CHECKPOINT_DIR}/ "
        f"(experiment {experiment!r}, runs_dir {str(runs_dir)!r}); train first with "
        f"`retina fit --config <config>` or pass a checkpoint file"
    )


def run_dir_of(ckpt: Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``; a loose checkpoint -> its folder."""
    ckpt = ckpt.resolve()
    return ckpt.parent.parent if ckpt.parent.name == CHECKPOINT_DIR else ckpt.parent


class RetinaCLI(LightningCLI):
    """LightningCLI with run directories, ``best``/``last`` checkpoint names across processes,
    and checkpointing on validation AUROC."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, plus ``distill`` (``RetinaTrainer.distill``: SegRAVIR's
        knowledge distillation, 000 section IV-D)."""
        return {
            **LightningCLI.subcommands(),
            "distill": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="run name; default: the config path below configs/ (e.g. synthetic/unet)",
        )
        parser.add_argument("--runs_dir", type=str, default="runs", help="where runs are written")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        self.experiment = cfg.get("experiment") or experiment_name(cfg.get("config"))
        self.runs_dir = Path(cfg.get("runs_dir") or "runs")
        ckpt = cfg.get("ckpt_path")
        if ckpt in ("best", "last"):
            path = resolve_checkpoint(ckpt, self.runs_dir, self.experiment)
            print(f"[retina] --ckpt_path {ckpt} -> {path}", file=sys.stderr)
            cfg["ckpt_path"] = str(path)
        elif ckpt and not Path(ckpt).is_file():
            raise RunDirError(f"--ckpt_path {ckpt!r}: no such file (or use 'best' / 'last')")

    def _parse_ckpt_path(self) -> None:
        """The config (files + command line) defines the task; ``--ckpt_path`` supplies its
        weights. Lightning's default would replace every model argument with the values
        stored in the checkpoint, silently ignoring e.g. a sliding-window inferer given for
        testing. Instead the checkpoint is checked against the config, with a readable error."""
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt:
            return
        import torch

        try:
            raw = torch.load(ckpt, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
            raise RunDirError(
                f"--ckpt_path {ckpt}: not a readable checkpoint ({type(err).__name__}: {err})"
            ) from err
        if not isinstance(raw, dict) or "state_dict" not in raw:
            raise RunDirError(
                f"--ckpt_path {ckpt}: not a Lightning checkpoint (no 'state_dict'); pass a .ckpt "
                "written by `retina fit` (runs/<experiment>/<timestamp>/checkpoints/)"
            )
        stored = (raw.get("hyper_parameters") or {}).get("model")
        wanted = self.config[sub].get("model")
        stored_cls = stored.get("class_path") if isinstance(stored, dict) else None
        wanted_cls = None
        if wanted is not None and wanted.get("init_args") is not None:
            inner = wanted["init_args"].get("model")
            wanted_cls = inner.get("class_path") if inner is not None else None
        if stored_cls and wanted_cls and stored_cls != wanted_cls:
            raise RunDirError(
                f"--ckpt_path {ckpt} holds a {stored_cls.rsplit('.', 1)[-1]} but the config builds "
                f"a {wanted_cls.rsplit('.', 1)[-1]}; use the config of that run "
                f"({run_dir_of(Path(ckpt)) / 'config.yaml'}) or a checkpoint of this model"
            )

    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub]
        ckpt = cfg.get("ckpt_path")
        shared = os.environ.get(RUN_DIR_ENV)
        if shared:  # a DDP / SLURM process of a run whose directory another rank made
            self.run_dir = Path(shared)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif ckpt:
            self.run_dir = run_dir_of(Path(ckpt))
        else:
            self.run_dir = new_run_dir(self.runs_dir, self.experiment)
        trainer = cfg.get("trainer") or {}
        devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
        many = nodes > 1 or (devices not in (None, 1, "1", "auto") and devices != [0])
        if many and not shared:
            # Lightning starts the other ranks by re-running this command: they must find
            # this run directory instead of making their own.
            os.environ[RUN_DIR_ENV] = str(self.run_dir.resolve())
        cfg["experiment"] = self.experiment
        self._propagate_runs_dir(cfg)
        self.save_config_kwargs.setdefault(
            "config_filename", "config.yaml" if sub in ("fit", "distill") else f"{sub}_config.yaml"
        )
        self.save_config_kwargs.setdefault("overwrite", True)

    def _propagate_runs_dir(self, cfg: Any) -> None:
        """``--runs_dir`` also applies to the ``<experiment>@best`` references of the
        distillation teacher and of the TransferLearning callback."""
        nodes = [cfg.get("model")]
        callbacks = (cfg.get("trainer") or {}).get("callbacks") or []
        nodes += callbacks if isinstance(callbacks, list) else [callbacks]
        for node in nodes:
            init = node.get("init_args") if node is not None and hasattr(node, "get") else None
            if init is not None and init.get("runs_dir") == "runs":
                init["runs_dir"] = str(self.runs_dir)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        from retina_lightning.tracking import RunCSVLogger, configure_loggers

        trainer_cfg = self._get(self.config_init, "trainer", default={})
        trainer_cfg["default_root_dir"] = str(self.run_dir)
        if trainer_cfg.get("precision") is None:
            from retina_lightning.precision import default_precision, describe_precision

            accelerator = trainer_cfg.get("accelerator")
            if not isinstance(accelerator, str):  # an Accelerator instance: ask Lightning
                accelerator = None
            trainer_cfg["precision"] = default_precision(accelerator)
            print(describe_precision(trainer_cfg["precision"], accelerator), file=sys.stderr)
        if trainer_cfg.get("logger") in (None, True):
            # appends on resume and after `retina test`: the training curves survive
            trainer_cfg["logger"] = RunCSVLogger(save_dir=str(self.run_dir))
        configure_loggers(
            trainer_cfg.get("logger"),
            self.run_dir,
            self.experiment,
            self.config[self.subcommand],
            self.subcommand,
        )
        callbacks = trainer_cfg.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if self.subcommand in ("fit", "distill") and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            ckpt_dir = self.run_dir / CHECKPOINT_DIR
            callbacks += [
                ModelCheckpoint(
                    dirpath=ckpt_dir,
                    filename="best-epoch{epoch:03d}-auroc{val/auroc:.4f}",
                    monitor="val/auroc",
                    mode="max",
                    auto_insert_metric_name=False,
                ),
                # every epoch, whatever the monitor says: what `--ckpt_path last` resumes
                ModelCheckpoint(dirpath=ckpt_dir, filename="last", enable_version_counter=False),
            ]
        trainer_cfg["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        if isinstance(self.model, SegmentationTask) and self.subcommand in ("test", "validate"):
            self.model.results_dir = unique_dir(self.run_dir / self.subcommand)
        print(f"[retina] run directory: {self.run_dir}", file=sys.stderr)


def _data_main(argv: list[str]) -> int:
    import argparse

    from retina_lightning.data import DATASETS
    from retina_lightning.data.check import check_dataset, format_report
    from retina_lightning.measure import DEFAULT_WIDTH_METHOD, WIDTH_METHODS

    parser = argparse.ArgumentParser(prog="retina data", description="Inspect a dataset folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a folder and print counts, sizes, problems")
    check.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    check.add_argument("--root", help="dataset folder (not needed for synthetic)")
    widths = sub.add_parser(
        "widths",
        help="mean artery / vein diameters of the ground-truth A/V maps (SegRAVIR 000 IV-C); "
        "with --pred, of predicted maps too and their MAPE (000 eq. 8, Table VI)",
    )
    widths.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    widths.add_argument("--root", help="dataset folder (not needed for synthetic)")
    widths.add_argument("--subset", help="subset to measure (default: the first one)")
    widths.add_argument(
        "--pred",
        help="folder of predicted maps matched by image name: <name>_av.png (retina predict), "
        "<name>_probs.npy / <name>.npy (class probabilities, argmax), <name>.png (labels) or "
        "<name>_prob.png (vessel probability, binary models)",
    )
    widths.add_argument(
        "--method",
        choices=WIDTH_METHODS,
        default=DEFAULT_WIDTH_METHOD,
        help="medial_axis: twice the maximum distance to the medial axis (000, default); "
        "boundary: twice the distance from the medial axis to the background (older measure)",
    )
    widths.add_argument("--pixel_size_um", type=float, help="override the dataset's pixel size")
    ns = parser.parse_args(argv)
    dataset = DATASETS[ns.dataset](root=ns.root) if ns.root else DATASETS[ns.dataset]()
    if ns.command == "widths":
        subset = ns.subset or dataset.subsets()[0]
        return _print_widths(dataset, subset, ns.pred, ns.method, ns.pixel_size_um)
    report = check_dataset(dataset)
    print(format_report(report))
    return 1 if getattr(report, "problems", None) else 0


def _print_widths(
    dataset: Any,
    subset: str,
    pred: str | None = None,
    method: str = "medial_axis",
    pixel_size_um: float | None = None,
) -> int:
    import numpy as np

    from retina_lightning.data.base import DatasetError
    from retina_lightning.measure import (
        RAVIR_REFERENCE_UM,
        compare_widths,
        dataset_av_widths,
        find_prediction,
        read_prediction,
    )

    samples = dataset.load(subset)
    size = pixel_size_um or (samples[0].pixel_size_um if samples else None)
    means = dataset_av_widths(samples, size, method)
    unit = "um" if size else "px"
    print(f"{dataset.name} {subset}: {len(samples)} images, ground-truth A/V maps ({method})")
    for name in ("artery", "vein"):
        v = means[name][~np.isnan(means[name])]
        line = f"  {name:6s} mean diameter {v.mean():7.2f} +- {v.std(ddof=1):5.2f} {unit}"
        if dataset.name == "RAVIR":
            ref, ref_sd = RAVIR_REFERENCE_UM[name]
            line += f"   (000 Table VI, RAVIR test set: {ref:.2f} +- {ref_sd:.2f} um)"
        print(line)
    if pred is None:
        return 0
    folder = Path(pred)
    if not folder.is_dir():
        print(f"retina data widths: error: --pred {pred!r} is not a folder", file=sys.stderr)
        return 2
    names, preds, refs, kinds, missing = [], [], [], set(), []
    try:
        for sample in samples:
            path = find_prediction(folder, sample.name)
            if path is None:
                missing.append(sample.name)
                continue
            labels, is_av = read_prediction(path)
            kinds.add(is_av)
            names.append(sample.name)
            preds.append(labels)
            refs.append(sample.av if is_av else (sample.av != 0))
    except DatasetError as e:
        print(f"retina data widths: error: {e}", file=sys.stderr)
        return 2
    if not names:
        print(
            f"retina data widths: error: --pred {pred!r} holds no prediction for the "
            f"{len(samples)} images of {dataset.name} {subset} (looked for <name>_av.png, "
            f"<name>_probs.npy, <name>.npy, <name>.png, <name>_prob.png; e.g. "
            f"{samples[0].name if samples else '?'})",
            file=sys.stderr,
        )
        return 2
    if len(kinds) > 1:
        print(
            f"retina data widths: error: --pred {pred!r} mixes A/V maps and binary vessel maps",
            file=sys.stderr,
        )
        return 2
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(
            f"retina data widths: warning: no prediction for {len(missing)} image(s) ({shown}); "
            "they are left out",
            file=sys.stderr,
        )
    try:
        result = compare_widths(names, preds, refs, size, method, av=kinds == {True})
    except ValueError as e:
        print(f"retina data widths: error: {e}", file=sys.stderr)
        return 2
    print(
        f"predicted maps in {folder}: {len(names)} of {len(samples)} images; MAPE = 000 eq. (8) "
        "over images of mean diameters"
    )
    for name, c in result.items():
        p = c.pred[~np.isnan(c.pred)]
        pm = f"{p.mean():7.2f}" if p.size else "    nan"
        print(
            f"  {name:6s} predicted {pm} {c.unit}  reference {c.ref.mean():7.2f} {c.unit}  "
            f"MAPE {c.mape:6.2f} %  (N={len(c.images)})"
        )
    return 0


def _predict_main(argv: list[str]) -> int:
    """``retina predict --ckpt_path FILE|best|last [--config X | --experiment E] --input ...``:
    ``best`` / ``last`` name a checkpoint of the latest run of the experiment, as for test."""
    from retina_lightning.predict import predict_main

    rest, config, experiment, runs_dir = [], None, None, "runs"
    it = iter(argv)
    for arg in it:
        key, _, value = arg.partition("=")
        if key in ("--config", "--experiment", "--runs_dir"):
            value = value or next(it, "")
            if key == "--config":
                config = value
            elif key == "--experiment":
                experiment = value
            else:
                runs_dir = value
        else:
            rest.append(arg)
    for i, arg in enumerate(rest):
        key, _, value = arg.partition("=")
        if key == "--ckpt_path":
            which = value or (rest[i + 1] if i + 1 < len(rest) else "")
            if which in ("best", "last"):
                name = experiment or experiment_name([config] if config else None)
                path = resolve_checkpoint(which, Path(runs_dir), name)
                print(f"[retina] --ckpt_path {which} -> {path}", file=sys.stderr)
                if value:
                    rest[i] = f"--ckpt_path={path}"
                else:
                    rest[i + 1] = str(path)
    return predict_main(rest)


def _leaderboard_main(argv: list[str]) -> int:
    from retina_lightning.leaderboard import leaderboard_main

    return leaderboard_main(argv)


def _patch2image_main(argv: list[str]) -> int:
    from retina_lightning.patch2image import main as patch2image

    patch2image(argv)
    return 0


def main(args: list[str] | None = None) -> Any:
    """Entry point of the ``retina`` console script; tests call ``main([...])``."""
    argv = list(sys.argv[1:] if args is None else args)
    commands = {
        "data": _data_main,
        "predict": _predict_main,
        "leaderboard": _leaderboard_main,
        "patch2image": _patch2image_main,
    }
    if argv and argv[0] in commands:
        try:
            code = commands[argv[0]](argv[1:])
        except RunDirError as err:
            print(f"error: {err}", file=sys.stderr)
            code = 2
        if args is None:
            sys.exit(code)
        return code
    owns_env = RUN_DIR_ENV not in os.environ
    try:
        cli = RetinaCLI(
            SegmentationTask,
            RetinaDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_class=RetinaTrainer,
            args=args if args is None else argv,
            seed_everything_default=0,
            parser_kwargs={"default_env": False},
        )
    finally:
        if owns_env:
            os.environ.pop(RUN_DIR_ENV, None)
    # the console script passes the return value to sys.exit: only tests get the CLI object
    return None if args is None else cli


if __name__ == "__main__":
    main()
