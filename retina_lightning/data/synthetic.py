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
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from retina_lightning.data.base import RetinaDataset
from retina_lightning.types import ARTERY, VEIN, Sample

#: geometry is defined on a DRIVE-sized FOV (radius ~268 px) and scaled to other sizes.
_REF_RADIUS = 268.0
#: centreline step in pixels (the rasteriser's window sizes assume it).
_STEP = 2.0
#: smallest vessel radius drawn (a 1 px wide capillary).
_R_MIN = 0.5
#: artery / vein absorption per RGB channel (green strongest, as in fundus photographs).
_ABSORB_VEIN = np.array([0.30, 0.60, 0.50], dtype=np.float32)
_ABSORB_ARTERY = np.array([0.14, 0.42, 0.34], dtype=np.float32)


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


# --------------------------------------------------------------------------- geometry


@dataclasses.dataclass
class _Geometry:
    height: int
    width: int
    cx: float
    cy: float
    radius: float  # FOV radius
    scale: float  # radius / _REF_RADIUS
    disc: tuple[float, float]
    disc_radius: float
    fovea: tuple[float, float]


def _geometry(rng: np.random.Generator, height: int, width: int) -> _Geometry:
    radius = 0.474 * min(height, width) * rng.uniform(0.98, 1.01)
    cx = width / 2 - 0.5 + rng.uniform(-0.01, 0.01) * width
    cy = height / 2 - 0.5 + rng.uniform(-0.01, 0.01) * height
    scale = radius / _REF_RADIUS
    side = 1.0 if rng.random() < 0.5 else -1.0  # left / right eye: disc on the right / left
    disc = (
        cx + side * radius * rng.uniform(0.55, 0.70),
        cy + radius * rng.normal(0.0, 0.05),
    )
    fovea = (
        cx - side * radius * rng.uniform(-0.02, 0.10),
        cy + radius * rng.normal(0.03, 0.04),
    )
    disc_radius = radius * rng.uniform(0.10, 0.125)
    return _Geometry(height, width, cx, cy, radius, scale, disc, disc_radius, fovea)


# Trees: (direction, kind, trunk radius in reference px, angle offset in degrees).
# direction: "st"/"it" superior/inferior temporal arcade, "sn"/"in" nasal, "mac" macular.
_TREES: tuple[tuple[str, int, float, float], ...] = (
    ("st", VEIN, 4.6, 0.0),
    ("st", ARTERY, 3.5, 14.0),
    ("it", VEIN, 4.6, 0.0),
    ("it", ARTERY, 3.5, -14.0),
    ("sn", VEIN, 3.4, 0.0),
    ("sn", ARTERY, 2.7, -15.0),
    ("in", VEIN, 3.4, 0.0),
    ("in", ARTERY, 2.7, 15.0),
    ("mac", ARTERY, 1.4, -12.0),
    ("mac", VEIN, 1.6, 12.0),
    ("n", VEIN, 2.0, 0.0),
    ("n", ARTERY, 1.6, 10.0),
)


@dataclasses.dataclass
class _Centrelines:
    """All vessel segments of one image, as flat arrays: segment ``i`` runs from
    ``(ax, ay)`` (radius ``ra``) to ``(bx, by)`` (radius ``rb``)."""

    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    artery: np.ndarray  # bool, the segment belongs to an arterial tree
    missed: np.ndarray  # bool, the 2nd observer did not annotate this branch

    @classmethod
    def from_polylines(cls, lines: list[tuple[list[float], list[float], list[float], int, bool]]):
        """Segments of polylines ``(xs, ys, radii, kind, missed)``, one per branch."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "r", "a", "m")}
        for xs, ys, rs, kind, missed in lines:
            if len(xs) < 2:
                continue
            for key, vals in (("x", xs), ("y", ys), ("r", rs)):
                parts[key].append(np.asarray(vals, dtype=np.float32))
            parts["a"].append(np.full(len(xs), kind == ARTERY))
            parts["m"].append(np.full(len(xs), missed))
        if not parts["x"]:
            e, b = np.zeros(0, np.float32), np.zeros(0, bool)
            return cls(e, e, e, e, e, e, b, b)
        x, y, r, a, m = (np.concatenate(parts[k]) for k in ("x", "y", "r", "a", "m"))
        # consecutive points of the same branch; the last point of a branch starts nothing
        ends = np.cumsum([len(v) for v in parts["x"]]) - 1
        start = np.ones(len(x), dtype=bool)
        start[ends] = False
        i = np.flatnonzero(start)
        return cls(x[i], y[i], x[i + 1], y[i + 1], r[i], r[i + 1], a[i], m[i])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _grow_vessels(rng: np.random.Generator, g: _Geometry, style: FundusStyle) -> _Centrelines:
    """Grow every tree from the disc as a stack of branches (no recursion).

    Each branch walks in steps of ``_STEP`` px; its curvature follows an Ornstein-Uhlenbeck
    process (smooth tortuosity, stronger for thin vessels); arcade trunks are steered along a
    circle around the fovea, every other branch is weakly pulled back to its initial heading.
    Branch points occur every ~0.2-0.3 FOV radii (more often on thick vessels); the child
    takes 35-70 % of an arcade trunk's radius (45-85 % elsewhere), heads off at 30-80 degrees
    and bends to run away from the disc; the parent keeps Murray's law radius
    ``(r^3 - r_child^3)^(1/3)``. Branches end at the FOV edge, in the foveal avascular zone
    or when their length budget is spent.
    """
    lines: list[tuple[list[float], list[float], list[float], int, bool]] = []
    s = g.scale
    fx, fy = g.fovea
    dx0, dy0 = g.disc
    side = 1.0 if dx0 > g.cx else -1.0  # +1: disc on the right, temporal = towards -x
    temporal = math.atan2(0.0, -side)  # heading from the disc towards the fovea side
    r_fov2 = (g.radius - 1.0) ** 2
    faz2 = (0.07 * g.radius) ** 2  # foveal avascular zone
    arc_radius = math.hypot(fx - dx0, fy - dy0) * rng.uniform(0.85, 1.0)
    width_scale = max(s, 0.35)

    # stack items: x, y, heading, radius, mode, target heading, orbit sign, kind, budget, missed
    stack: list[tuple] = []
    for direction, kind, r_ref, offset in _TREES[: style.n_trees]:
        up = -1.0 if direction in ("st", "sn") else 1.0
        jitter = math.radians(rng.normal(0.0, 6.0))
        off = math.radians(offset)
        if direction in ("st", "it"):
            heading = math.atan2(up * 1.0, -side * 0.25) + off * up + jitter
            mode = "arcade"
        elif direction in ("sn", "in"):
            heading = math.atan2(up * 0.9, side * 0.8) + off * up + jitter
            mode = "free"
        elif direction == "mac":
            heading = temporal + math.radians(rng.choice([-1.0, 1.0]) * rng.uniform(5, 25)) + off
            mode = "free"
        else:
            heading = math.atan2(rng.normal(0.0, 0.3), side) + off
            mode = "free"
        r0 = r_ref * width_scale * rng.uniform(0.9, 1.1)
        start_r = 0.3 * g.disc_radius
        x = dx0 + start_r * math.cos(heading)
        y = dy0 + start_r * math.sin(heading)
        budget = g.radius * (2.2 if mode == "arcade" else rng.uniform(0.7, 1.3))
        if direction == "mac":
            budget = g.radius * rng.uniform(0.35, 0.6)
        stack.append((x, y, heading, r0, mode, heading, up * side, kind, budget, False))

    # Noise is drawn in blocks (one numpy call per branch), the walk itself is scalar math.
    while stack:
        x, y, th, r, mode, target, orbit, kind, budget, missed = stack.pop()
        n_steps = max(2, int(budget / _STEP))
        noise = rng.standard_normal(n_steps)
        tort = 0.005 / max(r, _R_MIN) ** 0.8  # curvature noise, larger for thin vessels
        kappa = rng.normal(0.0, 0.004)
        leave_arc = g.radius * rng.uniform(0.15, 0.45)
        taper = math.exp(-_STEP / (2.6 * g.radius))
        next_branch = rng.uniform(0.5, 1.2) * _branch_spacing(r, g, style)
        travelled = 0.0
        xs, ys, rs = [x], [y], [r]
        lines.append((xs, ys, rs, kind, missed))
        for i in range(n_steps):
            kappa = 0.95 * kappa + tort * noise[i]
            if mode == "arcade":
                vx, vy = x - fx, y - fy
                dist = math.hypot(vx, vy) + 1e-6
                # tangent of the circle around the fovea, pulled onto the circle's radius
                tx, ty = -orbit * vy / dist, orbit * vx / dist
                pull = 0.9 * (arc_radius - dist) / arc_radius
                desired = math.atan2(ty + pull * vy / dist, tx + pull * vx / dist)
                th += 0.08 * _wrap(desired - th)
                if (x - fx) * -side > leave_arc:  # past the macula: run on to the temporal raphe
                    mode, target = "free", math.atan2(0.3 * math.copysign(1.0, fy - y), -side)
            else:
                th += 0.03 * _wrap(target - th)
            th += kappa * _STEP / max(s, 0.35)
            nx, ny = x + _STEP * math.cos(th), y + _STEP * math.sin(th)
            r_new = max(r * taper, _R_MIN)
            x, y, r = nx, ny, r_new
            xs.append(x)
            ys.append(y)
            rs.append(r)
            travelled += _STEP
            if (x - g.cx) ** 2 + (y - g.cy) ** 2 > r_fov2 or (x - fx) ** 2 + (y - fy) ** 2 < faz2:
                break
            if travelled >= next_branch:
                travelled = 0.0
                next_branch = rng.uniform(0.6, 1.4) * _branch_spacing(r, g, style)
                r_child = r * (
                    rng.uniform(0.35, 0.7) if mode == "arcade" else rng.uniform(0.45, 0.85)
                )
                if r_child < _R_MIN:
                    if r < 0.8 or rng.random() < 0.3:
                        continue
                    r_child = _R_MIN
                sign = 1.0 if rng.random() < 0.5 else -1.0
                child_th = th + sign * math.radians(rng.uniform(30.0, 80.0))
                # children bend away from the disc, as the retinal vessels radiate from it
                rx, ry = x - dx0, y - dy0
                rn = math.hypot(rx, ry) + 1e-6
                child_target = math.atan2(
                    math.sin(child_th) + 0.7 * ry / rn, math.cos(child_th) + 0.7 * rx / rn
                )
                th -= sign * math.radians(rng.uniform(0.0, 12.0))
                r = max((r**3 - r_child**3) ** (1.0 / 3.0), _R_MIN)
                child_budget = g.radius * rng.uniform(0.12, 0.4) * (1.0 + r_child / 2.0)
                child_missed = r_child < 1.0 and rng.random() < 0.35
                stack.append(
                    (x, y, child_th, r_child, "free", child_target, orbit, kind, child_budget,
                     child_missed)
                )  # fmt: skip
            if r <= _R_MIN and mode == "arcade":
                mode, target = "free", th
    return _Centrelines.from_polylines(lines)


def _branch_spacing(r: float, g: _Geometry, style: FundusStyle) -> float:
    """Mean distance between branch points: trunks branch every ~0.12 R, thin vessels less."""
    return g.radius * (0.16 + 0.08 / max(r, 0.5)) / style.branching


# ------------------------------------------------------------------------ rasteriser


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


# ----------------------------------------------------------------------- background


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


# ------------------------------------------------------------------------- generator


def generate_fundus(
    seed: int,
    height: int = 584,
    width: int = 565,
    *,
    name: str | None = None,
    n_trees: int = FundusStyle.n_trees,
    vessel_contrast: float = FundusStyle.vessel_contrast,
    thin_contrast_radius: float = FundusStyle.thin_contrast_radius,
    noise_std: float = FundusStyle.noise_std,
    blur_sigma: float = FundusStyle.blur_sigma,
    texture_std: float = FundusStyle.texture_std,
    branching: float = FundusStyle.branching,
    lesions: float = FundusStyle.lesions,
) -> Sample:
    """Draw one synthetic colour fundus image and its exact labels.

    Args:
        seed: seed of this image's own ``numpy`` generator (same seed -> identical arrays).
        height, width: image size (DRIVE: 584 x 565); geometry scales with the FOV radius.
        name: ``Sample.name`` (default ``"synthetic_<seed>"``).
        n_trees, vessel_contrast, thin_contrast_radius, noise_std, blur_sigma, texture_std,
        branching, lesions: appearance knobs, see :class:`FundusStyle`.

    Returns:
        A :class:`Sample` with ``image`` (H, W, 3) uint8, ``label`` (H, W) uint8 0/1 vessels
        inside the FOV, ``fov`` (H, W) bool, ``av`` (H, W) uint8 0/1/2 (artery wins at
        crossings), ``second_observer`` (H, W) uint8 0/1 and ``meta["seed"]``.
    """
    if height < 16 or width < 16:
        raise ValueError(f"synthetic fundus needs height, width >= 16, got {height} x {width}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    style = FundusStyle(
        n_trees=n_trees,
        vessel_contrast=vessel_contrast,
        thin_contrast_radius=thin_contrast_radius,
        noise_std=noise_std,
        blur_sigma=blur_sigma,
        texture_std=texture_std,
        branching=branching,
        lesions=lesions,
    )
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


@functools.lru_cache(maxsize=64)
def _cached_fundus(seed: int, height: int, width: int, style_items: tuple) -> Sample:
    return generate_fundus(seed, height, width, **dict(style_items))


def _copy_sample(sample: Sample, name: str, meta: dict[str, Any]) -> Sample:
    """A copy with fresh arrays, so that callers editing a Sample never corrupt the cache."""
    return dataclasses.replace(
        sample,
        name=name,
        image=sample.image.copy(),
        label=sample.label.copy(),
        fov=sample.fov.copy(),
        second_observer=None if sample.second_observer is None else sample.second_observer.copy(),
        av=None if sample.av is None else sample.av.copy(),
        meta={**sample.meta, **meta},
    )


class SyntheticFundus(RetinaDataset):
    """DRIVE-shaped synthetic dataset (no files): ``training`` and ``test`` subsets.

    Image ``i`` of a subset is drawn by :func:`generate_fundus` with a seed derived from
    ``(seed, subset, i)`` by ``numpy.random.SeedSequence``, so adding images never changes
    the others, and the two subsets never share an image. Images are cached in-process.

    Args:
        root: ignored (accepted so every dataset takes ``root``).
        num_train, num_test: number of images per subset (DRIVE: 20 / 20).
        height, width: image size (DRIVE: 584 x 565).
        seed: dataset seed.
        **style: appearance knobs of :class:`FundusStyle` (``vessel_contrast``, ``noise_std``...).
    """

    _SUBSETS = ("training", "test")
    has_av = True

    def __init__(
        self,
        root: str | Path | None = None,
        num_train: int = 20,
        num_test: int = 20,
        height: int = 584,
        width: int = 565,
        seed: int = 0,
        n_trees: int = FundusStyle.n_trees,
        vessel_contrast: float = FundusStyle.vessel_contrast,
        thin_contrast_radius: float = FundusStyle.thin_contrast_radius,
        noise_std: float = FundusStyle.noise_std,
        blur_sigma: float = FundusStyle.blur_sigma,
        texture_std: float = FundusStyle.texture_std,
        branching: float = FundusStyle.branching,
        lesions: float = FundusStyle.lesions,
    ) -> None:
        super().__init__(root)
        if num_train < 0 or num_test < 0:
            raise ValueError(f"num_train / num_test must be >= 0, got {num_train} / {num_test}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.num_train, self.num_test = num_train, num_test
        self.height, self.width, self.seed = height, width, seed
        self.style = FundusStyle(
            n_trees=n_trees,
            vessel_contrast=vessel_contrast,
            thin_contrast_radius=thin_contrast_radius,
            noise_std=noise_std,
            blur_sigma=blur_sigma,
            texture_std=texture_std,
            branching=branching,
            lesions=lesions,
        )

    def subsets(self) -> tuple[str, ...]:
        return self._SUBSETS

    def image_seed(self, subset: str, index: int) -> int:
        """The :func:`generate_fundus` seed of image ``index`` of ``subset``."""
        self._check_subset(subset)
        key = [self.seed, self._SUBSETS.index(subset), index]
        hi, lo = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
        return (int(hi) << 32) | int(lo)

    def load(self, subset: str) -> list[Sample]:
        self._check_subset(subset)
        count = self.num_train if subset == "training" else self.num_test
        style_items = tuple(sorted(dataclasses.asdict(self.style).items()))
        samples = []
        for i in range(count):
            image_seed = self.image_seed(subset, i)
            cached = _cached_fundus(image_seed, self.height, self.width, style_items)
            meta = {"subset": subset, "index": i, "dataset_seed": self.seed}
            samples.append(_copy_sample(cached, f"{i + 1:02d}_{subset}", meta))
        return samples


def _preview(
    path: str | Path = "previews/synthetic_sheet.png", drive_root: str | Path | None = None
) -> Path:
    """Save a sheet of 2 synthetic images (image / vessels / artery-vein map), with DRIVE's
    ``21_training`` (image / manual) below when ``drive_root`` (the DRIVE folder, default
    ``$RETINA_DATA_ROOT/DRIVE``) holds it: ``python -m retina_lightning.data.synthetic``."""
    import os

    from PIL import Image

    rows = []
    for seed in (0, 1):
        s = generate_fundus(seed)
        avc = np.zeros((*s.av.shape, 3), np.uint8)
        avc[s.av == VEIN] = (40, 90, 255)
        avc[s.av == ARTERY] = (255, 60, 40)
        lab = np.repeat(s.label[..., None] * 255, 3, axis=2)
        rows.append(np.concatenate([s.image, lab, avc], axis=1))
    if drive_root is None and os.environ.get("RETINA_DATA_ROOT"):
        drive_root = Path(os.environ["RETINA_DATA_ROOT"]) / "DRIVE"
    drive = Path(drive_root or "DRIVE") / "training"
    if (drive / "images/21_training.tif").is_file():
        img = np.asarray(Image.open(drive / "images/21_training.tif").convert("RGB"))
        gt = np.asarray(Image.open(drive / "1st_manual/21_manual1.gif").convert("L"))
        if img.shape == rows[0].shape[:1] + (rows[0].shape[1] // 3, 3):
            gt3 = np.repeat(gt[..., None], 3, axis=2)
            rows.append(np.concatenate([img, gt3, np.zeros_like(img)], axis=1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    return out


if __name__ == "__main__":
    import sys

    print(_preview(drive_root=sys.argv[1] if len(sys.argv) > 1 else None))
