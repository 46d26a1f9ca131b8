"""LightningModules: one generic task that any model and loss plug into by config, and the
distillation task that trains a student under a frozen teacher."""

from retina_lightning.tasks.distillation import DistillationTask, RetinaTrainer
from retina_lightning.tasks.segmentation import SegmentationTask

__all__ = ["DistillationTask", "RetinaTrainer", "SegmentationTask"]
