"""``retina data check``: read a whole dataset and report what is there and what is wrong.

For every subset: the number of images, their distinct sizes, channel counts and bit depths
(inferred from 16-bit data, ``io.bit_depth``: a 12-bit camera image reads as 12), the vessel
(foreground) fraction inside the FOV (per image mean / min / max and pooled; DRIVE's test set:
0.1273 pooled, REFERENCE.md), where the FOV masks come from (published or derived), whether a
second observer and artery/vein maps are present, and every problem found. File-level errors
are collected, not raised, so that one bad file does not hide the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from retina_lightning.data.base import DatasetError, RetinaDataset
from retina_lightning.types import Sample

__all__ = ["DataReport", "SubsetReport", "check_dataset", "format_report"]


@dataclass
class SubsetReport:
    """Statistics and problems of one subset."""

    subset: str
    count: int = 0
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)
    channels: dict[int, int] = field(default_factory=dict)
    fractions: list[float] = field(default_factory=list)
    pooled_fraction: float | None = None
    fov_sources: dict[str, int] = field(default_factory=dict)
    bit_depths: dict[int, int] = field(default_factory=dict)
    second_observer: int = 0
    av: int = 0
    unlabelled: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def fraction_stats(self) -> tuple[float, float, float] | None:
        """(mean, min, max) of the per-image foreground fraction inside the FOV."""
        if not self.fractions:
            return None
        f = np.asarray(self.fractions)
        return float(f.mean()), float(f.min()), float(f.max())


@dataclass
class DataReport:
    """The check of one dataset: one :class:`SubsetReport` per subset."""

    dataset: str
    root: str | None
    subsets: list[SubsetReport] = field(default_factory=list)
    dataset_problems: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every problem: the dataset's own, then each subset's (prefixed ``[subset]``)."""
        return self.dataset_problems + [
            f"[{s.subset}] {p}" for s in self.subsets for p in s.problems
        ]

    @property
    def ok(self) -> bool:
        return not self.problems


def _sample_problems(sample: Sample) -> list[str]:
    """Content checks the readers do not already enforce."""
    problems = []
    where = f"{sample.name}"
    if not sample.fov.any():
        problems.append(f"{where}: the FOV mask is empty")
    values = np.unique(sample.label)
    allowed = {0, 1, 2} if sample.meta.get("target") == "av" else {0, 1}
    if not set(values.tolist()) <= allowed:
        problems.append(f"{where}: label values {values.tolist()} outside {sorted(allowed)}")
    return problems


def _account(report: SubsetReport, sample: Sample, totals: list[int]) -> None:
    report.count += 1
    h, w = sample.shape
    report.sizes[(h, w)] = report.sizes.get((h, w), 0) + 1
    c = int(sample.image.shape[2]) if sample.image.ndim == 3 else 1
    report.channels[c] = report.channels.get(c, 0) + 1
    bits = sample.meta.get("bit_depth")
    if bits is not None:
        report.bit_depths[int(bits)] = report.bit_depths.get(int(bits), 0) + 1
    source = str(sample.meta.get("fov_source", "unknown"))
    report.fov_sources[source] = report.fov_sources.get(source, 0) + 1
    report.second_observer += sample.second_observer is not None
    report.av += sample.av is not None
    if sample.meta.get("unlabelled"):
        report.unlabelled += 1
        return
    fov = sample.fov.astype(bool)
    inside = int(fov.sum())
    foreground = int(((sample.label > 0) & fov).sum())
    if inside:
        report.fractions.append(foreground / inside)
        totals[0] += foreground
        totals[1] += inside
    report.problems.extend(_sample_problems(sample))


def check_dataset(dataset: RetinaDataset) -> DataReport:
    """Read every image of every subset of ``dataset`` and collect statistics and problems.

    Readers with a ``scan`` / ``read`` pair (the file datasets of ``data/datasets/``) are checked
    file by file; any other :class:`RetinaDataset` through ``load``.
    """
    root = str(dataset.root) if dataset.root is not None else None
    report = DataReport(dataset=dataset.name, root=root)
    try:
        subsets = dataset.subsets()
    except DatasetError as e:
        report.dataset_problems.append(str(e))
        return report
    for subset in subsets:
        sub = SubsetReport(subset=subset)
        report.subsets.append(sub)
        totals = [0, 0]
        scan_fn, read_fn = getattr(dataset, "scan", None), getattr(dataset, "read", None)
        if callable(scan_fn) and callable(read_fn):
            try:
                scan = scan_fn(subset)
            except DatasetError as e:
                sub.problems.append(str(e))
                continue
            sub.problems.extend(scan.problems)
            sub.notes.extend(scan.notes)
            for entry in scan.entries:
                try:
                    sample = read_fn(entry)
                except (DatasetError, OSError, ValueError) as e:
                    sub.problems.append(f"{entry.name}: {e}")
                    continue
                _account(sub, sample, totals)
        else:
            try:
                samples = dataset.load(subset)
            except (DatasetError, OSError, ValueError) as e:
                sub.problems.append(str(e))
                continue
            for sample in samples:
                _account(sub, sample, totals)
        if totals[1]:
            sub.pooled_fraction = totals[0] / totals[1]
        if len(sub.bit_depths) > 1:
            sub.notes.append(
                f"images of different bit depths ({_counts(sub.bit_depths)}): each is scaled "
                "to 8 bits by its own 2**bits - 1 (inferred from its maximum value); if they "
                "come from one camera, convert them to one depth"
            )
    return report


def _counts(counter: dict, fmt=str) -> str:
    return ", ".join(f"{fmt(k)} ({v})" for k, v in Counter(counter).most_common())


def format_report(report: DataReport) -> str:
    """A plain-text rendering of :func:`check_dataset`'s report."""
    lines = [f"{report.dataset} at {report.root}"]
    lines += [f"  PROBLEM: {p}" for p in report.dataset_problems]
    for sub in report.subsets:
        lines.append(f"  [{sub.subset}] {sub.count} image(s)")
        if sub.count:
            lines.append(f"    size (HxW):   {_counts(sub.sizes, lambda s: f'{s[0]}x{s[1]}')}")
            lines.append(f"    channels:     {_counts(sub.channels)}")
            if sub.bit_depths:
                lines.append(f"    bit depth:    {_counts(sub.bit_depths)}")
            stats = sub.fraction_stats
            if stats is not None:
                lines.append(
                    f"    foreground in FOV: mean {stats[0]:.4f}, min {stats[1]:.4f}, "
                    f"max {stats[2]:.4f}, pooled {sub.pooled_fraction:.4f}"
                )
            lines.append(f"    FOV masks:    {_counts(sub.fov_sources)}")
            lines.append(f"    2nd observer: {sub.second_observer}/{sub.count}")
            if sub.av:
                lines.append(f"    A/V maps:     {sub.av}/{sub.count}")
            if sub.unlabelled:
                lines.append(f"    unlabelled:   {sub.unlabelled}/{sub.count}")
        lines += [f"    note: {n}" for n in sub.notes]
        lines += [f"    PROBLEM: {p}" for p in sub.problems]
    lines.append("OK" if report.ok else f"{len(report.problems)} problem(s) found")
    return "\n".join(lines)
