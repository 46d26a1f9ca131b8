"""The numbers the source papers report, as data, for "ours vs. paper" leaderboards.

Paper ids are the files of the project's paper collection: 000 SegRAVIR, 001 R2U-Net report,
002 DPN, 003 IterNet, 004 patch2image. Every record cites the table it comes from. Metrics use
the suite's names (:mod:`retina_lightning.metrics`): ``se`` (sensitivity), ``sp``
(specificity), ``acc``, ``auroc`` (the papers' "AUC"), ``auprc``, ``f1`` (Dice), ``jaccard``,
``connectivity`` (IterNet's Conn., 003 section 4.2). Pixels are counted inside the FOV mask
unless ``fov`` is False.

What is comparable and what is not:

* DRIVE has an official 20 / 20 split; STARE and CHASE_DB1 have none, so the *protocol*
  (``first10-10``, ``loo``, ``5fold``...) is part of the number (002 section 4.1, 003
  section 4.1, 004 section 5.1). Protocol names are those of
  :func:`retina_lightning.tracking.protocol_name`.
* The operating point: DPN thresholds at the optimal ROC point (002 section 4.4, as the
  suite's ``@opt``); patch2image at 0.5 without FOV mask (004 section 6.1, Eq. 5-6, as the
  suite's ``@0.5`` with ``metrics_in_fov: false``); IterNet and the U-Net family rows it
  quotes do not state it (``threshold=""``).
* U-Net / R2U-Net / DUNet rows are as *quoted by* IterNet (003 Table 1) from their papers;
  DPN quotes slightly different U-Net / DUNet numbers (002 Table 1) which are not repeated
  here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Paper ids of the collection.
PAPERS: dict[str, str] = {
    "000": "SegRAVIR / RAVIR dataset",
    "001": "R2U-Net (recurrent residual U-Net) report",
    "002": "DPN: Detail-Preserving Network",
    "003": "IterNet: iterative mini-UNet refinement",
    "004": "patch2image: from patch to image segmentation",
}

#: Vessel pixel fraction inside the FOV of the DRIVE test set (first observer), computed from
#: the data; the papers quote 8.69 % / 7.6 % / 6.93 % of the *whole image* for DRIVE / STARE /
#: CHASE_DB1 (002 section 4.1).
DRIVE_TEST_VESSEL_FRACTION = 0.1273


@dataclass(frozen=True)
class ReportedResult:
    """One row of a paper's results table.

    Attributes:
        method: the suite's method name (the experiment's last path component, e.g. ``dpn``
            for ``configs/drive/dpn.yaml``), or ``second_observer`` for the human baseline.
        label: how the paper names the row.
        dataset: registry name of the test dataset (``drive``, ``stare``, ``chase_db1``).
        protocol: the split (``official``, ``first10-10``, ``loo``, ``5fold``...).
        source: paper id (``002``) or ``data`` for numbers computed from the dataset itself.
        where: table / section of the source.
        metrics: the numbers, with the suite's metric names.
        threshold: ``opt`` (ROC-optimal), ``0.5``, or ``""`` when the paper does not say.
        fov: metrics counted inside the FOV mask only.
        train_dataset: for cross-dataset rows, the dataset the model was trained on.
        extra: other reported quantities (parameters, frames per second...).
        notes: anything else a reader must know to compare.
    """

    method: str
    label: str
    dataset: str
    protocol: str
    source: str
    where: str
    metrics: Mapping[str, float]
    threshold: str = ""
    fov: bool = True
    train_dataset: str | None = None
    extra: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""

    @property
    def citation(self) -> str:
        return f"{self.source}, {self.where}" if self.source != "data" else self.where


def _m(se: float, sp: float, acc: float, auroc: float | None, f1: float | None, **kw: float):
    out = {"se": se, "sp": sp, "acc": acc}
    if auroc is not None:
        out["auroc"] = auroc
    if f1 is not None:
        out["f1"] = f1
    out.update(kw)
    return out


_P2I = "image-based, fine-tuned from patch weights; whole image, no FOV mask, threshold 0.5"

#: Every reported row, DRIVE first.
REPORTED: tuple[ReportedResult, ...] = (
    # ---------------------------------------------------------------- DRIVE, official split
    ReportedResult(
        "second_observer",
        "2nd human observer",
        "drive",
        "official",
        "data",
        "DRIVE test/2nd_manual vs 1st_manual, pooled over the 20 test images",
        _m(0.7746, 0.9725, 0.9473, None, 0.7891),
        threshold="0.5",
        notes="mean per-image F1 0.7881",
    ),
    ReportedResult(
        "unet",
        "UNet (reported)",
        "drive",
        "official",
        "003",
        "Table 1",
        _m(0.7822, 0.9808, 0.9555, 0.9752, 0.8174, connectivity=0.7948),
        notes="quoted by IterNet from the DUNet paper",
    ),
    ReportedResult(
        "r2unet",
        "R2UNet",
        "drive",
        "official",
        "003",
        "Table 1",
        _m(0.7792, 0.9813, 0.9556, 0.9784, 0.8171),
        notes="quoted by IterNet from the R2U-Net paper; 001's own run collapsed (class "
        "imbalance left unhandled)",
    ),
    ReportedResult(
        "dunet",
        "DUNet (reported)",
        "drive",
        "official",
        "003",
        "Table 1",
        _m(0.7863, 0.9805, 0.9558, 0.9778, 0.8190, connectivity=0.8314),
        notes="deformable U-Net, quoted by IterNet",
    ),
    ReportedResult(
        "iternet",
        "IterNet (whole image)",
        "drive",
        "official",
        "003",
        "Table 1",
        _m(0.7791, 0.9831, 0.9574, 0.9813, 0.8218, connectivity=0.9001),
        extra={"auroc_out1": 0.9793, "auroc_out2": 0.9812, "auroc_out3": 0.9815},
        notes="trained on 128 px patches, whole-image inference",
    ),
    ReportedResult(
        "iternet_patched",
        "IterNet (patched)",
        "drive",
        "official",
        "003",
        "Table 1",
        _m(0.7735, 0.9838, 0.9573, 0.9816, 0.8205, connectivity=0.9193),
        notes="overlapping-patch inference",
    ),
    ReportedResult(
        "dpn",
        "DPN",
        "drive",
        "official",
        "002",
        "Table 1",
        _m(0.8004, 0.9801, 0.9572, 0.9815, 0.8293),
        threshold="opt",
        extra={"fps": 11.8, "num_parameters": 96_000},
        notes="fps disk-to-disk on an RTX 2080 Ti; ~96k parameters",
    ),
    ReportedResult(
        "dpn_no_aux",
        "DPN without auxiliary losses",
        "drive",
        "official",
        "002",
        "Table 5",
        _m(0.7838, 0.9811, 0.9560, 0.9804, 0.8237),
        threshold="opt",
    ),
    ReportedResult(
        "patch2image_light",
        "patch2image Light (image fine-tuned)",
        "drive",
        "official",
        "004",
        "Table 1",
        _m(0.8187, 0.9772, 0.9632, 0.9808, 0.7949, jaccard=0.6600, auprc=0.8822),
        threshold="0.5",
        fov=False,
        extra={"num_parameters": 8_889},
        notes=_P2I,
    ),
    ReportedResult(
        "patch2image_miniunet",
        "patch2image Mini-Unet (image fine-tuned)",
        "drive",
        "official",
        "004",
        "Table 1",
        _m(0.8342, 0.9822, 0.9691, 0.9866, 0.8246, jaccard=0.7017, auprc=0.9114),
        threshold="0.5",
        fov=False,
        extra={"num_parameters": 316_657},
        notes=_P2I,
    ),
    ReportedResult(
        "patch2image_dense",
        "patch2image Dense (image fine-tuned)",
        "drive",
        "official",
        "004",
        "Table 1",
        _m(0.8277, 0.9830, 0.9693, 0.9870, 0.8242, jaccard=0.7013, auprc=0.9129),
        threshold="0.5",
        fov=False,
        extra={"num_parameters": 1_032_588},
        notes=_P2I,
    ),
    # ---------------------------------------------------------------------------- STARE
    ReportedResult(
        "dpn",
        "DPN",
        "stare",
        "first10-10",
        "002",
        "Table 2",
        _m(0.8109, 0.9857, 0.9674, 0.9885, 0.8424),
        threshold="opt",
        extra={"fps": 9.1},
        notes="first 10 images train, last 10 test; CLAHE on the green channel",
    ),
    ReportedResult(
        "dpn",
        "DPN",
        "stare",
        "loo",
        "002",
        "Table 2",
        _m(0.8020, 0.9848, 0.9649, 0.9859, 0.8237),
        threshold="opt",
        extra={"fps": 9.1},
        notes="leave-one-out: mean over 20 models",
    ),
    ReportedResult(
        "iternet",
        "IterNet (with FOV masks)",
        "stare",
        "first16-4",
        "003",
        "Table 3",
        _m(0.7715, 0.9886, 0.9701, 0.9881, 0.8146, connectivity=0.8977),
        notes="16 train / 4 test, no validation images; FOV masks made by colour thresholding",
    ),
    ReportedResult(
        "patch2image_miniunet",
        "patch2image Mini-Unet",
        "stare",
        "5fold",
        "004",
        "Table 2",
        _m(0.7955, 0.9865, 0.9723, 0.9867, 0.8083),
        threshold="0.5",
        fov=False,
        notes="5-fold cross-validation",
    ),
    ReportedResult(
        "patch2image_dense",
        "patch2image Dense",
        "stare",
        "5fold",
        "004",
        "Table 2",
        _m(0.8152, 0.9844, 0.9718, 0.9869, 0.8100),
        threshold="0.5",
        fov=False,
        notes="5-fold cross-validation",
    ),
    # ------------------------------------------------------------------------ CHASE_DB1
    ReportedResult(
        "dpn",
        "DPN",
        "chase_db1",
        "first20-8",
        "002",
        "Table 3",
        _m(0.7757, 0.9841, 0.9652, 0.9854, 0.8080),
        threshold="opt",
        extra={"fps": 5.6},
        notes="first 20 train, last 8 test; 736x736 training crops",
    ),
    ReportedResult(
        "dpn",
        "DPN",
        "chase_db1",
        "first14-14",
        "002",
        "Table 3",
        _m(0.8374, 0.9747, 0.9619, 0.9831, 0.7980),
        threshold="opt",
        notes="14 / 14 split",
    ),
    ReportedResult(
        "iternet",
        "IterNet (with FOV masks)",
        "chase_db1",
        "first20-8",
        "003",
        "Table 2",
        _m(0.7970, 0.9823, 0.9655, 0.9851, 0.8073, connectivity=0.9091),
        notes="20 train / 8 test, no validation images",
    ),
    ReportedResult(
        "patch2image_miniunet",
        "patch2image Mini-Unet",
        "chase_db1",
        "4fold",
        "004",
        "Table 3",
        _m(0.8117, 0.9861, 0.9737, 0.9875, 0.8093),
        threshold="0.5",
        fov=False,
        notes="4-fold cross-validation (folds keep both eyes of a child together)",
    ),
    ReportedResult(
        "patch2image_dense",
        "patch2image Dense",
        "chase_db1",
        "4fold",
        "004",
        "Table 3",
        _m(0.8016, 0.9869, 0.9737, 0.9878, 0.8068),
        threshold="0.5",
        fov=False,
        notes="4-fold cross-validation",
    ),
    # --------------------------------------------- cross-dataset (train on one, test on other)
    ReportedResult(
        "dpn",
        "DPN, STARE -> DRIVE",
        "drive",
        "all",
        "002",
        "Table 4",
        _m(0.7410, 0.9801, 0.9499, 0.9685, None),
        threshold="opt",
        train_dataset="stare",
        notes="trained on STARE, applied without retraining (002 section 4.5.3)",
    ),
    ReportedResult(
        "dpn",
        "DPN, DRIVE -> STARE",
        "stare",
        "all",
        "002",
        "Table 4",
        _m(0.6635, 0.9821, 0.9492, 0.9559, None),
        threshold="opt",
        train_dataset="drive",
        notes="DRIVE training set -> the whole STARE set, no retraining (002 section 4.5.3)",
    ),
    ReportedResult(
        "dpn_clahe",
        "DPN, DRIVE -> STARE, CLAHE on the training images",
        "stare",
        "all",
        "002",
        "Table 4",
        _m(0.7100, 0.9841, 0.9558, 0.9689, None),
        threshold="opt",
        train_dataset="drive",
        notes="retrained on DRIVE with CLAHE preprocessing",
    ),
)


def reported(
    dataset: str | None = None,
    method: str | None = None,
    protocol: str | None = None,
    cross_dataset: bool = False,
) -> list[ReportedResult]:
    """The reported rows for a test ``dataset`` (and ``method`` / ``protocol``), in table
    order. Cross-dataset rows (a ``train_dataset`` other than the test set) only with
    ``cross_dataset=True``."""
    from retina_lightning.tracking import canonical_dataset

    ds = canonical_dataset(dataset) if dataset else None
    return [
        r
        for r in REPORTED
        if (ds is None or r.dataset == ds)
        and (method is None or r.method == method)
        and (protocol is None or r.protocol == protocol)
        and ((r.train_dataset is not None) == cross_dataset)
    ]
