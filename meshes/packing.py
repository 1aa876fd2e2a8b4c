"""Particle packings of the RVE: pure 2D geometry (NumPy/SciPy only; no Gmsh, no DOLFINx).

Units are SI metres at the interface; internally every length is divided by a reference
length (half the smallest mean diameter, so radii are O(1)) for conditioning.

Public interface
----------------
``Circle(phase, x, y, r)``          one particle (one body); frozen dataclass.
``PackingError``                    ``ValueError`` whose message is one human-readable line.
``pack_random(...)``                dense random packing of polydisperse disks (``rve.kind = "random"``).
``check_random(...)``               the checks of ``pack_random`` that need no packing (sizes, count, density).
``validate_particles(...)``         checks an explicit particle list (``rve.kind = "particles"``).
``clipped_area(c, W, H)``           exact area of circle ∩ [0, W] x [0, H] (closed form).
``area_fractions(circles, W, H)``   per phase: clipped areas / (W H).
``min_gap_achieved(circles, W, H)`` smallest boundary-to-boundary distance between two circles.
``sliver_problems(...)``            list of sliver / near-tangency defects w.r.t. the box (empty = fine).

Algorithm of ``pack_random``
----------------------------
1. *Sizes.*  For each solid phase (coarsest first: sorted by mean diameter, then fraction, cv
   and name, so the result does not depend on the order of the dictionary, and a control that
   only renames a phase -- LCO or FeS in place of Se -- gets the very same packing) diameters
   are drawn from a lognormal distribution with the requested mean ``m`` and coefficient of
   variation ``cv`` (``sigma^2 = ln(1 + cv^2)``, ``mu = ln m - sigma^2/2``), truncated to
   ``mu ± 3 sigma`` in log space and to at most half of the smaller box side (draws outside are
   redrawn).  Particles are drawn until the sum of their areas reaches the phase's target area
   ``f W H``; the last particle is kept or dropped, whichever is closer, and then all radii of
   the phase are rescaled by one common factor (typically within ±2 %) so that the sum of the
   disk areas equals ``f W H`` to rounding.

2. *Feasibility.*  The effective solid fraction seen by the packer is that of the disks
   inflated by half the gap, ``phi_eff = sum pi (r + g/2)^2 / (W H)`` (≈ ``phi (1 + g/d)^2``).
   Random jammed packings of polydisperse disks lie at ``phi_J ≈ 0.82–0.86``; a request with
   ``phi_eff > 0.86`` is refused at once with a ``PackingError``.

3. *Packing: collective rearrangement / soft-disk energy minimisation in a periodic box.*
   The box is treated as periodic (minimum-image distances; neighbour lists from
   ``scipy.spatial.cKDTree(boxsize=...)`` with a Verlet skin).  Centres start uniformly at
   random; the disks, inflated by ``g/2`` plus a small safety margin, grow from a reduced
   scale (effective fraction 0.5) to full size in a few stages, and at every stage the
   overlap energy ``1/2 sum max(0, R_i + R_j - d_ij)^2`` plus the box constraints below is
   relaxed with the FIRE minimiser (Bitzek et al., PRL 97, 170201, 2006).  This is the
   compression-by-energy-minimisation protocol used to make jammed disk packings (O'Hern,
   Silbert, Liu & Nagel, PRE 68, 011306, 2003), a collective-rearrangement relative of the
   Lubachevsky–Stillinger growth algorithm (Lubachevsky & Stillinger, J. Stat. Phys. 60, 561,
   1990; Jodrey & Tory, PRA 32, 2347, 1985).  Below jamming the minimum has zero energy, i.e.
   no overlaps; the relaxation stops as soon as all *true* constraints (gap >= ``min_gap``,
   box constraints) hold, which the safety margin makes happen at a finite iteration.  A
   relaxation that stalls (no progress over many iterations: jammed) is restarted from new
   random positions drawn from the same generator; when ``max_iterations`` relaxation
   iterations (all starts together) are spent, a ``PackingError`` is raised.  The budget
   counts iterations, not seconds, so whether a request succeeds does not depend on the
   machine or its load, and the procedure never hangs.  An iteration costs ~20-100 µs (Python
   overhead dominates below a few hundred disks), so the default budget of 1e6 iterations gives
   up after well under a minute on an idle core (``rve.packing_iterations`` raises it).
   Requests of more than ``MAX_PARTICLES`` disks are refused before any drawing (estimated
   from the mean diameters; such an RVE cannot be meshed within the cell budget either).

   Box constraints (no slivers), for each circle of (current) radius ``r``, with
   ``delta = max(min_gap, 0.1 r)``: let ``u`` be the distance of the centre to the nearest
   periodic image of a vertical box side (the same for horizontal sides).  Forbidden:
   ``r - max(delta, 0.2 r) < u < r + delta`` -- a circle either stays at least ``delta`` away
   from the side, or crosses it deeply enough that the cut-off segment is at least 0.2 r high
   (>= 5.2 % of the disk, and the arc meets the side at >= 37 degrees).  Near the box corner
   (distance ``rho`` of the centre to the nearest periodic image of the corner) the band
   ``min(0.5 r, r - delta) < rho < r + delta`` is forbidden too, so a circle either contains the
   corner well (every piece >= 6.9 % of the disk) or keeps ``delta`` away from it.  These enter
   the relaxation as one-sided quadratic penalties pushing to the nearer edge of the band.

4. *Periodic window.*  The RVE is the periodic cell: every circle whose disk crosses a box side
   is also returned as its periodic image(s) (up to 4 pieces near a corner); each image is a
   separate ``Circle`` with its centre outside the box.  The pieces of one disk inside the box
   tile it, so the clipped areas of each phase sum exactly (to rounding) to ``f W H``.

Guarantees (checked before returning; a failed check raises ``PackingError``): bit-identical
output for the same arguments and seed (``numpy.random.default_rng(seed)``; restarts depend on
iteration counts only, never on the clock); every pair of returned circles (images included,
measured directly in the plane) at least ``min_gap`` apart; the box constraints above; area
fractions equal to the targets to ~1e-12.  configs/se_mse.toml (16 µm box, Se 2.5 µm / MSe 6 µm,
cv 0.3, fractions 0.356 / 0.397, gap 0.2 µm): 29 disks, periodic images included (`creep-cathode
mesh` reports the count and the packing time in rve.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = [
    "Circle",
    "PackingError",
    "pack_random",
    "validate_particles",
    "clipped_area",
    "area_fractions",
    "min_gap_achieved",
    "sliver_problems",
    "PHI_MAX",
    "MIN_PIECE_FRACTION",
    "MAX_ITERATIONS",
    "MAX_PARTICLES",
    "check_random",
]

#: largest effective solid fraction (disks inflated by min_gap/2) that is attempted
PHI_MAX = 0.86
#: smallest admissible piece of a disk inside the box (fraction of the disk's area)
MIN_PIECE_FRACTION = 0.05
# relaxation settings
_PHI_START = 0.5  # effective fraction at which growth starts
_STAGES = 4  # growth stages from _PHI_START to full size
_SAFETY = 2e-3  # safety margin (internal length units ~ radius) added to gaps and bands
_STALL_ITERS = 3000  # iterations without 1 % progress = stalled (jammed)
_MAX_ITERS_PER_ATTEMPT = 60000
#: default budget of relaxation iterations, all random starts together.  Measured on the paper's
#: composition (16 um box, Se 2.5 um, MSe 6 um, min_gap 0.2 um), seeds 1-8 need 7.7e3 to 4.8e6
#: (seed 3: 3.2e5; seed 8: 4.8e6, 1367 starts, ~10 min CPU); a 24 um box, seed 1: 6.1e3.  The
#: default covers the seeds the project uses (1, 2, 3 and the 24 um box) with a margin of 3 and
#: gives up on an impossible request in under a minute on an idle core; raise it for a hard seed.
MAX_ITERATIONS = 1_000_000
#: most disks a packing may hold (the paper's 16 um RVE has 22; a 100 um box of 2.5 um Se ~1000).
#: Each disk's boundary gets at least 48 mesh segments (~200 cells), so 20000 disks already fill
#: the 4e6-cell budget of a mesh.
MAX_PARTICLES = 20_000


@dataclass(frozen=True)
class Circle:
    """One circular particle (one body): phase name, centre (x, y) [m], radius r [m]."""

    phase: str
    x: float
    y: float
    r: float


class PackingError(ValueError):
    """Packing impossible, failed, or an explicit particle list is invalid (one-line message).

    ``key``: the config key at fault where one can be named (e.g. ``rve.size.Se.mean_diameter``,
    ``rve.particles[3]``), else None."""

    def __init__(self, msg: str, key: str | None = None):
        super().__init__(msg)
        self.key = key


# --------------------------------------------------------------------------------------------
# geometry: exact clipped areas
# --------------------------------------------------------------------------------------------


def _quadrant_area(a, b, r):
    """Area of {x < a, y < b} ∩ disk(0, r) (vectorised, closed form)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    r = np.asarray(r, dtype=float)
    a, b, r = np.broadcast_arrays(a, b, r)
    r2 = r * r

    def F(x):  # antiderivative of sqrt(r^2 - x^2) on [-r, r]
        s = np.clip(x / r, -1.0, 1.0)
        return 0.5 * (x * np.sqrt(np.maximum(r2 - x * x, 0.0)) + r2 * np.arcsin(s))

    ac = np.clip(a, -r, r)
    bc = np.clip(b, -r, r)
    c = np.sqrt(np.maximum(r2 - bc * bc, 0.0))
    t1 = np.minimum(ac, -c)
    t2 = np.clip(ac, -c, c)
    t3 = np.maximum(ac, c)
    mid = F(t2) - F(-c) + bc * (t2 + c)
    upper = 2.0 * (F(t1) - F(-r)) + mid + 2.0 * (F(t3) - F(c))
    out = np.where(bc >= 0.0, upper, mid)
    return np.maximum(out, 0.0)


def _clipped_areas(x, y, r, width, height):
    """Vectorised area of disk((x, y), r) ∩ [0, width] x [0, height]."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    r = np.asarray(r, dtype=float)
    a1, a0 = width - x, -x
    b1, b0 = height - y, -y
    A = (_quadrant_area(a1, b1, r) - _quadrant_area(a0, b1, r)
         - _quadrant_area(a1, b0, r) + _quadrant_area(a0, b0, r))
    full = np.pi * r * r
    return np.clip(A, 0.0, full)


def clipped_area(c: Circle, width: float, height: float) -> float:
    """Exact area [m^2] of the part of circle ``c`` inside the box [0, width] x [0, height]."""
    s = max(abs(width), abs(height))  # scale for conditioning
    return float(_clipped_areas(c.x / s, c.y / s, c.r / s, width / s, height / s)) * s * s


def area_fractions(circles, width: float, height: float) -> dict[str, float]:
    """Area fraction of each phase in the box: sum of clipped areas / (width height)."""
    out: dict[str, float] = {}
    if not circles:
        return out
    s = max(width, height)
    x = np.array([c.x for c in circles]) / s
    y = np.array([c.y for c in circles]) / s
    r = np.array([c.r for c in circles]) / s
    A = _clipped_areas(x, y, r, width / s, height / s)
    box = (width / s) * (height / s)
    for c, a in zip(circles, A):
        out[c.phase] = out.get(c.phase, 0.0) + float(a)
    return {p: v / box for p, v in out.items()}


def _pair_gaps(x, y, r, block=1024):
    """(gap, i, j) of the closest pair (i < j), by a blocked brute-force scan of all pairs."""
    n = len(r)
    best, bi, bj = math.inf, -1, -1
    for s0 in range(0, n, block):
        s1 = min(n, s0 + block)
        dx = x[s0:s1, None] - x[None, :]
        dy = y[s0:s1, None] - y[None, :]
        g = np.hypot(dx, dy) - r[s0:s1, None] - r[None, :]
        ii = np.arange(s0, s1)[:, None]
        g = np.where(np.arange(n)[None, :] > ii, g, np.inf)
        k = int(np.argmin(g))
        v = float(g.flat[k])
        if v < best:
            best, bi, bj = v, s0 + k // n, k % n
    return best, bi, bj


def min_gap_achieved(circles, width: float, height: float) -> float:
    """Smallest boundary-to-boundary distance [m] between two separate circles.

    Only circles that have a piece inside the box count; distances are measured directly in
    the plane (periodic images returned by ``pack_random`` are consistent, so this equals the
    periodic gap).  Negative = overlap; ``inf`` for fewer than two circles.
    """
    cs = [c for c in circles if clipped_area(c, width, height) > 0.0]
    if len(cs) < 2:
        return math.inf
    s = max(width, height)
    x = np.array([c.x for c in cs]) / s
    y = np.array([c.y for c in cs]) / s
    r = np.array([c.r for c in cs]) / s
    g, _, _ = _pair_gaps(x, y, r)
    return g * s


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def sliver_problems(circles, width: float, height: float, min_gap: float,
                    min_piece: float = MIN_PIECE_FRACTION) -> list[str]:
    """Sliver / near-tangency defects of circles with respect to the box (empty list = none).

    For each circle with a piece inside the box, with ``delta = max(min_gap, 0.1 r)``:
    ``|d - r| >= delta`` for the distance ``d`` of the centre to each side line, ``|rho - r| >=
    delta`` for the distance ``rho`` to each box corner, and the piece inside the box is either
    the whole disk or at least ``min_piece`` of its area.
    """
    probs = []
    slack = 1e-9
    for k, c in enumerate(circles):
        area = clipped_area(c, width, height)
        if area <= 0.0:
            continue
        full = math.pi * c.r * c.r
        delta = max(min_gap, 0.1 * c.r)
        tol = slack * max(c.r, min_gap)
        for name, d in (("left", c.x), ("right", width - c.x), ("bottom", c.y), ("top", height - c.y)):
            if abs(abs(d) - c.r) < delta - tol:
                probs.append(f"particle {k} meets the {name} side nearly tangentially "
                             f"(|d - r| = {_fmt(abs(abs(d) - c.r))} m < {_fmt(delta)} m)")
        for (cx, cy) in ((0.0, 0.0), (width, 0.0), (0.0, height), (width, height)):
            rho = math.hypot(c.x - cx, c.y - cy)
            if abs(rho - c.r) < delta - tol:
                probs.append(f"particle {k} passes nearly through the box corner ({_fmt(cx)}, {_fmt(cy)}) "
                             f"(|rho - r| = {_fmt(abs(rho - c.r))} m < {_fmt(delta)} m)")
        if area < full * (1.0 - 1e-12) and area < min_piece * full * (1.0 - 1e-9):
            probs.append(f"particle {k} leaves only {100 * area / full:.2g} % of its area inside the box "
                         f"(< {100 * min_piece:.3g} %)")
    return probs


# --------------------------------------------------------------------------------------------
# validation of explicit particle lists
# --------------------------------------------------------------------------------------------


def validate_particles(circles, width: float, height: float, min_gap: float) -> None:
    """Check an explicit particle list; raise ``PackingError`` naming the offending indices.

    Each circle needs a finite positive radius and must intersect the box: centre inside the
    closed box, or a piece of at least 5 % of its area inside.  No two circles may be closer
    than ``min_gap`` (boundary to boundary; 1e-9 relative slack).
    """
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise PackingError(f"box must have positive finite width and height (got {width!r} x {height!r} m)")
    if not (min_gap >= 0 and math.isfinite(min_gap)):
        raise PackingError(f"min_gap must be finite and >= 0 (got {min_gap!r} m)")
    circles = list(circles)
    if not circles:
        raise PackingError("no particles given")
    for k, c in enumerate(circles):
        if not all(math.isfinite(v) for v in (c.x, c.y, c.r)):
            raise PackingError(f"particle {k} ({c.phase}) has a non-finite centre or radius "
                               f"(centre ({c.x!r}, {c.y!r}), radius {c.r!r})", key=f"rve.particles[{k}]")
        if not c.r > 0:
            raise PackingError(f"particle {k} ({c.phase}) has non-positive radius {c.r!r} m",
                               key=f"rve.particles[{k}].radius")
        if not (isinstance(c.phase, str) and c.phase):
            raise PackingError(f"particle {k} has no phase name", key=f"rve.particles[{k}].phase")
        inside = 0.0 <= c.x <= width and 0.0 <= c.y <= height
        if not inside:
            with np.errstate(over="ignore", invalid="ignore"):
                frac = clipped_area(c, width, height) / (math.pi * c.r * c.r)
            if not frac >= MIN_PIECE_FRACTION:  # NaN (a circle far beyond floating-point range) too
                what = "lies outside the box" if not frac > 0 else (
                    f"has only {100 * frac:.2g} % of its area inside the box (a sliver)")
                raise PackingError(f"particle {k} ({c.phase}, centre ({_fmt(c.x)}, {_fmt(c.y)}) m, radius "
                                   f"{_fmt(c.r)} m) {what} [0, {_fmt(width)}] x [0, {_fmt(height)}] m",
                                   key=f"rve.particles[{k}]")
        corners = ((0.0, 0.0), (width, 0.0), (0.0, height), (width, height))
        if all(math.hypot(c.x - cx, c.y - cy) < c.r for cx, cy in corners):
            raise PackingError(f"particle {k} ({c.phase}, radius {_fmt(c.r)} m) covers the whole box "
                               f"[0, {_fmt(width)}] x [0, {_fmt(height)}] m (for one solid filling the RVE, "
                               f"use kind = 'block')", key=f"rve.particles[{k}].radius")
    s = max(width, height)
    x = np.array([c.x for c in circles]) / s
    y = np.array([c.y for c in circles]) / s
    r = np.array([c.r for c in circles]) / s
    g, i, j = _pair_gaps(x, y, r)
    g *= s
    tol = 1e-9 * max(min_gap, float(r.max()) * s)
    if len(circles) > 1 and g < min_gap - tol:
        # count all offending pairs for the message
        n_bad = 0
        for s0 in range(0, len(r), 1024):
            s1 = min(len(r), s0 + 1024)
            gg = np.hypot(x[s0:s1, None] - x[None, :], y[s0:s1, None] - y[None, :]) - r[s0:s1, None] - r[None, :]
            upper = np.arange(len(r))[None, :] > np.arange(s0, s1)[:, None]
            n_bad += int(np.count_nonzero(upper & (gg * s < min_gap - tol)))
        what = "overlap" if g < 0 else "are too close"
        more = f"; {n_bad} such pairs in total" if n_bad > 1 else ""
        raise PackingError(f"particles {i} and {j} {what} (gap {_fmt(g)} m < min_gap {_fmt(min_gap)} m){more}",
                           key=f"rve.particles[{j}]")


# --------------------------------------------------------------------------------------------
# random packing
# --------------------------------------------------------------------------------------------


def _size_of(spec, phase):
    if isinstance(spec, Mapping):
        try:
            return float(spec["mean_diameter"]), float(spec.get("cv", 0.0))
        except (KeyError, TypeError, ValueError):
            raise PackingError(f"size of phase {phase!r}: need mean_diameter and cv (got {spec!r})") from None
    try:
        m, cv = spec
        return float(m), float(cv)
    except (TypeError, ValueError):
        raise PackingError(f"size of phase {phase!r}: need (mean_diameter, cv) (got {spec!r})") from None


def _draw_radii(rng, mean_d, cv, d_max, target_area):
    """Radii (internal units) of one phase: truncated lognormal, total area exactly target_area."""
    if target_area <= 0.0:
        return np.zeros(0)
    sigma = math.sqrt(math.log1p(cv * cv))
    mu = math.log(mean_d) - 0.5 * sigma * sigma
    lo, hi = math.exp(mu - 3.0 * sigma), min(math.exp(mu + 3.0 * sigma), d_max)
    mean_area = math.pi / 4.0 * mean_d * mean_d * (1.0 + cv * cv)
    d = np.zeros(0)
    while True:
        need = int(1.3 * target_area / mean_area) + 8
        draw = np.exp(rng.normal(mu, sigma, size=need)) if sigma > 0 else np.full(need, mean_d)
        draw = draw[(draw >= lo * (1 - 1e-12)) & (draw <= hi)]
        d = np.concatenate([d, draw])
        cum = np.cumsum(math.pi / 4.0 * d * d)
        if cum.size and cum[-1] >= target_area:
            break
    n = int(np.searchsorted(cum, target_area)) + 1  # first n whose sum reaches the target
    if n > 1 and abs(math.log(cum[n - 2] / target_area)) < abs(math.log(cum[n - 1] / target_area)):
        n -= 1
    r = 0.5 * d[:n]
    r *= math.sqrt(target_area / (math.pi * float(np.sum(r * r))))
    return r


class _Packer:
    """Soft-disk relaxation (FIRE) in a periodic box, internal units."""

    def __init__(self, r, W, H, gap, rng, max_iterations, unit):
        self.r = r
        self.n = len(r)
        self.W, self.H = W, H
        self.L = np.array([W, H])
        self.g = gap
        self.rng = rng
        self.max_iterations = max_iterations
        self.unit = unit  # metres per internal length unit (for messages)
        self.s = _SAFETY
        self.iters = 0
        self.restarts = 0

    # -- helpers ---------------------------------------------------------------------------
    def wrap(self, X):
        X = X - self.L * np.floor(X / self.L)
        X = np.where(X >= self.L, X - self.L, X)
        return np.where(X < 0.0, 0.0, X)

    def pairs(self, X, cutoff):
        from scipy.spatial import cKDTree  # here, not at the top: `check` validates without packing

        tree = cKDTree(self.wrap(X), boxsize=self.L)
        p = tree.query_pairs(cutoff, output_type="ndarray")
        return p[:, 0], p[:, 1]

    def forces(self, X, lam, i, j):
        """Forces (negative energy gradient) and the largest violation of the true constraints."""
        g, s = self.g, self.s
        rl = lam * self.r
        F = np.zeros_like(X)
        viol = -np.inf
        if i.size:
            d = X[j] - X[i]
            d -= self.L * np.rint(d / self.L)
            dist = np.hypot(d[:, 0], d[:, 1])
            need = rl[i] + rl[j] + g
            ov = need + 2.0 * s - dist
            m = ov > 0.0
            if np.any(m):
                viol = float(np.max(need[m] - dist[m]))
                dm = np.maximum(dist[m], 1e-12)
                f = (ov[m] / dm)[:, None] * d[m]
                im, jm = i[m], j[m]
                for k in (0, 1):
                    F[:, k] += np.bincount(jm, f[:, k], self.n) - np.bincount(im, f[:, k], self.n)
        # box constraints
        delta = np.maximum(g, 0.1 * rl)
        d_in = np.maximum(delta, 0.2 * rl)
        S = X - self.L * np.rint(X / self.L)  # signed offset to the nearest lattice corner
        for k in (0, 1):
            sk = S[:, k]
            u = np.abs(sk)
            v, push = self._band(u, rl - d_in, rl + delta, s)
            if v is not None:
                viol = max(viol, v)
                F[:, k] += push * np.where(sk >= 0.0, 1.0, -1.0)
        rho = np.hypot(S[:, 0], S[:, 1])
        v, push = self._band(rho, np.minimum(0.5 * rl, rl - delta), rl + delta, s)
        if v is not None:
            viol = max(viol, v)
            nz = np.maximum(rho, 1e-12)
            F += (push / nz)[:, None] * S
        return F, viol

    @staticmethod
    def _band(u, lo, hi, s):
        """Penalty for u in the forbidden band (lo, hi): push to the nearer edge (inflated by s)."""
        los, his = lo - s, hi + s
        inb = (u > los) & (u < his)
        if not np.any(inb):
            return None, None
        down = inb & (los > 0.0) & (u - los < his - u)
        push = np.where(down, -(u - los), his - u)
        push = np.where(inb, push, 0.0)
        true_in = (u > lo) & (u < hi)
        if np.any(true_in):
            depth = np.where(lo > 0.0, np.minimum(u - lo, hi - u), hi - u)
            v = float(np.max(depth[true_in]))
        else:
            v = -np.inf
        return v, push

    # -- relaxation ------------------------------------------------------------------------
    def relax(self, X, lam):
        """FIRE until the true constraints hold at scale lam. Returns (X, ok, reason)."""
        rmax = float(self.r.max()) * lam + 0.5 * self.g + self.s
        skin = 0.25 * float(np.mean(self.r))
        cutoff = 2.0 * rmax + skin
        V = np.zeros_like(X)
        dt, dt_max, alpha, a0, npos = 0.05, 0.5, 0.1, 0.1, 0
        step_cap = 0.1 * float(np.min(self.r)) * max(lam, 0.1)
        i, j = self.pairs(X, cutoff)
        X_ref = X.copy()
        best, best_it, it = np.inf, 0, 0
        while True:
            F, viol = self.forces(X, lam, i, j)
            if viol <= 0.0:
                return X, True, ""
            it += 1
            self.iters += 1
            if viol < best * 0.99:
                best, best_it = viol, it
            elif it - best_it > _STALL_ITERS:
                return X, False, f"jammed with a largest remaining violation of {viol * self.unit:.2g} m"
            if it > _MAX_ITERS_PER_ATTEMPT:
                return X, False, "no convergence"
            if self.iters >= self.max_iterations:
                return X, False, "budget"
            P = float(np.sum(F * V))
            if P > 0.0:
                vn = math.sqrt(float(np.sum(V * V)))
                fn = math.sqrt(float(np.sum(F * F)))
                V = (1.0 - alpha) * V + (alpha * vn / max(fn, 1e-300)) * F
                npos += 1
                if npos > 5:
                    dt = min(dt * 1.1, dt_max)
                    alpha *= 0.99
            else:
                V[:] = 0.0
                dt *= 0.5
                alpha = a0
                npos = 0
            V += dt * F
            dX = dt * V
            mx = float(np.max(np.abs(dX)))
            if mx > step_cap:
                dX *= step_cap / mx
                V *= step_cap / mx
            X = X + dX
            if float(np.max(np.sum((X - X_ref) ** 2, axis=1))) > (0.5 * skin) ** 2:
                X = self.wrap(X)
                X_ref = X.copy()
                i, j = self.pairs(X, cutoff)

    def pack(self, phi_eff):
        """Random start, staged growth to full size; restarts when jammed. Returns positions."""
        lam0 = min(1.0, math.sqrt(_PHI_START / phi_eff)) if phi_eff > 0 else 1.0
        last = "none finished"
        while True:
            X = self.rng.random((self.n, 2)) * self.L
            ok = True
            for k in range(_STAGES + 1):
                lam = lam0 + (1.0 - lam0) * k / _STAGES
                X, ok, reason = self.relax(X, lam)
                if not ok:
                    break
            if ok:
                return self.wrap(X)
            if self.iters >= self.max_iterations:
                raise PackingError(f"could not pack the particles within max_iterations = {self.max_iterations} "
                                   f"(effective solid fraction {phi_eff:.3f} with min_gap; {self.restarts + 1} "
                                   f"random starts, last complete one {last}): the request is too dense for "
                                   f"this draw of sizes; try another rve.seed, reduce the solid fractions "
                                   f"or min_gap, or raise rve.packing_iterations", key="rve.fractions")
            last = reason
            self.restarts += 1


def pack_random(width: float, height: float, fractions: dict[str, float], size: dict[str, tuple[float, float]],
                min_gap: float, seed: int, *, max_iterations: int = MAX_ITERATIONS) -> list[Circle]:
    """Dense random periodic packing of polydisperse circles; see the module docstring.

    ``fractions``: target area fraction per solid phase (pores are the rest);
    ``size``: per phase ``(mean_diameter [m], cv [-])`` of a lognormal diameter distribution;
    ``min_gap`` [m]: smallest boundary-to-boundary distance; ``seed``: NumPy generator seed.
    Returns the circles of the periodic window, images of circles cut by the box included.
    ``max_iterations``: budget of relaxation iterations (all random starts together).
    Raises ``PackingError`` (one line) when the request is impossible or not met within the budget.
    """
    plan = _plan(width, height, fractions, size, min_gap, seed, max_iterations)
    width, height, min_gap, phases, targets, r, labels, U, W, H, g, rng, phi_eff = plan
    packer = _Packer(r, W, H, g, rng, max_iterations, U)
    X = packer.pack(phi_eff)
    return _window(X, r, labels, U, W, H, width, height, min_gap, phases, targets)


def check_random(width: float, height: float, fractions: dict[str, float], size: dict[str, tuple[float, float]],
                 min_gap: float, seed: int, *, max_iterations: int = MAX_ITERATIONS) -> dict:
    """The checks of ``pack_random`` that need no packing (cheap: draws the sizes only).

    Raises the ``PackingError`` that ``pack_random`` would raise before packing; returns
    ``{"particles": n, "effective_fraction": phi_eff}`` otherwise."""
    plan = _plan(width, height, fractions, size, min_gap, seed, max_iterations)
    return {"particles": int(len(plan[5])), "effective_fraction": plan[-1]}


def _plan(width, height, fractions, size, min_gap, seed, max_iterations):
    """Argument checks and the draw of the radii: everything of pack_random before the packing."""
    try:
        width, height, min_gap = float(width), float(height), float(min_gap)
    except (TypeError, ValueError):
        raise PackingError(f"width, height and min_gap must be numbers (got {width!r}, {height!r}, "
                           f"{min_gap!r})") from None
    for name, v in (("width", width), ("height", height)):
        if not (math.isfinite(v) and v > 0):
            raise PackingError(f"{name} must be a positive finite length in m (got {v!r})")
    if not (math.isfinite(min_gap) and min_gap >= 0):
        raise PackingError(f"min_gap must be finite and >= 0 (got {min_gap!r} m)")
    if not (isinstance(max_iterations, int) and max_iterations > 0):
        raise PackingError(f"max_iterations must be a positive integer (got {max_iterations!r})")
    if not fractions:
        raise PackingError("no solid phase given in fractions")
    phases = list(fractions)
    total = 0.0
    sizes, targets = {}, {}
    for p in phases:
        try:
            f = float(fractions[p])
        except (TypeError, ValueError):
            raise PackingError(f"area fraction of phase {p!r} must be a number (got {fractions[p]!r})") from None
        if not (math.isfinite(f) and 0.0 <= f < 1.0):
            raise PackingError(f"area fraction of phase {p!r} must be in [0, 1) (got {f!r})")
        total += f
        targets[p] = f
        if p not in size:
            raise PackingError(f"no size distribution for phase {p!r}")
        m, cv = _size_of(size[p], p)
        if not (math.isfinite(m) and m > 0):
            raise PackingError(f"mean diameter of phase {p!r} must be positive (got {m!r} m)")
        if not (math.isfinite(cv) and 0.0 <= cv <= 3.0):
            raise PackingError(f"cv of phase {p!r} must be in [0, 3] (got {cv!r})")
        if m > 0.5 * min(width, height):
            raise PackingError(f"particles of phase {p!r} are too big for the box: mean diameter {_fmt(m)} m must "
                               f"be at most half the smaller box side ({_fmt(0.5 * min(width, height))} m)",
                               key=f"rve.size.{p}.mean_diameter")
        sizes[p] = (m, cv)
    if total > PHI_MAX:
        raise PackingError(f"solid fraction {total:.3f} is above the densest random packing of disks "
                           f"(~{PHI_MAX}): impossible", key="rve.fractions")
    if total <= 0.0:
        raise PackingError("all solid fractions are zero")
    # expected count f W H / E[pi d^2 / 4], as (W/d)(H/d): d**2 may underflow
    counts = {p: targets[p] * (width / sizes[p][0]) * (height / sizes[p][0])
              / (math.pi / 4.0 * (1.0 + sizes[p][1] ** 2)) for p in phases}
    if sum(counts.values()) > MAX_PARTICLES:
        p = max(counts, key=counts.get)
        raise PackingError(f"about {sum(counts.values()):.3g} particles ({p}: {counts[p]:.3g} of mean diameter "
                           f"{_fmt(sizes[p][0])} m in a {_fmt(width)} x {_fmt(height)} m box); at most "
                           f"{MAX_PARTICLES} can be packed and meshed", key=f"rve.size.{p}.mean_diameter")

    phases.sort(key=lambda p: (-sizes[p][0], -targets[p], sizes[p][1], p))  # names only break ties
    U = 0.5 * min(m for m, _ in sizes.values())  # internal length unit
    W, H, g = width / U, height / U, min_gap / U
    rng = np.random.default_rng(seed)
    radii, labels = [], []
    for p in phases:
        m, cv = sizes[p]
        r = _draw_radii(rng, m / U, cv, 0.5 * min(W, H), targets[p] * W * H)
        radii.append(r)
        labels += [p] * len(r)
    r = np.concatenate(radii)
    if r.size == 0:
        raise PackingError("no particles to pack (all targets below one particle)")
    phi_eff = float(np.sum(np.pi * (r + 0.5 * g) ** 2)) / (W * H)
    if phi_eff > PHI_MAX:
        raise PackingError(f"solid fraction {total:.3f} with min_gap {_fmt(min_gap)} m has an effective "
                           f"fraction {phi_eff:.3f} (disks inflated by min_gap/2) above the densest random packing "
                           f"(~{PHI_MAX}): impossible; reduce the fractions or min_gap", key="rve.fractions")
    if 2.0 * float(r.max()) + g >= min(W, H):
        raise PackingError("a particle does not fit in the periodic box with min_gap: the box is too small",
                           key="rve.width")

    return width, height, min_gap, phases, targets, r, labels, U, W, H, g, rng, phi_eff


def _window(X, r, labels, U, W, H, width, height, min_gap, phases, targets) -> list[Circle]:
    """The circles of the periodic window (images included), checked against the guarantees."""
    out: list[Circle] = []
    for k in range(len(r)):
        x0, y0, rk = float(X[k, 0]), float(X[k, 1]), float(r[k])
        for sy in (0.0, -H, H):
            for sx in (0.0, -W, W):
                x, y = x0 + sx, y0 + sy
                dx = max(0.0 - x, 0.0, x - W)
                dy = max(0.0 - y, 0.0, y - H)
                if dx * dx + dy * dy < rk * rk:
                    out.append(Circle(labels[k], x * U, y * U, rk * U))
    # self-check of the guarantees
    try:
        validate_particles(out, width, height, min_gap)
    except PackingError as e:
        raise PackingError(f"internal error: packed result failed validation: {e}") from None
    probs = sliver_problems(out, width, height, min_gap)
    if probs:
        raise PackingError(f"internal error: packed result has slivers: {probs[0]}")
    fr = area_fractions(out, width, height)
    for p in phases:
        if targets[p] > 0 and abs(fr.get(p, 0.0) - targets[p]) > 1e-6:
            raise PackingError(f"internal error: phase {p!r} area fraction {fr.get(p, 0.0):.6f} "
                               f"differs from the target {targets[p]:.6f}")
    return out
