"""One synthetic fundus image and its labels: :func:`generate_fundus` composes the vessel
trees, the rasterised labels, the background (illumination, macula, optic disc, lesions),
the vessel absorption, blur and noise."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from retina_lightning.data.synthetic.raster import _label_maps, _rasterise
from retina_lightning.data.synthetic.style import FundusStyle
from retina_lightning.data.synthetic.textures import _lesions, _smooth_field, _texture
from retina_lightning.data.synthetic.vessels import _geometry, _grow_vessels
from retina_lightning.types import Sample

#: artery / vein absorption per RGB channel (green strongest, as in fundus photographs).
_ABSORB_VEIN = np.array([0.30, 0.60, 0.50], dtype=np.float32)
_ABSORB_ARTERY = np.array([0.14, 0.42, 0.34], dtype=np.float32)


def generate_fundus(
    seed: int,
    height: int = 584,
    width: int = 565,
    *,
    name: str | None = None,
    style: FundusStyle | None = None,
    **knobs: float,
) -> Sample:
    """Draw one synthetic colour fundus image and its exact labels.

    Args:
        seed: seed of this image's own ``numpy`` generator (same seed -> identical arrays).
        height, width: image size (DRIVE: 584 x 565); geometry scales with the FOV radius.
        name: ``Sample.name`` (default ``"synthetic_<seed>"``).
        style: the appearance (default: :class:`FundusStyle`'s DRIVE-like defaults).
        **knobs: single :class:`FundusStyle` fields to change (``vessel_contrast=0.5``,
            ``n_trees=2``, ...).

    Returns:
        A :class:`Sample` with ``image`` (H, W, 3) uint8, ``label`` (H, W) uint8 0/1 vessels
        inside the FOV, ``fov`` (H, W) bool, ``av`` (H, W) uint8 0/1/2 (artery wins at
        crossings), ``second_observer`` (H, W) uint8 0/1 and ``meta["seed"]``.
    """
    if height < 16 or width < 16:
        raise ValueError(f"synthetic fundus needs height, width >= 16, got {height} x {width}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    style = dataclasses.replace(style or FundusStyle(), **knobs)
    rng = np.random.default_rng(seed)
    h, w = height, width
    g = _geometry(rng, h, w)

    # --- labels
    segs = _grow_vessels(rng, g, style)
    cov, dark, reflex, obs2_cov = _rasterise(segs, g, style.thin_contrast_radius)
    yy, xx = np.ogrid[:h, :w]
    rho = np.sqrt((xx - g.cx) ** 2 + (yy - g.cy) ** 2, dtype=np.float32)
    fov = rho <= g.radius
    label, av = _label_maps(cov, fov)
    edge_jitter = 0.5 + 0.25 * _smooth_field(rng, h, w, n_terms=2)
    second = ((obs2_cov >= edge_jitter) & fov).astype(np.uint8)

    # --- background: albedo x illumination (vignetting + low-frequency field)
    albedo = np.array(
        [rng.uniform(0.78, 0.92), rng.uniform(0.38, 0.48), rng.uniform(0.22, 0.30)],
        dtype=np.float32,
    )
    rn = rho / g.radius
    illum = (1.0 - 0.38 * np.clip(rn, 0, 1.2) ** 3) * (1.0 + 0.13 * _smooth_field(rng, h, w))
    img = albedo[:, None, None] * illum[None]
    tex = _texture(rng, h, w, sigma=3.0)
    img *= (
        1.0 + style.texture_std * tex[None] * np.array([0.4, 1.0, 0.8], np.float32)[:, None, None]
    )

    # macula: darker (pigment absorbs green / blue most), fovea darkest
    fx, fy = g.fovea
    d2 = ((xx - fx) ** 2 + (yy - fy) ** 2).astype(np.float32)
    mac = np.exp(-d2 / (2 * (0.16 * g.radius) ** 2))
    img *= (
        1.0
        - rng.uniform(0.18, 0.28)
        * mac[None]
        * np.array([0.55, 1.0, 0.9], np.float32)[:, None, None]
    )

    # optic disc: bright yellowish with a brighter cup, soft rim, faint peripapillary halo
    dx, dy = g.disc
    dd = np.sqrt((xx - dx) ** 2 + (yy - dy) ** 2, dtype=np.float32)
    rim = 0.5 - 0.5 * np.tanh((dd - g.disc_radius) / max(2.4 * g.scale, 1.0))
    cup = np.exp(-(dd**2) / (2 * (0.4 * g.disc_radius) ** 2))
    halo = np.exp(-(dd**2) / (2 * (2.2 * g.disc_radius) ** 2))
    disc_col = np.array([1.02, 0.86, 0.55], np.float32) * rng.uniform(0.95, 1.05)
    img = img * (1.0 + 0.15 * halo[None])
    img = img * (1.0 - rim[None]) + (disc_col[:, None, None] + 0.12 * cup[None]) * rim[None]

    img *= _lesions(rng, g, style.lesions)[None]

    # vessels: multiplicative absorption, veins darker than arteries, artery central reflex
    k = style.vessel_contrast * rng.uniform(0.9, 1.1)
    dark_a = dark[1] * (1.0 - 0.45 * reflex)
    img *= 1.0 - k * _ABSORB_VEIN[:, None, None] * dark[0][None]
    img *= 1.0 - k * _ABSORB_ARTERY[:, None, None] * dark_a[None]

    # FOV: soft circular edge on black
    img *= np.clip(g.radius - rho + 0.5, 0.0, 1.0)[None]
    if style.blur_sigma > 0:
        img = ndi.gaussian_filter(img, (0, style.blur_sigma, style.blur_sigma), mode="nearest")
    img += rng.normal(0.0, style.noise_std, size=img.shape).astype(np.float32)
    img = img * 255.0 + 4.0  # dark level of the camera outside the FOV
    image = np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return Sample(
        name=name if name is not None else f"synthetic_{seed}",
        image=np.ascontiguousarray(image),
        label=label,
        fov=fov,
        second_observer=second,
        av=av,
        meta={
            "seed": int(seed),
            "generator": "retina_lightning.data.synthetic",
            "style": dataclasses.asdict(style),
            "disc_center_xy": (float(g.disc[0]), float(g.disc[1])),
            "fovea_xy": (float(g.fovea[0]), float(g.fovea[1])),
        },
    )
