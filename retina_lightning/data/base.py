"""What every dataset and every split protocol implements.

A dataset class knows one published file layout and turns it into :class:`Sample` records,
grouped in the *subsets* the publisher defines (DRIVE: ``training`` / ``test``; STARE and
CHASE_DB1 publish one pool, ``all``). A split protocol (``splits.py``) turns those subsets
into the ``train`` / ``val`` / ``test`` lists that one experiment uses, so that a paper's
protocol is a config choice and never a code edit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retina_lightning.types import Sample


class DatasetError(ValueError):
    """A dataset folder or file does not match what its layout promises."""


def require_int(value: object, key: str, minimum: int, what: str = "") -> int:
    """``value`` as an int, or a ValueError naming ``key``, the value and the valid range
    (issue 15 item 4: ``batch_size: -4`` used to train with a random number of patches)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        ok = False
    else:
        ok = value >= minimum
    if not ok:
        hint = f" ({what})" if what else ""
        raise ValueError(f"{key} must be an integer >= {minimum}{hint}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def require_fraction(value: object, key: str, what: str = "") -> float:
    """``value`` as a float in [0, 1], or a ValueError naming ``key``, the value and the
    range."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        ok = False
    else:
        ok = 0.0 <= float(value) <= 1.0  # NaN fails too
    if not ok:
        hint = f" ({what})" if what else ""
        raise ValueError(f"{key} must be a number in [0, 1]{hint}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


class RetinaDataset(ABC):
    """Base class of the dataset readers.

    Args:
        root: folder the dataset was unpacked into (layout in each subclass's docstring).
    """

    #: physical pixel size in microns, when known (RAVIR: 12.5).
    pixel_size_um: float | None = None
    #: whether the samples carry artery/vein maps (``Sample.av``: RITE, RAVIR, synthetic).
    has_av: bool = False

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def subsets(self) -> tuple[str, ...]:
        """The publisher's subsets, e.g. ``("training", "test")`` or ``("all",)``."""

    @abstractmethod
    def load(self, subset: str) -> list[Sample]:
        """Read every image of ``subset`` (sorted by name) as :class:`Sample` records."""

    def _require_root(self) -> Path:
        if self.root is None:
            raise DatasetError(
                f"{self.name}: no data root given; set `root:` under `dataset.init_args` in the "
                "config (or pass --data.dataset.init_args.root=/path/to/" + self.name + ")"
            )
        if not self.root.is_dir():
            raise DatasetError(
                f"{self.name}: data root {str(self.root)!r} does not exist or is not a folder; "
                f"download the dataset and point `root:` at the folder that holds its files"
            )
        return self.root

    def _check_subset(self, subset: str) -> None:
        if subset not in self.subsets():
            raise DatasetError(
                f"{self.name}: unknown subset {subset!r}; expected one of {list(self.subsets())}"
            )


@dataclass
class SplitSamples:
    """The three lists of one experiment. ``val`` is always taken from training images."""

    train: list[Sample]
    val: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)


class Split(ABC):
    """A protocol that maps a dataset to train / val / test samples."""

    @abstractmethod
    def __call__(self, dataset: RetinaDataset) -> SplitSamples: ...


@dataclass
class DatasetSplit:
    """One dataset of a multi-dataset experiment with its own split protocol
    (``RetinaDataModule(datasets=[...])``, issue 22): DRIVE with its official split beside
    CHASE_DB1's first 20 / last 8, each dataset's train, validation and test images kept apart.

    Args:
        dataset: the dataset reader.
        split: its protocol (default: :func:`default_split`).
        name: what reports call it (default: the reader's name, e.g. ``CHASEDB1``); needed
            when one reader appears twice.
    """

    dataset: RetinaDataset
    split: Split | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.dataset.name

    def samples(self) -> SplitSamples:
        return (self.split or default_split())(self.dataset)


def default_split() -> Split:
    """The protocol when a config names none: the publisher's split, 20 % of the training
    images held out for validation (checkpoint and threshold)."""
    return OfficialSplit(val_fraction=0.2)


def hold_out(samples: list[Sample], fraction: float, seed: int = 0) -> tuple[list, list]:
    """Split ``samples`` into (kept, held_out) with ``round(fraction * n)`` held out (at least
    one when ``fraction > 0``), chosen by a seeded permutation so every run holds out the same
    images. Used for validation sets, which are always drawn from training images."""
    import numpy as np

    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0 or len(samples) < 2:
        return list(samples), []
    n_out = min(len(samples) - 1, max(1, round(fraction * len(samples))))
    order = np.random.default_rng(seed).permutation(len(samples))
    out = set(order[:n_out].tolist())
    kept = [s for i, s in enumerate(samples) if i not in out]
    held = [s for i, s in enumerate(samples) if i in out]
    return kept, held


class OfficialSplit(Split):
    """The publisher's own train/test subsets (DRIVE, HRF-style), with an optional validation
    hold-out drawn from the training subset.

    Args:
        train_subset: subset used for training (and validation).
        test_subset: subset used for testing.
        val_fraction: fraction of training images held out for validation / threshold choice.
        seed: seed of the hold-out permutation.
    """

    def __init__(
        self,
        train_subset: str = "training",
        test_subset: str = "test",
        val_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.val_fraction = val_fraction
        self.seed = seed

    def __call__(self, dataset: RetinaDataset) -> SplitSamples:
        self._check_subsets(dataset)
        train, val = hold_out(dataset.load(self.train_subset), self.val_fraction, self.seed)
        return SplitSamples(train=train, val=val, test=dataset.load(self.test_subset))

    def _check_subsets(self, dataset: RetinaDataset) -> None:
        """Say what to set when the dataset lacks a named subset (issue 15 item 15: a flat
        FolderDataset, whose only subset is ``all``, failed with "unknown subset 'train'")."""
        subsets = tuple(dataset.subsets())
        for key, subset in (("train_subset", self.train_subset), ("test_subset", self.test_subset)):
            if subset in subsets:
                continue
            if len(subsets) == 1:
                pool = subsets[0]
                fix = (
                    f"{dataset.name} has one pool of images, {pool!r} (a flat folder), and no "
                    "train / test subsets: choose a split protocol that divides it, e.g. 5-fold "
                    "cross-validation: --data.init_args.split=retina_lightning.data.KFoldSplit "
                    "--data.init_args.split.init_args.num_folds=5 "
                    "--data.init_args.split.init_args.fold=0 "
                    f"--data.init_args.split.init_args.subset={pool} "
                    "--data.init_args.split.init_args.val_fraction=0.2 (or in the config: "
                    "split: {class_path: retina_lightning.data.KFoldSplit, init_args: "
                    f"{{num_folds: 5, fold: 0, subset: {pool}, val_fraction: 0.2}}}}); "
                    "FirstNSplit (n_train: N) trains on the first N images instead"
                )
            else:
                fix = f"set data.init_args.split.init_args.{key} to one of {list(subsets)}"
            raise DatasetError(
                f"OfficialSplit: {dataset.name} has no subset {subset!r} ({key}); its subsets "
                f"are {list(subsets)}. {fix}"
            )
