"""``retina fit|validate|test|distill``: the LightningCLI (jsonargparse) behind the ``retina``
command, with the model and the datamodule in subclass mode, so any config can swap the
architecture, the loss or the dataset, and every value can be overridden on the command line
(``--model.init_args.model.init_args.base_channels=16``).

It lives apart from :mod:`retina_lightning.cli` (the command's dispatcher) so that workflows
that run it in-process (:mod:`retina_lightning.patch2image`) import it without an import cycle
(issue 12). Run folders and checkpoints come from :mod:`retina_lightning.runs`:

* every ``fit`` writes to a new ``<runs_dir>/<experiment>/<timestamp>/``; only ``fit
  --ckpt_path last`` continues a run in place. ``fit --ckpt_path <file>`` starts from that
  file's weights and training state in a new run folder, so an earlier run's
  ``last.ckpt`` and ``config.yaml`` are never overwritten (issue 15, item 2); a fit that fails
  before writing anything but its config leaves no folder behind (item 10);
* ``--ckpt_path best`` / ``last`` in a new process: the best (by the monitored score) / last
  checkpoint of the latest run of the experiment;
* each ``test`` / ``validate`` writes into a new ``<run>/test[-k]/``: results, its own
  ``config.yaml`` and its CSV log; the fit's ``config.yaml``, ``hparams.yaml`` and
  ``metrics.csv`` stay as the fit left them (item 6);
* a resumed fit drops the ``metrics.csv`` rows logged after its checkpoint (item 9);
* a checkpoint is checked against the config before Lightning loads it: another network, or
  other layer sizes, named by the hyper-parameter that differs (item 13);
* a config typo or an unknown class gives a few lines that name the key, the file it came
  from and the closest valid names, instead of the full usage (item 12).
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.runs import (
    CHECKPOINT_DIR,
    RUN_DIR_ENV,
    RunDirError,
    check_weights_fit,
    experiment_name,
    load_checkpoint,
    new_run_dir,
    remove_unused_run,
    resolve_checkpoint,
    run_dir_of,
    trim_metrics_csv,
    unique_dir,
)
from retina_lightning.tasks.distillation import RetinaTrainer
from retina_lightning.tasks.segmentation import SegmentationTask
from retina_lightning.zoo import shipped_model_of

#: set to 1 for the full parser message / the traceback of an expected error
DEBUG_ENV = "RETINA_DEBUG"
_TRAINING = ("fit", "distill")
_EVALUATION = ("test", "validate")


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class _SaveConfig(SaveConfigCallback):
    """LightningCLI's config writer, for a ``config_filename`` that is an absolute path in a
    folder that does not exist yet (an evaluation's ``<run>/test-2/config.yaml``). The folder
    is made here, on rank zero after every rank has started, so that each rank picks the same
    ``test-k`` name."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        path = Path(self.config_filename)
        if path.is_absolute() and not self.already_saved and trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        super().setup(trainer, pl_module, stage)


class RetinaCLI(LightningCLI):
    """LightningCLI with run directories, ``best``/``last`` checkpoint names across processes,
    checkpointing on validation AUROC and readable errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.run_dir: Path | None = None
        self.runs_dir = Path("runs")
        self.results_dir: Path | None = None
        self.ckpt_keyword: str | None = None
        self._made_run_dir = False
        self._checkpoint: dict[str, Any] | None = None
        if len(args) < 3:
            kwargs.setdefault("save_config_callback", _SaveConfig)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            # a fit that failed in its setup (a bad dataset root ...) leaves no empty run
            if self._made_run_dir and self.run_dir is not None:
                remove_unused_run(self.run_dir, self.runs_dir)
            raise

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, plus ``distill`` (``RetinaTrainer.distill``: SegRAVIR's
        knowledge distillation, 000 section IV-D)."""
        return {
            **LightningCLI.subcommands(),
            "distill": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
        }

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # parse errors raise, so that parse_arguments can shorten them
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="run name; default: the config path below configs/ (e.g. synthetic/unet)",
        )
        parser.add_argument("--runs_dir", type=str, default="runs", help="where runs are written")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
            sub = next((a for a in argv if a in self.subcommands()), None)
            subparser = getattr(self, "_subcommand_parsers", {}).get(sub)
            lines = explain_parse_error(str(err), argv, subparser)
            prog = f"retina {sub}" if sub else "retina"
            print(f"{prog}: error: {lines[0]}", file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
            if debugging():
                print(f"the parser's message:\n{err}", file=sys.stderr)
            else:
                print(
                    f"  (`{prog} --help` lists the options; {DEBUG_ENV}=1 shows the parser's "
                    "full message)",
                    file=sys.stderr,
                )
            raise SystemExit(2) from None
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        self.experiment = cfg.get("experiment") or experiment_name(cfg.get("config"))
        self.runs_dir = Path(cfg.get("runs_dir") or "runs")
        ckpt = cfg.get("ckpt_path")
        self.ckpt_keyword = ckpt if ckpt in ("best", "last") else None
        if self.ckpt_keyword:
            path = resolve_checkpoint(ckpt, self.runs_dir, self.experiment)
            print(f"[retina] --ckpt_path {ckpt} -> {path}", file=sys.stderr)
            cfg["ckpt_path"] = str(path)

    def _parse_ckpt_path(self) -> None:
        """The config (files + command line) defines the task; ``--ckpt_path`` supplies its
        weights. Lightning's default would replace every model argument with the values
        stored in the checkpoint, silently ignoring e.g. a sliding-window inferer given for
        testing. Instead the checkpoint is checked against the config, with a readable error
        (the network class here, the layer sizes once the model is built)."""
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt:
            return
        raw = load_checkpoint(ckpt)
        stored = (raw.get("hyper_parameters") or {}).get("model")
        wanted = self.config[sub].get("model")
        stored_cls = stored.get("class_path") if isinstance(stored, dict) else None
        inner = None
        if wanted is not None and wanted.get("init_args") is not None:
            inner = wanted["init_args"].get("model")
        wanted_cls = inner.get("class_path") if inner is not None else None
        if stored_cls and wanted_cls and stored_cls != wanted_cls:
            raise RunDirError(
                f"--ckpt_path {ckpt} holds a {stored_cls.rsplit('.', 1)[-1]} but the config builds "
                f"a {wanted_cls.rsplit('.', 1)[-1]}; use the config of that run "
                f"({run_dir_of(Path(ckpt)) / 'config.yaml'}) or a checkpoint of this model"
            )
        self._checkpoint = {
            "path": ckpt,
            "shapes": {
                k: tuple(v.shape) for k, v in raw["state_dict"].items() if hasattr(v, "shape")
            },
            "stored_model": stored,
            "configured_model": inner,
            "global_step": raw.get("global_step"),
        }

    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub]
        ckpt = cfg.get("ckpt_path")
        shared = os.environ.get(RUN_DIR_ENV)
        if shared:  # a DDP / SLURM process of a run whose directory another rank made
            self.run_dir = Path(shared)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif ckpt and sub not in _TRAINING and (shipped := shipped_model_of(ckpt)) is not None:
            # a shipped model's results go to <runs_dir>/models/<name>/, never into the package
            self.run_dir = self.runs_dir / "models" / shipped.name
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif ckpt and (sub not in _TRAINING or self.ckpt_keyword == "last"):
            self.run_dir = run_dir_of(Path(ckpt))
        else:
            self.run_dir = new_run_dir(self.runs_dir, self.experiment)
            self._made_run_dir = True
            if ckpt:
                print(
                    f"[retina] {sub} continues from {ckpt} in a new run directory "
                    "(`--ckpt_path last` resumes the latest run in place)",
                    file=sys.stderr,
                )
        trainer = cfg.get("trainer") or {}
        devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
        many = nodes > 1 or (devices not in (None, 1, "1", "auto") and devices != [0])
        if many and not shared:
            # Lightning starts the other ranks by re-running this command: they must find
            # this run directory instead of making their own.
            os.environ[RUN_DIR_ENV] = str(self.run_dir.resolve())
        cfg["experiment"] = self.experiment
        self._propagate_runs_dir(cfg)
        if sub in _EVALUATION:
            # computed by every rank before any of them writes: all pick the same name
            self.results_dir = unique_dir(self.run_dir.resolve() / sub)
            filename = str(self.results_dir / "config.yaml")
        else:
            filename = "config.yaml" if sub in _TRAINING else f"{sub}_config.yaml"
        self.save_config_kwargs.setdefault("config_filename", filename)
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
        # a fit's CSV log appends on resume: the training curves survive; an evaluation
        # logs beside its results
        csv_dir = self.results_dir or self.run_dir
        if trainer_cfg.get("logger") in (None, True):
            trainer_cfg["logger"] = RunCSVLogger(save_dir=str(csv_dir))
        configure_loggers(
            trainer_cfg.get("logger"),
            self.run_dir,
            self.experiment,
            self.config[self.subcommand],
            self.subcommand,
        )
        if self.results_dir is not None:
            loggers = trainer_cfg.get("logger")
            for logger in loggers if isinstance(loggers, list) else [loggers]:
                if isinstance(logger, RunCSVLogger):
                    logger.configure_for_run(csv_dir, self.experiment)
        callbacks = trainer_cfg.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if self.subcommand in _TRAINING and not any(
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
        from lightning.pytorch.utilities import rank_zero_only

        from retina_lightning.tracking import RunCSVLogger

        info, self._checkpoint = self._checkpoint, None  # the shapes are not needed after this
        if info is not None and isinstance(self.model, LightningModule):
            check_weights_fit(
                info["path"],
                info["shapes"],
                {k: tuple(v.shape) for k, v in self.model.state_dict().items()},
                info["stored_model"],
                info["configured_model"],
            )
        step = info.get("global_step") if info is not None else None
        if self.subcommand in _TRAINING and step is not None and rank_zero_only.rank == 0:
            # kill -9 after a checkpoint: the killed process logged steps that this one redoes
            for logger in self.trainer.loggers:
                if isinstance(logger, RunCSVLogger):
                    trim_metrics_csv(Path(logger.log_dir) / "metrics.csv", int(step))
        if isinstance(self.model, SegmentationTask) and self.results_dir is not None:
            self.model.results_dir = self.results_dir
        print(f"[retina] run directory: {self.run_dir}", file=sys.stderr)


# ---------------------------------------------------------------------------- parse errors
def _config_files(argv: list[str]) -> list[Path]:
    files, it = [], iter(argv)
    for arg in it:
        key, eq, value = arg.partition("=")
        if key in ("--config", "-c"):
            value = value if eq else next(it, "")
            if value and Path(value).is_file():
                files.append(Path(value))
    return files


def _find_key(tree: Any, name: str, prefix: str = "") -> str | None:
    """The dotted path of the first mapping key ``name`` in ``tree`` (depth first)."""
    items = (
        tree.items()
        if isinstance(tree, dict)
        else enumerate(tree)
        if isinstance(tree, list)
        else ()
    )
    for key, value in items:
        path = prefix if isinstance(tree, list) else f"{prefix}.{key}" if prefix else str(key)
        if key == name and isinstance(tree, dict):
            return path
        found = _find_key(value, name, path)
        if found:
            return found
    return None


def _where(argv: list[str], name: str, under: str | None = None, value: str | None = None) -> str:
    """Where a key ``name`` (below the top-level key ``under``), or a ``value``, came from:
    ``on the command line`` (applied last, so it wins), else ``in bad.yaml (at
    trainer.max_epoch)`` for the last config file holding it, else nothing."""
    import yaml

    files = _config_files(argv)
    for arg in argv:
        if value is not None and value in arg and Path(arg) not in files:
            return "on the command line"
        if value is None and arg.startswith("--") and name in arg[2:].split("=")[0].split("."):
            return "on the command line"
    for path in reversed(files):
        try:
            text = path.read_text()
            tree = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if value is not None:
            if value in text:
                return f"in {path}"
            continue
        if isinstance(tree, dict):
            found = _find_key(tree.get(under), name, under) if under else None
            found = found or _find_key(tree, name)
            if found:
                return f"in {path} (at {found})"
    return ""


def _close(name: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"did you mean: {', '.join(matches)}?" if matches else ""


def _parameters(class_path: str) -> list[str]:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _names(module: str) -> list[str]:
    """The classes of ``module`` and, for a package, its submodules."""
    import importlib
    import pkgutil

    try:
        found = importlib.import_module(module)
    except ImportError:
        return []
    names = {n for n, v in vars(found).items() if not n.startswith("_") and isinstance(v, type)}
    names |= {m.name for m in pkgutil.iter_modules(getattr(found, "__path__", []))}
    return sorted(n for n in names if not n.startswith("_"))


def explain_parse_error(message: str, argv: list[str], subparser: Any = None) -> list[str]:
    """A jsonargparse error in a few lines: the unknown key or class, where it came from (the
    config file, else the command line) and the closest valid names."""
    parser_key = re.search(r'Parser key "([^"]+)"', message)
    under = parser_key.group(1).split(".")[0] if parser_key else None
    if found := re.search(r"does not accept option '([^']+)'", message):
        # a key the command does not have: trainer.max_epoch
        dotted = found.group(1)
        keys = [a.dest for a in getattr(subparser, "_actions", []) if a.dest]
        section = dotted.rsplit(".", 1)[0] + "." if "." in dotted else ""
        near = [k for k in keys if k.startswith(section)] or keys
        where = _where(argv, dotted.rsplit(".", 1)[-1], dotted.split(".")[0])
        hint = _close(dotted, near)
        return [f"unknown option '{dotted}' {where}".rstrip(), *([hint] if hint else [])]
    if found := re.search(r"Option '([^']+)' is not accepted", message):
        # an init argument the class does not take: UNet(base_channel=...)
        name = found.group(1).split(".")[-1]
        owners = re.findall(r"class_path '([\w.]+)'", message)
        owner = owners[-1] if owners else ""
        short = owner.rsplit(".", 1)[-1] or "the class"
        params = _parameters(owner) if owner else []
        hint = _close(name, params)
        out = [f"{short} takes no argument '{name}' {_where(argv, name, under)}".rstrip()]
        out += [hint] if hint else []
        out += [f"{short} takes: {', '.join(params)}"] if params else []
        return out
    if found := re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message):
        # an unknown class path: retina_lightning.models.UNett
        module, name = found.groups()
        names = _names(module)
        hint = _close(name, names)
        where = _where(argv, name, value=f"{module}.{name}")
        out = [f"no class or module '{name}' in {module} {where}".rstrip()]
        out += [hint] if hint else [f"{module} has: {', '.join(names)}"] if names else []
        return out
    keys = re.findall(r'Parser key "([^"]+)"', message)
    expected = re.findall(r"Expected a <class '([\w.]+)'>", message)
    got = re.search(r"Got value: (.*)|val='(.*)'\)$|Given value: (.*)", message, re.M)
    if keys and expected:
        # a value of the wrong type: --trainer.max_epochs=abc
        key = ".".join(keys)
        types = [t.rsplit(".", 1)[-1] for t in expected if t != "NoneType"] or ["None"]
        value = next((g for g in got.groups() if g is not None), "?") if got else "?"
        where = _where(argv, keys[-1].split(".")[-1], keys[0].split(".")[0])
        return [
            f"{key}: expected {' or '.join(dict.fromkeys(types))}, got {value} {where}".rstrip()
        ]
    # anything else: the first line and the innermost specific ones
    boiler = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class")
    nesting = ("Parser key", "Problem with given class_path")
    lines = [ln.strip(" -") for ln in message.strip().splitlines()]
    specific = [ln for ln in lines[1:] if ln and not ln.startswith(boiler + nesting)]
    return [lines[0] if lines else message, *specific[-2:]]


def run(args: list[str] | None = None) -> RetinaCLI:
    """Parse ``args`` (``sys.argv`` when ``None``) and run the Lightning command: what
    ``retina fit|validate|test|distill`` do, for callers that want the CLI object (its
    ``run_dir``, ``trainer``, ``model``) and the exceptions."""
    owns_env = RUN_DIR_ENV not in os.environ
    try:
        return RetinaCLI(
            SegmentationTask,
            RetinaDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_class=RetinaTrainer,
            args=args,
            seed_everything_default=0,
            parser_kwargs={"default_env": False},
        )
    finally:
        if owns_env:
            os.environ.pop(RUN_DIR_ENV, None)
