"""``retina predict``: the command line, and one image at a time from Python.

The command runs Lightning's predict loop: ``Trainer.predict(task, FolderDataModule)`` with a
:class:`~retina_lightning.predict.writer.MapWriter` callback, the task and conditioning
rebuilt from the checkpoint (:func:`~retina_lightning.predict.checkpoint.load_predictor`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retina_lightning.data.base import DatasetError
from retina_lightning.data.resolution import parse_fov_diameter
from retina_lightning.predict.checkpoint import PredictError, Predictor, load_predictor, warn
from retina_lightning.predict.folder import (
    FOV_STEM_PATTERNS,
    OUTPUT_SUFFIXES,
    FolderDataModule,
    find_images,
    match_fov,
    read_item,
    stem,
)
from retina_lightning.predict.writer import MapOptions, MapWriter, write_maps
from retina_lightning.runs import RunDirError, experiment_name, resolve_checkpoint


def predict_image(
    predictor: Predictor,
    image_path: Path,
    output: Path,
    fov_path: Path | None,
    width: bool = False,
    pixel_size_um: float | None = None,
    save_probs: bool = False,
) -> dict[str, Any]:
    """Segment one file and write its maps (the command's :func:`read_item` and
    :func:`write_maps` around ``predictor``); returns its ``predictions.csv`` row."""
    import time

    item = read_item(image_path, fov_path)
    fov = item["fov"].numpy()
    image = item["image"].permute(1, 2, 0).numpy()
    probs = predictor(image, fov)
    row = {"name": item["name"], "file": item["file"], "fov": item["fov_source"]}
    options = MapOptions(predictor.threshold, predictor.is_av, width, pixel_size_um, save_probs)
    row.update(write_maps(probs, image, fov, item["name"], output, options))
    row["seconds"] = time.perf_counter() - item["start"]
    return row


# ---------------------------------------------------------------------------- parser


def _threshold(text: str) -> float | None:
    if text in ("ckpt", "checkpoint", "opt"):
        return None
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected 'ckpt' (the validation-optimal threshold stored in the checkpoint) or "
            f"a number in (0, 1], got {text!r}"
        ) from e
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"the threshold must lie in (0, 1], got {value}")
    return value


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}") from e
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retina predict",
        description="Segment fundus images with a trained checkpoint (model, preprocessing and "
        "validation-optimal threshold are read from it) through Lightning's predict loop.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--ckpt_path",
        help="a .ckpt written by `retina fit`, or best / last: the best-scoring or the last "
        "checkpoint of the experiment's latest run (with --config or --experiment)",
    )
    which.add_argument(
        "--model",
        help="a model shipped in the package (`retina models` lists them: drive, chase_db1, "
        "drive+chase_db1), instead of --ckpt_path",
    )
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the maps and predictions.csv")
    parser.add_argument(
        "--config",
        help="the training config: with --ckpt_path best|last, its experiment's latest run",
    )
    parser.add_argument("--experiment", help="experiment name for --ckpt_path best|last")
    parser.add_argument("--runs_dir", default="runs", help="where runs are (default: runs)")
    parser.add_argument(
        "--fov",
        help="FOV mask file, or folder of masks matched by stem (<stem>, <stem>_mask, ...); "
        "default: derived from each image by thresholding its dark surround",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="'ckpt' (default: the threshold chosen on validation by the task's "
        "threshold_criterion) or a number",
    )
    parser.add_argument("--width", action="store_true", help="also write vessel width maps")
    parser.add_argument("--pixel_size_um", type=_positive(float), help="microns per pixel")
    parser.add_argument(
        "--save_probs",
        action="store_true",
        help="also write <stem>_probs.npy: the float32 class probabilities (K, H, W)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    parser.add_argument("--tile_size", type=_positive(int), help="sliding-window tile size")
    parser.add_argument("--stride", type=_positive(int), help="sliding-window stride")
    parser.add_argument("--tta", action="store_true", help="average over flipped inputs")
    parser.add_argument(
        "--fov_diameter",
        type=parse_fov_diameter,
        default="ckpt",
        help="resample each image so its FOV is this many pixels across before the network "
        "(maps are written at the image's own size): 'ckpt' (default: the model's training "
        "setting, else its training images' median FOV diameter, followed when an image's FOV "
        "differs from it by more than 5 %%), 'native', or a number such as 540 (DRIVE's scale)",
    )
    parser.add_argument(
        "--num_workers", type=int, default=0, help="DataLoader workers reading the images"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="--output may hold an earlier run's results: delete them (predictions.csv and "
        "<stem>_prob/_mask/_overlay/_width/_av.png) first; without it such a folder is refused",
    )
    return parser


# ----------------------------------------------------------------------- the output


def earlier_results(output: Path) -> list[Path]:
    """What an earlier ``retina predict`` left in ``output``: ``predictions.csv`` and the
    ``<stem>_prob.png`` & co. maps (issue 15 item 1: a second run into the same folder
    replaced some of them and left the others, mixing two runs)."""
    if not output.is_dir():
        return []
    names = (*(s + ".png" for s in OUTPUT_SUFFIXES), "_probs.npy")
    return sorted(
        p
        for p in output.iterdir()
        if p.is_file() and (p.name == "predictions.csv" or p.name.endswith(names))
    )


def _claim_output(output: Path, overwrite: bool) -> list[Path]:
    """Refuse an output folder holding earlier results; with ``overwrite`` return them, to
    delete once the model has loaded (only those files: the inputs of a folder predicted into
    itself stay)."""
    found = earlier_results(output)
    if found and not overwrite:
        shown = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise PredictError(
            f"--output {str(output)!r} already holds the results of an earlier run "
            f"({len(found)} file(s): {shown}); writing into it would mix two runs. Choose a "
            "new folder, or pass --overwrite to delete those results first"
        )
    return found


def _derived_fov_images(images: list[Path], fov: Path | None) -> list[Path]:
    """The images a ``--fov`` folder has no mask for (their FOV is derived)."""
    if fov is None or not fov.is_dir():
        return []
    return [p for p in images if match_fov(p, fov) is None]


def _check_unique_stems(images: Iterable[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in images:
        name = stem(p)
        if name in seen:
            raise PredictError(
                f"{seen[name].name!r} and {p.name!r} have the same name stem {name!r}; their "
                "outputs would overwrite each other. Rename one or predict them separately"
            )
        seen[name] = p


def _checkpoint_path(args: argparse.Namespace) -> str:
    """``--model NAME``: the shipped model's checkpoint; ``--ckpt_path best|last``: a
    checkpoint of the experiment's latest run, as for test."""
    if args.model is not None:
        from retina_lightning.zoo import ZooError, get

        try:
            return str(get(args.model).checkpoint)
        except ZooError as e:
            raise PredictError(f"--model: {e}") from e
    if args.ckpt_path not in ("best", "last"):
        return args.ckpt_path
    name = args.experiment or experiment_name([args.config] if args.config else None)
    path = resolve_checkpoint(args.ckpt_path, Path(args.runs_dir), name)
    print(f"[retina] --ckpt_path {args.ckpt_path} -> {path}", file=sys.stderr)
    return str(path)


@contextmanager
def _quiet_lightning():
    """Lightning's start-up lines (GPU available ..., accelerator) are noise here."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def run_predict_loop(
    predictor: Predictor,
    images: list[Path],
    fov: Path | None,
    writer: MapWriter,
    progress: bool = True,
    num_workers: int = 0,
) -> None:
    """``Trainer.predict`` of ``predictor``'s task over ``images`` with ``writer``."""
    from lightning import Trainer

    device = predictor.device
    with _quiet_lightning():
        trainer = Trainer(
            accelerator="cuda" if device.type == "cuda" else "cpu",
            devices=[device.index] if device.index is not None else 1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            callbacks=[writer],
            default_root_dir=writer.output,
        )
        data = FolderDataModule(images, fov, predictor.data, num_workers=num_workers)
        with warnings.catch_warnings():
            # an unreadable image's step returns None on purpose (MapWriter reports it)
            warnings.filterwarnings("ignore", message="predict returned None")
            trainer.predict(predictor.task, datamodule=data, return_predictions=False)


def predict_main(argv: list[str]) -> int:
    """``retina predict ...``; returns the exit status (0 ok, 1 some image failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        if args.pixel_size_um is not None and not args.width:
            warn("--pixel_size_um is only used with --width")
        images = find_images(args.input)
        _check_unique_stems(images)
        fov = Path(args.fov) if args.fov else None
        if fov is not None and not fov.exists():
            raise PredictError(f"--fov {args.fov!r}: no such file or folder")
        output = Path(args.output)
        if output.exists() and not output.is_dir():
            raise PredictError(f"--output {args.output!r} is a file, not a folder")
        earlier = _claim_output(output, args.overwrite)
        predictor = load_predictor(
            _checkpoint_path(args),
            device=args.device,
            threshold=args.threshold,
            tile_size=args.tile_size,
            stride=args.stride,
            tta=args.tta,
            amp=args.amp,
            fov_diameter=args.fov_diameter,
        )
        output.mkdir(parents=True, exist_ok=True)
    except (PredictError, RunDirError, ValueError) as e:
        print(f"retina predict: error: {e}", file=sys.stderr)
        return 2
    for p in earlier:
        p.unlink()
    if earlier:
        warn(f"--overwrite: deleted {len(earlier)} earlier result file(s) in {str(output)!r}")
    derived = _derived_fov_images(images, fov)
    if derived:
        shown = ", ".join(p.name for p in derived[:10]) + (", ..." if len(derived) > 10 else "")
        warn(
            f"--fov {str(fov)!r} has no mask for {len(derived)} of {len(images)} image(s) "
            f"({shown}): their FOV is derived from the image (masks are matched by stem: "
            f"{', '.join(p.format('<stem>') for p in FOV_STEM_PATTERNS)})"
        )
    print(
        f"retina predict: {len(images)} image(s), {predictor.inferer!r}, threshold "
        f"{predictor.threshold:.4f}, device {predictor.device}, " + predictor.describe_resolution(),
        file=sys.stderr,
    )
    options = MapOptions(
        predictor.threshold, predictor.is_av, args.width, args.pixel_size_um, args.save_probs
    )
    writer = MapWriter(output, options)
    try:
        run_predict_loop(
            predictor, images, fov, writer, not args.no_progress, num_workers=args.num_workers
        )
    except DatasetError as e:
        print(f"retina predict: error: {e}", file=sys.stderr)
        return 1
    rows = writer.rows
    if rows:
        seconds = sum(r["seconds"] for r in rows)
        print(
            f"retina predict: {len(rows)} image(s) in {seconds:.2f} s, "
            f"{len(rows) / seconds:.2f} images/s disk to disk (read, preprocess, inference, "
            f"write; DPN's fps) -> {output}",
            file=sys.stderr,
        )
    if writer.failed:
        print(f"retina predict: {len(writer.failed)} image(s) failed:", file=sys.stderr)
        for file, error in writer.failed:
            print(f"  {file}: {error}", file=sys.stderr)
        return 1
    return 0
