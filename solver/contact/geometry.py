"""Contact geometry on the deformed particle boundaries (pure NumPy/SciPy: no DOLFINx, no ipctk).

The collision surface is a polyline: n vertices with rest positions X (n, 2), segments E (m, 2)
into them, the body id of every segment (`edge_body`) and vertex (`vbody`). The box
[0, width] x [0, height] may have rigid walls on its sides (`walls[side] = True`). Given the
deformed vertex positions xb (n, 2), this module finds distances between bodies and to walls,
the nearest other body of each vertex, and the boundary length of each phase in contact with
each other phase (DESIGN §3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..tags import SIDES

WALL_ID = {s: -(i + 1) for i, s in enumerate(SIDES)}  # "body" id of a wall in gaps()


def point_segment_distance(q, p0, p1):
    """Distances (k,) from points q (k, 2) to segments p0 -> p1 (k, 2 each)."""
    e = p1 - p0
    ee = np.einsum("ij,ij->i", e, e)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(ee > 0, np.einsum("ij,ij->i", q - p0, e) / ee, 0.0)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(q - p0 - t[:, None] * e, axis=1)


@dataclass
class SurfaceGeometry:
    """The collision surface (rest positions X, segments E, body ids) in its box with walls."""

    X: np.ndarray
    E: np.ndarray
    edge_body: np.ndarray
    width: float
    height: float
    walls: dict
    vbody: np.ndarray = field(init=False)
    on_side: dict = field(init=False)  # {side: (n,) vertices on that box side at rest}
    geom_tol: float = field(init=False)

    def __post_init__(self):
        self.walls = {s: bool(self.walls.get(s, False)) for s in SIDES}
        n = len(self.X)
        self.vbody = np.zeros(n, dtype=np.int64)
        self.vbody[self.E[:, 0]] = self.edge_body
        self.vbody[self.E[:, 1]] = self.edge_body
        W, H = self.width, self.height
        self.geom_tol = 1e-8 * max(W, H)
        t = self.geom_tol
        self.on_side = {"left": np.abs(self.X[:, 0]) <= t, "right": np.abs(self.X[:, 0] - W) <= t,
                        "bottom": np.abs(self.X[:, 1]) <= t, "top": np.abs(self.X[:, 1] - H) <= t}

    @property
    def n(self) -> int:
        return len(self.X)

    def segment_lengths(self, xb=None) -> np.ndarray:
        """Length of each segment (at rest, or at positions xb)."""
        x = self.X if xb is None else xb
        return np.linalg.norm(x[self.E[:, 1]] - x[self.E[:, 0]], axis=1)

    def vertex_edge_pairs(self, xb, r, other_body_only=True):
        """(vertex, edge, distance) for all vertex / segment pairs closer than r, a vertex never
        paired with its own segments (and, with other_body_only, not with its own body)."""
        E = self.E
        if len(E) == 0:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros(0)
        p0, p1 = xb[E[:, 0]], xb[E[:, 1]]
        mid = 0.5 * (p0 + p1)
        hl = 0.5 * np.linalg.norm(p1 - p0, axis=1)
        tv, te = cKDTree(xb), cKDTree(mid)
        pairs = tv.sparse_distance_matrix(te, r + float(hl.max()), output_type="ndarray")
        vi, ei = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
        keep = (E[ei, 0] != vi) & (E[ei, 1] != vi)
        if other_body_only:
            keep &= self.vbody[vi] != self.edge_body[ei]
        vi, ei = vi[keep], ei[keep]
        d = point_segment_distance(xb[vi], p0[ei], p1[ei])
        k = d <= r
        return vi[k], ei[k], d[k]

    def wall_distances(self, xb, shift=None):
        """(n, 4) distance of each vertex to each wall line, in SIDES order (inf: no wall there,
        or the vertex lies on that side at rest: cut faces never collide with their own side);
        `shift` = {side: w} moves that wall by w along its outward normal (a platen)."""
        shift = shift or {}
        W, H = self.width, self.height
        D = np.full((self.n, 4), np.inf)
        dist = {"left": xb[:, 0], "right": W - xb[:, 0], "bottom": xb[:, 1], "top": H - xb[:, 1]}
        for k, s in enumerate(SIDES):
            if self.walls[s]:
                d = np.maximum(dist[s] + shift.get(s, 0.0), 0.0)
                d[self.on_side[s]] = np.inf
                D[:, k] = d
        return D

    def gaps(self, xb, radius: float, shift=None) -> dict:
        """Per vertex: distance to the nearest other body or wall within `radius`, and which one.

        Returns dict: ``x`` (n, 2) positions, ``body`` (n,) own body id, ``dist`` (n,) (inf when
        nothing is within radius), ``other`` (n,) body id of the nearest, or WALL_ID[side] (< 0)
        for a wall, or 0 for none."""
        r = float(radius)
        vi, ei, d = self.vertex_edge_pairs(xb, r)
        dist = np.full(self.n, np.inf)
        other = np.zeros(self.n, dtype=np.int64)
        if len(vi):
            order = np.lexsort((d, vi))
            vi_s, ei_s, d_s = vi[order], ei[order], d[order]
            firsts = np.r_[True, vi_s[1:] != vi_s[:-1]]
            dist[vi_s[firsts]] = d_s[firsts]
            other[vi_s[firsts]] = self.edge_body[ei_s[firsts]]
        Dw = self.wall_distances(xb, shift)
        for k, s in enumerate(SIDES):
            m = (Dw[:, k] < dist) & (Dw[:, k] <= r)
            dist[m] = Dw[m, k]
            other[m] = WALL_ID[s]
        return {"x": xb, "body": self.vbody.copy(), "dist": dist, "other": other}

    def contact_lengths(self, xb, tol: float, phase_of_body: dict, shift=None):
        """Deformed boundary length of each phase in contact with each phase, a wall, or anything.

        A boundary point is in contact with category B when its distance to the nearest body of
        phase B (another body than its own) or wall is <= tol. Distances are computed exactly at
        the vertices and interpolated linearly along each segment; the in-contact share of a
        segment is the part where the interpolant is <= tol.

        Takes positions xb (n, 2), tol, {body id: phase}. Returns (lengths, totals):
        lengths[(A, B)] with B a phase, "wall", "any" (another particle of any phase) or
        "any_or_wall"; totals[A] = deformed length of A's particle boundaries (cut faces on the
        box sides are not part of the surface)."""
        phases = list(dict.fromkeys(phase_of_body[int(b)] for b in np.unique(self.vbody)))
        cats = phases + ["wall"]
        D = np.full((self.n, len(cats)), np.inf)
        # search 4x beyond tol, so that the far end of a segment that is only partly in contact
        # has its distance too (the in-contact share is interpolated); farther still counts as 4 tol
        reach = 4.0 * float(tol)
        vi, ei, d = self.vertex_edge_pairs(xb, reach)
        if len(vi):
            pidx = {p: i for i, p in enumerate(phases)}
            ebody_phase = np.array([pidx[phase_of_body[int(b)]] for b in self.edge_body])
            np.minimum.at(D, (vi, ebody_phase[ei]), d)
        D[:, -1] = self.wall_distances(xb, shift).min(axis=1)
        seg_len = self.segment_lengths(xb)
        vphase = np.array([phase_of_body[int(b)] for b in self.edge_body])
        lengths, totals = {}, {}

        def frac(da, db):
            inside_a, inside_b = da <= tol, db <= tol
            f = np.where(inside_a & inside_b, 1.0, 0.0)
            one = inside_a ^ inside_b
            with np.errstate(invalid="ignore", divide="ignore"):
                fin_a = np.minimum(da, reach)
                fin_b = np.minimum(db, reach)
                t = (tol - fin_a) / (fin_b - fin_a)  # where the interpolant crosses tol
            f = np.where(one & inside_a, np.clip(t, 0, 1), f)
            f = np.where(one & inside_b, np.clip(1.0 - t, 0, 1), f)
            return f

        a, b = self.E[:, 0], self.E[:, 1]
        allD = {c: D[:, i] for i, c in enumerate(cats)}
        allD["any"] = D[:, : len(phases)].min(axis=1) if phases else np.full(self.n, np.inf)
        allD["any_or_wall"] = D.min(axis=1)
        for A in phases:
            m = vphase == A
            totals[A] = float(seg_len[m].sum())
            for B, dv in allD.items():
                lengths[(A, B)] = float((seg_len[m] * frac(dv[a[m]], dv[b[m]])).sum())
        return lengths, totals
