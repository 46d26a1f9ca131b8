"""Background fields of a synthetic fundus: smooth illumination changes, choroidal texture
and lesion-like distractors."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from retina_lightning.data.synthetic.vessels import _Geometry


def _smooth_field(rng: np.random.Generator, h: int, w: int, n_terms: int = 4) -> np.ndarray:
    """Zero-mean low-frequency random field in about [-1, 1]: a sum of separable products
    of random 1-D cosine series (one outer product per term, no 2-D filtering)."""
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)
    field = np.zeros((h, w), dtype=np.float32)
    for _ in range(n_terms):
        fy = sum(
            rng.normal() * np.cos(math.pi * k * yy + rng.uniform(0, 2 * math.pi)) / k
            for k in (1, 2, 3)
        )
        fx = sum(
            rng.normal() * np.cos(math.pi * k * xx + rng.uniform(0, 2 * math.pi)) / k
            for k in (1, 2, 3)
        )
        field += np.outer(fy, fx).astype(np.float32)
    return field / max(float(np.abs(field).max()), 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Mid-frequency choroidal texture: white noise at half resolution, Gaussian-filtered,
    upsampled by pixel repetition (the final optical blur smooths the blocks), unit std."""
    small = rng.standard_normal(((h + 1) // 2, (w + 1) // 2)).astype(np.float32)
    small = ndi.gaussian_filter(small, sigma / 2, mode="nearest")
    small /= max(float(small.std()), 1e-6)
    return np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)[:h, :w]


def _lesions(rng: np.random.Generator, g: _Geometry, density: float) -> np.ndarray:
    """Multiplicative (H, W) field of distractors inside the FOV: ~25 small bright drusen-like
    dots (sigma ~1 px) and ~4 dark round blot haemorrhages (sigma ~2-3 px) per unit density,
    the hard negatives of vessel segmentation (bright spots in DRIVE 21_training)."""
    h, w = g.height, g.width
    field = np.zeros((h, w), dtype=np.float32)
    for count, sigma, amplitude in ((25, 1.0, 0.18), (4, 2.5, -0.35)):
        n = rng.poisson(count * density)
        angle, dist = rng.uniform(0, 2 * math.pi, n), g.radius * np.sqrt(rng.uniform(0, 0.9, n))
        ys = np.clip((g.cy + dist * np.sin(angle)).astype(int), 0, h - 1)
        xs = np.clip((g.cx + dist * np.cos(angle)).astype(int), 0, w - 1)
        impulses = np.zeros((h, w), dtype=np.float32)
        sig = sigma * max(g.scale, 0.5) * rng.uniform(0.7, 1.3)
        peak = amplitude * rng.uniform(0.4, 1.0, n) * 2 * math.pi * sig**2
        np.add.at(impulses, (ys, xs), peak.astype(np.float32))
        field += ndi.gaussian_filter(impulses, sig, mode="constant", truncate=3.0)
    return np.clip(1.0 + field, 0.3, 1.5)
