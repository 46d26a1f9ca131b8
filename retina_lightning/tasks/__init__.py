"""LightningModules: one generic task that any model and loss plug into by config."""

from retina_lightning.tasks.segmentation import SegmentationTask

__all__ = ["SegmentationTask"]
