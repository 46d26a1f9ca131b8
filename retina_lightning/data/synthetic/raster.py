"""Rasterising the centrelines: anti-aliased capsules -> coverage, absorption, artery
reflex and second-observer planes, and the vessel and artery/vein label maps."""

from __future__ import annotations

import math

import numpy as np

from retina_lightning.data.synthetic.vessels import _STEP, _Centrelines, _Geometry
from retina_lightning.types import ARTERY, VEIN


def _rasterise(
    segs: _Centrelines, g: _Geometry, thin_radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Anti-aliased capsules of every segment, all segments at once.

    Every segment gets a fixed-size pixel window (size by radius class); coverage of a pixel
    centre at distance ``d`` from the segment with interpolated radius ``r`` is
    ``clip(r - d + 0.5, 0, 1)`` (so coverage >= 0.5 <=> ``d <= r``), scattered into the
    canvas with ``np.maximum.at``. Returns ``coverage`` (2, H, W) for (vein, artery),
    ``darkness`` (2, H, W) = coverage x width-dependent absorption ``1 - exp(-r / thin)``,
    the artery central reflex (H, W) and the 2nd observer's coverage (H, W).
    """
    h, w = g.height, g.width
    ax, ay, bx, by, ra, rb = segs.ax, segs.ay, segs.bx, segs.by, segs.ra, segs.rb
    kind, missed = segs.artery, segs.missed
    rmax = np.maximum(ra, rb)
    r_top = float(rmax.max()) if rmax.size else 1.0
    # segments are _STEP long in generated images; any length is drawn correctly
    seg_len = np.maximum(np.abs(bx - ax), np.abs(by - ay))
    l_top = float(seg_len.max()) if seg_len.size else _STEP
    pad = int(math.ceil(l_top + 2 * r_top + 4))  # the largest window fits in the margin
    hp, wp = h + 2 * pad, w + 2 * pad
    cov = np.zeros(2 * hp * wp, dtype=np.float32)
    dark = np.zeros(2 * hp * wp, dtype=np.float32)
    reflex = np.zeros(hp * wp, dtype=np.float32)
    obs2 = np.zeros(hp * wp, dtype=np.float32)
    # segments whose window lies in the padded canvas (all of them: vessels end at the FOV)
    inside = (
        (np.minimum(ax, bx) > r_top + 2 - pad)
        & (np.maximum(ax, bx) < w + pad - r_top - l_top - 4)
        & (np.minimum(ay, by) > r_top + 2 - pad)
        & (np.maximum(ay, by) < h + pad - r_top - l_top - 4)
    )
    classes = [(0.0, 1.25), (1.25, 3.0), (3.0, 7.5)]
    if r_top > 7.5:  # high-resolution images (HRF-sized): one more class for wide trunks
        classes.append((7.5, r_top))
    for lo, hi in classes:
        sel = np.flatnonzero(inside & (rmax > lo) & (rmax <= hi))
        if sel.size == 0:
            continue
        win = int(math.ceil(float(seg_len[sel].max()) + 2 * hi + 3))
        sax, say, sbx, sby, sra, srb = ax[sel], ay[sel], bx[sel], by[sel], ra[sel], rb[sel]
        ox = np.floor(np.minimum(sax, sbx) - hi - 1.0).astype(np.int32)
        oy = np.floor(np.minimum(say, sby) - hi - 1.0).astype(np.int32)
        off = np.arange(win, dtype=np.int32)
        px = (ox[:, None, None] + off[None, None, :]).astype(np.float32)  # (S, 1, win)
        py = (oy[:, None, None] + off[None, :, None]).astype(np.float32)  # (S, win, 1)
        ux, uy = (sbx - sax)[:, None, None], (sby - say)[:, None, None]
        len2 = np.maximum(ux * ux + uy * uy, 1e-6)
        qx, qy = px - sax[:, None, None], py - say[:, None, None]
        t = np.clip((qx * ux + qy * uy) / len2, 0.0, 1.0)  # (S, win, win)
        d = np.sqrt((qx - t * ux) ** 2 + (qy - t * uy) ** 2)
        rt = sra[:, None, None] + t * (srb - sra)[:, None, None]
        c = np.clip(rt - d + 0.5, 0.0, 1.0)
        ab = 1.0 - np.exp(-rt / thin_radius)
        flat = (
            (oy[:, None, None] + pad + off[None, :, None]) * wp + (ox[:, None, None] + pad + off)
        ).astype(np.int64)
        flat = np.broadcast_to(flat, c.shape)
        plane = (kind[sel].astype(np.int64) * (hp * wp))[:, None, None]
        m = c > 0
        idx = (flat + plane)[m]
        cm = c[m]
        np.maximum.at(cov, idx, cm)
        np.maximum.at(dark, idx, cm * ab[m])
        keep = m & ~missed[sel][:, None, None]
        np.maximum.at(obs2, flat[keep], c[keep])
        if hi > 1.25:  # central light reflex of arteries, ~1/3 of the width, r >= 1.5 px
            rm = m & kind[sel][:, None, None] & (rt >= 1.5)
            refl = np.clip(1.0 - d / (0.35 * rt), 0.0, 1.0) * np.clip(rt - 1.5, 0.0, 1.0)
            np.maximum.at(reflex, flat[rm], refl[rm])

    def crop(a: np.ndarray, n: int) -> np.ndarray:
        a = a.reshape((n, hp, wp)) if n > 1 else a.reshape((hp, wp))
        return np.ascontiguousarray(a[..., pad : pad + h, pad : pad + w])

    return crop(cov, 2), crop(dark, 2), crop(reflex, 1), crop(obs2, 1)


def _label_maps(cov: np.ndarray, fov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary vessel map and artery/vein map from the (vein, artery) coverage planes.

    A pixel is vessel where its centre lies inside a capsule (coverage >= 0.5), inside the
    FOV; where an artery and a vein overlap, it is labelled artery (drawn on top).
    """
    vein, artery = (cov[0] >= 0.5) & fov, (cov[1] >= 0.5) & fov
    av = np.zeros(fov.shape, dtype=np.uint8)
    av[vein] = VEIN
    av[artery] = ARTERY
    return (vein | artery).astype(np.uint8), av
