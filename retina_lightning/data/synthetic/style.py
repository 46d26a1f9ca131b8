"""The appearance knobs of the synthetic fundus generator (:class:`FundusStyle`)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FundusStyle:
    """Knobs of the generator's appearance (all defaults give DRIVE-like images).

    Attributes:
        n_trees: number of vessel trees grown from the disc (1-12; the first 8 are the four
            arcades x artery / vein, then small macular and nasal branches).
        vessel_contrast: multiplies the vessel absorption (1.0 = DRIVE-like).
        thin_contrast_radius: radius (px) at which the absorption reaches ``1 - 1/e`` of its
            maximum; larger = fainter thin vessels.
        noise_std: std of the additive Gaussian pixel noise, in units of full scale (255).
        blur_sigma: std (px) of the Gaussian optical blur.
        texture_std: amplitude of the choroidal background texture (mid-frequency noise).
        branching: multiplies how often vessels branch (more = more capillaries).
        lesions: density of vessel-like distractors: small bright drusen-like dots and dark
            round blot haemorrhages (0 = none).
    """

    n_trees: int = 10
    vessel_contrast: float = 1.0
    thin_contrast_radius: float = 2.5
    noise_std: float = 0.025
    blur_sigma: float = 0.8
    texture_std: float = 0.04
    branching: float = 1.0
    lesions: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.n_trees <= 12:
            raise ValueError(f"n_trees must be in [1, 12], got {self.n_trees}")
        for name in ("vessel_contrast", "noise_std", "blur_sigma", "texture_std", "lesions"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.thin_contrast_radius <= 0 or self.branching <= 0:
            raise ValueError(
                "thin_contrast_radius and branching must be > 0, got "
                f"{self.thin_contrast_radius} and {self.branching}"
            )
