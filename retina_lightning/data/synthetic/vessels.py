"""The vessel trees of a synthetic fundus: the image's geometry (FOV, optic disc, fovea)
and the centrelines grown from the disc (arcades, branching by Murray's law, tapering,
tortuosity), as flat segment arrays for the rasteriser."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from retina_lightning.data.synthetic.style import FundusStyle
from retina_lightning.types import ARTERY, VEIN

#: geometry is defined on a DRIVE-sized FOV (radius ~268 px) and scaled to other sizes.
_REF_RADIUS = 268.0
#: centreline step in pixels (the rasteriser's window sizes assume it).
_STEP = 2.0
#: smallest vessel radius drawn (a 1 px wide capillary).
_R_MIN = 0.5


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
