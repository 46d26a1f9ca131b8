"""The two records that cross module boundaries: a loaded image (:class:`Sample`) and a
model's normalised output (:class:`SegOutput`).

Every dataset class returns ``list[Sample]``; every model returns a tensor of logits or a
:class:`SegOutput`; every loss and metric reads :class:`SegOutput` (through
:func:`as_output`, called once in the task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Class indices of the artery/vein label maps (SegRAVIR, 000 section III-A; RITE; RAVIR).
BACKGROUND, VEIN, ARTERY = 0, 1, 2
AV_CLASS_NAMES = ("background", "vein", "artery")


@dataclass
class Sample:
    """One fundus image with its annotations, as read from disk (CPU, numpy).

    Attributes:
        name: file stem that identifies the image in reports (``"01_test"``).
        image: ``(H, W, C)`` uint8, ``C`` = 3 (RGB) or 1 (grayscale / infrared).
        label: ``(H, W)`` uint8 target of the dataset's task: 0/1 for vessel (or optic
            disc) segmentation, 0/1/2 (background/vein/artery) for artery/vein targets.
        fov: ``(H, W)`` bool field-of-view mask (all True where a dataset has none and
            none was derived).
        second_observer: ``(H, W)`` uint8 0/1 labels of a second human annotator, if published.
        av: ``(H, W)`` uint8 0/1/2 artery/vein map when the dataset has one (RITE, RAVIR,
            synthetic); ``label`` stays the binary vessel map unless the datamodule asks
            for the ``av`` target.
        pixel_size_um: physical pixel size in microns (RAVIR 12.5), for vessel widths.
        meta: free-form provenance (paths, original size).
    """

    name: str
    image: np.ndarray
    label: np.ndarray
    fov: np.ndarray
    second_observer: np.ndarray | None = None
    av: np.ndarray | None = None
    pixel_size_um: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class SegOutput:
    """A model's output in one structure, whatever the architecture.

    Attributes:
        main: ``(B, K, H, W)`` logits of the final prediction; ``K = 1`` for a binary
            target (sigmoid), ``K > 1`` for classes (softmax).
        aux: earlier / side predictions of the same shape as ``main`` (DPN's side outputs
            after DPR-Blocks 1, 3, 5; IterNet's outputs 1..N-1), ordered from first to last.
        recon: ``(B, C, H, W)`` reconstruction of the input image (SegRAVIR's auxiliary
            stream), or ``None``.
    """

    main: Tensor
    aux: list[Tensor] = field(default_factory=list)
    recon: Tensor | None = None

    def all_predictions(self) -> list[Tensor]:
        """``aux + [main]``: every supervised output, in network order."""
        return [*self.aux, self.main]


def as_output(raw: Tensor | SegOutput | Mapping[str, Any] | Sequence[Tensor]) -> SegOutput:
    """Normalise whatever a model returns into a :class:`SegOutput`.

    Accepts a tensor (one logit map), a :class:`SegOutput`, a mapping with keys ``main``
    and optionally ``aux`` / ``recon``, or a sequence of tensors whose last item is the
    main prediction (IterNet-style lists).
    """
    if isinstance(raw, SegOutput):
        return raw
    if isinstance(raw, Tensor):
        return SegOutput(main=raw)
    if isinstance(raw, Mapping):
        if "main" not in raw:
            raise KeyError(f"model output dict needs a 'main' key, got keys {sorted(raw)}")
        return SegOutput(main=raw["main"], aux=list(raw.get("aux") or []), recon=raw.get("recon"))
    if isinstance(raw, Sequence) and raw and all(isinstance(t, Tensor) for t in raw):
        return SegOutput(main=raw[-1], aux=list(raw[:-1]))
    raise TypeError(
        f"cannot interpret a model output of type {type(raw).__name__}: return a Tensor of "
        "logits, a SegOutput, a dict with 'main', or a list of Tensors (last = main)"
    )


def to_tensor_image(array: np.ndarray) -> Tensor:
    """``(H, W, C)`` uint8 numpy -> ``(C, H, W)`` uint8 torch (no copy when contiguous)."""
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
