"""RetinaDataModule: any dataset, any split protocol, patches sampled on the device.

``setup()`` reads each split's images once (CPU, uint8). Training batches are *step indices*
(a DataLoader over ``range(steps_per_epoch)``): ``on_after_batch_transfer`` turns each index
into ``batch_size`` augmented patches on the batch's device (the GPU when training there),
following torchgeo's pattern of device-side kornia augmentation. Validation, test and predict
batches are whole images that are conditioned and normalised on the device; the task runs
them through whole-image or sliding-window inference.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch
from lightning import LightningDataModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from retina_lightning.data.base import (
    DatasetError,
    DatasetSplit,
    RetinaDataset,
    Split,
    SplitSamples,
    default_split,
    require_fraction,
    require_int,
)
from retina_lightning.data.resolution import (
    FOV_TOLERANCE,
    batch_scale,
    median_fov_diameter,
    resample_sample,
)
from retina_lightning.data.sampler import PatchSampler, step_seed
from retina_lightning.data.transforms import (
    Augment,
    Preprocess,
    build_augmentation,
    condition_whole,
)
from retina_lightning.types import Sample, to_tensor_image


def validate_sample(sample: Sample, dataset: str, target: str) -> None:
    """Reject a sample whose arrays disagree, naming the image."""
    h, w = sample.shape
    where = f"{dataset}: image {sample.name!r}"
    if (
        sample.image.dtype != np.uint8
        or sample.image.ndim != 3
        or sample.image.shape[2] not in (1, 3)
    ):
        raise DatasetError(
            f"{where}: expected an (H, W, 1|3) uint8 image, got {sample.image.dtype} "
            f"{sample.image.shape}"
        )
    label = sample.av if target == "av" else sample.label
    if label is None:
        raise DatasetError(
            f"{where} has no artery/vein labels; use `target: label` or a dataset with A/V maps "
            "(RITE, RAVIR, SyntheticFundus)"
        )
    for name, arr in (
        ("label", label),
        ("fov", sample.fov),
        ("second_observer", sample.second_observer),
    ):
        if arr is not None and arr.shape != (h, w):
            raise DatasetError(
                f"{where}: {name} has size {arr.shape[:2]} but the image is {(h, w)}; "
                "the label, FOV mask and image of one sample must have the same size"
            )
    if not sample.fov.any():
        raise DatasetError(f"{where}: the FOV mask is empty")


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``w`` evaluates images ``r, r + w, r + 2w, ...``: every image exactly once.

    torch's DistributedSampler pads the index list with duplicates so that every rank has the
    same number of items; on a 20-image test set that would count some images twice and shift
    the paper-grade numbers. Evaluation has no collective inside a step, so ranks may
    process different numbers of images.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.indices = list(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]
        self.num_samples = len(self.indices)
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


class WholeImages(Dataset):
    """Whole-image items for validation / test / predict (one image per item); with
    ``tag_dataset`` each item also names the dataset its image came from (``dataset``: a
    multi-dataset experiment reports each dataset apart)."""

    def __init__(self, samples: list[Sample], target: str, tag_dataset: bool = False) -> None:
        self.samples = samples
        self.target = target
        self.tag_dataset = tag_dataset

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        label = s.av if self.target == "av" else s.label
        second = s.second_observer
        item = {
            "image": to_tensor_image(s.image),
            "label": torch.from_numpy(np.ascontiguousarray(label)),
            "fov": torch.from_numpy(np.ascontiguousarray(s.fov.astype(bool))),
            "second": torch.from_numpy(second if second is not None else np.zeros_like(label)),
            "has_second": second is not None,
            "index": index,
            "name": s.name,
        }
        if self.tag_dataset:
            item["dataset"] = s.meta["dataset"]
        return item


class RetinaDataModule(LightningDataModule):
    """Data of one experiment.

    Args:
        dataset: a dataset reader (``SyntheticFundus`` when omitted: no download needed).
        split: the protocol that makes train / val / test (default: the publisher's split
            with 20 % of the training images held out for validation).
        datasets: instead of ``dataset`` / ``split``, several datasets, each with its own
            split (:class:`~retina_lightning.data.base.DatasetSplit`; issue 22): their images
            are conditioned to one ``fov_diameter`` (required for two or more), training
            patches are drawn evenly per dataset (each dataset the same share of patches,
            whatever its number of images), and validation and test report each dataset apart
            as well as all together (one operating point, chosen on all validation images).
        target: ``label`` (binary vessel, or optic disc) or ``av`` (0 background, 1 vein,
            2 artery).
        preprocess: input conditioning (channels, gamma, CLAHE, normalisation).
        augment: training augmentations.
        patch_size: side of the square training patches (after augmentation).
        batch_size: patches per training step (per process under DDP).
        steps_per_epoch: training steps per epoch (patches are drawn afresh every step, so an
            "epoch" is a bookkeeping unit for validation and checkpoints).
        vessel_fraction: share of patches centred on a vessel pixel.
        train_region: ``fov`` (default): patch centres lie inside the FOV and the loss counts
            FOV pixels only; ``image``: centres anywhere in the image and the loss counts every
            pixel, as 004's code does (a stride-16 grid over the whole image, no mask, sec.
            6.1.1), which teaches the network the dark surround that 004's unmasked metrics
            score. Validation and test metrics keep the real FOV either way.
        fov_diameter: resample every image (training, validation, test, predict) so that its
            FOV is this many pixels across (DRIVE's is 540), run the network at that scale and
            map its probabilities back to the image's own size before metrics and outputs
            (:mod:`retina_lightning.data.resolution`). ``None`` (default): training images keep
            their native size, and evaluation follows the model: an image whose FOV differs
            by more than ``FOV_TOLERANCE`` (5 %) from the median FOV diameter of the model's
            training images (recorded in every checkpoint, :attr:`model_fov_diameter`) is
            resampled to it. ``"native"``: never resample.
        eval_batch_size: whole images per validation / test batch (1 unless all images have
            the same size).
        num_workers: DataLoader workers for reading whole images.
        seed: seed of the patch draws and augmentations.
    """

    def __init__(
        self,
        dataset: RetinaDataset | None = None,
        split: Split | None = None,
        datasets: list[DatasetSplit] | None = None,
        target: Literal["label", "av"] = "label",
        preprocess: Preprocess | None = None,
        augment: Augment | None = None,
        patch_size: int = 128,
        batch_size: int = 16,
        steps_per_epoch: int = 100,
        vessel_fraction: float = 0.0,
        train_region: Literal["fov", "image"] = "fov",
        fov_diameter: int | Literal["native"] | None = None,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # Under LightningCLI the parsed data config lands in checkpoints
        # ("datamodule_hyper_parameters"), so `retina predict` can rebuild the preprocessing.
        if _given_hyperparameters.get() is not None:
            self.save_hyperparameters()
        key = "RetinaDataModule: data.init_args."
        self.sources = list(datasets) if datasets else []
        if self.sources:
            if dataset is not None or split is not None:
                raise ValueError(
                    f"{key}datasets is given together with dataset / split: give one or the "
                    "other (in a config layered on a single-dataset one, set dataset: null and "
                    "split: null)"
                )
            names = [s.label for s in self.sources]
            if len(set(names)) != len(names) or any("." in n for n in names):
                raise ValueError(
                    f"{key}datasets: names {names} must be distinct and hold no '.': give "
                    "each entry a `name:`"
                )
            if len(self.sources) > 1 and not isinstance(fov_diameter, int):
                raise ValueError(
                    f"{key}datasets holds {len(names)} datasets ({', '.join(names)}) but "
                    f"fov_diameter is {fov_diameter!r}: their cameras differ in scale, so set "
                    "data.init_args.fov_diameter to one FOV diameter, e.g. 540 (DRIVE's)"
                )
            dataset, split = self.sources[0].dataset, self.sources[0].split
        if dataset is None:
            from retina_lightning.data.synthetic import SyntheticFundus

            dataset = SyntheticFundus()
        self.dataset = dataset
        self.split = split if split is not None else default_split()
        self.target = target
        self.preprocess = preprocess if preprocess is not None else Preprocess()
        self.augment = augment if augment is not None else Augment()
        self.patch_size = require_int(patch_size, key + "patch_size", 1, "training patch side")
        self.batch_size = require_int(batch_size, key + "batch_size", 1, "patches per step")
        self.steps_per_epoch = require_int(
            steps_per_epoch, key + "steps_per_epoch", 1, "training steps per epoch"
        )
        self.vessel_fraction = require_fraction(
            vessel_fraction, key + "vessel_fraction", "share of patches centred on vessels"
        )
        if train_region not in ("fov", "image"):
            raise ValueError(
                f"train_region must be 'fov' or 'image', got {train_region!r}: set "
                "data.init_args.train_region: fov (or image, 004's unmasked training)"
            )
        self.train_region = train_region
        self.fov_diameter = (
            fov_diameter
            if fov_diameter is None or fov_diameter == "native"
            else require_int(
                fov_diameter, key + "fov_diameter", 16, "FOV diameter in pixels (or 'native')"
            )
        )
        #: median FOV diameter (px) of the model's training images: measured at ``fit`` setup,
        #: saved in checkpoints (:meth:`state_dict`) and restored with them; ``None`` unknown
        self.model_fov_diameter: int | None = None
        self._told: set[bool] = set()  # resampled or not: each line is printed once
        self.eval_batch_size = require_int(
            eval_batch_size, key + "eval_batch_size", 1, "whole images per evaluation batch"
        )
        self.num_workers = require_int(num_workers, key + "num_workers", 0, "DataLoader workers")
        self.seed = seed
        self.samples: SplitSamples | None = None
        self._augmentation = build_augmentation(self.augment, self.preprocess.out_channels)
        self._sampler: PatchSampler | None = None
        self._train_stats: tuple[Tensor, Tensor] | None = None
        self._dataset_stats: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ setup
    @property
    def in_channels(self) -> int:
        return self.preprocess.out_channels

    @property
    def source_names(self) -> list[str]:
        """The datasets of a multi-dataset experiment (``datasets``), else ``[]``."""
        return [s.label for s in self.sources] if len(self.sources) > 1 else []

    @property
    def data_name(self) -> str:
        return "+".join(self.source_names) or self.dataset.name

    def _split_samples(self) -> SplitSamples:
        """The split's train / val / test lists; with several ``datasets`` each dataset's lists
        one after another, every sample tagged with its dataset (``meta["dataset"]``)."""
        if not self.source_names:
            return self.split(self.dataset)
        out = SplitSamples(train=[], val=[], test=[])
        for source in self.sources:
            part = source.samples()
            name = source.label
            if not part.val and part.train:
                raise DatasetError(
                    f"{name}: its split holds out no validation images; in a multi-dataset "
                    "experiment each dataset needs its own (set its split's val_fraction, e.g. 0.2)"
                )
            for kind in ("train", "val", "test"):
                tagged = [replace(s, meta={**s.meta, "dataset": name}) for s in getattr(part, kind)]
                getattr(out, kind).extend(tagged)
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.samples is not None:
            return
        samples = self._split_samples()
        if not samples.train and stage in ("fit", None):
            raise DatasetError(f"{self.data_name}: the split gave no training images")
        if not samples.val and samples.train:
            rank_zero_warn(
                "the split holds out no validation images: validation (checkpoint choice and the "
                "operating-point threshold) uses the training images"
            )
            samples.val = list(samples.train)
        for s in (*samples.train, *samples.val, *samples.test):
            validate_sample(s, s.meta.get("dataset", self.dataset.name), self.target)
        if isinstance(self.fov_diameter, int):  # training runs at the working scale throughout
            samples.train = [resample_sample(s, self.fov_diameter) for s in samples.train]
        if stage in ("fit", None) and samples.train:
            # what the model learns from (issue 22); only a fit measures it: a test's config may
            # hold another dataset, so there the checkpoint's record is what counts
            self.model_fov_diameter = (
                self.fov_diameter
                if isinstance(self.fov_diameter, int)
                else median_fov_diameter([s.fov for s in samples.train])
            )
        smallest = min((min(s.shape) for s in samples.train), default=None)
        if smallest is not None and self.patch_size > smallest:
            scale = (
                f" at fov_diameter {self.fov_diameter}"
                if isinstance(self.fov_diameter, int)
                else ""
            )
            raise DatasetError(
                f"patch_size {self.patch_size} is larger than the smallest training image{scale} "
                f"({smallest} px on its short side) of {self.data_name}; set "
                f"data.init_args.patch_size <= {smallest}"
            )
        self.samples = samples
        rank_zero_info(
            f"{self.data_name}: {len(samples.train)} train / {len(samples.val)} val / "
            f"{len(samples.test)} test images"
        )

    def with_conditioning(
        self,
        preprocess: Preprocess,
        fov_diameter: int | Literal["native"] | None,
        model_fov_diameter: int | None = None,
    ) -> RetinaDataModule:
        """This datamodule's images, labels, split and loaders, conditioned with another
        ``preprocess``, ``fov_diameter`` and recorded ``model_fov_diameter`` (a model trained
        elsewhere sees them as it was trained to: the cross-dataset matrix, 002 Table 4). Every
        other setting is kept, so a new constructor argument cannot be dropped; samples already
        read are shared unless the scale changes (training images are resampled at setup)."""
        other = copy.copy(self)
        other.preprocess = preprocess
        other.fov_diameter = fov_diameter
        other.model_fov_diameter = model_fov_diameter
        other._told = set()
        other._augmentation = build_augmentation(self.augment, preprocess.out_channels)
        other._sampler = None
        other._train_stats = None
        other._dataset_stats = None
        if fov_diameter != self.fov_diameter:
            other.samples = None
        return other

    def _require(self) -> SplitSamples:
        if self.samples is None:
            self.setup()
        assert self.samples is not None
        return self.samples

    # ------------------------------------------------------------- dataloaders
    def train_dataloader(self) -> DataLoader:
        # A step index per batch: the patches themselves are made on the device.
        return DataLoader(range(self.steps_per_epoch), batch_size=1, shuffle=False)

    def _whole(self, samples: list[Sample]) -> DataLoader:
        dataset = WholeImages(samples, self.target, tag_dataset=bool(self.source_names))
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = UnpaddedDistributedSampler(dataset, trainer.world_size, trainer.global_rank)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._whole(self._require().val)

    def test_dataloader(self) -> DataLoader:
        return self._whole(self._require().test)

    def predict_dataloader(self) -> DataLoader:
        return self._whole(self._require().test)

    # ---------------------------------------------------------- device side
    def _stack_train(self, device: torch.device) -> PatchSampler:
        samples = self._require().train
        h = max(s.shape[0] for s in samples)
        w = max(s.shape[1] for s in samples)
        c = max(s.image.shape[2] for s in samples)
        images = torch.zeros(len(samples), c, h, w, dtype=torch.uint8)
        labels = torch.zeros(len(samples), h, w, dtype=torch.uint8)
        fovs = torch.zeros(len(samples), h, w, dtype=torch.bool)
        masks = torch.zeros(len(samples), h, w, dtype=torch.bool)
        for i, s in enumerate(samples):
            sh, sw = s.shape
            images[i, :, :sh, :sw] = to_tensor_image(s.image)
            labels[i, :sh, :sw] = torch.from_numpy(s.av if self.target == "av" else s.label)
            fovs[i, :sh, :sw] = torch.from_numpy(s.fov.astype(bool))
            masks[i, :sh, :sw] = torch.from_numpy(self.train_mask(s))
        images, labels, fovs = images.to(device), labels.to(device), fovs.to(device)
        conditioned = self.preprocess.condition(images)
        mean, std = self.preprocess.fov_stats(conditioned, fovs)
        self._train_stats = (mean, std)
        n = fovs.sum((1, 2)).view(-1, 1, 1, 1).double()
        ds_mean = (mean.double() * n).sum(0, keepdim=True) / n.sum()
        ds_var = ((std.double() ** 2 + (mean.double() - ds_mean) ** 2) * n).sum(0, keepdim=True)
        self._dataset_stats = (ds_mean.float(), (ds_var / n.sum()).sqrt().float())
        window = self.augment.context(self.patch_size)
        return PatchSampler(
            conditioned,
            labels,
            masks.to(device),
            window,
            self.vessel_fraction,
            image_weights=self.image_weights(samples),
        )

    def image_weights(self, samples: list[Sample]) -> Tensor | None:
        """Draw probability of each training image: each dataset of a multi-dataset
        experiment gets the same share of patches (``None``: one dataset, images uniform)."""
        if not self.source_names:
            return None
        count = Counter(s.meta["dataset"] for s in samples)
        return torch.tensor(
            [1.0 / (len(count) * count[s.meta["dataset"]]) for s in samples], dtype=torch.float64
        )

    def train_mask(self, sample: Sample) -> np.ndarray:
        """Where training patches are centred and the loss counts (``train_region``)."""
        if self.train_region == "image":
            return np.ones(sample.shape, dtype=bool)
        return sample.fov.astype(bool)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the median FOV diameter of the training images
        (``train_fov_diameter``, issue 22) and the training-set statistics of ``normalize:
        dataset``, so that evaluation and ``retina predict`` condition new images as in
        training."""
        state: dict[str, Any] = {}
        if self.model_fov_diameter is not None:
            state["train_fov_diameter"] = int(self.model_fov_diameter)
        if self._dataset_stats is not None:
            state["dataset_mean"] = self._dataset_stats[0].cpu()
            state["dataset_std"] = self._dataset_stats[1].cpu()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "dataset_mean" in state_dict:
            self._dataset_stats = (state_dict["dataset_mean"], state_dict["dataset_std"])
        if state_dict.get("train_fov_diameter") is not None:
            self.model_fov_diameter = int(state_dict["train_fov_diameter"])

    def working_scale(self) -> tuple[int | None, float]:
        """``(target FOV diameter, tolerance)`` of whole images: an explicit ``fov_diameter``
        exactly; by default the model's recorded training diameter beyond ``FOV_TOLERANCE``;
        ``(None, 0)`` (native size) for ``"native"`` or when nothing is recorded."""
        if isinstance(self.fov_diameter, int):
            return self.fov_diameter, 0.0
        if self.fov_diameter == "native" or self.model_fov_diameter is None:
            return None, 0.0
        return self.model_fov_diameter, FOV_TOLERANCE

    def describe_scale(self, scale: float) -> str:
        """The line evaluation prints (once for native-size batches, once for resampled ones): at
        which scale images run, and why."""
        target, tolerance = self.working_scale()
        if self.fov_diameter == "native":
            return "resolution: images run at their native size (fov_diameter: native)"
        if target is None:
            return (
                "resolution: images run at their native size: the checkpoint records no training "
                "FOV diameter (written before it was recorded); set "
                "--data.init_args.fov_diameter=N to resample them"
            )
        if tolerance == 0.0:
            return f"resolution: images resampled so that their FOV spans {target} px"
        if scale == 1.0:
            return (
                f"resolution: images run at their native size (FOV within {tolerance:.0%} of the "
                f"model's {target} px)"
            )
        return (
            f"resolution: images resampled x{scale:.3f} so that their FOV spans the model's "
            f"{target} px (its training images' median); --data.init_args.fov_diameter=native "
            "keeps their native size"
        )

    def dataset_stats(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Mean / std of the conditioned training images inside their FOVs."""
        if self._dataset_stats is None:
            self._sampler = self._stack_train(device)
        assert self._dataset_stats is not None
        return self._dataset_stats[0].to(device), self._dataset_stats[1].to(device)

    def _stats_for(
        self, images: Tensor, fov: Tensor, source: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.preprocess.normalize == "dataset":
            mean, std = self.dataset_stats(images.device)
            return mean.expand(images.shape[0], -1, -1, -1), std.expand(images.shape[0], -1, -1, -1)
        if source is not None and self._train_stats is not None:
            return self._train_stats[0][source], self._train_stats[1][source]
        return self.preprocess.fov_stats(images, fov)

    def augment_batch(
        self, x: Tensor, label: Tensor, fov: Tensor, seed: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Apply the kornia augmentations to ``x`` in [0, 1] with its label and FOV, seeded so
        that the same seed gives the same transforms (kornia draws from torch's global RNG,
        which is forked here so the caller's stream is untouched)."""
        if self._augmentation is None:
            return x, label, fov
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            masks = torch.stack([label, fov.to(label.dtype)], 1).float()
            x, masks = self._augmentation(x, masks)
        return x, masks[:, 0].round().long(), masks[:, 1] > 0.5

    def training_patches(self, step: int, device: torch.device) -> dict[str, Tensor]:
        """The patches of training step ``step`` (deterministic given seed, rank, epoch)."""
        if self._sampler is None or self._sampler.device != device:
            self._sampler = self._stack_train(device)
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        seed = step_seed(self.seed, rank, epoch, step)
        image, label, fov, source = self._sampler.sample(self.batch_size, seed)
        x, label, fov = self.augment_batch(image.float() / 255.0, label, fov, seed)
        if x.shape[-1] != self.patch_size:  # centre crop of the context window
            o = (x.shape[-1] - self.patch_size) // 2
            sl = slice(o, o + self.patch_size)
            x, label, fov = x[..., sl, sl], label[..., sl, sl], fov[..., sl, sl]
        mean, std = self._stats_for(image, fov, source)
        if self.preprocess.normalize != "none":
            x = (x - mean) / std
        return {"image": x.contiguous(), "label": label.long(), "fov": fov.contiguous()}

    def prepare_whole(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Condition and normalise a whole-image batch on its device (``condition_whole``).
        ``label``, ``fov`` and ``raw`` keep the original size; with ``fov_diameter`` the
        ``image`` has the working size and the task maps its probabilities back."""
        stats = None
        if self.preprocess.normalize == "dataset":
            stats = self.dataset_stats(batch["image"].device)
        batch = dict(batch)
        batch["raw"] = batch["image"]
        target, tolerance = self.working_scale()
        scale = batch_scale(batch["fov"].bool(), target, tolerance)
        if (scale != 1.0) not in self._told:
            rank_zero_info(self.describe_scale(scale))
            self._told.add(scale != 1.0)
        batch["scale"] = torch.full((batch["image"].shape[0],), scale, dtype=torch.float64)
        batch["image"] = condition_whole(
            batch["image"], batch["fov"], self.preprocess, stats, target, tolerance
        )
        if "label" in batch:  # none in `retina predict`'s batches
            batch["label"] = batch["label"].long()
        batch["fov"] = batch["fov"].bool()
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training:
            step = int(batch.reshape(-1)[0]) if isinstance(batch, Tensor) else int(batch[0])
            return self.training_patches(step, batch.device)
        return self.prepare_whole(batch)
