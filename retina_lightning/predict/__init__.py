"""``retina predict``: segment a folder of fundus images with a trained checkpoint.

    retina predict --ckpt_path run.ckpt --input photos/ --output out/ [--width --pixel_size_um 12.5]

The command is Lightning's predict loop: ``Trainer.predict`` of the checkpoint's task over a
:class:`~retina_lightning.predict.folder.FolderDataModule` with a
:class:`~retina_lightning.predict.writer.MapWriter` (``BasePredictionWriter``) callback.

The checkpoint rebuilds everything inference needs (:mod:`~retina_lightning.predict.checkpoint`):
the model (LightningCLI stores its config in ``hyper_parameters``), the validation-chosen threshold
chosen on the validation images (the task's ``threshold`` buffer, DPN 002 section 4.4: "the
optimal operating point of the ROC curve"), the inference mode (whole image, DPN 002 section
4.3; or overlapping tiles, IterNet 003 section 5) and the input conditioning (the datamodule's
``preprocess``, ``fov_diameter`` and dataset statistics, applied by the same
``RetinaDataModule.prepare_whole`` as validation and test batches), so a new image is seen
exactly as the validation images were.

An output folder that already holds results (``predictions.csv``, ``<stem>_mask.png`` & co.)
is refused unless ``--overwrite`` deletes them first, so one folder never mixes two runs. With
``--fov FOLDER`` the images without a mask there are listed (their FOV is derived). What is
written per image is in :mod:`~retina_lightning.predict.writer`; ``predictions.csv`` gives per
image the size, the vessel density inside the FOV, the mean / std vessel width (and
``width_rule``: ``>=0.5`` or ``argmax``) and the seconds it took. Speed is reported as DPN does
(002 section 4.4): the time from reading the image from disk to writing its maps to disk,
``fps = images / seconds``.
"""

from retina_lightning.predict.checkpoint import (
    PredictError,
    Predictor,
    conditioning,
    fov_diameter_from,
    load_predictor,
    preprocess_from,
    train_fov_diameter_from,
)
from retina_lightning.predict.command import (
    build_parser,
    earlier_results,
    predict_image,
    predict_main,
    run_predict_loop,
)
from retina_lightning.predict.folder import (
    OUTPUT_SUFFIXES,
    FolderDataModule,
    ImageFolder,
    find_images,
    match_fov,
)
from retina_lightning.predict.writer import (
    MapOptions,
    MapWriter,
    width_colours,
    width_segmentation,
    write_maps,
)

__all__ = [
    "OUTPUT_SUFFIXES",
    "FolderDataModule",
    "ImageFolder",
    "MapOptions",
    "MapWriter",
    "PredictError",
    "Predictor",
    "build_parser",
    "conditioning",
    "earlier_results",
    "find_images",
    "fov_diameter_from",
    "train_fov_diameter_from",
    "load_predictor",
    "match_fov",
    "predict_image",
    "predict_main",
    "preprocess_from",
    "run_predict_loop",
    "width_colours",
    "width_segmentation",
    "write_maps",
]
