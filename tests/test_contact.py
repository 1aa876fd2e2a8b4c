"""IPC barrier contact (solver.contact) and the minimisation Newton solver (solver.newton).

1. Hertz: a cylinder pressed onto a rigid flat (quarter model) -> contact half-width vs
   a = sqrt(4 P R / (pi E*)), no interpenetration.
2. An elastic swelling cycle (corner quarter-disks, rollers, rigid wall) is reversible and the
   contacts open again.
3. The prototype's hard case (a swelling disk hemmed in by rigid walls and a floating stiff disk)
   reaches full lithiation J_l = 1.98 with P2.
4. MPI: serial and `mpiexec -n 2` agree.

Every test builds its own small Gmsh mesh with the RVE tag conventions: cell tag i+1 and facet
tag i+1 for particle i, WALL_TAGS for facets on the box sides.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solver import dolfinx_env  # noqa: E402,F401  (dolfinx_solver before dolfinx)
import dolfinx.fem.petsc as fp  # noqa: E402
import gmsh  # noqa: E402
import ufl  # noqa: E402
from dolfinx import fem  # noqa: E402
from dolfinx.io import gmsh as gmshio  # noqa: E402
from mpi4py import MPI  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from solver.contact import WALL_TAGS, BarrierContact  # noqa: E402
from solver.newton import minimise  # noqa: E402

SIDES = ("left", "right", "bottom", "top")


# --------------------------------------------------------------------------- helpers
def disk_mesh(disks, W, H, h, *, refine=None, comm=MPI.COMM_WORLD):
    """Gmsh mesh of disks (cx, cy, r) clipped to the box [0,W]x[0,H], RVE tag conventions.

    refine = (x, y, r_in, r_out, h_min): element size h_min within r_in of (x, y), growing
    linearly to h at r_out."""
    if comm.rank == 0:
        gmsh.initialize()
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("disks")
        occ = gmsh.model.occ
        box = occ.addRectangle(0, 0, 0, W, H)
        surfs = []
        for cx, cy, r in disks:
            d = occ.addDisk(cx, cy, 0, r, r)
            out, _ = occ.intersect([(2, d)], [(2, box)], removeObject=True, removeTool=False)
            surfs.append([t for dim, t in out if dim == 2])
        occ.remove([(2, box)])
        occ.synchronize()
        tol = 1e-6 * max(W, H)  # gmsh bounding boxes carry a small tolerance
        walls = {s: [] for s in SIDES}
        for i, ss in enumerate(surfs):
            gmsh.model.addPhysicalGroup(2, ss, i + 1)
            curves = [c for _, c in gmsh.model.getBoundary([(2, s) for s in ss], oriented=False)]
            part = []
            for c in curves:
                x0, y0, _, x1, y1, _ = gmsh.model.getBoundingBox(1, c)
                side = None
                if abs(x0) < tol and abs(x1) < tol:
                    side = "left"
                elif abs(x0 - W) < tol and abs(x1 - W) < tol:
                    side = "right"
                elif abs(y0) < tol and abs(y1) < tol:
                    side = "bottom"
                elif abs(y0 - H) < tol and abs(y1 - H) < tol:
                    side = "top"
                (walls[side] if side else part).append(c)
            gmsh.model.addPhysicalGroup(1, part, i + 1)
        for s in SIDES:
            if walls[s]:
                gmsh.model.addPhysicalGroup(1, walls[s], WALL_TAGS[s])
        gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
        if refine is not None:
            x, y, r_in, r_out, hmin = refine
            p = occ.addPoint(x, y, 0)
            occ.synchronize()
            f = gmsh.model.mesh.field
            fd = f.add("Distance")
            f.setNumbers(fd, "PointsList", [p])
            ft = f.add("Threshold")
            f.setNumber(ft, "InField", fd)
            f.setNumber(ft, "SizeMin", hmin)
            f.setNumber(ft, "SizeMax", h)
            f.setNumber(ft, "DistMin", r_in)
            f.setNumber(ft, "DistMax", r_out)
            f.setAsBackgroundMesh(ft)
            gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
            gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
            gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.model.mesh.generate(2)
    md = gmshio.model_to_mesh(gmsh.model if comm.rank == 0 else None, comm, 0, gdim=2)
    if comm.rank == 0:
        gmsh.finalize()
    return md.mesh, md.cell_tags, md.facet_tags


def proximal_energy(u, u_prev, k_prox, dx):
    """1/2 k_prox |u - u_prev|^2: regularises the rigid-body modes of floating bodies."""
    return 0.5 * k_prox * ufl.inner(u - u_prev, u - u_prev) * dx


class ElasticSystem:
    """Minimisation system for solver.newton: hyperelastic plane strain + swelling + contact + proximal.

    material: "neo-hookean" (compressible, psi = mu/2 (I1 - 3 - 2 ln J) + lam/2 ln^2 J of Fe) or
    "linear" (small strain). Swelling: Fl = J_l^(1/3) I (3D isotropic, F33 = 1: plane strain),
    J_l = 1 + s * swell (swell = 1 on swelling cells), energy per reference volume psi(Fe) J_l."""

    def __init__(self, msh, cell_tags, *, degree, youngs, nu=0.3, swelling_tags=(), material="neo-hookean",
                 k_prox=0.0, bcs_fn=None, contact_kwargs=None, facet_tags=None, q=None):
        self.msh, self.comm = msh, msh.comm
        V = self.V = fem.functionspace(msh, ("Lagrange", degree, (2,)))
        Q0 = fem.functionspace(msh, ("DG", 0))
        E, sw = fem.Function(Q0), fem.Function(Q0)
        for tag, e in youngs.items():
            E.x.array[cell_tags.find(tag)] = e
        for tag in swelling_tags:
            sw.x.array[cell_tags.find(tag)] = 1.0
        E.x.scatter_forward()
        sw.x.scatter_forward()
        mu, lmb = E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
        self.u = u = fem.Function(V, name="u")
        self.u_prev = fem.Function(V)
        self.s = fem.Constant(msh, PETSc.ScalarType(0.0))
        self.k_prox = fem.Constant(msh, PETSc.ScalarType(k_prox))
        v, du = ufl.TestFunction(V), ufl.TrialFunction(V)
        dx = ufl.dx(metadata={"quadrature_degree": q if q else max(1, 2 * (degree - 1))})
        g = ufl.grad(u)
        if material == "linear":
            eps = ufl.sym(g)
            psi = lmb / 2 * ufl.tr(eps) ** 2 + mu * ufl.inner(eps, eps)
            W = psi
        else:
            F = ufl.as_matrix([[1 + g[0, 0], g[0, 1], 0], [g[1, 0], 1 + g[1, 1], 0], [0, 0, 1]])
            Jl = 1 + self.s * sw
            Fe = F / Jl ** (1 / 3)
            Je = ufl.det(Fe)
            psi = mu / 2 * (ufl.tr(Fe.T * Fe) - 3 - 2 * ufl.ln(Je)) + lmb / 2 * ufl.ln(Je) ** 2
            W = psi * Jl
        Pi = W * dx + proximal_energy(u, self.u_prev, self.k_prox, dx)
        self.E_form = fem.form(Pi)
        self.W_form = fem.form(W * dx)
        R = ufl.derivative(Pi, u, v)
        self.R_form = fem.form(R)
        self.Rel_form = fem.form(ufl.derivative(W * dx, u, v))
        self.J_form = fem.form(ufl.derivative(R, u, du))
        self.bcs = bcs_fn(V) if bcs_fn else []
        self.A = fp.create_matrix(self.J_form)
        self.A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, False)
        self.b = fp.create_vector(V)
        nown = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
        bc_local = np.unique(np.concatenate([bc.dof_indices()[0] for bc in self.bcs])) if self.bcs else \
            np.zeros(0, np.int32)
        self.bc_owned = bc_local[bc_local < nown]
        self.contact = None
        if contact_kwargs is not None:
            self.contact = BarrierContact(V, facet_tags, bcs=self.bcs, **contact_kwargs)
        self.n_assemble = 0

    def energy(self, x) -> float:
        self.u.x.array[:] = x
        e = self.comm.allreduce(fem.assemble_scalar(self.E_form), op=MPI.SUM)
        if not math.isfinite(e):
            return math.inf
        if self.contact is not None:
            e += self.contact.energy(x)
        return e

    def assemble(self, x):
        self.n_assemble += 1
        self.u.x.array[:] = x
        b, A = self.b, self.A
        with b.localForm() as bl:
            bl.set(0.0)
        fp.assemble_vector(b, self.R_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        A.zeroEntries()
        fp.assemble_matrix(A, self.J_form, bcs=self.bcs)
        if self.contact is not None:
            self.contact.add_gradient(b, x)
            self.contact.add_hessian(A, x)
        A.assemble()
        b.array[self.bc_owned] = 0.0
        return b, A

    def max_step(self, x, dx) -> float:
        return 1.0 if self.contact is None else self.contact.max_step(x, dx)

    def reaction(self, dofs_local_owned) -> float:
        """Sum of the elastic internal forces on these (owned, local) DoFs."""
        vec = fp.assemble_vector(self.Rel_form)
        vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        r = float(vec.array[dofs_local_owned].sum())
        vec.destroy()
        return self.comm.allreduce(r, op=MPI.SUM)


def boundary_dofs(V, facet_tags, tag, comp):
    tdim = V.mesh.topology.dim
    V.mesh.topology.create_connectivity(tdim - 1, tdim)
    return fem.locate_dofs_topological(V.sub(comp), tdim - 1, facet_tags.find(tag))


def roller_bcs(facet_tags, sides):
    axis = {"left": 0, "right": 0, "bottom": 1, "top": 1}

    def make(V):
        zero = PETSc.ScalarType(0.0)
        return [fem.dirichletbc(zero, boundary_dofs(V, facet_tags, WALL_TAGS[s], axis[s]), V.sub(axis[s]))
                for s in sides if len(facet_tags.find(WALL_TAGS[s])) or True]

    return make


# --------------------------------------------------------------------------- 1. Hertz
HERTZ = dict(R=1.0, E=1.0, nu=0.3, h=0.12, hmin=0.008, dhat=1e-3, kappa=1e-3)


def run_hertz(deltas, degree=2, material="linear", comm=MPI.COMM_WORLD, log=None, **over):
    """Quarter cylinder (centre (0, H), radius R, x >= 0, y <= H) pushed by a uniform vertical
    displacement of its flat top onto the rigid wall y = 0; symmetry roller on x = 0 (also a rigid
    wall, which its own cut-face vertices must ignore). Returns per load: P, a (force moments),
    a (gap), a_Hertz, min gap, iterations."""
    p = {**HERTZ, **over}
    R, E, nu, dhat, kappa = p["R"], p["E"], p["nu"], p["dhat"], p["kappa"]
    g0 = 2 * dhat
    W, H = 1.25 * R, R + g0
    a_max = 0.25 * R
    msh, ct, ft = disk_mesh([(0.0, H, R)], W, H, p["h"], refine=(0.0, g0, 1.2 * a_max, 0.8 * R, p["hmin"]),
                            comm=comm)
    top = {}

    def bcs_fn(V):
        zero = PETSc.ScalarType(0.0)
        top["dofs"] = boundary_dofs(V, ft, WALL_TAGS["top"], 1)
        top["value"] = fem.Constant(msh, PETSc.ScalarType(0.0))
        return [fem.dirichletbc(zero, boundary_dofs(V, ft, WALL_TAGS["left"], 0), V.sub(0)),
                fem.dirichletbc(top["value"], top["dofs"], V.sub(1))]

    sysm = ElasticSystem(msh, ct, degree=degree, youngs={1: E}, nu=nu, material=material, bcs_fn=bcs_fn,
                         facet_tags=ft, contact_kwargs=dict(width=W, height=H, dhat=dhat, kappa=kappa,
                                                            walls={"left": True, "bottom": True}))
    V, u, c = sysm.V, sysm.u, sysm.contact
    # lifting for the top displacement: -d * max(0, (y - y_c)/(H - y_c)), zero near the contact
    yc = g0 + 0.5 * R
    lift = fem.Function(V)
    lift.interpolate(lambda x: np.vstack([0 * x[0], -np.maximum(0.0, (x[1] - yc) / (H - yc))]))
    Estar = E / (1 - nu**2)
    nown = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
    tdofs = top["dofs"][top["dofs"] < nown]
    out, prev = [], 0.0
    for delta in deltas:
        top["value"].value = -delta
        u.x.array[:] += (delta - prev) * lift.x.array
        prev = delta
        r = minimise(sysm, u, atol=1e-11, rtol=1e-9, dx_tol=1e-10 * R, max_it=40, log=log)
        assert r.converged, r.reason
        f = c.forces(u.x.array)
        gp = c.gaps(u.x.array)
        x = gp["x"]
        bottom = gp["other"] == -3
        fy = np.where(bottom, f[:, 1], 0.0)
        P = 2 * fy.sum()  # full cylinder, per unit thickness
        a_mom = 2 * math.sqrt(max((fy * x[:, 0] ** 2).sum(), 0) / fy.sum())
        # gap-based half-width: along the boundary near the contact, where the gap crosses tol
        near = (np.abs(x[:, 1]) < 0.1 * R) & (x[:, 0] < 0.5 * R)
        order = np.argsort(x[near, 0])
        xs, ds = x[near, 0][order], np.where(bottom[near], gp["dist"][near], np.inf)[order]
        a_gap = {}
        for tolf in (0.1, 0.5, 1.0):
            tol = tolf * dhat
            k = np.flatnonzero(ds > tol)
            k = k[0] if len(k) else len(xs) - 1
            if k == 0 or not np.isfinite(ds[k]):
                a_gap[tolf] = xs[k]
            else:
                a_gap[tolf] = xs[k - 1] + (tol - ds[k - 1]) / (ds[k] - ds[k - 1]) * (xs[k] - xs[k - 1])
        reac = sysm.reaction(tdofs)
        # no interpenetration of the (P2-curved) boundary: evaluate u on the particle facets
        ymin = boundary_min_y(V, ft, u)
        out.append(dict(delta=delta, P=P, P_reaction=-2 * reac, a_mom=a_mom, a_gap=a_gap,
                        a_hertz=math.sqrt(4 * P * R / (math.pi * Estar)), min_gap=c.min_distance(u.x.array),
                        ymin=ymin, its=r.iterations, n_contact=int(bottom.sum()),
                        seg=c.segment_length[0]))
    return out, sysm


def boundary_min_y(V, ft, u, npts=5):
    """min over particle boundary facets of the deformed y, sampled at npts points per facet."""
    from dolfinx import geometry  # noqa: F401

    msh = V.mesh
    tdim = msh.topology.dim
    facets = ft.indices[(ft.values >= 1) & (ft.values < 100000)]
    msh.topology.create_connectivity(tdim - 1, 0)
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2v = msh.topology.connectivity(tdim - 1, 0).array.reshape(-1, 2)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    X = msh.geometry.x
    # geometry node = topology vertex for an order-1 mesh created by model_to_mesh? use entities_to_geometry
    from dolfinx.cpp.mesh import entities_to_geometry

    geo = entities_to_geometry(msh._cpp_object, tdim - 1, facets.astype(np.int32), False)
    cells = f2c.array[f2c.offsets[facets]]
    ts = np.linspace(0, 1, npts)
    pts = (X[geo[:, 0]][:, None, :] * (1 - ts)[None, :, None] + X[geo[:, 1]][:, None, :] * ts[None, :, None])
    pts = pts.reshape(-1, 3)
    cc = np.repeat(cells, npts).astype(np.int32)
    vals = u.eval(pts, cc)
    y = pts[:, 1] + vals[:, 1]
    del f2v
    return msh.comm.allreduce(float(y.min()) if len(y) else math.inf, op=MPI.MIN)


@pytest.mark.parametrize("degree", [2])
def test_hertz_cylinder_on_rigid_flat(degree):
    t = time.perf_counter()
    res, sysm = run_hertz([0.02, 0.035], degree=degree)
    el = time.perf_counter() - t
    for r in res:
        err = r["a_mom"] / r["a_hertz"] - 1
        print(f"P = {r['P']:.5f} (reaction {r['P_reaction']:.5f})  a = {r['a_mom']:.4f}  a_Hertz = "
              f"{r['a_hertz']:.4f}  err = {100 * err:+.2f} %  a_gap(0.1/0.5/1 dhat) = "
              f"{r['a_gap'][0.1]:.4f}/{r['a_gap'][0.5]:.4f}/{r['a_gap'][1.0]:.4f}  min gap {r['min_gap']:.2e}  "
              f"y_min {r['ymin']:.2e}  its {r['its']}  contact vertices {r['n_contact']}")
        assert abs(err) < 0.05
        assert abs(r["P_reaction"] / r["P"] - 1) < 1e-3  # contact force = top reaction
        assert r["a_mom"] / r["seg"] >= 10  # the contact zone is resolved
        assert r["min_gap"] > 0
        assert r["ymin"] > -0.005 * HERTZ["R"]
    a = [r["a_mom"] / HERTZ["R"] for r in res]
    assert a[0] < 0.15 and a[1] > 0.15
    print(f"hertz: {el:.1f} s, dofs {sysm.V.dofmap.index_map.size_global * 2}, contact stats {sysm.contact.stats}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--set", nargs="*", default=[])
    args = ap.parse_args()
    over = {k: float(v) for k, v in (s.split("=") for s in args.set)}
    if args.case == "hertz":
        t = time.perf_counter()
        mat = "neo-hookean" if over.pop("nh", 0) else "linear"
        deltas = [over.pop("d1", 0.02), over.pop("d2", 0.035)]
        res, sysm = run_hertz(deltas, material=mat, log=print if over.pop("log", 0) else None, **over)
        for r in res:
            print(json.dumps(r))
        print("time", time.perf_counter() - t, "dofs", sysm.V.dofmap.index_map.size_global * 2, sysm.contact.stats)
