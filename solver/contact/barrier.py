r"""The IPC log-barrier and continuous collision detection on a collision surface (ipctk, NumPy in/out).

(Li et al., "Incremental Potential Contact", ACM TOG 39(4), 2020; IPC Toolkit `ipctk`.)

    B(x) = kappa * sum_k w_k * b(d_k^2) / dhat^3,   b(z) = -(z - dhat^2)^2 ln(z / dhat^2),

over the unsigned distances d_k < dhat between each vertex and each segment of another body
(or a wall), w_k = 1/2 x (rest length of the surface around the vertex) ("area weighting"):
B is a boundary integral, independent of the mesh, and kappa is a stress (see
`contact.barrier_pressure`). Rigid walls (`walls[side]`) are static segments along the box
sides, extended beyond the corners. Vertices on a box side at rest never collide with that
side's wall; same-body pairs are filtered out unless `self_contact`. A wall may be shifted along
its outward normal by w (`shift = {side: w}`, a platen's mean displacement w̄(u)); `wall_terms`
gives the derivatives of B with respect to w, which the caller chains to the DoFs through w̄(u).

Works on the deformed body-vertex positions xb (n, 2) (model units); gradients and Hessians are
on the 2n collision DoFs, vertex-major. ipctk is fed coordinates divided by the length scale Lc
(its CCD and broad-phase tolerances are absolute): B = kappa Lc^2 sum w^ b(d^2; dhat^2)/dhat^3
in scaled variables equals the same B unscaled.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

import ipctk

from ..tags import NORMAL_AXIS, NORMAL_SIGN, SIDES
from .geometry import WALL_ID, SurfaceGeometry


class Barrier:
    """Takes the SurfaceGeometry, dhat and kappa (model units), the length scale Lc fed to ipctk,
    whether same-body pairs collide, and the ipctk (TBB) thread count."""

    def __init__(self, geometry: SurfaceGeometry, dhat: float, kappa: float, length_scale: float,
                 self_contact: bool = False, threads: int = 1):
        if threads:
            ipctk.set_num_threads(int(threads))
        self.geometry = g = geometry
        self.dhat, self.kappa = float(dhat), float(kappa)
        if not (self.dhat > 0 and self.kappa > 0):
            raise ValueError("contact: dhat and kappa must be positive")
        self.Lc = float(length_scale)
        self._dhat_n = self.dhat / self.Lc
        self.potential = ipctk.BarrierPotential(self._dhat_n, self.kappa * self.Lc**2, True)
        self.psd_method = ipctk.PSDProjectionMethod.CLAMP
        n, W, H = g.n, g.width, g.height
        ext = max(W, H)
        ends = {"left": [(0.0, -ext), (0.0, H + ext)], "right": [(W, -ext), (W, H + ext)],
                "bottom": [(-ext, 0.0), (W + ext, 0.0)], "top": [(-ext, H), (W + ext, H)]}
        wv, we, patch = [], [], list(g.vbody)
        excl = {}
        self.wall_ends = {}  # {side: (i0, i0 + 1)} collision-mesh indices of a wall's two ends
        for s in (s for s in SIDES if g.walls[s]):
            i0 = n + len(wv)
            self.wall_ends[s] = (i0, i0 + 1)
            wv += ends[s]
            we.append((i0, i0 + 1))
            patch += [WALL_ID[s], WALL_ID[s]]
            for p in np.flatnonzero(g.on_side[s]):
                excl[(int(p), i0)] = False
                excl[(int(p), i0 + 1)] = False
        self.n_wall_vertices = len(wv)
        rest = np.vstack([g.X, np.array(wv, float).reshape(-1, 2)])
        edges = np.vstack([g.E, np.array(we, np.int32).reshape(-1, 2)]).astype(np.int32)
        self.rest = np.asfortranarray(rest)  # bodies first, then the static wall ends
        self.cm = ipctk.CollisionMesh(np.asfortranarray(rest / self.Lc), np.asfortranarray(edges),
                                      np.zeros((0, 3), dtype=np.int32))
        filt = ipctk.make_static_obstacle_filter(n)
        if not self_contact:
            filt = filt & ipctk.make_vertex_patches_filter(np.array(patch, dtype=np.int32))
        if excl:
            filt = filt & ipctk.make_sparse_filter(excl, True)
        self.cm.can_collide = filt
        self._key = None
        self.initial_min_distance = self.min_distance(g.X)
        if not self.initial_min_distance > 0:
            raise ValueError("contact: bodies touch or overlap in the reference configuration (a particle "
                             "vertex at distance 0 from another particle or a rigid wall)")

    def positions(self, xb, shift=None) -> np.ndarray:
        """All collision-mesh vertices: the body vertices xb, then the wall ends (shifted by
        `shift` = {side: w} along the side's outward normal)."""
        x = self.rest.copy()
        x[: self.geometry.n] = xb
        for side, w in (shift or {}).items():
            x[list(self.wall_ends[side]), NORMAL_AXIS[side]] += NORMAL_SIGN[side] * w
        return x

    def _state(self, xb, shift=None):
        """(scaled positions, active collisions), cached for the last xb and shift."""
        key = np.ascontiguousarray(xb).tobytes() + repr(sorted((shift or {}).items())).encode()
        if self._key != key:
            xn = np.asfortranarray(self.positions(xb, shift) / self.Lc)
            col = ipctk.NormalCollisions()
            col.use_area_weighting = True
            col.build(self.cm, xn, self._dhat_n)
            self._key, self._xn, self._collisions = key, xn, col
        return self._xn, self._collisions

    def num_active(self, xb, shift=None) -> int:
        """Number of vertex-segment pairs closer than dhat."""
        return len(self._state(xb, shift)[1])

    def energy(self, xb, shift=None) -> float:
        """B at positions xb."""
        x, col = self._state(xb, shift)
        return float(self.potential(col, self.cm, x)) if len(col) else 0.0

    def _wall_dofs(self, side) -> list:
        a = NORMAL_AXIS[side]
        return [2 * v + a for v in self.wall_ends[side]]

    def gradient(self, xb, shift=None) -> np.ndarray:
        """dB/dx on the 2n collision DoFs (vertex-major)."""
        return self.gradient_and_walls(xb, shift)[0]

    def gradient_and_walls(self, xb, shift=None):
        """(dB/dx on the 2n collision DoFs, {side: dB/dw} for the shifted walls)."""
        x, col = self._state(xb, shift)
        m = 2 * self.geometry.n
        if not len(col):
            return np.zeros(m), {side: 0.0 for side in (shift or {})}
        g = np.asarray(self.potential.gradient(col, self.cm, x)) / self.Lc
        gw = {side: NORMAL_SIGN[side] * float(g[self._wall_dofs(side)].sum()) for side in (shift or {})}
        return g[:m], gw

    def hessian(self, xb, project: bool, shift=None) -> sp.csr_matrix:
        """d2B/dx2 on the 2n collision DoFs (CSR), exact or projected per collision onto the PSD cone."""
        return self.hessian_and_walls(xb, project, shift)[0]

    def hessian_and_walls(self, xb, project: bool, shift=None):
        """(d2B/dx2 on the 2n collision DoFs, {side: (d2B/dx dw (2n,), d2B/dw2)} for the shifted walls)."""
        x, col = self._state(xb, shift)
        m = 2 * self.geometry.n
        if not len(col):
            return sp.csr_matrix((m, m)), {side: (np.zeros(m), 0.0) for side in (shift or {})}
        method = self.psd_method if project else ipctk.PSDProjectionMethod.NONE
        Hs = sp.csr_matrix(self.potential.hessian(col, self.cm, x, project_hessian_to_psd=method)) / self.Lc**2
        walls = {}
        for side in (shift or {}):
            j, sg = self._wall_dofs(side), NORMAL_SIGN[side]
            cols = Hs[:, j].toarray().sum(axis=1) * sg
            walls[side] = (cols[:m], float(cols[j].sum() * sg))
        return Hs[:m, :m], walls

    def max_step(self, xb0, xb1, shift0=None, shift1=None) -> float:
        """Largest alpha in (0, 1] such that the straight path xb0 -> xb1 (walls shift0 -> shift1) is
        collision free (ipctk tight-inclusion CCD with its conservative rescaling: keeps >= 20 % of
        every gap)."""
        x0, x1 = self.positions(xb0, shift0), self.positions(xb1, shift1)
        return float(ipctk.compute_collision_free_stepsize(self.cm, np.asfortranarray(x0 / self.Lc),
                                                           np.asfortranarray(x1 / self.Lc)))

    def min_distance(self, xb, shift=None) -> float:
        """Smallest distance among active collisions (inf when none is closer than dhat)."""
        x, col = self._state(xb, shift)
        if not len(col):
            return math.inf
        return float(np.sqrt(col.compute_minimum_distance(self.cm, x))) * self.Lc


class SmoothBarrier(Barrier):
    """TRIAL: ipctk 1.6 SmoothPotential (geometric contact potential) in place of the point-segment
    log barrier; scaled so that a flat body-body contact carries the log barrier's pressure at
    gap s_ref dhat."""

    def __init__(self, geometry, dhat, kappa, length_scale, self_contact=False, threads=1,
                 r=1, s_ref=0.05, alpha_t=1.0, beta_t=0.0, alpha_n=0.1, beta_n=0.0):
        super().__init__(geometry, dhat, kappa, length_scale, self_contact, threads)
        self.param = ipctk.SmoothContactParameters(self._dhat_n, alpha_t, beta_t, alpha_n, beta_n, int(r))
        self.spot = ipctk.SmoothPotential(self.param)
        self.scale = 1.0
        seg = geometry.segment_lengths()
        hm = float(seg.mean()) / self.Lc
        # calibration: two straight parallel polylines, 80 segments of the mean length, gap s_ref dhat
        m = 80
        xs = np.arange(m + 1) * hm
        d = s_ref * self._dhat_n
        V = np.vstack([np.c_[xs, np.zeros_like(xs)], np.c_[xs, np.full_like(xs, d)]])
        E = np.vstack([np.c_[np.arange(m), np.arange(1, m + 1)],
                       np.c_[np.arange(m + 2, 2 * m + 2), np.arange(m + 1, 2 * m + 1)]]).astype(np.int32)
        cm = ipctk.CollisionMesh(np.asfortranarray(V), np.asfortranarray(E), np.zeros((0, 3), np.int32))
        col = ipctk.SmoothCollisions()
        col.build(cm, np.asfortranarray(V), self.param)
        g = np.asarray(self.spot.gradient(col, cm, np.asfortranarray(V))).reshape(-1, 2)
        # force per unit (scaled) length on the middle half of the upper line
        mid = slice(m + 1 + m // 4, m + 1 + 3 * m // 4)
        f_unit = -g[mid, 1].sum() / (hm * (3 * m // 4 - m // 4))
        s = s_ref
        gs = 2.0 * s * (4.0 * (1.0 - s**2) * np.log(1.0 / s) + (1.0 - s**2) ** 2 / s**2)
        # log barrier pressure kappa g(s) in model units; B_smooth = scale * P(x / Lc): force per model
        # length = scale * f_unit / Lc^2
        self.scale = self.kappa * gs * self.Lc**2 / f_unit
        self._key = None

    def _state(self, xb, shift=None):
        key = np.ascontiguousarray(xb).tobytes() + repr(sorted((shift or {}).items())).encode()
        if self._key != key:
            xn = np.asfortranarray(self.positions(xb, shift) / self.Lc)
            col = ipctk.SmoothCollisions()
            if hasattr(self, "param"):
                col.build(self.cm, xn, self.param)
            else:
                col = ipctk.NormalCollisions(); col.use_area_weighting = True; col.build(self.cm, xn, self._dhat_n)
            self._key, self._xn, self._collisions = key, xn, col
        return self._xn, self._collisions

    def num_active(self, xb, shift=None):
        return int(self._state(xb, shift)[1].n_candidates())

    def energy(self, xb, shift=None):
        x, col = self._state(xb, shift)
        return self.scale * float(self.spot(col, self.cm, x)) if not col.empty() else 0.0

    def gradient_and_walls(self, xb, shift=None):
        x, col = self._state(xb, shift)
        m = 2 * self.geometry.n
        if col.empty():
            return np.zeros(m), {side: 0.0 for side in (shift or {})}
        g = self.scale * np.asarray(self.spot.gradient(col, self.cm, x)).ravel() / self.Lc
        gw = {side: NORMAL_SIGN[side] * float(g[self._wall_dofs(side)].sum()) for side in (shift or {})}
        return g[:m], gw

    def hessian_and_walls(self, xb, project, shift=None):
        x, col = self._state(xb, shift)
        m = 2 * self.geometry.n
        if col.empty():
            return sp.csr_matrix((m, m)), {side: (np.zeros(m), 0.0) for side in (shift or {})}
        method = self.psd_method if project else ipctk.PSDProjectionMethod.NONE
        Hs = self.scale * sp.csr_matrix(self.spot.hessian(col, self.cm, x, project_hessian_to_psd=method)) / self.Lc**2
        walls = {}
        for side in (shift or {}):
            j, sg = self._wall_dofs(side), NORMAL_SIGN[side]
            cols = Hs[:, j].toarray().sum(axis=1) * sg
            walls[side] = (cols[:m], float(cols[j].sum() * sg))
        return Hs[:m, :m], walls

    def min_distance(self, xb, shift=None):
        x, col = self._state(xb, shift)
        if col.empty():
            return math.inf
        return float(np.sqrt(col.compute_minimum_distance(self.cm, x))) * self.Lc
