"""Datasets (one class per published layout), split protocols, the synthetic generator, and
the datamodule that samples training patches on the device."""

from retina_lightning.data.base import (
    DatasetError,
    DatasetSplit,
    OfficialSplit,
    RetinaDataset,
    Split,
)
from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.data.datasets import (
    CHASEDB1,
    DATASETS,
    DRIVE,
    HRF,
    RAVIR,
    RITE,
    STARE,
    FolderDataset,
    IDRiDOpticDisc,
)
from retina_lightning.data.splits import FirstNSplit, KFoldSplit, LeaveOneOutSplit
from retina_lightning.data.synthetic import SyntheticFundus, generate_fundus
from retina_lightning.data.transforms import Augment, Preprocess

DATASETS.setdefault("synthetic", SyntheticFundus)

__all__ = [
    "CHASEDB1",
    "DATASETS",
    "DRIVE",
    "HRF",
    "RAVIR",
    "RITE",
    "STARE",
    "Augment",
    "DatasetError",
    "DatasetSplit",
    "FirstNSplit",
    "FolderDataset",
    "IDRiDOpticDisc",
    "KFoldSplit",
    "LeaveOneOutSplit",
    "OfficialSplit",
    "Preprocess",
    "RetinaDataModule",
    "RetinaDataset",
    "Split",
    "SyntheticFundus",
    "generate_fundus",
]
