"""The architectures of the source papers, as plain ``nn.Module`` classes.

================================  ===========================================  ===============
class                             paper                                        file
================================  ===========================================  ===============
``UNet``                          Ronneberger et al. 2015 (baseline in 003)    unet.py
``SmpModel``                      any segmentation_models_pytorch model        smp.py
``R2UNet``                        R2U-Net (001, Alom et al. 2018)              r2unet.py
``DPN``                           Detail-Preserving Network (002)              dpn.py
``IterNet``                       IterNet (003)                                iternet.py
``SegRAVIR``                      SegRAVIR (000)                               segravir.py
``LightNet``, ``MiniUNet``,       patch2image (004)                            patch2image.py
``DenseNetP2I``
================================  ===========================================  ===============

Every model takes ``in_channels`` and ``num_classes`` first, exposes ``required_multiple``
(input sizes must be multiples of it) and returns logits or a
:class:`~retina_lightning.types.SegOutput`.
"""

from retina_lightning.models.dpn import DPN
from retina_lightning.models.iternet import IterNet
from retina_lightning.models.patch2image import DenseNetP2I, LightNet, MiniUNet
from retina_lightning.models.r2unet import R2UNet
from retina_lightning.models.segravir import SegRAVIR
from retina_lightning.models.smp import SmpModel
from retina_lightning.models.unet import UNet

__all__ = [
    "DPN",
    "DenseNetP2I",
    "IterNet",
    "LightNet",
    "MiniUNet",
    "R2UNet",
    "SegRAVIR",
    "SmpModel",
    "UNet",
]
