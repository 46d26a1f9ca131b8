"""Leaderboards: the suite's runs side by side with the papers' numbers, with the spread over
seeds, paired per-image tests between methods, and train x test cross-dataset matrices.

One module per job:

* :mod:`~retina_lightning.leaderboard.results`: collecting runs (:func:`collect_runs`) from
  ``metrics.json`` / ``per_image.csv`` / ``config.yaml`` and (online) a W&B project;
* :mod:`~retina_lightning.leaderboard.tables`: the table (:func:`leaderboard_table`),
  Markdown / CSV;
* :mod:`~retina_lightning.leaderboard.stats`: paired per-image tests
  (:func:`paired_comparison`) and box plots;
* :mod:`~retina_lightning.leaderboard.cross`: cross-dataset matrices
  (:func:`cross_dataset_matrix`);
* :mod:`~retina_lightning.leaderboard.cli`: ``retina leaderboard ...``
  (:func:`leaderboard_main`).
"""

from retina_lightning.leaderboard.cli import (
    _checkpoint_label,
    _cross_main,
    leaderboard_main,
)
from retina_lightning.leaderboard.cross import (
    CrossDatasetMatrix,
    cross_dataset_matrix,
    datamodule_from_config,
)
from retina_lightning.leaderboard.results import (
    LeaderboardError,
    RunResult,
    collect_runs,
    read_per_image_csv,
    result_from_files,
    result_from_wandb_summary,
)
from retina_lightning.leaderboard.stats import (
    PairedComparison,
    paired_comparison,
    per_image_rows,
    save_method_boxplot,
)
from retina_lightning.leaderboard.tables import (
    DEFAULT_METRICS,
    Leaderboard,
    LeaderboardRow,
    leaderboard_table,
)

__all__ = [
    "DEFAULT_METRICS",
    "CrossDatasetMatrix",
    "Leaderboard",
    "LeaderboardError",
    "LeaderboardRow",
    "PairedComparison",
    "RunResult",
    "_checkpoint_label",
    "_cross_main",
    "collect_runs",
    "cross_dataset_matrix",
    "datamodule_from_config",
    "leaderboard_main",
    "leaderboard_table",
    "paired_comparison",
    "per_image_rows",
    "read_per_image_csv",
    "result_from_files",
    "result_from_wandb_summary",
    "save_method_boxplot",
]
