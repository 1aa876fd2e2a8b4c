r"""Quasi-static finite-strain chemo-mechanics of the RVE: forms, Newton, adaptive time stepping.

Equilibrium  Div P = 0  (plane strain, per unit thickness) is solved as the minimisation of the
incremental potential of a variational constitutive update (Ortiz & Stainier 1999):

    Π(u) = ∫ W(F; state_n, Δt) dX  +  barrier contact  +  p ∫ N·u dS  +  ½ k_prox ∫ |u - u_n|² dX,

where W = ψ(ε_e) + Δt ψ*(Δε/Δt) is the Hencky energy plus the Norton dissipation of the
backward-Euler step, evaluated at quadrature points by `solver.creep.update` (P = ∂W/∂F and the
algorithmic tangent ∂P/∂F come from the same return mapping). A Newton method with an energy line
search capped by continuous collision detection (solver.newton) minimises Π each step.

Internal units: lengths in L0 = min(W, H)/40, stresses in S0 = the largest Young's modulus.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import dolfinx_env  # noqa: F401
import basix
import basix.ufl
import dolfinx.fem.petsc as fp
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from . import creep, materials
from .domain import WALL_TAGS, Domain
from .protocol import parse_protocol, schedule

SIDES = ("left", "right", "bottom", "top")
_NORMAL_AXIS = {"left": 0, "right": 0, "bottom": 1, "top": 1}


class SolverFailure(RuntimeError):
    """The mechanics could not be advanced (Newton failed after all cut-backs)."""


@dataclass
class StepInfo:
    converged: bool
    iterations: int
    reason: str = ""
    history: tuple = ()
    newton: object = None  # the NewtonResult (per-iteration records, time split), for profiling


def psd_project(D):
    """Nearest positive semi-definite tangent, point by point: D (npts, 4, 4), the in-plane dP/dF
    as a matrix over (F11, F12, F21, F22), symmetrised, negative eigenvalues set to zero."""
    D = 0.5 * (D + np.swapaxes(D, 1, 2))
    lam, Q = np.linalg.eigh(D)
    if lam.min(initial=0.0) >= 0.0:
        return D
    return np.einsum("pik,pk,pjk->pij", Q, np.maximum(lam, 0.0), Q)


class Mechanics:
    """Discrete mechanics of one Domain: spaces, quadrature state, forms, assembly, metrics."""

    def __init__(self, cfg, dom: Domain, comm=MPI.COMM_WORLD):
        self.cfg, self.dom, self.comm = cfg, dom, comm
        msh = dom.mesh
        self.L0 = min(dom.width, dom.height) / 40.0
        mats = cfg.used_materials()
        self.S0 = max(max(m.youngs_modulus, (m.lithiated.youngs_modulus or 0) if m.lithiated else 0)
                      for m in mats.values())
        self.E_min = min(min(m.youngs_modulus, (m.lithiated.youngs_modulus or m.youngs_modulus) if m.lithiated
                             else m.youngs_modulus) for m in mats.values())
        msh.geometry.x[:, :2] /= self.L0
        self.W, self.H = dom.width / self.L0, dom.height / self.L0
        deg = cfg.solver.element_degree
        q = cfg.solver.quadrature_degree or max(1, 2 * (deg - 1))
        self.deg, self.q = deg, q
        self.V = fem.functionspace(msh, ("Lagrange", deg, (2,)))
        cell = msh.basix_cell()
        self.QT = fem.functionspace(msh, basix.ufl.quadrature_element(cell, value_shape=(2, 2), degree=q))
        self.QD = fem.functionspace(msh, basix.ufl.quadrature_element(cell, value_shape=(2, 2, 2, 2), degree=q))
        self.u = fem.Function(self.V, name="u")
        self.u_n = fem.Function(self.V)  # last converged step (proximal term)
        self.P = fem.Function(self.QT)
        self.D = fem.Function(self.QD)
        self.project_tangent = False  # PSD-project the material tangent (Newton's fallback)
        tdim = msh.topology.dim
        self.nc = msh.topology.index_map(tdim).size_local
        self.cells = np.arange(self.nc, dtype=np.int32)
        pts, wts = basix.make_quadrature(basix.CellType.triangle, q)
        self.nqp = len(wts)
        self.qdofs = self.QT.dofmap.list[: self.nc].reshape(-1)
        self.grad_expr = fem.Expression(ufl.grad(self.u), pts)
        detJ = fem.Expression(abs(ufl.JacobianDeterminant(msh)), pts).eval(msh, self.cells).reshape(self.nc, -1)
        self.wdet = (detJ * wts[None, :]).reshape(-1)  # reference area weight per quadrature point

        # phase per quadrature point
        self.phases = list(mats)
        tag2phase = {t: p for t, p in dom.bodies}
        ct = dom.cell_tags
        cell_phase = np.full(self.nc, -1, dtype=np.int32)
        for t, p in dom.bodies:
            c = ct.find(t)
            c = c[c < self.nc]
            cell_phase[c] = self.phases.index(p)
        if (cell_phase < 0).any():
            raise RuntimeError("mesh has cells outside any body (pores meshed?)")
        self.cell_phase = cell_phase
        self.tag2phase = tag2phase
        self.qphase = np.repeat(cell_phase, self.nqp)
        nq = self.nc * self.nqp
        self.Cp_inv = np.tile(np.array([1.0, 1.0, 0.0, 1.0]), (nq, 1))
        self.eps_cr = np.zeros(nq)
        self.vm_q = np.zeros(nq)
        self.sig_q = np.zeros((nq, 4))
        self.J_q = np.ones(nq)

        # boundary conditions
        b = cfg.boundary
        ft = dom.facet_tags
        msh.topology.create_connectivity(tdim - 1, tdim)
        self.bcs, bc_dofs = [], []
        zero = PETSc.ScalarType(0.0)
        for s in SIDES:
            if b.kind(s) == "roller":
                facets = ft.find(WALL_TAGS[s])
                Vi = self.V.sub(_NORMAL_AXIS[s])
                dofs = fem.locate_dofs_topological(Vi, tdim - 1, facets)
                self.bcs.append(fem.dirichletbc(zero, dofs, Vi))
                bc_dofs.append(dofs)
        self.bc_local = np.unique(np.concatenate(bc_dofs)) if bc_dofs else np.zeros(0, np.int32)
        n_owned = self.V.dofmap.index_map.size_local * self.V.dofmap.index_map_bs
        owned = self.bc_local[self.bc_local < n_owned]
        self.bc_owned_local = owned

        # forms
        v, du = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        dx = ufl.dx(metadata={"quadrature_degree": q})
        i, j, k, l = ufl.indices(4)
        G = ufl.grad(v)
        self.k_prox = fem.Constant(msh, PETSc.ScalarType(0.0))
        R = ufl.inner(self.P, G) * dx + self.k_prox * ufl.inner(self.u - self.u_n, v) * dx
        a = self.D[i, j, k, l] * ufl.grad(du)[k, l] * G[i, j] * dx + self.k_prox * ufl.inner(du, v) * dx
        E_prox = 0.5 * self.k_prox * ufl.inner(self.u - self.u_n, self.u - self.u_n) * dx
        E_extra = E_prox
        ds = ufl.Measure("ds", domain=msh, subdomain_data=ft, metadata={"quadrature_degree": max(2, deg)})
        N = ufl.FacetNormal(msh)
        self.pressure = {}
        for s in SIDES:
            if b.kind(s) == "pressure":
                p = fem.Constant(msh, PETSc.ScalarType(getattr(b, s).pressure / self.S0))
                self.pressure[s] = p
                # nominal (dead-load) pressure on the reference side: potential p ∫ N·u dS
                R += p * ufl.dot(N, v) * ds(WALL_TAGS[s])
                E_extra += p * ufl.dot(N, self.u) * ds(WALL_TAGS[s])
        self.R_form, self.a_form, self.E_form = fem.form(R), fem.form(a), fem.form(E_extra)
        self.E_prox_form = fem.form(E_prox)
        self.A = fp.create_matrix(self.a_form)
        self.A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, False)
        self.b = fp.create_vector(self.V)
        self.contact = None
        self.timers = {"constitutive": 0.0, "assembly": 0.0}
        self.last_proximal_ratio = 0.0
        self._cache = None  # (u, (F, update), with tangent, dt) of the last constitutive update
        self.dt = 0.0
        self.theta = 0.0
        self._props = None
        # side facets for thickness change
        self._side_dofs = {}
        for s in SIDES:
            Vi = self.V.sub(_NORMAL_AXIS[s])
            d = fem.locate_dofs_topological(Vi, tdim - 1, ft.find(WALL_TAGS[s]))
            self._side_dofs[s] = d

    # ---------------------------------------------------------------- material state
    def set_state(self, theta: float, dt: float):
        """Material properties at theta (per quadrature point) and the step size."""
        self.theta, self.dt = theta, dt
        self._cache = None
        mats = self.cfg.used_materials()
        T = self.cfg.cycling.temperature
        st = [materials.state(mats[p], theta, T) for p in self.phases]
        S0 = self.S0
        tab = np.array([[s.mu / S0, s.lam / S0, s.Jl, s.A, s.n, s.sigma_ref / S0] for s in st])
        qp = self.qphase
        self._props = tuple(tab[qp, c] for c in range(6))

    def _update(self, u_array, tangent):
        c = self._cache
        if c is not None and (c[2] or not tangent) and c[3] == self.dt and np.array_equal(c[0], u_array):
            return c[1]
        self.u.x.array[:] = u_array
        F = self.grad_expr.eval(self.dom.mesh, self.cells).reshape(-1, 2, 2)
        F[:, 0, 0] += 1.0
        F[:, 1, 1] += 1.0
        mu, lam, Jl, A, n, sref = self._props
        t0 = time.perf_counter()
        r = creep.update(F, self.Cp_inv, Jl, mu, lam, A, n, sref, self.dt, tangent=tangent)
        self.timers["constitutive"] += time.perf_counter() - t0
        self._cache = (np.array(u_array, copy=True), (F, r), tangent, self.dt)
        return F, r

    def _energy_density(self, r, F):
        """W = ψ(ε_e) + n/(n+1) Δε σ_e (Hencky + Norton dissipation of the step), per reference area."""
        mu, lam, Jl, A, n, sref = self._props
        K = lam + 2.0 * mu / 3.0
        t = r.tau
        tr = t[:, 0] + t[:, 1] + t[:, 3]
        dev = t.copy()
        dev[:, [0, 1, 3]] -= tr[:, None] / 3.0
        dd = dev[:, 0] ** 2 + dev[:, 1] ** 2 + dev[:, 3] ** 2 + 2.0 * dev[:, 2] ** 2
        se = np.sqrt(1.5 * dd)
        W = tr**2 / (18.0 * K) + dd / (4.0 * mu) + n / (n + 1.0) * r.deps * se
        J = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
        return np.where(J > 0, W, np.inf)

    # ---------------------------------------------------------------- Newton system
    def energy(self, u_array) -> float:
        F, r = self._update(u_array, tangent=False)
        W = self._energy_density(r, F)
        e = float(np.sum(W * self.wdet))
        e = self.comm.allreduce(e, op=MPI.SUM)
        if not np.isfinite(e):
            return math.inf
        e += self.comm.allreduce(fem.assemble_scalar(self.E_form), op=MPI.SUM)
        if self.contact is not None:
            e += self.contact.energy(u_array)
        return e

    def assemble(self, u_array):
        F, r = self._update(u_array, tangent=True)
        self.P.x.array.reshape(-1, 4)[self.qdofs] = r.P.reshape(-1, 4)
        D = r.dPdF.reshape(-1, 4, 4)
        if self.project_tangent:
            D = psd_project(D)
        self.D.x.array.reshape(-1, 16)[self.qdofs] = D.reshape(-1, 16)
        self.P.x.scatter_forward()
        self.D.x.scatter_forward()
        t0 = time.perf_counter()
        b, A = self.b, self.A
        with b.localForm() as bl:
            bl.set(0.0)
        fp.assemble_vector(b, self.R_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        A.zeroEntries()
        fp.assemble_matrix(A, self.a_form, bcs=self.bcs)
        A.assemble()
        if self.contact is not None:
            self.contact.add_gradient(b, u_array)
            self.contact.add_hessian(A, u_array)
            A.assemble()  # contact adds nothing to Dirichlet rows/columns (bcs given to it)
        b.array[self.bc_owned_local] = 0.0
        self.timers["assembly"] += time.perf_counter() - t0
        return b, A

    def set_hessian_projection(self, flag: bool, material: bool = True):
        """Newton's switch for the PSD projection of the Hessian where the exact one gave no descent
        direction: the barrier Hessian (always projected when `contact.project_hessian` is set) and
        the material tangent, point by point (Hencky elasticity is not convex at large strains, e.g.
        Se squeezed into a closing pore)."""
        self.project_tangent = bool(flag) and material
        if self.contact is not None:
            self.contact.project_hessian = bool(flag) or self.cfg.contact.project_hessian

    def shift_matrix(self):
        """The mass matrix (identity rows on Dirichlet DoFs are zeroed: diagonal 0 there), assembled once:
        Newton's Levenberg-Marquardt shift tau M where the tangent is indefinite (a proximal term
        anchored at the current iterate)."""
        if getattr(self, "_M", None) is None:
            v, du = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
            dx = ufl.dx(metadata={"quadrature_degree": 2 * self.deg})
            M = fp.assemble_matrix(fem.form(ufl.inner(du, v) * dx), bcs=self.bcs, diag=0.0)
            M.assemble()
            self._M = M
        return self._M

    def max_step(self, u_array, du_array) -> float:
        if self.contact is None:
            return 1.0
        return self.contact.max_step(u_array, du_array)

    def commit(self):
        """Accept the converged step: update internal variables and u_n."""
        F, r = self._update(self.u.x.array, tangent=False)
        self.Cp_inv[:] = r.Cp_inv
        self.eps_cr += r.deps
        self.vm_q = r.vm
        self.sig_q = r.sigma
        self.J_q = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]
        self.u_n.x.array[:] = self.u.x.array
        self._cache = None  # the internal variables changed
        dmax = float(r.deps.max()) if len(r.deps) else 0.0
        return self.comm.allreduce(dmax, op=MPI.MAX)

    def proximal_ratio(self, u_array) -> float:
        """Proximal energy of the step relative to the stored (Hencky + dissipation) energy: a
        diagnostic that the regularisation of floating particles does not drive the answer."""
        if float(self.k_prox.value) == 0.0:
            return 0.0
        F, r = self._update(u_array, tangent=False)
        W = self.comm.allreduce(float(np.sum(self._energy_density(r, F) * self.wdet)), op=MPI.SUM)
        self.u.x.array[:] = u_array
        Ep = self.comm.allreduce(fem.assemble_scalar(self.E_prox_form), op=MPI.SUM)
        return Ep / W if W > 0 else 0.0

    def proximal_force_ratio(self, u_array) -> float:
        """|k_prox M (u - u_n)| / |internal force| (2-norms over the free DoFs): the equilibrium error
        that the proximal term leaves in the answer (the residual of the problem without it)."""
        if float(self.k_prox.value) == 0.0:
            return 0.0
        if getattr(self, "_fprox_forms", None) is None:
            v = ufl.TestFunction(self.V)
            dx = ufl.dx(metadata={"quadrature_degree": self.q})
            self._fprox_forms = (fem.form(self.k_prox * ufl.inner(self.u - self.u_n, v) * dx),
                                 fem.form(ufl.inner(self.P, ufl.grad(v)) * dx))
        F, r = self._update(u_array, tangent=False)
        self.P.x.array.reshape(-1, 4)[self.qdofs] = r.P.reshape(-1, 4)
        self.P.x.scatter_forward()
        self.u.x.array[:] = u_array
        out = []
        for form in self._fprox_forms:
            vec = fp.assemble_vector(form)
            vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            vec.array[self.bc_owned_local] = 0.0
            out.append(vec.norm())
            vec.destroy()
        return out[0] / out[1] if out[1] > 0 else 0.0

    def refresh(self):
        """Recompute stresses for metrics at the current u without touching the internal variables."""
        F, r = self._update(self.u.x.array, tangent=False)
        self.vm_q, self.sig_q = r.vm, r.sigma
        self.J_q = F[:, 0, 0] * F[:, 1, 1] - F[:, 0, 1] * F[:, 1, 0]

    def max_creep_increment(self) -> float:
        """Creep increment of the step at the `creep_increment_quantile` (default 0.99; 1 = the
        largest) among points that keep at least half of their trial stress. Points that relax
        (nearly) completely within the step (stress concentrations at point contacts with a high
        exponent) are resolved by backward Euler's stability, not by the step size, and do not
        limit it."""
        F, r = self._update(self.u.x.array, tangent=False)
        m = r.ratio >= 0.5 if r.ratio is not None else slice(None)
        d = np.asarray(r.deps[m], dtype=float).ravel()
        q = self.cfg.solver.creep_increment_quantile
        if q >= 1.0:
            return self.comm.allreduce(float(d.max()) if d.size else 0.0, op=MPI.MAX)
        d = np.concatenate(self.comm.allgather(d)) if self.comm.size > 1 else d
        return float(np.quantile(d, q)) if d.size else 0.0

    # ---------------------------------------------------------------- metrics
    def metrics(self) -> dict:
        """Phase-averaged metrics in the deformed configuration (SI)."""
        comm = self.comm
        out = {}
        wdef = self.wdet * self.J_q  # deformed area weights
        solid = comm.allreduce(float(wdef.sum()), op=MPI.SUM)
        solid0 = comm.allreduce(float(self.wdet.sum()), op=MPI.SUM)
        for i, p in enumerate(self.phases):
            m = self.qphase == i
            a = comm.allreduce(float(wdef[m].sum()), op=MPI.SUM)
            vm = comm.allreduce(float((self.vm_q[m] * wdef[m]).sum()), op=MPI.SUM)
            vmax = comm.allreduce(float(self.vm_q[m].max()) if m.any() else 0.0, op=MPI.MAX)
            cr = comm.allreduce(float((self.eps_cr[m] * wdef[m]).sum()), op=MPI.SUM)
            s33 = comm.allreduce(float((self.sig_q[m, 3] * wdef[m]).sum()), op=MPI.SUM)
            p_ = comm.allreduce(float((-(self.sig_q[m, 0] + self.sig_q[m, 1] + self.sig_q[m, 3]) / 3 * wdef[m]).sum()),
                                op=MPI.SUM)
            a = a or 1.0
            out[f"vm_mean_{p}_Pa"] = vm / a * self.S0
            out[f"vm_max_{p}_Pa"] = vmax * self.S0
            out[f"creep_eq_mean_{p}"] = cr / a
            out[f"s33_mean_{p}_Pa"] = s33 / a * self.S0
            out[f"pressure_mean_{p}_Pa"] = p_ / a * self.S0
        # box: sides that move (free/pressure) — mean normal displacement of their wall dofs
        ext = {}
        n_owned = self.V.dofmap.index_map.size_local * self.V.dofmap.index_map_bs
        for s in SIDES:
            d = self._side_dofs[s]
            own = d[d < n_owned]
            tot = comm.allreduce(float(self.u.x.array[own].sum()), op=MPI.SUM)
            cnt = comm.allreduce(int(len(own)), op=MPI.SUM)
            ext[s] = tot / cnt if cnt else 0.0
        Wd = self.W + ext["right"] - ext["left"]
        Hd = self.H + ext["top"] - ext["bottom"]
        box = Wd * Hd
        out["porosity"] = max(0.0, 1.0 - solid / box)
        out["solid_area_ratio"] = solid / solid0
        out["width_change"] = Wd / self.W - 1.0
        out["height_change"] = Hd / self.H - 1.0
        return out

    def dofs(self) -> int:
        return self.V.dofmap.index_map.size_global * self.V.dofmap.index_map_bs


class Stepper:
    """Adaptive time stepping over the protocol schedule."""

    def __init__(self, cfg, mech: Mechanics, solve, on_step, log=print):
        self.cfg, self.mech, self.solve, self.on_step, self.log = cfg, mech, solve, on_step, log
        self.segments = schedule(parse_protocol(cfg.cycling.protocol), cfg.cycling.cycles, cfg.cycling.initial_theta)
        s = cfg.solver
        self.dt = s.dt_initial
        self.t = 0.0
        self.steps = 0
        self.newton_total = 0
        self.rejected = {"newton": 0, "creep_increment": 0}  # steps redone with a shorter dt, by cause
        self.recent_dt: list[float] = []  # accepted steps of the current protocol step (stall check)
        self.seg_index = 0
        self.du_prev, self.dt_prev = None, 1.0
        # profiling (CREEP_CATHODE_PROFILE): one record per accepted step, read by the on_step callback
        self.profile = False
        self.record = None
        self.snapshot_dir = None  # CREEP_CATHODE_SNAPSHOTS: state before each step, for scripts/replay_step.py
        self._pred = {"used": False, "alpha": 0.0}

    # ---------------------------------------------------------------- profiling
    def _solve_logged(self, phase):
        info = self.solve()
        if self.profile and self.record is not None:
            r = info.newton
            self.record["solves"].append({
                "phase": phase, "its": info.iterations, "converged": info.converged, "reason": info.reason,
                "records": r.records if r is not None else [], "timers": r.timers if r is not None else {}})
        return info

    def _snapshot(self, u_old, t_new, theta, dt):
        """Serial only: the state at the start of step `steps + 1` (u_old, u_n, internal variables, predictor)."""
        from pathlib import Path

        mech = self.mech
        np.savez(Path(self.snapshot_dir) / f"step{self.steps + 1:05d}.npz", u=u_old, u_n=mech.u_n.x.array,
                 Cp_inv=mech.Cp_inv, eps_cr=mech.eps_cr, t=self.t, t_new=t_new, theta=theta, dt=dt,
                 du_prev=self.du_prev if self.du_prev is not None else np.zeros(0), dt_prev=self.dt_prev)

    def _contact_state(self, u):
        c = self.mech.contact
        if c is None:
            return {"collisions": 0, "active": set(), "min_gap_rel": math.inf}
        g = c.gaps(u, radius=c.dhat)
        act = set(np.flatnonzero(g["dist"] < c.dhat).tolist())
        md = float(g["dist"].min()) if len(g["dist"]) else math.inf
        return {"collisions": c.num_active(u), "active": act, "min_gap_rel": md / c.dhat}

    def _timer_snapshot(self):
        out = dict(self.mech.timers)
        c = self.mech.contact
        if c is not None:
            for k, v in c.stats.items():
                out["contact_" + k] = v
        out["wall"] = time.perf_counter()
        return out

    def _predict(self, u_old, dt):
        """Linear extrapolation of the last increment, capped by collision detection; kept only
        when its incremental energy is finite (no inverted element)."""
        self._pred = {"used": False, "alpha": 0.0}
        mech = self.mech
        anchored = self.cfg.contact.proximal_anchor == "predicted"
        if anchored:
            mech.u_n.x.array[:] = u_old  # (again, after a rejected attempt)
        if self.du_prev is None or not self.cfg.solver.predictor:
            return
        d = self.du_prev * (dt / self.dt_prev)
        if anchored:
            # proximal term anchored at the full extrapolation (not capped by CCD: it is only a
            # quadratic): it then resists only the deviation from the last step's trend, not the trend
            mech.u_n.x.array[:] = u_old + d
        a = mech.max_step(u_old, d)
        a = 1.0 if a >= 1.0 else 0.9 * a
        self._pred["alpha"] = a
        if a <= 0:
            return
        trial = u_old + a * d
        if math.isfinite(mech.energy(trial)):
            mech.u.x.array[:] = trial
            self._pred["used"] = True
        else:
            mech.u.x.array[:] = u_old

    def _check_stall(self, seg, dt: float) -> None:
        """A contact state the mechanics cannot get past shows as ever smaller steps that still
        converge; end it as a failure instead of crawling on for days."""
        s = self.cfg.solver
        recent = self.recent_dt = (self.recent_dt + [dt])[-s.stall_steps:]
        if (s.stall_fraction > 0 and len(recent) == s.stall_steps and seg.t1 > seg.t0
                and sum(recent) < s.stall_fraction * (seg.t1 - seg.t0)):
            raise SolverFailure(f"stalled at t = {self.t + dt:.6g} s (cycle {seg.cycle}, '{seg.step.text}', "
                                f"theta = {seg.theta(self.t + dt):.4f}): the last {s.stall_steps} steps covered "
                                f"{sum(recent):.3g} s, less than {s.stall_fraction:g} of the step's "
                                f"{seg.t1 - seg.t0:.3g} s (a contact state the mechanics cannot get past?)")

    def _relax_proximal(self) -> int:
        """Proximal-point relaxation: while the proximal energy is not negligible against the
        stored energy, re-solve the same step (same internal variables) anchored at the current
        solution, so that the regularisation of floating particles fades from the answer."""
        mech, c = self.mech, self.cfg.contact
        its = 0
        force = c.proximal_criterion == "force"
        measure = mech.proximal_force_ratio if force else mech.proximal_ratio
        tol = c.proximal_force_tolerance if force else c.proximal_tolerance
        ratio = measure(mech.u.x.array)
        for _ in range(c.proximal_relaxations):
            if ratio <= tol:
                break
            u_conv, anchor = mech.u.x.array.copy(), mech.u_n.x.array.copy()
            mech.u_n.x.array[:] = u_conv
            mech._cache = None
            info = self._solve_logged("proximal")
            its += info.iterations
            if not info.converged:  # keep the last converged state
                mech.u.x.array[:] = u_conv
                mech.u_n.x.array[:] = anchor
                break
            ratio = measure(mech.u.x.array)
        mech.last_proximal_ratio = mech.proximal_ratio(mech.u.x.array) if force else ratio
        return its

    def _finish_record(self, seg, dt, theta, info, dmax, ratio0):
        rec = self.record
        cs = self._contact_state(self.mech.u.x.array)
        t1 = self._timer_snapshot()
        t0 = rec.pop("timers0")
        a0 = rec.pop("_active0")
        rec.update(done=True, cycle=seg.cycle, kind=seg.step.kind, t=self.t + dt, theta=theta, dt=dt,
                   pred=dict(self._pred), dmax=dmax, prox_ratio_before=ratio0,
                   prox_ratio_after=self.mech.last_proximal_ratio,
                   contacts_end=cs["collisions"], active_vertices_start=len(a0), active_vertices_end=len(cs["active"]),
                   new_vertices=len(cs["active"] - a0), lost_vertices=len(a0 - cs["active"]),
                   min_gap_rel_end=cs["min_gap_rel"],
                   timers={k: t1[k] - t0.get(k, 0.0) for k in t1})

    def run_segment(self, seg, on_end=None):
        s = self.cfg.solver
        mech = self.mech
        rate = abs(seg.theta1 - seg.theta0) / (seg.t1 - seg.t0) if seg.t1 > seg.t0 else 0.0
        cut = 0
        if self.t <= seg.t0 + 1e-9 * max(1.0, seg.t1):
            self.du_prev = None  # no predictor across a protocol boundary
            self.recent_dt = []
        while self.t < seg.t1 - 1e-9 * max(1.0, seg.t1):
            dt = min(self.dt, s.dt_max, seg.t1 - self.t)
            if rate > 0:
                dt = min(dt, s.max_theta_increment / rate)
            if seg.t1 - (self.t + dt) < 1e-6 * dt:
                dt = seg.t1 - self.t
            t_new = self.t + dt
            theta = seg.theta(t_new)
            mech.set_state(theta, dt)
            u_old = mech.u.x.array.copy()
            if self.profile:
                if self.record is None or self.record.get("done"):
                    cs = self._contact_state(u_old)
                    self.record = {"t0": self.t, "attempts": [], "solves": [], "timers0": self._timer_snapshot(),
                                   "contacts_start": cs["collisions"], "_active0": cs["active"],
                                   "min_gap_rel_start": cs["min_gap_rel"]}
                self.record["solves"] = []
            if self.snapshot_dir and cut == 0:
                self._snapshot(u_old, t_new, theta, dt)
            self._predict(u_old, dt)
            info = self._solve_logged("main")
            for _ in range(s.newton_continuations):
                # an iteration limit is not a divergence: the minimiser only ever lowers the energy,
                # so go on from where it stopped (same dt) before cutting the step
                if info.converged or not info.reason.startswith("no convergence"):
                    break
                self.newton_total += info.iterations
                if s.log_newton:
                    self.log(f"  continuing the minimisation (dt = {dt:.3g} s): {info.reason}")
                info = self._solve_logged("continuation")
            self.newton_total += info.iterations
            ok = info.converged
            dmax = mech.max_creep_increment() if ok else 0.0
            reason = info.reason
            if ok and dmax > s.max_creep_increment and dt > s.dt_min * 1.0001:
                ok, reason = False, f"creep increment {dmax:.3g} > max_creep_increment"
            if not ok:
                mech.u.x.array[:] = u_old
                if self.profile:
                    self.record["attempts"].append({"dt": dt, "reason": reason, "pred": dict(self._pred),
                                                    "its": sum(x["its"] for x in self.record["solves"]),
                                                    "solves": self.record["solves"]})
                self.rejected["creep_increment" if info.converged else "newton"] += 1
                if s.log_newton:
                    self.log(f"  step rejected (dt = {dt:.3g} s): {reason}")
                cut += 1
                if cut > s.max_cutbacks or dt <= s.dt_min * 1.0001:
                    raise SolverFailure(f"step at t = {self.t:.6g} s (cycle {seg.cycle}, '{seg.step.text}') failed "
                                        f"after {cut - 1} cut-backs (dt = {dt:.3g} s): {reason}")
                fac = 0.5
                if dmax > s.max_creep_increment:
                    fac = min(0.5, 0.8 * s.max_creep_increment / dmax)
                self.dt = max(dt * fac, s.dt_min)
                continue
            ratio0 = mech.proximal_ratio(mech.u.x.array) if self.profile else 0.0
            self.newton_total += self._relax_proximal()
            if self.profile:
                self._finish_record(seg, dt, theta, info, dmax, ratio0)
            self.du_prev, self.dt_prev = mech.u.x.array - u_old, dt
            self._check_stall(seg, dt)
            mech.commit()
            self.t = t_new
            self.steps += 1
            cut = 0
            if dt >= 0.999 * min(self.dt, s.dt_max):  # not shortened by a protocol boundary
                easy = info.iterations <= s.easy_iterations and dmax < 0.5 * s.max_creep_increment
                hard = info.iterations > s.hard_iterations
                self.dt = min(dt * s.growth, s.dt_max) if easy else (max(0.7 * dt, s.dt_min) if hard else dt)
            self.on_step(seg, info)
        if on_end:
            on_end(seg)
