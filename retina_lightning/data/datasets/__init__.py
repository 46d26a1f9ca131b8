"""Readers of the public retinal datasets, one class per published file layout.

Each class is a :class:`~retina_lightning.data.base.RetinaDataset`: ``subsets()`` names the
publisher's folders, ``load(subset)`` returns the images of one subset sorted by name as
:class:`~retina_lightning.types.Sample` records. Every reader works in two steps, which the
data checker (``check.py``) also uses to report all bad files at once:

* ``scan(subset)`` pairs files by name and returns :class:`Scan` (entries + problems such as
  an image without a label or a label without an image);
* ``read(entry)`` decodes one entry into a :class:`Sample` (unreadable file, label of another
  size than its image, non-binary label -> :class:`DatasetError` naming the file).

``load`` raises on the first problem; nothing is skipped silently. ``Sample.meta`` holds the
file paths, the subset, ``bit_depth`` (of the image file, ``io.bit_depth``) and
``fov_source``: ``"published"`` (the dataset's own FOV masks), ``"derived"``
(:func:`~retina_lightning.data.fov.derive_fov`, IterNet 003 sec. 4.1), ``"drive"`` (RITE with
DRIVE's masks) or ``"none"`` (the whole frame, RAVIR).

Modules: ``files`` (the machinery every reader shares), ``photographs`` (DRIVE, STARE,
CHASE_DB1, HRF), ``artery_vein`` (RITE, RAVIR), ``idrid``, ``folder`` (a user's own
images), ``registry`` (:data:`DATASETS`, :func:`build_dataset`). Every name is importable
from here, as when this package was one module.
"""

from retina_lightning.data.datasets.artery_vein import RAVIR, RITE, rite_av_classes
from retina_lightning.data.datasets.files import Entry, FileDataset, Scan
from retina_lightning.data.datasets.folder import FolderDataset
from retina_lightning.data.datasets.idrid import IDRiDOpticDisc
from retina_lightning.data.datasets.photographs import CHASEDB1, DRIVE, HRF, STARE
from retina_lightning.data.datasets.registry import DATASETS, build_dataset, dataset_node

__all__ = [
    "CHASEDB1",
    "DATASETS",
    "DRIVE",
    "HRF",
    "RAVIR",
    "RITE",
    "STARE",
    "Entry",
    "FileDataset",
    "FolderDataset",
    "IDRiDOpticDisc",
    "Scan",
    "build_dataset",
    "dataset_node",
    "rite_av_classes",
]
