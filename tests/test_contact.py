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

from creep_cathode import dolfinx_env  # noqa: E402,F401  (dolfinx_solver before dolfinx)
import dolfinx.fem.petsc as fp  # noqa: E402
import gmsh  # noqa: E402
import ufl  # noqa: E402
from dolfinx import fem  # noqa: E402
from dolfinx.io import gmsh as gmshio  # noqa: E402
from mpi4py import MPI  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from creep_cathode.contact import WALL_TAGS, BarrierContact  # noqa: E402
from creep_cathode.newton import minimise  # noqa: E402

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
    J_l = 1 + s * swell (swell = 1 on swelling cells), energy per reference volume psi(Fe) J_l;
    swell="inplane": Fl = diag(J_l^(1/2), J_l^(1/2), 1) (the free area grows by J_l, harder)."""

    def __init__(self, msh, cell_tags, *, degree, youngs, nu=0.3, swelling_tags=(), material="neo-hookean",
                 k_prox=0.0, bcs_fn=None, contact_kwargs=None, facet_tags=None, q=None, swell="iso3d"):
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
            if swell == "inplane":  # Fl = diag(sqrt(J), sqrt(J), 1): the area grows by J
                Fe = F * ufl.as_matrix([[Jl ** (-0.5), 0, 0], [0, Jl ** (-0.5), 0], [0, 0, 1]])
            else:
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

    def set_hessian_projection(self, level: int) -> None:
        if self.contact is not None:
            self.contact.project_hessian = level >= 1

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
                for s in sides]

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
        for tolf in (0.1, 0.25, 0.5, 1.0, 2.0):
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
    """min over the particle boundary facets of the deformed y, sampled at npts points per facet
    (for P2 this sees the curved edges between the collision vertices)."""
    from dolfinx.cpp.mesh import entities_to_geometry

    msh = V.mesh
    tdim = msh.topology.dim
    facets = ft.indices[(ft.values >= 1) & (ft.values < 100000)].astype(np.int32)
    msh.topology.create_connectivity(tdim - 1, tdim)
    f2c = msh.topology.connectivity(tdim - 1, tdim)
    X = msh.geometry.x
    geo = entities_to_geometry(msh._cpp_object, tdim - 1, facets, False)
    cells = f2c.array[f2c.offsets[facets]]
    ts = np.linspace(0, 1, npts)
    pts = X[geo[:, 0]][:, None, :] * (1 - ts)[None, :, None] + X[geo[:, 1]][:, None, :] * ts[None, :, None]
    pts = pts.reshape(-1, 3)
    vals = u.eval(pts, np.repeat(cells, npts).astype(np.int32))
    y = pts[:, 1] + vals[:, 1]
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
    assert 0.08 < a[0] < 0.13 and 0.13 < a[1] < 0.2
    # the contact-length metric: in-contact length with the wall = the gap-based half-width
    c, u = sysm.contact, sysm.u
    for tolf in (0.1, 0.5, 1.0):
        lengths, totals = c.contact_lengths(u.x.array, tolf * HERTZ["dhat"], {1: "A"})
        assert lengths[("A", "wall")] == pytest.approx(res[-1]["a_gap"][tolf], rel=0.01)
        assert lengths[("A", "any")] == 0.0 and lengths[("A", "any_or_wall")] == lengths[("A", "wall")]
    print(f"hertz: {el:.1f} s, dofs {sysm.V.dofmap.index_map.size_global * 2}, contact stats {sysm.contact.stats}")


# --------------------------------------------------------------------------- swelling cases
def corner_case(comm=MPI.COMM_WORLD, h=0.1, degree=2, dhat=2e-3, kappa=1e-2):
    """Swelling quarter disk (E = 1) in the corner (0, 0) and a stiff quarter disk (E = 10) in the
    corner (W, 0), both R = 1, gap 0.05; rollers + rigid walls on left/right/bottom, rigid wall on
    top 0.05 above the swelling disk. Nothing floats (no proximal term needed)."""
    W, H = 2.05, 1.05
    msh, ct, ft = disk_mesh([(0.0, 0.0, 1.0), (W, 0.0, 1.0)], W, H, h, comm=comm)
    sysm = ElasticSystem(msh, ct, degree=degree, youngs={1: 1.0, 2: 10.0}, swelling_tags=(1,),
                         bcs_fn=roller_bcs(ft, ("left", "right", "bottom")), facet_tags=ft,
                         contact_kwargs=dict(width=W, height=H, dhat=dhat, kappa=kappa,
                                             walls={s: True for s in SIDES}))
    return sysm


def prototype_case(comm=MPI.COMM_WORLD, h=1.0, degree=2, dhat=0.02, kappa=1e-2, k_prox=1e-2, swell="iso3d"):
    """The prototypes' hard case (prototypes/NOTES.md): swelling disk (E = 1) and stiff disk (E = 10),
    R = 4, in a 16.6 x 8.4 box of rigid walls, every gap 0.2; both disks float."""
    W, H = 16.6, 8.4
    msh, ct, ft = disk_mesh([(4.2, 4.2, 4.0), (12.4, 4.2, 4.0)], W, H, h, comm=comm)
    sysm = ElasticSystem(msh, ct, degree=degree, youngs={1: 1.0, 2: 10.0}, swelling_tags=(1,), k_prox=k_prox,
                         facet_tags=ft, swell=swell, contact_kwargs=dict(width=W, height=H, dhat=dhat, kappa=kappa,
                                                            walls={s: True for s in SIDES}))
    return sysm


PHASES = {1: "Se", 2: "MSe"}


def solve_path(sysm, targets, *, tol=None, adaptive=False, ds0=None, log=None, newton_log=None,
               atol=1e-10, rtol=1e-9, max_it=40):
    """Drive s = J_l - 1 through `targets` (each reached exactly); adaptive: cut/grow sub-steps.
    Returns per converged step: s, iterations, energy, contact lengths, min gap."""
    c, u = sysm.contact, sysm.u
    tol = 2 * c.dhat if tol is None else tol
    L = max(c.width, c.height)
    recs, cur = [], float(sysm.s.value)
    nit, cuts = 0, 0
    for target in targets:
        ds = ds0 if ds0 else target - cur
        while abs(target - cur) > 1e-12:
            trial = cur + ds if abs(ds) < abs(target - cur) else target
            sysm.s.value = trial
            u_old = u.x.array.copy()
            r = minimise(sysm, u, atol=atol, rtol=rtol, dx_tol=1e-10 * L, max_it=max_it, log=newton_log)
            nit += r.iterations
            if not r.converged:
                u.x.array[:] = u_old
                u.x.scatter_forward()
                sysm.s.value = cur
                cuts += 1
                if not adaptive or abs(ds) < 1e-4 * abs(target) or cuts > 40:
                    raise AssertionError(f"failed at s = {trial:.4f}: {r.reason}")
                ds *= 0.5
                if log:
                    log(f"cut at s = {trial:.4f} ({r.reason})")
                continue
            cur = trial
            sysm.u_prev.x.array[:] = u.x.array
            lengths, totals = c.contact_lengths(u.x.array, tol, PHASES)
            recs.append(dict(s=cur, its=r.iterations, energy=sysm.energy(u.x.array), lengths=lengths,
                             totals=totals, min_gap=c.min_distance(u.x.array), nact=c.num_active(u.x.array)))
            if log:
                log(f"s = {cur:.4f}  its {r.iterations}  active {recs[-1]['nact']}  min gap {recs[-1]['min_gap']:.3e}  "
                    f"Se-any {lengths.get(('Se', 'any'), 0) / totals['Se']:.3f}  Se-wall "
                    f"{lengths.get(('Se', 'wall'), 0) / totals['Se']:.3f}")
            if adaptive and r.iterations < 10:
                ds *= 1.5
    return recs, nit, cuts


def test_barrier_derivatives_and_ccd():
    """Gradient and exact Hessian (as inserted into the PETSc system) against central differences;
    CCD caps a step that would cross the wall."""
    sysm = corner_case(h=0.2)
    solve_path(sysm, [0.1, 0.25])
    c, u = sysm.contact, sysm.u
    u0 = u.x.array.copy()
    assert c.num_active(u0) > 0
    v = np.random.default_rng(0).standard_normal(len(u0)) * 1e-3
    for bc in sysm.bcs:
        v[bc.dof_indices()[0]] = 0.0
    g = c.gradient(u0)
    vs = c.surface_displacement(v).ravel()
    eps = 1e-4
    fd = (c.energy(u0 + eps * v) - c.energy(u0 - eps * v)) / (2 * eps)
    assert fd == pytest.approx(g @ vs, rel=1e-6)
    fdg = (c.gradient(u0 + eps * v) - c.gradient(u0 - eps * v)) / (2 * eps)
    assert np.linalg.norm(fdg - c.hessian(u0) @ vs) <= 1e-6 * np.linalg.norm(fdg)
    # the same through the PETSc system (row mapping, MatAXPY merge)
    b, A = sysm.assemble(u0)
    vv = A.createVecRight()
    vv.array[:] = v[: len(vv.array)]
    Av = A.createVecLeft()
    A.mult(vv, Av)
    g1 = sysm.assemble(u0 + eps * v)[0].array.copy()
    g2 = sysm.assemble(u0 - eps * v)[0].array.copy()
    assert np.linalg.norm((g1 - g2) / (2 * eps) - Av.array) <= 1e-6 * np.linalg.norm(Av.array)
    # projected Hessian is PSD
    c.project_hessian = True
    assert np.linalg.eigvalsh(c.hessian(u0).toarray()).min() > -1e-10 * abs(c.hessian(u0)).max()
    c.project_hessian = False
    # CCD: push the swelling disk up by 0.2 (through the top wall, gap < 0.05)
    push = np.zeros_like(u0).reshape(-1, 2)
    push[:, 1] = 0.2
    push = push.ravel()
    a = c.max_step(u0, push)
    assert 0 < a < 0.25
    x = c.positions(u0 + a * push)[: c.n]
    assert x[:, 1].max() < c.height  # still below the top wall
    assert math.isfinite(c.energy(u0 + a * push)) and c.min_distance(u0 + a * push) > 0


def test_scale_invariance():
    """The same contact state in model units and in SI (lengths x 1e-6, stresses x 1e10):
    energy x 1e-2 (kappa L^2), gradient x 1e4 (kappa L), Hessian x 1e10, same CCD step and metrics."""
    sysm = corner_case(h=0.2)
    solve_path(sysm, [0.15, 0.3])
    c, u = sysm.contact, sysm.u
    L, S = 1e-6, 1e10
    msh2, ct2, ft2 = disk_mesh([(0.0, 0.0, 1.0), (2.05, 0.0, 1.0)], 2.05, 1.05, 0.2, comm=sysm.comm)
    msh2.geometry.x[:] *= L
    V2 = fem.functionspace(msh2, ("Lagrange", 2, (2,)))
    c2 = BarrierContact(V2, ft2, width=2.05 * L, height=1.05 * L, dhat=c.dhat * L, kappa=c.kappa * S,
                        walls={s: True for s in SIDES})
    assert c2.n == c.n and np.allclose(c2.X, c.X * L)
    u2 = u.x.array * L
    assert c2.energy(u2) == pytest.approx(c.energy(u.x.array) * S * L**2, rel=1e-10)
    c2.free = c.free.copy()  # same Dirichlet DoFs (rollers) as the model-unit system
    assert np.allclose(c2.gradient(u2), c.gradient(u.x.array) * S * L, rtol=1e-8, atol=1e-12 * S * L)
    H1, H2 = c.hessian(u.x.array), c2.hessian(u2)
    assert abs(H2 - H1 * S).max() <= 1e-8 * abs(H1 * S).max()
    push = np.zeros_like(u.x.array).reshape(-1, 2)
    push[:, 1] = 0.2
    push = push.ravel()
    assert c2.max_step(u2, push * L) == pytest.approx(c.max_step(u.x.array, push), rel=1e-6)
    l1, t1 = c.contact_lengths(u.x.array, 2 * c.dhat, PHASES)
    l2, t2 = c2.contact_lengths(u2, 2 * c2.dhat, PHASES)
    for k in l1:
        assert l2[k] == pytest.approx(l1[k] * L, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("degree", [1, 2])
def test_elastic_swelling_cycle_is_reversible(degree):
    t = time.perf_counter()
    sysm = corner_case(degree=degree, h=0.1 if degree == 2 else 0.05)
    c, u, comm = sysm.contact, sysm.u, sysm.comm
    tol = 2 * c.dhat
    l0, tot0 = c.contact_lengths(u.x.array, tol, PHASES)
    gap0 = c.gaps(u.x.array, radius=1.0)["dist"]
    n = 4
    up = [0.4 * (k + 1) / n for k in range(n)]  # J_l: 1 -> 1.4 -> 1
    recs, nit, _ = solve_path(sysm, up + up[-2::-1] + [0.0])
    top = recs[n - 1]
    assert top["s"] == pytest.approx(0.4)
    assert top["lengths"][("Se", "MSe")] > 0.05 * top["totals"]["Se"]  # touched the neighbour ...
    assert top["lengths"][("Se", "wall")] > 0.05 * top["totals"]["Se"]  # ... and the top wall
    assert top["lengths"][("MSe", "Se")] > 0
    assert 0 < top["min_gap"] < c.dhat
    assert top["totals"]["Se"] > 1.1 * tot0["Se"]
    # back at J_l = 1: the start state (u = 0, no contact), the contacts opened again
    end = recs[-1]
    uinf = comm.allreduce(float(np.abs(u.x.array).max()), op=MPI.MAX)
    assert uinf <= 1e-6 * 0.1, uinf  # peak displacements are O(0.1)
    l1, tot1 = c.contact_lengths(u.x.array, tol, PHASES)
    for k in l0:
        assert abs(l1[k] - l0[k]) <= 1e-6 * tot0[k[0]]
    for k in tot0:
        assert abs(tot1[k] / tot0[k] - 1) < 1e-6
    gap1 = c.gaps(u.x.array, radius=1.0)["dist"]
    fin = np.isfinite(gap0)
    assert np.all(gap1[fin] > 0) and np.allclose(gap1[fin], gap0[fin], rtol=1e-6, atol=1e-9)
    assert end["nact"] == 0 and c.energy(u.x.array) == 0.0
    print(f"reversible cycle (P{degree}): {len(recs)} steps, {nit} Newton iterations, {time.perf_counter() - t:.1f} s, "
          f"peak Se-MSe {top['lengths'][('Se', 'MSe')] / top['totals']['Se']:.3f}, Se-wall "
          f"{top['lengths'][('Se', 'wall')] / top['totals']['Se']:.3f}, |u_end|_inf = {uinf:.2e}")


def test_full_swelling_hard_case_p2():
    t = time.perf_counter()
    sysm = prototype_case(h=0.5)
    recs, nit, cuts = solve_path(sysm, [0.98], adaptive=True, ds0=0.98 / 10)
    el = time.perf_counter() - t
    end = recs[-1]
    assert abs(end["s"] - 0.98) < 1e-12
    assert end["min_gap"] > 0
    assert end["lengths"][("Se", "MSe")] > 0.05 * end["totals"]["Se"]
    assert end["lengths"][("Se", "wall")] > 0.3 * end["totals"]["Se"]
    assert nit < 200
    print(f"J_l = 1.98 reached: {len(recs)} steps, {cuts} cuts, {nit} Newton iterations, {el:.1f} s, "
          f"dofs {sysm.V.dofmap.index_map.size_global * 2}; Se-any {end['lengths'][('Se', 'any')] / end['totals']['Se']:.3f}"
          f" Se-wall {end['lengths'][('Se', 'wall')] / end['totals']['Se']:.3f}; stats {sysm.contact.stats}")


# --------------------------------------------------------------------------- 4. MPI
MPIEXEC = ROOT / ".venv" / "bin" / "mpiexec"


def mpi_case(comm=MPI.COMM_WORLD) -> dict:
    """Corner case (P2) swollen to J_l = 1.3 in three steps: energy, contact metrics, iterations."""
    sysm = corner_case(comm=comm, h=0.06)
    recs, nit, _ = solve_path(sysm, [0.1, 0.2, 0.3])
    c, u = sysm.contact, sysm.u
    end = recs[-1]
    gp = c.gaps(u.x.array)
    b, A = sysm.assemble(u.x.array)
    return dict(energy=end["energy"], barrier=c.energy(u.x.array), min_gap=end["min_gap"], nact=end["nact"],
                lengths={f"{a}|{b_}": v for (a, b_), v in end["lengths"].items()}, totals=end["totals"],
                iterations=nit, n_vertices=c.n, dofs=sysm.V.dofmap.index_map.size_global * 2,
                gap_sum=float(np.sum(gp["dist"][np.isfinite(gp["dist"])])), residual=b.norm(),
                ranks=comm.size, merges=c.stats["merges"], owned=comm.allgather(len(c.own_pos)))


@pytest.mark.mpi
def test_mpi_matches_serial():
    if not MPIEXEC.exists():
        pytest.skip("no .venv/bin/mpiexec")
    t = time.perf_counter()
    ser = mpi_case(MPI.COMM_SELF)
    t_ser = time.perf_counter() - t
    t = time.perf_counter()
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(Path(__file__).resolve()), "mpi"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    t_par = time.perf_counter() - t
    assert out.returncode == 0, out.stderr[-3000:]
    par = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
    assert par["ranks"] == 2 and par["dofs"] == ser["dofs"] and par["n_vertices"] == ser["n_vertices"]
    assert par["nact"] == ser["nact"] > 0
    assert par["energy"] == pytest.approx(ser["energy"], rel=1e-9)
    assert par["barrier"] == pytest.approx(ser["barrier"], rel=1e-6, abs=1e-12)
    assert par["min_gap"] == pytest.approx(ser["min_gap"], rel=1e-5)
    assert par["gap_sum"] == pytest.approx(ser["gap_sum"], rel=1e-7)
    for k, v in ser["lengths"].items():
        assert par["lengths"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    for k, v in ser["totals"].items():
        assert par["totals"][k] == pytest.approx(v, rel=1e-12)
    assert par["residual"] < 1e-8
    print(f"serial: {ser['iterations']} its, {t_ser:.1f} s; mpiexec -n 2: {par['iterations']} its, {t_par:.1f} s "
          f"(incl. start-up); energy {ser['energy']:.12e} vs {par['energy']:.12e}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--set", nargs="*", default=[])
    args = ap.parse_args()
    over = {k: float(v) for k, v in (s.split("=") for s in args.set)}
    if args.case == "mpi":
        res = mpi_case()
        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(res))
    elif args.case == "hertz":
        t = time.perf_counter()
        mat = "neo-hookean" if over.pop("nh", 0) else "linear"
        deltas = [over.pop("d1", 0.02), over.pop("d2", 0.035)]
        deg = int(over.pop("degree", 2))
        res, sysm = run_hertz(deltas, degree=deg, material=mat, log=print if over.pop("log", 0) else None, **over)
        for r in res:
            print(json.dumps(r))
        print("time", time.perf_counter() - t, "dofs", sysm.V.dofmap.index_map.size_global * 2, sysm.contact.stats)
    elif args.case in ("corner", "proto"):
        t = time.perf_counter()
        kw = {k: (int(v) if k == "degree" else v) for k, v in over.items() if k in ("h", "degree", "dhat", "kappa", "k_prox")}
        if over.get("inplane", 0):
            kw["swell"] = "inplane"
        target = over.get("J", 1.98 if args.case == "proto" else 1.4) - 1
        sysm = (prototype_case if args.case == "proto" else corner_case)(**kw)
        if over.get("proj", 0):  # always project (for comparison)
            sysm.contact.project_hessian = True
            sysm.set_hessian_projection = lambda flag: None
        nl = print if over.get("log", 0) > 1 else None
        recs, nit, cuts = solve_path(sysm, [target], adaptive=True, ds0=target / over.get("n", 10), log=print,
                                     newton_log=nl)
        print("steps", len(recs), "cuts", cuts, "newton", nit, "time", time.perf_counter() - t,
              "dofs", sysm.V.dofmap.index_map.size_global * 2, sysm.contact.stats)
