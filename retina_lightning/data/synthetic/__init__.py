"""Procedural colour fundus images with exact vessel, artery/vein and FOV labels.

The suite's embedded default dataset: everything (tests, CI, the quick-start config) runs
without a download. Each image is drawn from its own ``numpy`` generator seeded by the
image's seed, so image ``i`` of a dataset is the same whatever else is generated.

What is drawn, after the DRIVE description (002 section 4.1: 565 x 584 colour images, 45
degree circular FOV, two groups of manual annotations) and the RITE / RAVIR artery-vein maps
(000 sections II-A and III): a circular field of view (FOV) on black; an orange-red retina with
vignetting and smooth low-frequency illumination changes; a bright yellowish optic disc off
centre and a darker macula / fovea on the other side; a vessel tree per artery and per vein
grown from the disc (superior / inferior temporal arcades that arch around the macula, nasal
branches, small macular branches), branching recursively with Murray's law
(``r_parent^3 = r_child1^3 + r_child2^3``), tapering from ~9 px wide trunks to 1 px
capillaries, tortuous (smoothly varying curvature), crossing each other. Arteries are
thinner and lighter (with a central light reflex) than veins; vessel absorption is strongest
in the green channel and weaker for thin vessels, so capillaries are faint and noisy.

Label rules:
    * ``label`` (vessel) = pixel centre within the local vessel radius of a centreline,
      inside the FOV (vessel fraction in the FOV 0.11-0.15, mean ~0.13 over seeds 0-19 at
      584 x 565; DRIVE test set: 0.127).
    * ``av``: 0 background, 1 vein, 2 artery (``types.VEIN`` / ``types.ARTERY``). Where an
      artery and a vein overlap the pixel is **artery**: at most retinal arteriovenous
      crossings the artery lies anterior to (on top of) the vein, and it is drawn on top here.
    * ``second_observer``: a second annotation of the same image, with about a third of the
      thin branches (start radius < 1 px) missed and the vessel edges moved by up to about a
      quarter of a pixel by a smooth random threshold field, as two human observers disagree
      on DRIVE (its test set has a second group of annotations, 002 section 4.1).

Modules: ``style`` (:class:`FundusStyle`), ``vessels`` (geometry and vessel growth),
``raster`` (centrelines -> coverage and label maps), ``textures`` (illumination, texture,
lesions), ``generator`` (:func:`generate_fundus`), ``dataset`` (:class:`SyntheticFundus`,
the preview sheet).
"""

from retina_lightning.data.synthetic.dataset import SyntheticFundus
from retina_lightning.data.synthetic.generator import generate_fundus
from retina_lightning.data.synthetic.style import FundusStyle

__all__ = ["FundusStyle", "SyntheticFundus", "generate_fundus"]
