"""Gmsh (OCC) model of the RVE: clipped particles, optional pores, physical groups, graded mesh.

Tag conventions (shared with solver/domain.py and solver/contact.py):
- cell tag i + 1: particle i of the circle list (physical group name f"{phase}_{i}"); a circle
  that does not meet the box gets no group (it is left out of ``bodies``);
- cell tag PORE_TAG: the pore space (only when ``include_pores``);
- facet tag i + 1: boundary curves of particle i away from the box (with pores these are the
  particle/pore interfaces: the pore cells share them, a facet has one tag);
- facet tags WALL_TAGS[side]: every curve on a box side (cut faces of particles, pore edges);
- written .msh files only: one extra 2D group per phase (PHASE_TAG0 + k, named after the phase,
  in order of first appearance).

Units. Gmsh works in units of L = min(W, H) / 40 (0.4 µm for the 16 µm box of configs/se_mse.toml; O(1) numbers,
so Gmsh's absolute tolerances fit); the DOLFINx mesh is scaled back to metres after
``model_to_mesh`` (``geometry.x *= L``) and ``write_msh`` writes metres (Mesh.ScalingFactor).
Everything at this module's interface is in metres.

Geometry. Each circle that crosses a box side is intersected with the box rectangle (OCC
BooleanIntersect); a circle inside stays a disk. With pores, the box is fragmented with the
particles (OCC BooleanFragments): pores = box minus particles, sharing its interface curves
with the particles, so the mesh is conforming. Without pores only the particles are meshed:
separate bodies, i.e. a mesh of disconnected pieces. Overlapping circles are refused.

Mesh size (linear triangles; h = mesh_size inside particles; circles get at least 48 segments
through Mesh.MeshSizeFromCurvature, so a particle's area is that of an inscribed polygon, short
of the circle's by at most (2 pi / 48)^2 / 6 = 0.29 %). Narrow gaps — a circle pair, or a circle
and a box side, closer than h, the closest points inside the box — are graded:
- with pores: the size follows the local gap. For such a pair with gap g and any point x, let
  s(x) = |d_i(x)| + |d_j(x)| (distances to the two boundaries; s = local gap width inside the
  gap, s = g + 2 depth inside a particle); the pair asks for
  size = clamp(max(c g, f) + a (s - g), f, h), c = 1, a = 1/2, floor f = max(min_gap, h/16),
  so the gap itself is spanned by about one element at its narrowest point, the elements grow
  along the gap with its width (asked for no larger than it) and back to h within about one h into the
  particles. The minimum over all pairs is sampled on a quadtree of the box (leaves no larger
  than the local size) and handed to Gmsh as a background view (PostView field): evaluating
  hundreds of analytic fields at each of Gmsh's ~3x10^6 size queries would take minutes.
  Delaunay algorithm. configs/se_mse.toml (16 µm, 29 disks, h = 0.6 µm, min_gap = 0.2 µm): 6005
  triangles with the pores (`creep-cathode mesh configs/se_mse.toml -o DIR`: DIR/rve.json); the
  largest edge of the pore triangles at a gap's narrowest point is <= 1.5 g.
- without pores (the simulation mesh: only the particle boundaries matter for contact): per
  pair a Ball field at the gap, radius sqrt((h - g) R_eff), asking for max(2 g, h/8, min_gap),
  combined (Max) with a Threshold on the distance to the particle boundaries, so that the
  refinement stays in a band along the boundaries and particle interiors stay at h.
  Frontal-Delaunay algorithm. Baseline: ~30k triangles, ~3.5 s in Gmsh.
Same input -> bit-identical mesh: one thread, fixed algorithm and random seed, deterministic
fields.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from .. import dolfinx_env  # noqa: F401  (import order: dolfinx_solver before dolfinx / petsc4py)
import gmsh
from mpi4py import MPI

from ..tags import PORE_TAG, WALL_TAGS

PHASE_TAG0 = 200001  # phase groups (written to .msh files only): 200001, 200002, ... in order of appearance

#: gap grading with pores: size at the narrowest point = GAP_C * g, growth rate GAP_A per unit of
#: extra gap width, floor max(min_gap, h / GAP_FLOOR_DIV)
GAP_C, GAP_A, GAP_FLOOR_DIV = 1.0, 0.5, 16.0
#: quadtree leaves of the background view: at most GAP_VIEW_RHO times the local size
GAP_VIEW_RHO = 1.0


@dataclass
class RVEMesh:
    mesh: object
    cell_tags: object
    facet_tags: object
    bodies: list  # [(tag, phase)]
    width: float
    height: float
    info: dict = field(default_factory=dict)


@contextlib.contextmanager
def gmsh_session():
    """A quiet Gmsh session for this block (initialised here and finalised on exit); inside an
    already initialised session it only yields."""
    own = not gmsh.is_initialized()
    if own:
        gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        yield gmsh
    finally:
        if own:
            gmsh.finalize()


def _close_pairs(circles, W, H, h):
    """Gaps narrower than h, in model units: (i, j, g, px, py, R_eff) per circle pair (j an index)
    whose closest-point midpoint (px, py) lies in the box, and per uncut circle near a box side
    (j the side's name). Raises ValueError for overlapping circles."""
    out = []
    n = len(circles)
    if not n:
        return out
    X = np.array([[c.x, c.y] for c in circles])
    R = np.array([c.r for c in circles])
    for i in range(n - 1):
        d = np.hypot(X[i + 1:, 0] - X[i, 0], X[i + 1:, 1] - X[i, 1])
        g = d - R[i] - R[i + 1:]
        bad = np.nonzero(g < 0)[0]
        if len(bad):
            raise ValueError(f"circles {i} and {i + 1 + int(bad[0])} overlap (gap {g[bad[0]]:.3g} model units)")
        for j in np.nonzero(g < h)[0]:
            k = i + 1 + int(j)
            u = (X[k] - X[i]) / d[j]
            p = X[i] + u * (R[i] + 0.5 * g[j])
            if 0.0 <= p[0] <= W and 0.0 <= p[1] <= H:
                out.append((i, k, float(g[j]), float(p[0]), float(p[1]), float(R[i] * R[k] / (R[i] + R[k]))))
    for i, c in enumerate(circles):  # uncut circles near a wall
        for side, wx, wy, dist in (("left", 0.0, c.y, c.x), ("right", W, c.y, W - c.x),
                                   ("bottom", c.x, 0.0, c.y), ("top", c.x, H, H - c.y)):
            g = dist - c.r
            if 0 < g < h:
                px = c.x + (wx - c.x) * (c.r + 0.5 * g) / dist if wx != c.x else c.x
                py = c.y + (wy - c.y) * (c.r + 0.5 * g) / dist if wy != c.y else c.y
                out.append((i, side, float(g), float(px), float(py), float(c.r)))
    return out


class GapSizeField:
    """Element size that follows the local gap width (pores meshed); see the module docstring.

    ``size(x, y)`` evaluates it (vectorised, model units); ``view_triangles(W, H)`` samples it on
    a quadtree of the box as Gmsh list-view triangles ("ST")."""

    def __init__(self, circles, pairs, W, H, h, floor, c=GAP_C, a=GAP_A):
        self.h, self.floor, self.a = float(h), float(floor), float(a)
        n = len(pairs)
        self.n = n
        self.ci = np.array([[circles[p[0]].x, circles[p[0]].y, circles[p[0]].r] for p in pairs]).reshape(n, 3)
        # the other boundary: kind 0 circle (x, y, r), 1 vertical side x = const, 2 horizontal y = const
        wall = {"left": (1.0, 0.0, 0.0, 0.0), "right": (1.0, W, 0.0, 0.0), "bottom": (2.0, 0.0, 0.0, 0.0),
                "top": (2.0, 0.0, H, 0.0)}
        oj = []
        for p in pairs:
            if isinstance(p[1], str):
                oj.append(wall[p[1]])
            else:
                cj = circles[p[1]]
                oj.append((0.0, cj.x, cj.y, cj.r))
        self.oj = np.array(oj, dtype=float).reshape(n, 4)
        self.g = np.array([p[2] for p in pairs], dtype=float)
        self.s0 = np.clip(c * self.g, self.floor, self.h)
        # a pair asks for less than h only where s < S; such points are within S of both boundaries
        S = self.g + (self.h - self.s0) / self.a
        ci, oj = self.ci, self.oj
        lo = ci[:, :2] - (ci[:, 2] + S)[:, None]
        hi = ci[:, :2] + (ci[:, 2] + S)[:, None]
        for k in range(n):
            if oj[k, 0] == 0.0:
                lo[k] = np.maximum(lo[k], oj[k, 1:3] - oj[k, 3] - S[k])
                hi[k] = np.minimum(hi[k], oj[k, 1:3] + oj[k, 3] + S[k])
            else:
                ax, v = (0, oj[k, 1]) if oj[k, 0] == 1.0 else (1, oj[k, 2])
                lo[k, ax] = max(lo[k, ax], v - S[k])
                hi[k, ax] = min(hi[k, ax], v + S[k])
        self.lo, self.hi = lo, hi

    def size(self, x, y):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        out = np.full(x.shape, self.h)
        for k in range(self.n):
            lo, hi = self.lo[k], self.hi[k]
            m = np.nonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))[0]
            if not len(m):
                continue
            xm, ym = x[m], y[m]
            ci, oj = self.ci[k], self.oj[k]
            di = np.abs(np.hypot(xm - ci[0], ym - ci[1]) - ci[2])
            if oj[0] == 0.0:
                dj = np.abs(np.hypot(xm - oj[1], ym - oj[2]) - oj[3])
            elif oj[0] == 1.0:
                dj = np.abs(xm - oj[1])
            else:
                dj = np.abs(ym - oj[2])
            out[m] = np.minimum(out[m], self.s0[k] + self.a * (di + dj - self.g[k]))
        return np.clip(out, self.floor, self.h)

    def view_triangles(self, W, H, rho=0.5):
        """Quadtree of [0, W] x [0, H] starting from cells of about h, a cell split while the size
        field is below h somewhere on it and the cell is larger than rho times a lower bound of
        the size on it (Lipschitz bound 2a); two linear triangles per leaf, rows of
        (x1, x2, x3, y1, y2, y3, z1, z2, z3, v1, v2, v3) as Gmsh's "ST" list data wants."""
        h = self.h
        nx, ny = max(1, math.ceil(W / h)), max(1, math.ceil(H / h))
        lx, ly = W / nx, H / ny
        ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
        x0, y0 = ii.ravel() * lx, jj.ravel() * ly
        lip = 2.0 * self.a
        rows = []
        for _ in range(40):
            if not len(x0):
                break
            px = np.concatenate([x0, x0 + lx, x0 + lx, x0, x0 + 0.5 * lx])
            py = np.concatenate([y0, y0, y0 + ly, y0 + ly, y0 + 0.5 * ly])
            v = self.size(px, py).reshape(5, -1)
            vmin = v.min(axis=0)
            lb = np.maximum(vmin - lip * 0.5 * math.hypot(lx, ly), self.floor)
            split = (vmin < h) & (max(lx, ly) > rho * lb)
            leaf = ~split
            if leaf.any():
                X = np.stack([x0[leaf], x0[leaf] + lx, x0[leaf] + lx, x0[leaf]])
                Y = np.stack([y0[leaf], y0[leaf], y0[leaf] + ly, y0[leaf] + ly])
                V = v[:4, leaf]
                z = np.zeros(X.shape[1])
                for a_, b_, c_ in ((0, 1, 2), (0, 2, 3)):
                    rows.append(np.stack([X[a_], X[b_], X[c_], Y[a_], Y[b_], Y[c_], z, z, z,
                                          V[a_], V[b_], V[c_]], axis=1))
            x0, y0 = x0[split], y0[split]
            lx, ly = 0.5 * lx, 0.5 * ly
            x0, y0 = np.concatenate([x0, x0 + lx, x0, x0 + lx]), np.concatenate([y0, y0, y0 + ly, y0 + ly])
        return np.concatenate(rows) if rows else np.zeros((0, 12))


def _set_mesh_options(h):
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay (Delaunay with pores, below)
    gmsh.option.setNumber("Mesh.LcIntegrationPrecision", 1e-9)
    gmsh.option.setNumber("Mesh.RandomSeed", 1)
    gmsh.option.setNumber("Mesh.ElementOrder", 1)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 48)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)


def build_gmsh_model(circles, width, height, mesh_size, min_gap, *, include_pores=True, gap_refinement=True,
                     phase_groups=False):
    """Build and mesh the OCC model in the current Gmsh session (call on rank 0 only; see
    ``gmsh_session``). Inputs in metres. Returns metadata: cells, nodes, bodies [(tag, phase)],
    min_size_m (smallest element size asked for), narrow_gaps (pairs graded), unit_m (L).

    `phase_groups` adds one 2D physical group per phase (named after it) on top of the
    per-particle groups: useful in a .msh for other tools, but not for DOLFINx (a cell gets
    one tag there)."""
    L = min(width, height) / 40.0
    W, H, h, gmin = width / L, height / L, mesh_size / L, min_gap / L
    cs = [type(c)(c.phase, c.x / L, c.y / L, c.r / L) for c in circles]
    pairs = _close_pairs(cs, W, H, h)  # also refuses overlaps before any Gmsh work
    occ = gmsh.model.occ
    gmsh.model.add("rve")
    box = occ.addRectangle(0, 0, 0, W, H)
    parts = []
    for c in cs:
        d = occ.addDisk(c.x, c.y, 0, c.r, c.r)
        inside = c.x - c.r >= 0 and c.x + c.r <= W and c.y - c.r >= 0 and c.y + c.r <= H
        if not inside:
            tool = occ.addRectangle(0, 0, 0, W, H)
            res, _ = occ.intersect([(2, d)], [(2, tool)], removeObject=True, removeTool=True)
            d = res[0][1] if res else None
        parts.append(d)
    if include_pores:
        objs = [(2, p) for p in parts if p is not None]
        _, omap = occ.fragment([(2, box)], objs)
        new_parts, k = [], 0
        for p in parts:
            if p is None:
                new_parts.append(None)
            else:
                k += 1
                new_parts.append(omap[k][0][1])
        parts = new_parts
        owned = {p for p in parts if p is not None}
        pores = [t for _, t in omap[0] if t not in owned]
    else:
        occ.remove([(2, box)], recursive=True)
        pores = []
    occ.synchronize()
    bodies = []
    for i, (c, p) in enumerate(zip(cs, parts)):
        if p is None:
            continue
        gmsh.model.addPhysicalGroup(2, [p], i + 1, name=f"{c.phase}_{i}")
        bodies.append((i + 1, c.phase))
    if include_pores and pores:
        gmsh.model.addPhysicalGroup(2, pores, PORE_TAG, name="pores")
    if phase_groups:
        add_phase_groups(bodies, parts)
    # curves: wall sides vs particle boundaries
    tol = 1e-7 * max(W, H)
    side_curves = {s: set() for s in WALL_TAGS}
    for _, cv in gmsh.model.getEntities(1):
        xmin, ymin, _, xmax, ymax, _ = gmsh.model.getBoundingBox(1, cv)
        if abs(xmin) < tol and abs(xmax) < tol:
            side_curves["left"].add(cv)
        elif abs(xmin - W) < tol and abs(xmax - W) < tol:
            side_curves["right"].add(cv)
        elif abs(ymin) < tol and abs(ymax) < tol:
            side_curves["bottom"].add(cv)
        elif abs(ymin - H) < tol and abs(ymax - H) < tol:
            side_curves["top"].add(cv)
    on_side = set().union(*side_curves.values())
    for tag, _ in bodies:
        p = parts[tag - 1]
        bnd = [abs(t) for _, t in gmsh.model.getBoundary([(2, p)], oriented=False)]
        cur = [t for t in bnd if t not in on_side]
        if cur:
            gmsh.model.addPhysicalGroup(1, cur, tag)
    for s, cvs in side_curves.items():
        if cvs:
            gmsh.model.addPhysicalGroup(1, sorted(cvs), WALL_TAGS[s], name=s)
    # mesh size
    _set_mesh_options(h)
    hmin = h
    view = None
    if gap_refinement and pairs and include_pores:
        gsf = GapSizeField(cs, pairs, W, H, h, max(gmin, h / GAP_FLOOR_DIV))
        tri = gsf.view_triangles(W, H, GAP_VIEW_RHO)
        view = gmsh.view.add("gap_size")
        gmsh.view.addListData(view, "ST", len(tri), tri.ravel().tolist())
        fv = gmsh.model.mesh.field.add("PostView")
        gmsh.model.mesh.field.setNumber(fv, "ViewTag", view)
        gmsh.model.mesh.field.setAsBackgroundMesh(fv)
        # Delaunay: better minimum quality than Frontal-Delaunay with this field (0.39 vs 0.29 on
        # the baseline); a coarser 1D size integration (default 1e-9) cuts the time 3x
        gmsh.option.setNumber("Mesh.Algorithm", 5)
        gmsh.option.setNumber("Mesh.LcIntegrationPrecision", 1e-5)
        hmin = min(hmin, float(gsf.s0.min()))
    elif gap_refinement and pairs:
        floor = max(gmin, h / 8.0)
        balls = []
        for (_, _, g, px, py, reff) in pairs:
            size = min(h, max(2.0 * g, floor))
            rad = math.sqrt(max(h - g, 0.0) * reff)
            ball = gmsh.model.mesh.field.add("Ball")
            gmsh.model.mesh.field.setNumber(ball, "XCenter", px)
            gmsh.model.mesh.field.setNumber(ball, "YCenter", py)
            gmsh.model.mesh.field.setNumber(ball, "Radius", rad)
            gmsh.model.mesh.field.setNumber(ball, "Thickness", h)
            gmsh.model.mesh.field.setNumber(ball, "VIn", size)
            gmsh.model.mesh.field.setNumber(ball, "VOut", h)
            balls.append(ball)
            hmin = min(hmin, size)
        # small sizes only near the particle boundaries: Max(Min(balls), Threshold(distance to curves))
        curves = sorted({abs(t) for tag, _ in bodies
                         for _, t in gmsh.model.getBoundary([(2, parts[tag - 1])], oriented=False)})
        dist = gmsh.model.mesh.field.add("Distance")
        gmsh.model.mesh.field.setNumbers(dist, "CurvesList", curves)
        gmsh.model.mesh.field.setNumber(dist, "Sampling", 100)
        thr = gmsh.model.mesh.field.add("Threshold")
        gmsh.model.mesh.field.setNumber(thr, "InField", dist)
        gmsh.model.mesh.field.setNumber(thr, "SizeMin", floor)
        gmsh.model.mesh.field.setNumber(thr, "SizeMax", h)
        gmsh.model.mesh.field.setNumber(thr, "DistMin", floor)
        gmsh.model.mesh.field.setNumber(thr, "DistMax", floor + h)
        fmin = gmsh.model.mesh.field.add("Min")
        gmsh.model.mesh.field.setNumbers(fmin, "FieldsList", balls)
        fmax = gmsh.model.mesh.field.add("Max")
        gmsh.model.mesh.field.setNumbers(fmax, "FieldsList", [fmin, thr])
        gmsh.model.mesh.field.setAsBackgroundMesh(fmax)
    gmsh.model.mesh.generate(2)
    if view is not None:  # the background view is not part of the model
        for f in gmsh.model.mesh.field.list():
            gmsh.model.mesh.field.remove(f)
        gmsh.view.remove(view)
    node_tags, _, _ = gmsh.model.mesh.getNodes()
    ncell = sum(len(t) for t in gmsh.model.mesh.getElements(2)[1])
    return {"cells": int(ncell), "nodes": len(node_tags), "bodies": bodies, "min_size_m": float(hmin * L),
            "narrow_gaps": len(pairs), "unit_m": L}


def add_phase_groups(bodies, parts=None):
    """One 2D physical group per phase (PHASE_TAG0 + k, named after it) over its particles'
    surfaces (for .msh files; after ``model_to_mesh``: DOLFINx wants one tag per cell)."""
    if parts is None:  # from the per-particle groups
        ent = {tag: gmsh.model.getEntitiesForPhysicalGroup(2, tag) for tag, _ in bodies}
    else:
        ent = {tag: [parts[tag - 1]] for tag, _ in bodies}
    for k, ph in enumerate(dict.fromkeys(p for _, p in bodies)):
        gmsh.model.addPhysicalGroup(2, [int(e) for t, p in bodies if p == ph for e in ent[t]], PHASE_TAG0 + k,
                                    name=ph)


def _write(path, unit_m):
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.Binary", 0)
    gmsh.option.setNumber("Mesh.SaveAll", 0)
    gmsh.option.setNumber("Mesh.ScalingFactor", unit_m)
    try:
        gmsh.write(str(path))
    finally:
        gmsh.option.setNumber("Mesh.ScalingFactor", 1.0)


def generate(circles, width, height, mesh_size, min_gap, *, include_pores=True, gap_refinement=True,
             comm=MPI.COMM_WORLD, msh_path=None) -> RVEMesh:
    """The RVE as a DOLFINx mesh (metres) with cell and facet tags, on `comm`.

    Gmsh runs on rank 0 only (its own session); ``dolfinx.io.gmsh.model_to_mesh`` distributes
    the mesh. `msh_path` (optional): rank 0 also writes the same mesh as .msh 4.1 (metres, with
    phase groups) — as ``write_msh`` does, without meshing twice. Errors (overlapping circles,
    Gmsh failures) are raised on every rank."""
    from dolfinx.io import gmsh as gmshio

    meta, err = None, None
    own = False
    if comm.rank == 0:
        own = not gmsh.is_initialized()
        if own:
            gmsh.initialize(interruptible=False)
        gmsh.option.setNumber("General.Terminal", 0)
        try:
            meta = build_gmsh_model(circles, width, height, mesh_size, min_gap, include_pores=include_pores,
                                    gap_refinement=gap_refinement)
        except Exception as e:  # noqa: BLE001 - re-raised on every rank below
            err = e
            if own:
                gmsh.finalize()
    meta, err_msg = comm.bcast((meta, None if err is None else f"{type(err).__name__}: {err}"), root=0)
    if err is not None:
        raise err
    if err_msg is not None:
        raise RuntimeError(f"RVE mesh generation failed on rank 0: {err_msg}")
    try:
        md = gmshio.model_to_mesh(gmsh.model, comm, 0, gdim=2)
        if comm.rank == 0 and msh_path is not None:
            add_phase_groups(meta["bodies"])
            _write(msh_path, meta["unit_m"])
    finally:
        if comm.rank == 0 and own:
            gmsh.finalize()
    md.mesh.geometry.x[:, :2] *= meta["unit_m"]
    return RVEMesh(md.mesh, md.cell_tags, md.facet_tags, [tuple(b) for b in meta["bodies"]], width, height,
                   info=meta)


def write_msh(circles, width, height, mesh_size, min_gap, path, *, include_pores=True, gap_refinement=True,
              comm=None):
    """The same model written as Gmsh .msh 4.1 (ASCII, coordinates in metres, per-particle, pore,
    wall and phase groups). Rank 0 writes (other ranks of `comm`, when given, return None)."""
    if comm is not None and comm.rank != 0:
        return None
    with gmsh_session():
        meta = build_gmsh_model(circles, width, height, mesh_size, min_gap, include_pores=include_pores,
                                gap_refinement=gap_refinement, phase_groups=True)
        _write(path, meta["unit_m"])
    return meta


PHASE_COLOURS = ["#e8a33d", "#4f7cac", "#7bb662", "#c44e52", "#8172b2"]


def plot_rve(circles, width, height, path, mesh_file=None, *, max_mesh_cells=40000, comm=None):
    """PNG of the RVE: particles coloured by phase (clipped by the box), pores light grey, box
    outline; with `mesh_file` (a .msh in metres, e.g. from ``write_msh``) its triangle edges are
    drawn too when it has at most `max_mesh_cells` triangles. Rank 0 draws (other ranks of
    `comm`, when given, return)."""
    if comm is not None and comm.rank != 0:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle as CP, Rectangle

    phases = sorted({c.phase for c in circles})
    col = {p: PHASE_COLOURS[i % len(PHASE_COLOURS)] for i, p in enumerate(phases)}
    s = 1e6
    fig, ax = plt.subplots(figsize=(6, 6 * height / width))
    box = Rectangle((0, 0), width * s, height * s, fill=False, lw=1.0, color="k", zorder=3)
    ax.add_patch(Rectangle((0, 0), width * s, height * s, color="0.95", zorder=0))
    ax.add_patch(box)
    for c in circles:
        p = CP((c.x * s, c.y * s), c.r * s, color=col[c.phase], lw=0, zorder=1)
        ax.add_patch(p)
        p.set_clip_path(box)
    if mesh_file is not None:
        import meshio

        m = meshio.read(str(mesh_file))
        tri = np.concatenate([b.data for b in m.cells if b.type == "triangle"]) if m.cells else np.zeros((0, 3))
        if 0 < len(tri) <= max_mesh_cells:
            ax.triplot(m.points[:, 0] * s, m.points[:, 1] * s, tri, lw=0.15, color="k", alpha=0.6, zorder=2)
    for p in phases:
        ax.plot([], [], "o", color=col[p], label=p)
    ax.set_xlim(0, width * s)
    ax.set_ylim(0, height * s)
    ax.set_aspect("equal")
    ax.set_xlabel("x [µm]")
    ax.set_ylabel("y [µm]")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120 if mesh_file is None else 200)
    plt.close(fig)
