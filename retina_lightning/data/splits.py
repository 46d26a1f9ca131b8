"""Split protocols: how one experiment turns a dataset's subsets into train / val / test.

STARE and CHASE_DB1 publish no split, so the split is part of every reported number
(REFERENCE.md): DPN (002 sec. 4.1) uses STARE first 10 / last 10 and leave-one-out, CHASE_DB1
first 20 / last 8 and 14 / 14; IterNet (003 sec. 4.1) STARE 16 / 4 and CHASE_DB1 20 / 8;
patch2image (004 sec. 6.1) a 5-fold STARE and a 4-fold CHASE_DB1 cross-validation. Each
protocol here is a :class:`~retina_lightning.data.base.Split` chosen in the config.

"First" always means the dataset's name order (``load`` sorts by name: STARE im0001, im0002,
..., CHASE_DB1 Image_01L, Image_01R, Image_02L, ...). Validation images are always drawn from
the training images by :func:`~retina_lightning.data.base.hold_out` (seeded, so every run holds
out the same ones); test images are never used for validation.
"""

from __future__ import annotations

from sklearn.model_selection import KFold

from retina_lightning.data.base import (
    DatasetError,
    OfficialSplit,
    RetinaDataset,
    Split,
    SplitSamples,
    hold_out,
)
from retina_lightning.types import Sample

__all__ = ["FirstNSplit", "KFoldSplit", "LeaveOneOutSplit", "OfficialSplit", "SPLITS"]


def _load(dataset: RetinaDataset, subset: str, protocol: str) -> list[Sample]:
    if subset not in dataset.subsets():
        raise DatasetError(
            f"{protocol}: {dataset.name} has no subset {subset!r}; its subsets are "
            f"{list(dataset.subsets())} (set `subset:` of the split)"
        )
    samples = dataset.load(subset)
    if not samples:
        raise DatasetError(f"{protocol}: subset {subset!r} of {dataset.name} is empty")
    return samples


class FirstNSplit(Split):
    """The first ``n_train`` images (name order) train, the next ``n_test`` test.

    STARE 10/10 (002 sec. 4.1), IterNet's STARE 16/4 and CHASE_DB1 20/8 (003 sec. 4.1), DPN's
    CHASE_DB1 20/8 and 14/14 (002 sec. 4.1).

    Args:
        n_train: number of training images (validation included).
        n_test: number of test images right after them; ``None``: all the remaining ones.
        subset: the dataset subset to split (``"all"`` for STARE / CHASE_DB1).
        val_fraction: fraction of the training images held out for validation.
        seed: seed of the validation hold-out.
    """

    def __init__(
        self,
        n_train: int,
        n_test: int | None = None,
        subset: str = "all",
        val_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if n_train < 1:
            raise ValueError(f"FirstNSplit: n_train must be >= 1, got {n_train}")
        if n_test is not None and n_test < 0:
            raise ValueError(f"FirstNSplit: n_test must be >= 0 or None, got {n_test}")
        self.n_train, self.n_test = n_train, n_test
        self.subset, self.val_fraction, self.seed = subset, val_fraction, seed

    def __call__(self, dataset: RetinaDataset) -> SplitSamples:
        samples = _load(dataset, self.subset, "FirstNSplit")
        n_test = len(samples) - self.n_train if self.n_test is None else self.n_test
        if self.n_train + n_test > len(samples) or n_test < 0:
            raise DatasetError(
                f"FirstNSplit: {self.n_train} training + {n_test} test images requested but "
                f"{dataset.name} ({self.subset}) has {len(samples)}; lower n_train / n_test"
            )
        train, val = hold_out(samples[: self.n_train], self.val_fraction, self.seed)
        test = samples[self.n_train : self.n_train + n_test]
        return SplitSamples(train=train, val=val, test=test)


class KFoldSplit(Split):
    """Fold ``fold`` of a ``num_folds``-fold cross-validation: that fold tests, the others
    train (patch2image: STARE 5-fold, CHASE_DB1 4-fold, 004 sec. 6.1).

    Folds are contiguous blocks of the name-ordered images, sizes as
    :class:`sklearn.model_selection.KFold` (the first ``n % num_folds`` folds have one image
    more); ``shuffle=True`` permutes the images first with ``seed``. Running every ``fold``
    in ``0..num_folds-1`` tests each image exactly once.

    Args:
        num_folds: number of folds (2..number of images).
        fold: the test fold, ``0 <= fold < num_folds``.
        subset: the dataset subset to split.
        shuffle: permute before cutting the folds.
        seed: seed of the permutation and of the validation hold-out.
        val_fraction: fraction of the training images held out for validation.
    """

    def __init__(
        self,
        num_folds: int,
        fold: int,
        subset: str = "all",
        shuffle: bool = False,
        seed: int = 0,
        val_fraction: float = 0.0,
    ) -> None:
        if num_folds < 2:
            raise ValueError(f"KFoldSplit: num_folds must be >= 2, got {num_folds}")
        if not 0 <= fold < num_folds:
            raise ValueError(
                f"KFoldSplit: fold {fold} is out of range for {num_folds} folds; "
                f"use 0..{num_folds - 1}"
            )
        self.num_folds, self.fold, self.subset = num_folds, fold, subset
        self.shuffle, self.seed, self.val_fraction = shuffle, seed, val_fraction

    def __call__(self, dataset: RetinaDataset) -> SplitSamples:
        samples = _load(dataset, self.subset, "KFoldSplit")
        if self.num_folds > len(samples):
            raise DatasetError(
                f"KFoldSplit: {self.num_folds} folds need at least {self.num_folds} images; "
                f"{dataset.name} ({self.subset}) has {len(samples)}"
            )
        kfold = KFold(
            self.num_folds, shuffle=self.shuffle, random_state=self.seed if self.shuffle else None
        )
        train_idx, test_idx = list(kfold.split(samples))[self.fold]
        train, val = hold_out([samples[i] for i in train_idx], self.val_fraction, self.seed)
        return SplitSamples(train=train, val=val, test=[samples[i] for i in test_idx])


class LeaveOneOutSplit(Split):
    """Image ``index`` (name order) tests, all others train: DPN's STARE leave-one-out
    (002 sec. 4.1); run ``index = 0..n-1`` and pool the ``n`` test predictions.

    Args:
        index: the test image, ``-n <= index < n`` (negative counts from the end).
        subset: the dataset subset.
        val_fraction: fraction of the training images held out for validation.
        seed: seed of the validation hold-out.
    """

    def __init__(
        self, index: int, subset: str = "all", val_fraction: float = 0.0, seed: int = 0
    ) -> None:
        self.index, self.subset, self.val_fraction, self.seed = index, subset, val_fraction, seed

    def __call__(self, dataset: RetinaDataset) -> SplitSamples:
        samples = _load(dataset, self.subset, "LeaveOneOutSplit")
        n = len(samples)
        if not -n <= self.index < n:
            raise DatasetError(
                f"LeaveOneOutSplit: index {self.index} is out of range: {dataset.name} "
                f"({self.subset}) has {n} images; use 0..{n - 1}"
            )
        i = self.index % n
        train, val = hold_out(samples[:i] + samples[i + 1 :], self.val_fraction, self.seed)
        return SplitSamples(train=train, val=val, test=[samples[i]])


#: Split protocols by name, for configs.
SPLITS: dict[str, type[Split]] = {
    "official": OfficialSplit,
    "first_n": FirstNSplit,
    "kfold": KFoldSplit,
    "leave_one_out": LeaveOneOutSplit,
}
