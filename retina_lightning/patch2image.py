"""The patch-to-image workflow of patch2image (Birgui Sekou et al., paper 004, section 5.2).

Four phases (004 sec. 5.2, Fig. 4), each a ``retina`` call on one config:

1. **patch database** ``D_P``: patches of the training images. The datamodule draws them on the
   fly instead of storing them: ``patch_size`` is the patch side, ``steps_per_epoch x
   batch_size`` the number of patches per epoch (the configs make it the size of 004's grid
   database, patches every 16 px, sec. 6.1.1), centres uniform inside the FOV as a grid is
   uniform, or a share on vessels (``vessel_fraction``) for the "balanced proportion" 004 asks
   of ``D_P``. Validation images are held out before any patch is drawn (004 sec. 6.3).
2. **patch network** ``f_P`` trained from scratch on ``D_P`` (``retina fit`` of the config).
3. **transfer**: ``f_I`` is ``f_P``'s architecture with all of ``f_P``'s weights, run on whole
   images. The networks are fully convolutional, so this is ``retina test`` of the phase-2
   checkpoint with whole-image inference: the **Image/Frozen** row ("the metrics are computed
   just after the initialization of f_I with the weights of f_P", 004 sec. 6.4). The same
   checkpoint tested on overlapping patches blended back (004 eq. (3)) gives the **Patch** row.
4. **fine-tuning** ``f_I`` on whole images, batch 1 (004 sec. 6.3): ``retina fit`` with
   :class:`WholeImageDataModule` (each training batch is whole training images, padded to a
   square multiple of the network's down-sampling) and the phase-2 weights loaded by
   :class:`~retina_lightning.transfer.TransferLearning`: **Image/Fine-tuned**. The same fit
   from random weights is **Image/Scratch**.

Run from the command line (all phases, then one table of the test metrics)::

    python -m retina_lightning.patch2image --config configs/drive/patch2image_light.yaml \
        --data.init_args.dataset.init_args.root=/data/DRIVE

(``patch2image_miniunet.yaml`` / ``patch2image_dense.yaml`` for the other two networks;
``configs/patch2image/synthetic_light.yaml`` runs without data). Arguments that are not
options of the workflow go to every ``retina`` call.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.data.sampler import step_seed
from retina_lightning.types import to_tensor_image

__all__ = [
    "PHASES",
    "PhaseResult",
    "WholeImageDataModule",
    "format_phase_table",
    "main",
    "run_patch2image",
]

#: 004's row names (Tables 1-4), in the order the workflow produces them.
PHASES = ("Patch", "Image/Frozen", "Image/Fine-tuned", "Image/Scratch")


class WholeImageDataModule(RetinaDataModule):
    """:class:`~retina_lightning.data.RetinaDataModule` whose training batches are whole
    images: patch2image's image-level training (004 sec. 5.2 phase 4, batch 1, sec. 6.3).

    Each training step takes ``batch_size`` training images (a fresh seeded permutation of the
    training set every epoch, so ``steps_per_epoch = ceil(n_train / batch_size)`` is one pass;
    under DDP the ranks share the permutation and take interleaved batches),
    conditioned as for validation, zero-padded at the bottom / right to a square whose side is
    a multiple of ``multiple`` (outside the image: label 0, FOV False, so the loss ignores the
    padding), augmented (the datamodule's ``augment``; square, so 90-degree rotations keep the
    shape) and normalised with each image's own statistics, as validation images are.
    ``patch_size`` is not used for training (validation and test are whole images anyway).

    Args:
        multiple: the padded side is a multiple of this (the model's ``required_multiple``:
            4 for the patch2image networks, 16 for SegRAVIR / U-Net depth 4).
        **kwargs: the :class:`RetinaDataModule` arguments.
    """

    def __init__(self, multiple: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.multiple = multiple
        self._stack: tuple[Tensor, ...] | None = None

    def _whole_stack(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Conditioned images, labels, FOVs and training masks (``train_region``), padded."""
        if self._stack is not None and self._stack[0].device == device:
            return self._stack
        samples = self._require().train
        side = max(max(s.shape) for s in samples)
        side = -(-side // self.multiple) * self.multiple
        images, labels, fovs, masks = [], [], [], []
        for s in samples:
            h, w = s.shape
            image = to_tensor_image(s.image)[None].to(device)
            cond = self.preprocess.condition(image)[0]  # whole-image CLAHE, as at test time
            label = torch.from_numpy(s.av if self.target == "av" else s.label).to(device)
            fov = torch.from_numpy(s.fov.astype(bool)).to(device)
            mask = torch.from_numpy(self.train_mask(s)).to(device)
            pad = (0, side - w, 0, side - h)
            images.append(F.pad(cond, pad))
            labels.append(F.pad(label, pad))
            fovs.append(F.pad(fov, pad))
            masks.append(F.pad(mask, pad))
        self._stack = tuple(torch.stack(t) for t in (images, labels, fovs, masks))
        return self._stack

    def training_patches(self, step: int, device: torch.device) -> dict[str, Tensor]:
        """The whole (padded) images of training step ``step``."""
        images, labels, fovs, masks = self._whole_stack(device)
        n = images.shape[0]
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        # one permutation per epoch shared by all ranks; rank r takes every world-th batch
        gen = torch.Generator().manual_seed(step_seed(self.seed, 0, epoch, 0))
        order = torch.randperm(n, generator=gen)
        start = (step * world + rank) * self.batch_size
        index = order[(start + torch.arange(self.batch_size)) % n].to(device)
        cond, label, fov = images[index], labels[index], masks[index]
        if self.preprocess.normalize == "dataset":
            mean, std = self.dataset_stats(device)
        else:
            mean, std = self.preprocess.fov_stats(cond, fovs[index])
        x = cond.float() / 255.0
        x, label, fov = self.augment_batch(x, label, fov, step_seed(self.seed, rank, epoch, step))
        if self.preprocess.normalize != "none":
            x = (x - mean) / std
        return {"image": x.contiguous(), "label": label.long(), "fov": fov.contiguous()}


# --------------------------------------------------------------------------------------------
# the workflow
# --------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """One row of the phase table: 004's name, where its run and test results are, and how
    the test images went through the network (the ``Inferer``)."""

    phase: str
    run_dir: Path
    metrics_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    inference: str = ""


def _write_fragment(path: Path, content: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return str(path)


def _retina(args: list[str]) -> Any:
    from retina_lightning.lightning_cli import run as retina_main

    print("[patch2image] retina " + " ".join(args), file=sys.stderr)
    return retina_main(args)


def _test(
    config: str, fragments: list[str], ckpt: Path, experiment: str, common: list[str]
) -> tuple[Path, Path, str]:
    # the phase's fragments come after the user's arguments: they win (an image-phase
    # max_epochs over a patch-phase --trainer.max_epochs)
    args = ["test", "--config", config, *common]
    for f in fragments:
        args += ["--config", f]
    args += ["--experiment", experiment, "--ckpt_path", str(ckpt)]
    cli = _retina(args)
    results = cli.model.results_dir
    if results is None:
        raise RuntimeError("retina test did not report where it wrote its results")
    return Path(cli.run_dir), Path(results) / "metrics.json", repr(cli.model.inferer)


def _fit(config: str, fragments: list[str], experiment: str, common: list[str]) -> tuple[Any, Path]:
    args = ["fit", "--config", config, *common]
    for f in fragments:
        args += ["--config", f]
    args += ["--experiment", experiment]
    cli = _retina(args)
    callback = cli.trainer.checkpoint_callback
    best = Path(callback.best_model_path or callback.last_model_path or "")
    if not best.is_file():
        raise RuntimeError(
            f"retina fit ({experiment}) wrote no checkpoint: run at least one validation epoch"
        )
    return cli, best


def run_patch2image(
    config: str | Path,
    experiment: str | None = None,
    runs_dir: str | Path = "runs",
    image_epochs: int = 300,
    image_lr: float | None = None,
    image_batch_size: int = 1,
    image_passes: int = 1,
    image_patience: int | None = None,
    multiple: int | None = None,
    patch_stride: int | None = None,
    scratch: bool = True,
    extra_args: Sequence[str] = (),
) -> list[PhaseResult]:
    """Run the four phases of 004 (plus Image/Scratch) for one network and return the rows.

    Args:
        config: the patch-level ``retina`` config (phases 1-2).
        experiment: run name prefix; default the config path below ``configs/``. Phases write
            to ``<runs_dir>/<experiment>/{patch,finetune,scratch}/<timestamp>/``.
        runs_dir: root of the run directories.
        image_epochs: epochs of whole-image training (004: 300, sec. 6.3).
        image_lr: learning rate of whole-image training (the config's optimizer ``lr``); 004
            keeps 1.0 (AdaDelta) except for large networks on IDRiD (2e-4).
        image_batch_size: whole images per step (004: 1).
        image_passes: passes over the training images per image-level epoch (the authors'
            code: 5, ``steps_per_epoch = 5 * len(x_train)``); the plateau schedule and the
            checkpoint choice run once per epoch.
        image_patience: stop the image-level training after this many epochs without a
            better validation AUROC; ``None`` trains all ``image_epochs`` (004 sec. 6.3: "at
            the image level, the training is carried out until 300 epochs").
        multiple: side multiple of the padded training images; default the model's
            ``required_multiple``.
        patch_stride: stride of the overlapping tiles of the Patch row; default half the patch.
        scratch: also train the image network from random weights (Image/Scratch).
        extra_args: ``retina`` arguments added to every call (data root, tiny CI sizes ...).
    """
    from retina_lightning.runs import experiment_name

    config = str(config)
    base = experiment or experiment_name([config])
    runs_dir = Path(runs_dir)
    common = [*extra_args, "--runs_dir", str(runs_dir)]
    results: list[PhaseResult] = []

    # phases 1-2: patch database (on the fly) and patch network
    patch_cli, patch_ckpt = _fit(config, [], f"{base}/patch", common)
    patch_run = Path(patch_cli.run_dir)
    datamodule = patch_cli.datamodule
    n_train = len(datamodule.samples.train)
    patch_size = int(datamodule.patch_size)
    model_multiple = int(getattr(patch_cli.model.model, "required_multiple", 1) or 1)
    fragments_dir = patch_run / "patch2image"

    # Patch row: f_P on overlapping patches, blended (004 eq. (3))
    stride = patch_stride or max(patch_size // 2, 1)
    sliding = _write_fragment(
        fragments_dir / "test_patch.yaml",
        {
            "model": {
                "init_args": {
                    "inferer": {
                        "class_path": "retina_lightning.inference.Inferer",
                        "init_args": {"mode": "sliding", "tile_size": patch_size, "stride": stride},
                    }
                }
            }
        },
    )
    whole = _write_fragment(
        fragments_dir / "test_image.yaml",
        {
            "model": {
                "init_args": {
                    "inferer": {
                        "class_path": "retina_lightning.inference.Inferer",
                        "init_args": {"mode": "whole"},
                    }
                }
            }
        },
    )
    run, path, how = _test(config, [sliding], patch_ckpt, f"{base}/patch", common)
    if "mode='sliding'" not in how:
        # LightningCLI (2.4+) replaces the config's model arguments by the checkpoint's when
        # --ckpt_path is given, unless the CLI turns that off: then the row is whole-image
        print(
            f"[patch2image] warning: the Patch row ran with {how}, not overlapping patches: "
            "`retina test --ckpt_path` did not apply the config's inferer",
            file=sys.stderr,
        )
    results.append(PhaseResult("Patch", run, path, inference=how))
    # phase 3: the same weights on whole images
    run, path, how = _test(config, [whole], patch_ckpt, f"{base}/patch", common)
    results.append(PhaseResult("Image/Frozen", run, path, inference=how))

    # phase 4: fine-tune on whole images (and the same from scratch)
    image_data: dict[str, Any] = {
        "trainer": {"max_epochs": image_epochs},
        "data": {
            "class_path": "retina_lightning.patch2image.WholeImageDataModule",
            "init_args": {
                "multiple": multiple or model_multiple,
                "batch_size": image_batch_size,
                "steps_per_epoch": image_passes * math.ceil(n_train / image_batch_size),
            },
        },
    }
    if image_lr is not None:
        image_data["optimizer"] = {"init_args": {"lr": image_lr}}
    image_fragment = _write_fragment(fragments_dir / "image.yaml", image_data)
    # each fragment lists the image phase's callbacks in full (a later list replaces the
    # config's, whose early stopping is the patch level's)
    stopping = []
    if image_patience is not None:
        stopping.append(
            {
                "class_path": "lightning.pytorch.callbacks.EarlyStopping",
                "init_args": {"monitor": "val/auroc", "mode": "max", "patience": image_patience},
            }
        )
    transfer = _write_fragment(
        fragments_dir / "transfer.yaml",
        {
            "trainer": {
                "callbacks": [
                    {
                        "class_path": "retina_lightning.transfer.TransferLearning",
                        # phase 3: "copying all the weights of f_P into f_I"
                        "init_args": {"checkpoint": str(patch_ckpt), "strict": True},
                    },
                    *stopping,
                ]
            }
        },
    )
    plain = _write_fragment(fragments_dir / "scratch.yaml", {"trainer": {"callbacks": stopping}})
    phases = [("Image/Fine-tuned", "finetune", transfer)]
    if scratch:
        phases.append(("Image/Scratch", "scratch", plain))
    for phase, name, fragment in phases:
        _, ckpt = _fit(config, [image_fragment, fragment], f"{base}/{name}", common)
        run, path, how = _test(config, [whole], ckpt, f"{base}/{name}", common)
        results.append(PhaseResult(phase, run, path, inference=how))

    for result in results:
        result.metrics = json.loads(result.metrics_path.read_text())
    return results


COLUMNS = (
    ("AUC", "auroc"),
    ("Spec", "sp@0.5"),
    ("Sens", "se@0.5"),
    ("Acc", "acc@0.5"),
    ("Dice", "f1@0.5"),
    ("Jaccard", "jaccard@0.5"),
    ("AUPRC", "auprc"),
)


def format_phase_table(results: Sequence[PhaseResult], title: str = "") -> str:
    """004's table layout (Tables 1-4: AUC, Spec, Sens, Acc, Dice, Jaccard, AUPRC at the 0.5
    threshold) for each phase: the suite's protocol (pooled inside the FOV), then, when the
    test measured it (``unmasked_metrics``), 004's own (no FOV mask, mean over the test images
    as the authors' code computes it), then where each row came from."""
    head = f"{'':18s}" + "".join(f"{name:>9s}" for name, _ in COLUMNS)
    lines = [title] if title else []

    def block(heading: str, pick) -> None:
        lines.append(heading)
        lines.append(head)
        for r in results:
            values = pick(r.metrics)
            cells = []
            for _, key in COLUMNS:
                value = values.get(key)
                ok = isinstance(value, (int, float)) and not math.isnan(value)
                cells.append(f"{value:9.4f}" if ok else f"{'-':>9s}")
            lines.append(f"{r.phase:18s}" + "".join(cells))

    block("suite protocol: inside the FOV mask, pooled over pixels", lambda m: m.get("pooled", {}))
    if any("unmasked" in r.metrics for r in results):
        lines.append("")
        block(
            "004's protocol: whole image, no FOV mask, mean over images (compare with 004 Table 1)",
            lambda m: m.get("unmasked", {}).get("per_image_mean", {}),
        )
    lines.append("")
    lines += [f"{r.phase:18s}{r.metrics_path}  {r.inference}" for r in results]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[PhaseResult]:
    """``python -m retina_lightning.patch2image --config <patch config> [options] [retina args]``"""
    parser = argparse.ArgumentParser(
        prog="retina patch2image",
        description="patch2image (004 sec. 5.2): train on patches, transfer to whole images, "
        "fine-tune; prints the test metrics of every phase. Unknown arguments are passed to "
        "every `retina` call.",
    )
    parser.add_argument("--config", required=True, help="patch-level retina config")
    parser.add_argument("--experiment", default=None, help="run name prefix")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--image_epochs", type=int, default=300, help="004: 300")
    parser.add_argument("--image_lr", type=float, default=None)
    parser.add_argument("--image_batch_size", type=int, default=1, help="004: 1")
    parser.add_argument(
        "--image_passes", type=int, default=1, help="passes per image epoch (authors' code: 5)"
    )
    parser.add_argument(
        "--image_patience", type=int, default=None, help="early stopping (004: none, 300 epochs)"
    )
    parser.add_argument("--multiple", type=int, default=None)
    parser.add_argument("--patch_stride", type=int, default=None)
    parser.add_argument("--no_scratch", action="store_true", help="skip Image/Scratch")
    ns, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    results = run_patch2image(
        ns.config,
        experiment=ns.experiment,
        runs_dir=ns.runs_dir,
        image_epochs=ns.image_epochs,
        image_lr=ns.image_lr,
        image_batch_size=ns.image_batch_size,
        image_passes=ns.image_passes,
        image_patience=ns.image_patience,
        multiple=ns.multiple,
        patch_stride=ns.patch_stride,
        scratch=not ns.no_scratch,
        extra_args=extra,
    )
    print(format_phase_table(results, title=f"patch2image: {ns.config}"))
    return results


if __name__ == "__main__":
    main()
