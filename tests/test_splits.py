"""Split protocols (first-N, k-fold, leave-one-out, official) on an in-memory dataset."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import fixtures
from sklearn.model_selection import KFold

from retina_lightning.data.base import DatasetError, RetinaDataset
from retina_lightning.data.datasets import STARE
from retina_lightning.data.splits import (
    SPLITS,
    FirstNSplit,
    KFoldSplit,
    LeaveOneOutSplit,
    OfficialSplit,
)
from retina_lightning.types import Sample


class Pool(RetinaDataset):
    """``n`` one-pixel samples named ``s00``, ``s01``, ... in one subset ``all`` (plus a
    ``training`` / ``test`` pair for the official split)."""

    def __init__(self, n: int) -> None:
        super().__init__(None)
        self.n = n

    def subsets(self) -> tuple[str, ...]:
        return ("all", "training", "test")

    def load(self, subset: str) -> list[Sample]:
        self._check_subset(subset)
        n = {"all": self.n, "training": 6, "test": 4}[subset]
        prefix = {"all": "s", "training": "tr", "test": "te"}[subset]
        return [
            Sample(
                name=f"{prefix}{i:02d}",
                image=np.zeros((1, 1, 3), np.uint8),
                label=np.zeros((1, 1), np.uint8),
                fov=np.ones((1, 1), bool),
            )
            for i in range(n)
        ]


def names(samples: list[Sample]) -> list[str]:
    return [s.name for s in samples]


def test_first_n_stare_10_10_and_chase_20_8():
    split = FirstNSplit(10, 10)(Pool(20))
    assert names(split.train) == [f"s{i:02d}" for i in range(10)]
    assert names(split.test) == [f"s{i:02d}" for i in range(10, 20)]
    assert split.val == []
    chase = FirstNSplit(20)(Pool(28))  # n_test None: the remaining 8
    assert len(chase.train) == 20 and names(chase.test) == [f"s{i:02d}" for i in range(20, 28)]
    half = FirstNSplit(14, 14)(Pool(28))
    assert names(half.test)[0] == "s14" and len(half.test) == 14
    iternet = FirstNSplit(16, 4)(Pool(20))
    assert len(iternet.train) == 16 and names(iternet.test) == ["s16", "s17", "s18", "s19"]


def test_first_n_errors():
    with pytest.raises(DatasetError, match="15 training \\+ 10 test images requested.*has 20"):
        FirstNSplit(15, 10)(Pool(20))
    with pytest.raises(ValueError, match="n_train"):
        FirstNSplit(0)
    with pytest.raises(DatasetError, match="no subset 'train'"):
        FirstNSplit(5, subset="train")(Pool(20))


@pytest.mark.parametrize(("n", "k"), [(20, 5), (28, 4), (10, 3)])
def test_kfold_partitions_the_set(n, k):
    tests, all_names = [], {f"s{i:02d}" for i in range(n)}
    for fold in range(k):
        split = KFoldSplit(k, fold)(Pool(n))
        train, test = set(names(split.train)), set(names(split.test))
        assert not train & test
        assert train | test == all_names
        tests.append(test)
    assert set().union(*tests) == all_names
    assert sum(len(t) for t in tests) == n  # disjoint folds
    expected = [len(t) for _, t in KFold(k).split(np.arange(n))]
    assert [len(t) for t in tests] == expected
    # unshuffled folds are contiguous blocks in name order
    assert names(KFoldSplit(k, 0)(Pool(n)).test) == [f"s{i:02d}" for i in range(expected[0])]


def test_kfold_shuffle_is_seeded():
    a = names(KFoldSplit(5, 2, shuffle=True, seed=3)(Pool(20)).test)
    b = names(KFoldSplit(5, 2, shuffle=True, seed=3)(Pool(20)).test)
    c = names(KFoldSplit(5, 2, shuffle=True, seed=4)(Pool(20)).test)
    assert a == b and a != c
    assert a != names(KFoldSplit(5, 2)(Pool(20)).test)
    folds = [set(names(KFoldSplit(5, f, shuffle=True, seed=3)(Pool(20)).test)) for f in range(5)]
    assert sum(map(len, folds)) == 20 and len(set().union(*folds)) == 20


def test_kfold_errors():
    with pytest.raises(ValueError, match="fold 5 is out of range for 5 folds; use 0..4"):
        KFoldSplit(5, 5)
    with pytest.raises(ValueError, match="fold -1"):
        KFoldSplit(5, -1)
    with pytest.raises(ValueError, match="num_folds"):
        KFoldSplit(1, 0)
    with pytest.raises(DatasetError, match="6 folds need at least 6 images"):
        KFoldSplit(6, 0)(Pool(4))


def test_leave_one_out():
    for index in (0, 7, 19):
        split = LeaveOneOutSplit(index)(Pool(20))
        assert names(split.test) == [f"s{index:02d}"]
        assert len(split.train) == 19 and f"s{index:02d}" not in names(split.train)
    assert names(LeaveOneOutSplit(-1)(Pool(20)).test) == ["s19"]
    with pytest.raises(DatasetError, match="index 20 is out of range.*use 0..19"):
        LeaveOneOutSplit(20)(Pool(20))


@pytest.mark.parametrize(
    "split",
    [
        FirstNSplit(10, 10, val_fraction=0.2, seed=1),
        KFoldSplit(5, 1, val_fraction=0.25, seed=1),
        LeaveOneOutSplit(3, val_fraction=0.1, seed=1),
        OfficialSplit(val_fraction=0.5, seed=1),
    ],
)
def test_val_comes_from_training_images_only_and_is_deterministic(split):
    first, second = split(Pool(20)), split(Pool(20))
    assert names(first.val) == names(second.val) and names(first.train) == names(second.train)
    assert first.val
    val, train, test = set(names(first.val)), set(names(first.train)), set(names(first.test))
    assert not val & test and not val & train
    if isinstance(split, OfficialSplit):
        assert val | train == {f"tr{i:02d}" for i in range(6)} and len(val) == 3
    # the same split without validation: train of that = train + val of this
    unvalidated = type(split)(**{**vars(split), "val_fraction": 0.0})(Pool(20))
    assert set(names(unvalidated.train)) == train | val
    assert names(unvalidated.test) == names(first.test)


def test_first_means_name_order_on_a_real_reader(tmp_path):
    root = fixtures().make_stare_archive(tmp_path)
    split = FirstNSplit(3, 1)(STARE(root))
    assert names(split.train) == ["im0001", "im0002", "im0003"]
    assert names(split.test) == ["im0044"]


def test_registry():
    assert {
        "official": OfficialSplit,
        "first_n": FirstNSplit,
        "kfold": KFoldSplit,
        "leave_one_out": LeaveOneOutSplit,
    } == SPLITS
