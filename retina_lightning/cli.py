"""The ``retina`` command: a dispatcher.

``retina fit|validate|test|distill --config configs/<dataset>/<method>.yaml`` run the
LightningCLI of :mod:`retina_lightning.lightning_cli` (run directories, ``--ckpt_path
best|last``, checkpoint checks); run folders and checkpoint resolution are in
:mod:`retina_lightning.runs`. Small commands that are not a Trainer call live beside it:
``retina data check|widths``, ``retina predict``, ``retina leaderboard``, ``retina patch2image``.

Expected errors (a run or checkpoint that does not exist or does not fit the config, a dataset
folder that does not match its layout, a non-finite loss) end the console command with one
message, ``retina: error: ...``, and a non-zero exit code (2: what the command line named, 1:
the data or the training); ``RETINA_DEBUG=1`` shows the traceback instead. Called with a list
(``main([...])``, tests and workflows) the exceptions propagate (issue 15, item 11).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from retina_lightning.data.base import DatasetError
from retina_lightning.lightning_cli import RetinaCLI, debugging, run
from retina_lightning.runs import (  # noqa: F401 - re-exported: tests and scripts import them here
    CHECKPOINT_DIR,
    RUN_DIR_ENV,
    RunDirError,
    experiment_name,
    new_run_dir,
    resolve_checkpoint,
    run_dir_of,
    unique_dir,
)
from retina_lightning.tasks.segmentation import NonFiniteLossError
from retina_lightning.zoo import ZooError, expand_model_option

#: errors the suite raises on purpose, with a message that says what to do
EXPECTED_ERRORS = (RunDirError, DatasetError, NonFiniteLossError, ZooError)


def _data_main(argv: list[str]) -> int:
    import argparse

    import yaml

    from retina_lightning.data import DATASETS
    from retina_lightning.data.check import check_dataset, format_report
    from retina_lightning.data.datasets import build_dataset
    from retina_lightning.measure import DEFAULT_WIDTH_METHOD, WIDTH_METHODS

    av_names = sorted(n for n, cls in DATASETS.items() if getattr(cls, "has_av", False))

    def option(text: str) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. labels=vk), got {text!r}")
        return key, yaml.safe_load(value)

    def dataset_args(p: argparse.ArgumentParser, names: list[str], what: str) -> None:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--dataset", choices=names, help=what)
        which.add_argument(
            "--config",
            help="take the dataset (class and init_args) from a config file: a retina config "
            "(data.init_args.dataset) or a class_path / init_args node",
        )
        p.add_argument("--root", help="dataset folder (not needed for synthetic)")
        p.add_argument(
            "--init_arg",
            type=option,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a dataset option (init_args), repeatable: e.g. labels=vk for STARE",
        )

    parser = argparse.ArgumentParser(prog="retina data", description="Inspect a dataset folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a folder and print counts, sizes, problems")
    dataset_args(check, sorted(DATASETS), "a dataset reader")
    widths = sub.add_parser(
        "widths",
        help="mean artery / vein diameters of the ground-truth A/V maps (SegRAVIR 000 IV-C); "
        "with --pred, of predicted maps too and their MAPE (000 eq. 8, Table VI)",
    )
    dataset_args(widths, av_names, f"a dataset with artery/vein labels: {', '.join(av_names)}")
    widths.add_argument("--subset", help="subset to measure (default: the first one)")
    widths.add_argument(
        "--pred",
        help="folder of predicted maps matched by image name: <name>_av.png or <name>_mask.png "
        "(retina predict: the segmentation its width maps measure, at its --threshold), "
        "<name>_probs.npy / <name>.npy (class probabilities, argmax), <name>.png (labels) or "
        "<name>_prob.png (vessel probability >= 0.5, binary models)",
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
    try:
        dataset = build_dataset(ns.dataset, ns.root, ns.config, dict(ns.init_arg))
        if ns.command == "widths":
            subset = ns.subset or dataset.subsets()[0]
            return _print_widths(dataset, subset, ns.pred, ns.method, ns.pixel_size_um)
    except DatasetError as e:
        print(f"retina data {ns.command}: error: {e}", file=sys.stderr)
        return 2
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
    if not getattr(dataset, "has_av", False) or any(s.av is None for s in samples):
        from retina_lightning.data import DATASETS

        names = ", ".join(sorted(n for n, c in DATASETS.items() if getattr(c, "has_av", False)))
        raise DatasetError(
            f"{dataset.name} ({subset}) has no artery/vein labels; datasets with A/V labels: "
            f"{names}"
        )
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
            "<name>_mask.png, "
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
    from retina_lightning.predict import predict_main

    return predict_main(argv)


def _leaderboard_main(argv: list[str]) -> int:
    from retina_lightning.leaderboard import leaderboard_main

    return leaderboard_main(argv)


def _models_main(argv: list[str]) -> int:
    from retina_lightning.zoo import models_main

    return models_main(argv)


def _patch2image_main(argv: list[str]) -> int:
    from retina_lightning.patch2image import main as patch2image

    patch2image(argv)
    return 0


#: every command of ``retina`` with its one-line description (``retina --help``)
COMMANDS = {
    "fit": "train a model: a new run folder runs/<experiment>/<timestamp>/ (LightningCLI)",
    "validate": "score a checkpoint on the validation images (LightningCLI)",
    "test": "score a checkpoint on the test images: metrics.json, per_image.csv, figures",
    "distill": "train a student from a teacher checkpoint (SegRAVIR 000 IV-D; LightningCLI)",
    "predict": "segment new images with a checkpoint: maps, overlays, widths, predictions.csv",
    "data": "check a dataset folder (data check) or measure vessel widths (data widths)",
    "leaderboard": "compare runs: tables, significance tests, cross-dataset matrix (cross)",
    "patch2image": "004's patch -> image workflow: patch phase, transfer, image phases, table",
    "models": "list the trained models shipped in the package, or print one's model card",
}


def print_commands() -> None:
    """``retina --help``: every command, not only LightningCLI's."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: retina <command> [--config FILE ...] [options]",
        "",
        "commands (retina <command> --help for the options of one):",
        *(f"  {name:{width}s}  {text}" for name, text in COMMANDS.items()),
        "",
        "fit, validate, test and distill take --config (several compose left to right) and",
        "--print_config; any config value can be overridden, e.g. --trainer.max_epochs=5.",
        "retina test --model NAME and retina predict --model NAME run a shipped model.",
        "RETINA_DEBUG=1 shows the traceback of an expected error.",
    ]
    print("\n".join(lines))


def main(args: list[str] | None = None) -> Any:
    """Entry point of the ``retina`` console script; tests call ``main([...])`` and get the
    CLI object of a Lightning command (or a sub-command's exit code) and its exceptions."""
    argv = list(sys.argv[1:] if args is None else args)
    commands = {
        "data": _data_main,
        "predict": _predict_main,
        "leaderboard": _leaderboard_main,
        "patch2image": _patch2image_main,
        "models": _models_main,
    }
    if not argv or argv[0] in ("-h", "--help"):
        print_commands()
        if args is None:
            sys.exit(0 if argv else 2)
        return 0 if argv else 2
    try:
        if argv and argv[0] in commands:
            try:
                code = commands[argv[0]](argv[1:])
            except RunDirError as err:
                print(f"retina: error: {err}", file=sys.stderr)
                code = 2
            if args is None:
                sys.exit(code)
            return code
        expanded = expand_model_option(argv)  # test|validate --model NAME: a shipped model
        if args is None:
            sys.argv[1:] = expanded  # LightningCLI reads sys.argv when given no args
        cli = run(None if args is None else expanded)
    except EXPECTED_ERRORS as err:
        if args is not None or debugging():
            raise
        print(f"retina: error: {err}", file=sys.stderr)
        print("(RETINA_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(2 if isinstance(err, RunDirError) else 1)
    # the console script passes the return value to sys.exit: only tests get the CLI object
    return None if args is None else cli


__all__ = ["EXPECTED_ERRORS", "RetinaCLI", "main"]


if __name__ == "__main__":
    main()
