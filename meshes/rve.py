"""Gmsh (OCC) model of the RVE: clipped particles, optional pores, physical groups, graded mesh.

Tag conventions (shared with solver/domain.py and solver/contact.py):
- cell tag i + 1: particle i of the circle list (physical group name f"{phase}_{i}");
- cell tag PORE_TAG: the pore space (only when ``include_pores``);
- facet tag i + 1: boundary curves of particle i away from the box;
- facet tags WALL_TAGS[side]: every curve on a box side (cut faces of particles, pore edges).

The model is built in units of L = min(W, H) / 40 (O(1) numbers for Gmsh) and the DOLFINx mesh
is scaled back to metres. Narrow gaps are graded: for each pair of circles (and circle-wall)
whose gap g is below the mesh size h, a Ball field around the gap asks for elements of
max(2 g, h/8, min_gap) over the stretch where the gap is below h (radius sqrt((h - g) R_eff)) —
max(g, h/16, min_gap) when the pores are meshed, so that the gap itself is spanned by about one
element; a
Threshold on the distance to the particle boundaries keeps that refinement in a band along the
boundaries, so particle interiors stay at h. Circles are resolved with >= 48 segments.
Mesh generation is single-threaded with a fixed algorithm, so the same input gives the same mesh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

try:  # import order: dolfinx_solver before dolfinx
    import dolfinx_solver  # noqa: F401
except ImportError:  # pragma: no cover
    pass
import gmsh
from mpi4py import MPI

PORE_TAG = 100000
WALL_TAGS = {"left": 100001, "right": 100002, "bottom": 100003, "top": 100004}


@dataclass
class RVEMesh:
    mesh: object
    cell_tags: object
    facet_tags: object
    bodies: list  # [(tag, phase)]
    width: float
    height: float
    info: dict = field(default_factory=dict)


def _close_pairs(circles, W, H, h):
    """(x, y, gap, R_eff) of every circle-circle and circle-wall gap narrower than h (model units)."""
    out = []
    n = len(circles)
    if n:
        X = np.array([[c.x, c.y] for c in circles])
        R = np.array([c.r for c in circles])
        for i in range(n):
            d = np.hypot(X[i + 1:, 0] - X[i, 0], X[i + 1:, 1] - X[i, 1])
            g = d - R[i] - R[i + 1:]
            for j in np.nonzero(g < h)[0]:
                k = i + 1 + j
                u = (X[k] - X[i]) / d[j]
                p = X[i] + u * (R[i] + 0.5 * g[j])
                if -0.0 <= p[0] <= W and 0.0 <= p[1] <= H:
                    out.append((p[0], p[1], g[j], R[i] * R[k] / (R[i] + R[k])))
        for i, c in enumerate(circles):  # uncut circles near a wall
            for (wx, wy, dist) in ((0.0, c.y, c.x), (W, c.y, W - c.x), (c.x, 0.0, c.y), (c.x, H, H - c.y)):
                g = dist - c.r
                if 0 < g < h:
                    px = c.x + (wx - c.x) * (c.r + 0.5 * g) / dist if wx != c.x else c.x
                    py = c.y + (wy - c.y) * (c.r + 0.5 * g) / dist if wy != c.y else c.y
                    out.append((px, py, g, c.r))
    return out


PHASE_TAG0 = 200001  # phase groups (written to .msh files only): 200001, 200002, ... in order of appearance


def build_gmsh_model(circles, width, height, mesh_size, min_gap, *, include_pores=True, gap_refinement=True,
                     phase_groups=False):
    """Build and mesh the OCC model in the current Gmsh session (rank 0). Returns metadata.

    `phase_groups` adds one 2D physical group per phase (named after it) on top of the
    per-particle groups: useful in a .msh for other tools, but not for DOLFINx (a cell gets
    one tag there)."""
    L = min(width, height) / 40.0
    W, H, h, gmin = width / L, height / L, mesh_size / L, min_gap / L
    cs = [type(c)(c.phase, c.x / L, c.y / L, c.r / L) for c in circles]
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
        out, omap = occ.fragment([(2, box)], objs)
        pores = [t for _, t in omap[0]]
        new_parts = []
        for k, p in enumerate(parts):
            new_parts.append(omap[1 + sum(1 for q in parts[:k] if q is not None)][0][1] if p is not None else None)
        parts = new_parts
        owned = {t for p in parts if p is not None for t in [p]}
        pores = [t for t in pores if t not in owned]
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
        for k, ph in enumerate(dict.fromkeys(p for _, p in bodies)):
            gmsh.model.addPhysicalGroup(2, [parts[t - 1] for t, p in bodies if p == ph], PHASE_TAG0 + k, name=ph)
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
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.option.setNumber("Mesh.Algorithm", 6)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 48)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    hmin = h
    balls = []
    if gap_refinement:
        floor = max(gmin, h / 16.0) if include_pores else max(gmin, h / 8.0)
        for (px, py, g, reff) in _close_pairs(cs, W, H, h):
            size = min(h, max((1.0 if include_pores else 2.0) * g, floor))
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
    if balls:
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
    node_tags, _, _ = gmsh.model.mesh.getNodes()
    ncell = sum(len(t) for t in gmsh.model.mesh.getElements(2)[1])
    return {"cells": int(ncell), "nodes": int(len(node_tags)), "bodies": bodies, "min_size_m": float(hmin * L),
            "unit_m": L}


def _session(fn, *args, **kw):
    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        return fn(*args, **kw)
    finally:
        pass


def generate(circles, width, height, mesh_size, min_gap, *, include_pores=True, comm=MPI.COMM_WORLD) -> RVEMesh:
    from dolfinx.io import gmsh as gmshio

    meta = None
    if comm.rank == 0:
        gmsh.initialize(interruptible=False)
        gmsh.option.setNumber("General.Terminal", 0)
        try:
            meta = build_gmsh_model(circles, width, height, mesh_size, min_gap, include_pores=include_pores)
        except Exception:
            gmsh.finalize()
            raise
    meta = comm.bcast(meta, root=0)
    try:
        md = gmshio.model_to_mesh(gmsh.model, comm, 0, gdim=2)
    finally:
        if comm.rank == 0:
            gmsh.finalize()
    md.mesh.geometry.x[:, :2] *= meta["unit_m"]
    return RVEMesh(md.mesh, md.cell_tags, md.facet_tags, [tuple(b) for b in meta["bodies"]], width, height,
                   info=meta)


def write_msh(circles, width, height, mesh_size, min_gap, path, *, include_pores=True):
    """Rank 0: the same model written as Gmsh .msh 4.1 (coordinates in metres)."""
    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        meta = build_gmsh_model(circles, width, height, mesh_size, min_gap, include_pores=include_pores,
                                phase_groups=True)
        L = meta["unit_m"]
        gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
        gmsh.option.setNumber("Mesh.ScalingFactor", L)
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
    return meta


PHASE_COLOURS = ["#e8a33d", "#4f7cac", "#7bb662", "#c44e52", "#8172b2"]


def plot_rve(circles, width, height, path, mesh_file=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle as CP, Rectangle

    phases = sorted({c.phase for c in circles})
    col = {p: PHASE_COLOURS[i % len(PHASE_COLOURS)] for i, p in enumerate(phases)}
    s = 1e6
    fig, ax = plt.subplots(figsize=(6, 6 * height / width))
    box = Rectangle((0, 0), width * s, height * s, fill=False, lw=1.0, color="k")
    ax.add_patch(Rectangle((0, 0), width * s, height * s, color="0.95", zorder=0))
    ax.add_patch(box)
    for c in circles:
        p = CP((c.x * s, c.y * s), c.r * s, color=col[c.phase], lw=0)
        ax.add_patch(p)
        p.set_clip_path(box)
    for p in phases:
        ax.plot([], [], "o", color=col[p], label=p)
    ax.set_xlim(0, width * s)
    ax.set_ylim(0, height * s)
    ax.set_aspect("equal")
    ax.set_xlabel("x [µm]")
    ax.set_ylabel("y [µm]")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
